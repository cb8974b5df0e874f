"""Classifier guidance: a noise-aware classifier p(y | x_t, t) steers a diffusion model (taught in 05).

Dhariwal & Nichol (2021) sample from p(x_t | y) proportional to p(x_t) p(y | x_t)^s by adding the
classifier's gradient to the score. In the noise-prediction parameterisation the score is
grad log p(x_t) = -eps / sqrt(1 - alpha_bar_t), so the guided noise estimate is

    eps_hat = eps_theta(x_t, t) - s * sqrt(1 - alpha_bar_t) * grad_x log p_phi(y | x_t, t)

and any sampler (DDPM or DDIM) uses ``eps_hat`` in place of ``eps``. The classifier must read
*noisy* images, so it is trained on ``x_t = q_sample(x_0, t, eps)`` at random t and gets the
sinusoidal embedding of t, exactly like the UNet.

Notebook 05 compares this with classifier-free guidance (``samplers.guided_eps``), using the
unconditional branch (null label) of the CFG model as ``eps_theta``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import RunConfig, arch_dict, load_or_train
from .data import TensorLoader
from .device import randn
from .profiles import Profile
from .schedules import NoiseSchedule
from .training import train
from .unet import ResBlock, _groups, timestep_embedding
from .validation import check_image_batch, check_labels, check_timesteps, extract

__all__ = ["NoisyClassifier", "ClassifierArch", "noisy_classifier_config", "make_noisy_classifier",
           "noisy_classifier_loss", "train_noisy_classifier", "classifier_log_prob_grad", "apply_classifier_guidance",
           "classifier_guided_eps", "classifier_guidance_fn", "best_guidance_weight"]


class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t): a small CNN (three ResBlocks at 28, 14 and 7 pixels) that receives t.

    The sinusoidal embedding of t goes through an MLP and is added inside every residual block
    (the UNet's :class:`~course_utils.unet.ResBlock`), so the classifier knows how noisy its input is.
    ``forward(x, t)`` returns logits (B, num_classes) for images x (B, in_channels, image_size, image_size).
    """

    def __init__(self, base_channels: int = 32, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28, T: int = 1000):
        super().__init__()
        if base_channels < 1 or num_classes < 2 or T < 1:
            raise ValueError(f"need base_channels >= 1, num_classes >= 2 and T >= 1, "
                             f"got {base_channels}, {num_classes}, {T}")
        c = base_channels
        emb_dim = 4 * c
        self.num_classes, self.in_channels, self.image_size, self.T = num_classes, in_channels, image_size, T
        self.time_dim = c
        self.time_mlp = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, c, 3, padding=1)
        self.block1 = ResBlock(c, c, emb_dim)                              # 28 x 28
        self.down1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)          # -> 14 x 14
        self.block2 = ResBlock(2 * c, 2 * c, emb_dim)
        self.down2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)      # -> 7 x 7
        self.block3 = ResBlock(2 * c, 2 * c, emb_dim)
        self.norm_out = nn.GroupNorm(_groups(2 * c), 2 * c)
        self.head = nn.Linear(2 * c, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "x", channels=self.in_channels, size=(self.image_size, self.image_size))
        t = check_timesteps(t, self.T, batch=x.shape[0]).to(x.device)
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))       # (B, 4c)
        h = self.block1(self.conv_in(x), emb)                           # (B, c, 28, 28)
        h = self.block2(self.down1(h), emb)                             # (B, 2c, 14, 14)
        h = self.block3(self.down2(h), emb)                             # (B, 2c, 7, 7)
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))                   # global average pool, (B, 2c)
        return self.head(h)                                             # (B, num_classes)


@dataclass
class ClassifierArch:
    """Architecture of the noise-aware classifier: the arguments of :class:`NoisyClassifier` (``arch`` in checkpoints)."""

    base_channels: int = 32
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    T: int = 1000


def noisy_classifier_config(profile: Profile, **overrides) -> dict:
    """Architecture of the noise-aware classifier for ``profile``: :class:`ClassifierArch` as a JSON-able dict."""
    return arch_dict(ClassifierArch(**{"base_channels": profile.width, "T": profile.num_timesteps, **overrides}))


def make_noisy_classifier(arch: dict) -> NoisyClassifier:
    """Build a :class:`NoisyClassifier` from :func:`noisy_classifier_config`'s dict."""
    return NoisyClassifier(**arch_dict(ClassifierArch(**arch)))


