"""A compact DCGAN for MNIST and Goodfellow's minibatch training algorithm (taught in 01_vae_recap).

The discriminator D outputs a *logit* l, with D(x) = sigmoid(l). Written with logits the
losses are numerically safe, because -log sigmoid(l) = softplus(-l) and
-log(1 - sigmoid(l)) = softplus(l):

* discriminator: maximise  log D(x) + log(1 - D(G(z)))
  i.e. minimise  softplus(-l_real) + softplus(l_fake)
* generator, original ("saturating"): minimise  log(1 - D(G(z)))  =  -softplus(l_fake)
* generator, non-saturating:          minimise -log D(G(z))       =   softplus(-l_fake)

Both generator losses have the same fixed point, but early in training D(G(z)) is close to 0
and the gradient of log(1 - D) vanishes there; -log D gives a strong gradient instead
(Goodfellow et al., 2014, section 3). Training follows their Algorithm 1 with k = 1:
one discriminator step, then one generator step, per minibatch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import atomic_save
from .device import randn
from .progress import progress_bar
from .training import RESUME_FORMAT, load_resume_state
from .validation import check_image_batch

__all__ = ["GeneratorNet", "DiscriminatorNet", "GAN", "discriminator_loss", "generator_loss", "gan_step", "train_gan"]


class GeneratorNet(nn.Module):
    """z (B, latent_dim) -> linear -> (2w, 7, 7) -> convT -> (w, 14, 14) -> convT -> (1, 28, 28) in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 32):
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be positive, got {latent_dim} and {width}")
        self.latent_dim, self.width = latent_dim, width
        w = width
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * w * 49, bias=False), nn.BatchNorm1d(2 * w * 49), nn.ReLU(),
            nn.Unflatten(1, (2 * w, 7, 7)),                                                   # (B, 2w, 7, 7)
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w), nn.ReLU(),                                                     # (B, w, 14, 14)
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1), nn.Tanh(),                      # (B, 1, 28, 28)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {shape}")
        if not z.dtype.is_floating_point:
            raise ValueError(f"z must be a float tensor, got dtype {z.dtype}")
        return self.net(z)


class DiscriminatorNet(nn.Module):
    """Images (B, 1, 28, 28) -> conv (w, 14, 14) -> conv (2w, 7, 7) -> linear -> logit (B,)."""

    def __init__(self, width: int = 32):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),                       # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),                                         # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 49, 1),                                           # (B, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits l (B,); D(x) = sigmoid(l) is the probability that x is a real image."""
        check_image_batch(x, "x", channels=1, size=(28, 28))
        return self.net(x).squeeze(1)


