"""Load or train the VAE and the GAN of the recap (taught in 01_vae_recap).

Both go through the course's one recipe, :func:`~course_utils.checkpoint.load_or_train`: a re-run
loads the checkpoint, the ``cpu`` and ``full`` profiles use shipped weights of the same
architecture when there are any, and a killed run of either resumes after its last finished
epoch (the GAN through its own two-optimiser loop, :func:`~course_utils.gan.train_gan`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import RunConfig, arch_dict, load_or_train
from .data import TensorLoader
from .device import cpu_generator
from .gan import GAN, train_gan
from .profiles import Profile
from .training import train
from .vae import ConvVAE, vae_loss
from .validation import check_image_batch

__all__ = ["VAEArch", "GANArch", "train_vae", "train_dcgan"]


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
              epochs: int | None = None, seed: int = 0, name: str = "01_vae") -> tuple[ConvVAE, dict, dict]:
    """Load or train a :class:`~course_utils.vae.ConvVAE` on ``images`` (N, 1, 28, 28) by minimising -ELBO.

    ``epochs`` defaults to ``profile.epochs("vae")``; the eps of every step comes from
    ``cpu_generator(seed)``. Returns ``(model, history, config)``: the history logs ``recon``
    and ``kl`` per step; the config is the checkpoint's RunConfig as a dict.
    """
    check_image_batch(images, "images", channels=1, size=(28, 28))
    arch = arch_dict(VAEArch(latent_dim=latent_dim, width=profile.width))
    epochs = profile.epochs("vae") if epochs is None else epochs
    config = RunConfig(model="ConvVAE", arch=arch,
                       train={"lr": lr, "epochs": epochs, "batch_size": profile.batch_size,
                              "n_images": int(len(images)), "seed": seed})
    torch.manual_seed(seed)
    model = ConvVAE(**arch).to(images.device)
    g = cpu_generator(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        xb, _ = batch
        return vae_loss(m, xb, generator=g)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        return train(model, loss_fn, loader, epochs, lr=lr, desc=name, resume_path=resume,
                     resume_config=config.as_dict(), generator=g)

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained)
    return model.eval(), history, config.as_dict()


def train_dcgan(profile: Profile, images: torch.Tensor, *, latent_dim: int = 64, lr: float = 1e-3,
                epochs: int | None = None, seed: int = 0, name: str = "01_gan") -> tuple[GAN, dict, dict]:
    """Load or train the compact DCGAN (:class:`~course_utils.gan.GAN`) on ``images`` (N, 1, 28, 28).

    Goodfellow's Algorithm 1 with k = 1 and the non-saturating generator loss
    (:func:`~course_utils.gan.train_gan`), Adam with DCGAN's beta_1 = 0.5. ``lr`` is 1e-3, not
    DCGAN's 2e-4: the ``cpu`` budget is a few hundred steps. ``epochs`` defaults to
    ``profile.epochs("gan")``. Returns ``(model, history, config)`` (``d_loss``, ``g_loss``,
    ``d_real``, ``d_fake`` per step).
    """
    check_image_batch(images, "images", channels=1, size=(28, 28))
    arch = arch_dict(GANArch(latent_dim=latent_dim, width=profile.width))
    epochs = profile.epochs("gan") if epochs is None else epochs
    config = RunConfig(model="GAN", arch=arch,
                       train={"lr": lr, "betas": [0.5, 0.999], "k": 1, "non_saturating": True, "epochs": epochs,
                              "batch_size": profile.batch_size, "n_images": int(len(images)), "seed": seed})
    torch.manual_seed(seed)
    model = GAN(**arch).to(images.device)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        return train_gan(model, loader, epochs, lr=lr, betas=(0.5, 0.999), seed=seed, desc=name, resume_path=resume,
                         resume_config=config.as_dict())

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained)
    return model.eval(), history, config.as_dict()