def noisy_classifier_loss(classifier: nn.Module, x0: torch.Tensor, y: torch.Tensor, schedule: NoiseSchedule, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy of ``classifier`` on x_t = q_sample(x0, t, eps), t ~ U{0..T-1}, eps ~ N(0, I).

    Draws t then eps from ``generator`` (the order of :func:`~course_utils.diffusion.diffusion_loss`).
    """
    b, dev = x0.shape[0], x0.device
    y = check_labels(y, b, num_classes=classifier.num_classes, device=dev)
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(dev)          # (B,)
    eps = randn(x0.shape, generator=generator, device=dev)                         # (B, C, H, W)
    return F.cross_entropy(classifier(schedule.q_sample(x0, t, eps), t), y)


def train_noisy_classifier(profile: Profile, images: torch.Tensor, labels: torch.Tensor, *,
                           name: str = "noisy_classifier", schedule_name: str = "linear", lr: float = 2e-3,
                           epochs: int | None = None, seed: int = 0, arch: dict | None = None
                           ) -> tuple[NoisyClassifier, dict, dict]:
    """Load or train the noise-aware classifier on ``images`` (N, 1, 28, 28) and ``labels`` (N,).

    Returns ``(classifier, history, config)``, the config being the checkpoint's
    :class:`~course_utils.checkpoint.RunConfig` as a dict; ``epochs`` defaults to
    ``profile.epochs("noisy_classifier")``. The schedule (part of the task: the noise levels it
    learned to read) must be the one of the diffusion model it will guide. A killed run resumes.
    """
    if labels is None or len(labels) != len(images):
        raise ValueError("train_noisy_classifier needs one label per image")
    device = images.device
    arch = arch or noisy_classifier_config(profile)
    epochs = profile.epochs("noisy_classifier") if epochs is None else epochs
    config = RunConfig(
        model="NoisyClassifier", arch=arch, task={"schedule": schedule_name, "T": profile.num_timesteps},
        train={"lr": lr, "lr_schedule": "cosine", "epochs": epochs, "batch_size": profile.batch_size,
               "n_images": int(len(images)), "seed": seed})
    torch.manual_seed(seed)
    model = make_noisy_classifier(arch).to(device)
    schedule = NoiseSchedule(schedule_name, profile.num_timesteps)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> torch.Tensor:
        xb, yb = batch
        return noisy_classifier_loss(m, xb, yb, schedule, generator=g)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, labels, batch_size=profile.batch_size, seed=seed)
        hist = train(model, loss_fn, loader, epochs, lr=lr, lr_schedule="cosine", desc=name,
                     resume_path=resume, resume_config=config.as_dict(), generator=g)
        return {"loss": hist["loss"], "epoch_loss": hist["epoch_loss"], "lr": hist["lr"]}

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained)
    return model.eval(), history, config.as_dict()


def classifier_log_prob_grad(classifier: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x log p_phi(y | x_t, t) for each image: (B, C, H, W), same shape as ``x``.

    Works under ``torch.no_grad()`` (the sampling loop): the gradient is taken with grad enabled.
    Each image's log-probability depends only on that image, so the gradient of their sum gives
    every image its own gradient.
    """
    y = check_labels(y, x.shape[0], num_classes=classifier.num_classes, device=x.device)
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        log_p = F.log_softmax(classifier(x_in, t), dim=1)                      # (B, classes)
        selected = log_p[torch.arange(x.shape[0], device=x.device), y].sum()
        (grad,) = torch.autograd.grad(selected, x_in)
    return grad


def apply_classifier_guidance(eps: torch.Tensor, grad_log_p: torch.Tensor, t: torch.Tensor, scale: float,
                              alpha_bar: torch.Tensor) -> torch.Tensor:
    """eps_hat = eps - scale * sqrt(1 - alpha_bar_t) * grad_log_p.  eps, grad_log_p: (B, C, H, W); t: (B,)."""
    if grad_log_p.shape != eps.shape:
        raise ValueError(f"grad_log_p has shape {tuple(grad_log_p.shape)} but eps has {tuple(eps.shape)}")
    if not math.isfinite(float(scale)):
        raise ValueError(f"the guidance scale must be a finite number, got {scale}")
    t = check_timesteps(t, len(alpha_bar), batch=eps.shape[0]).to(eps.device)
    ab = extract(alpha_bar.to(eps.dtype), t, eps.shape)                            # (B, 1, 1, 1)
    return eps - float(scale) * (1 - ab).sqrt() * grad_log_p


def classifier_guided_eps(model: nn.Module, classifier: nn.Module, x: torch.Tensor, t: torch.Tensor,
                          y: torch.Tensor, scale: float, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Classifier-guided noise estimate of ``model`` (unconditional; a class-conditional UNet called
    without labels uses its null label) toward classes ``y`` (B,) with strength ``scale``."""
    with torch.no_grad():
        eps = model(x, t)                                                      # (B, C, H, W)
    if float(scale) == 0.0:
        return eps
    return apply_classifier_guidance(eps, classifier_log_prob_grad(classifier, x, t, y), t, scale, alpha_bar)


def classifier_guidance_fn(model: nn.Module, classifier: nn.Module, y: torch.Tensor, scale: float,
                           alpha_bar: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``eps_fn(x, t)`` for :func:`course_utils.samplers.sample` that applies classifier guidance."""
    classifier.eval()
    y = torch.as_tensor(y)
    check_labels(y.reshape(-1), y.numel(), num_classes=classifier.num_classes)
    if not math.isfinite(float(scale)):
        raise ValueError(f"the guidance scale must be a finite number, got {scale}")

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return classifier_guided_eps(model, classifier, x, t, y.to(x.device), scale, alpha_bar)

    return eps_fn


def best_guidance_weight(scores: dict[float, dict[str, float]], tol: float = 0.005) -> float:
    """The best guidance weight of a sweep (notebook 05, ``generate``'s default, the benchmarks).

    ``scores`` maps w -> ``metrics.evaluate_samples`` output (with ``accuracy``). Among the
    weights whose class accuracy is within ``tol`` (absolute: 0.005 = half a point) of the best
    accuracy of the sweep, the one with the lowest Frechet distance: as faithful to the label as
    guidance gets, with as little loss of diversity as possible.
    """
    if not scores:
        raise ValueError("empty sweep: score at least one guidance weight")
    missing = [w for w, s in scores.items() if "accuracy" not in s or "frechet" not in s]
    if missing:
        raise ValueError(f"scores of w = {missing} lack 'accuracy' or 'frechet': "
                         "score them with metrics.evaluate_samples(images, labels)")
    best_acc = max(s["accuracy"] for s in scores.values())
    candidates = [w for w, s in scores.items() if s["accuracy"] >= best_acc - tol]
    return min(candidates, key=lambda w: scores[w]["frechet"])