class GAN(nn.Module):
    """The generator network ``G`` and the discriminator network ``D`` in one module, so one checkpoint holds both.

    (``generator`` always means a ``torch.Generator``, the random-number source, in this course.)
    """

    def __init__(self, latent_dim: int = 64, width: int = 32):
        super().__init__()
        self.latent_dim = latent_dim
        self.G = GeneratorNet(latent_dim, width)
        self.D = DiscriminatorNet(width)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [-1, 1] from z ~ N(0, I) (generator in eval mode)."""
        device = device or next(self.parameters()).device
        was_training = self.G.training
        self.G.eval()
        x = self.G(randn(n, self.latent_dim, generator=generator, device=device))
        self.G.train(was_training)
        return x


def _check_logits(**logits: torch.Tensor) -> None:
    for name, l in logits.items():
        if not isinstance(l, torch.Tensor) or not l.dtype.is_floating_point:
            raise ValueError(f"{name} must be a float tensor of discriminator logits, got "
                             f"{l.dtype if isinstance(l, torch.Tensor) else type(l).__name__}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-[ mean log D(x) + mean log(1 - D(G(z))) ] from logits (B,) and (B',): a scalar."""
    _check_logits(real_logits=real_logits, fake_logits=fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    """Generator loss from the logits of D on fakes (B,): a scalar to minimise.

    ``non_saturating=True``: mean -log D(G(z)) (what everyone trains with);
    ``False``: mean log(1 - D(G(z))) (the minimax game as written; its gradient vanishes
    when D(G(z)) is near 0).
    """
    _check_logits(fake_logits=fake_logits)
    if non_saturating:
        return F.softplus(-fake_logits).mean()
    return -F.softplus(fake_logits).mean()


def gan_step(gan: GAN, x_real: torch.Tensor, opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer,
             generator: torch.Generator | None = None, non_saturating: bool = True,
             d_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             g_loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """One iteration of Goodfellow's Algorithm 1 with k = 1 on the minibatch ``x_real`` (B, 1, 28, 28).

    1. Draw B noise vectors; update D by descending ``discriminator_loss`` (fakes detached).
    2. Draw B fresh noise vectors; update G by descending ``generator_loss``.
    ``d_loss_fn(real_logits, fake_logits)`` / ``g_loss_fn(fake_logits)`` replace the two losses (a
    student's, notebook 01; ``g_loss_fn`` is then the whole generator loss and ``non_saturating`` is
    not used). Returns the two losses and the mean D(x), D(G(z)) seen by the discriminator step.
    """
    check_image_batch(x_real, "x_real", channels=1, size=(28, 28))
    G, D = gan.G, gan.D
    b, dev = x_real.shape[0], x_real.device

    # discriminator step: ascend log D(x) + log(1 - D(G(z)))
    with torch.no_grad():
        fake = G(randn(b, gan.latent_dim, generator=generator, device=dev))
    real_logits, fake_logits = D(x_real), D(fake)
    d_loss = (d_loss_fn or discriminator_loss)(real_logits, fake_logits)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    # generator step on fresh noise: descend -log D(G(z)) (or log(1 - D(G(z))))
    fake_logits_g = D(G(randn(b, gan.latent_dim, generator=generator, device=dev)))
    g_loss = g_loss_fn(fake_logits_g) if g_loss_fn is not None else \
        generator_loss(fake_logits_g, non_saturating=non_saturating)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
            "d_real": torch.sigmoid(real_logits).mean().item(), "d_fake": torch.sigmoid(fake_logits).mean().item()}


def train_gan(gan: GAN, loader: Iterable, epochs: int, *, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
              seed: int = 0, non_saturating: bool = True, desc: str = "gan",
              resume_path: str | Path | None = None, resume_config: dict | None = None,
              d_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
              g_loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, list[float]]:
    """Train ``gan`` for ``epochs`` passes over ``loader`` (batches ``(images, labels)``) with Adam.

    Returns the history: ``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` per step and
    ``epoch_d_loss``, ``epoch_g_loss`` per epoch. ``resume_path``: after every epoch both networks,
    both optimisers, the noise generator and the history are saved there atomically; a later call
    with the same ``resume_config`` and ``epochs`` continues after the last finished epoch (the
    format of :func:`~course_utils.training.train`'s resume states). ``d_loss_fn`` / ``g_loss_fn``: as
    in :func:`gan_step`.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    opt_d = torch.optim.Adam(gan.D.parameters(), lr=lr, betas=betas)
    opt_g = torch.optim.Adam(gan.G.parameters(), lr=lr, betas=betas)
    g = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"d_loss": [], "g_loss": [], "d_real": [], "d_fake": [],
                                       "epoch_d_loss": [], "epoch_g_loss": []}
    start = 0
    state = load_resume_state(Path(resume_path), resume_config, epochs) \
        if resume_path is not None and Path(resume_path).exists() else None
    if state is not None:
        gan.load_state_dict(state["model"])
        opt_d.load_state_dict(state["opt_d"])
        opt_g.load_state_dict(state["opt_g"])
        g.set_state(state["generator"])
        if hasattr(loader, "_epoch"):
            loader._epoch = int(state["loader_epoch"])  # type: ignore[attr-defined]
        history, start = state["history"], int(state["epoch"])
        print(f"resuming {desc} after epoch {start} of {epochs} (from {resume_path})")
    gan.train()
    if epochs and len(loader) == 0:  # type: ignore[arg-type]
        raise ValueError("the loader yields no batch: fewer images than batch_size, and the last partial batch is "
                         "dropped; lower batch_size or pass more images")
    bar = progress_bar(total=epochs * len(loader), initial=start * len(loader), desc=desc)  # type: ignore[arg-type]
    for epoch in range(start, epochs):
        n0 = len(history["d_loss"])
        for batch in loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            logs = gan_step(gan, x, opt_d, opt_g, generator=g, non_saturating=non_saturating, d_loss_fn=d_loss_fn,
                            g_loss_fn=g_loss_fn)
            if not all(torch.isfinite(torch.tensor(v)) for v in logs.values()):
                raise FloatingPointError(f"GAN loss became non-finite at epoch {epoch}: {logs}; lower the learning rate")
            for k, v in logs.items():
                history[k].append(v)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, d=f"{logs['d_loss']:.3f}", g=f"{logs['g_loss']:.3f}")
        steps = max(1, len(history["d_loss"]) - n0)
        history["epoch_d_loss"].append(sum(history["d_loss"][n0:]) / steps)
        history["epoch_g_loss"].append(sum(history["g_loss"][n0:]) / steps)
        if resume_path is not None and epoch + 1 < epochs:
            atomic_save({"format": RESUME_FORMAT, "config": resume_config, "epochs": epochs, "epoch": epoch + 1,
                         "model": gan.state_dict(), "opt_d": opt_d.state_dict(), "opt_g": opt_g.state_dict(),
                         "generator": g.get_state(), "loader_epoch": getattr(loader, "_epoch", epoch + 1),
                         "history": history}, resume_path)
    bar.close()
    gan.eval()
    return history
