"""Load or train the VAE and the GAN of the recap (taught in 01_vae_recap).

Both go through the course's one recipe, :func:`~course_utils.checkpoint.load_or_train`: a re-run
loads the checkpoint, the ``cpu`` and ``full`` profiles use shipped weights of the same
architecture when there are any, and a killed run of either resumes after its last finished
epoch (the GAN through its own two-optimiser loop, :func:`~course_utils.gan.train_gan`).

Notebook 01 trains both with the student's losses: ``train_vae(..., loss=)`` and
``train_dcgan(..., d_loss=, g_loss=)``. Their names go into the checkpoint's ``train`` config, and
shipped weights never stand in for a run with a student's loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import RunConfig, arch_dict, load_or_train
from .data import TensorLoader
from .device import cpu_generator, randn
from .gan import GAN, train_gan
from .profiles import Profile
from .training import train
from .vae import ConvVAE, vae_loss
from .validation import check_image_batch

__all__ = ["VAEArch", "GANArch", "VAELoss", "train_vae", "train_dcgan"]

VAELoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, float]]"]
"""``loss(model, x, eps) -> (loss, {"recon": ..., "kl": ...})``: :func:`~course_utils.vae.vae_loss`'s signature."""


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


@dataclass
class VAEArch:
    """Architecture of the VAE: the arguments of :class:`~course_utils.vae.ConvVAE` (its ``arch`` in checkpoints)."""

    latent_dim: int = 16
    width: int = 32


@dataclass
class GANArch:
    """Architecture of the GAN: the arguments of :class:`~course_utils.gan.GAN` (its ``arch`` in checkpoints)."""

    latent_dim: int = 64
    width: int = 32


def train_vae(profile: Profile, images: torch.Tensor, *, latent_dim: int = 16, lr: float = 2e-3,
              epochs: int | None = None, seed: int = 0, name: str = "01_vae",
              loss: VAELoss | None = None) -> tuple[ConvVAE, dict, dict]:
    """Load or train a :class:`~course_utils.vae.ConvVAE` on ``images`` (N, 1, 28, 28) by minimising -ELBO.

    ``epochs`` defaults to ``profile.epochs("vae")``; the eps of every step, (B, latent_dim), comes
    from ``cpu_generator(seed)``. ``loss``: a student's -ELBO with :func:`~course_utils.vae.vae_loss`'s
    signature, ``loss(model, x, eps) -> (loss, {"recon": ..., "kl": ...})`` (default: ``vae_loss``);
    its name goes into the config's ``train`` section and shipped weights are never used for it.
    Returns ``(model, history, config)``: the history logs ``recon`` and ``kl`` per step; the config
    is the checkpoint's RunConfig as a dict.
    """
    check_image_batch(images, "images", channels=1, size=(28, 28))
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be a function loss(model, x, eps) -> (loss, logs), got {type(loss).__name__}")
    arch = arch_dict(VAEArch(latent_dim=latent_dim, width=profile.width))
    epochs = profile.epochs("vae") if epochs is None else epochs
    config = RunConfig(model="ConvVAE", arch=arch,
                       train={"lr": lr, "epochs": epochs, "batch_size": profile.batch_size,
                              "n_images": int(len(images)), "seed": seed,
                              **({"loss": _name(loss)} if loss is not None else {})})
    torch.manual_seed(seed)
    model = ConvVAE(**arch).to(images.device)
    g = cpu_generator(seed)
    loss_term = vae_loss if loss is None else loss

    def loss_fn(m: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        xb, _ = batch
        eps = randn(len(xb), m.latent_dim, generator=g, device=xb.device, dtype=xb.dtype)   # (B, latent_dim)
        return loss_term(m, xb, eps)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        return train(model, loss_fn, loader, epochs, lr=lr, desc=name, resume_path=resume,
                     resume_config=config.as_dict(), generator=g)

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained and loss is None)
    return model.eval(), history, config.as_dict()


def train_dcgan(profile: Profile, images: torch.Tensor, *, latent_dim: int = 64, lr: float = 1e-3,
                epochs: int | None = None, seed: int = 0, name: str = "01_gan",
                d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                g_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[GAN, dict, dict]:
    """Load or train the compact DCGAN (:class:`~course_utils.gan.GAN`) on ``images`` (N, 1, 28, 28).

    Goodfellow's Algorithm 1 with k = 1 and the non-saturating generator loss
    (:func:`~course_utils.gan.train_gan`), Adam with DCGAN's beta_1 = 0.5. ``lr`` is 1e-3, not
    DCGAN's 2e-4: the ``cpu`` budget is a few hundred steps. ``epochs`` defaults to
    ``profile.epochs("gan")``. ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)``: a
    student's discriminator loss and non-saturating generator loss (default: the package's
    :func:`~course_utils.gan.discriminator_loss` and :func:`~course_utils.gan.generator_loss`); their
    names go into the config's ``train`` section and shipped weights are never used for them.
    Returns ``(model, history, config)`` (``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` per step).
    """
    check_image_batch(images, "images", channels=1, size=(28, 28))
    for what, fn in (("d_loss", d_loss), ("g_loss", g_loss)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{what} must be a function of discriminator logits, got {type(fn).__name__}")
    arch = arch_dict(GANArch(latent_dim=latent_dim, width=profile.width))
    epochs = profile.epochs("gan") if epochs is None else epochs
    losses = {k: _name(fn) for k, fn in (("d_loss", d_loss), ("g_loss", g_loss)) if fn is not None}
    config = RunConfig(model="GAN", arch=arch,
                       train={"lr": lr, "betas": [0.5, 0.999], "k": 1, "non_saturating": True, "epochs": epochs,
                              "batch_size": profile.batch_size, "n_images": int(len(images)), "seed": seed,
                              **losses})
    torch.manual_seed(seed)
    model = GAN(**arch).to(images.device)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        return train_gan(model, loader, epochs, lr=lr, betas=(0.5, 0.999), seed=seed, desc=name,
                         resume_path=resume, resume_config=config.as_dict(), d_loss_fn=d_loss, g_loss_fn=g_loss)

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained and not losses)
    return model.eval(), history, config.as_dict()
