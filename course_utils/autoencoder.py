"""The KL-regularised autoencoder that gives latent diffusion its latent space (taught in 07_latent_diffusion).

Stable Diffusion's "VAE" is an autoencoder with a *light* KL penalty: the encoder outputs a
Gaussian q(z | x) = N(mu, diag(sigma^2)) over a small spatial latent, here (4, 7, 7) for a
(1, 28, 28) digit (16x fewer positions, 4x fewer numbers: 196 vs 784), and the loss is

    L = E_q[-log p(x | z)]  +  kl_weight * KL(q(z | x) || N(0, I)),

with ``kl_weight`` far below the VAE's 1: the same ``vae.vae_loss`` as notebook 01, with another weight. The reconstruction term keeps the detail; the small KL
term keeps the latent bounded and smooth (nearby latents decode to similar digits) without
squeezing it to N(0, I). Its scale is therefore arbitrary, which is why latent diffusion divides
the latents by their standard deviation (``latent.compute_scale_factor``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import RunConfig, arch_dict, load_or_train
from .data import TensorLoader
from .profiles import Profile
from .training import train
from .vae import GaussianLatentModel, vae_loss
from .validation import check_image_batch

__all__ = ["LATENT_CHANNELS", "LATENT_SIZE", "KLAutoencoder", "check_latents",
           "AutoencoderArch", "autoencoder_config", "make_autoencoder", "train_autoencoder"]

LATENT_CHANNELS = 4
LATENT_SIZE = 7
DEFAULT_KL_WEIGHT = 1e-2


def check_latents(z: torch.Tensor, name: str = "latents", channels: int = LATENT_CHANNELS) -> None:
    """Raise ``ValueError`` unless ``z`` is a float batch of latents (B, channels, 7, 7)."""
    check_image_batch(z, name, channels=channels, size=(LATENT_SIZE, LATENT_SIZE))


class KLAutoencoder(GaussianLatentModel):
    """Encoder (1, 28, 28) -> 28 -> 14 -> 7 -> (mu, logvar) each (4, 7, 7); decoder back to (1, 28, 28) logits.

    ``width`` is the channel count of the first level (the profile's ``width``).
    """

    def __init__(self, latent_channels: int = LATENT_CHANNELS, width: int = 32):
        super().__init__()
        if latent_channels < 1 or width < 1:
            raise ValueError(f"latent_channels and width must be positive, got {latent_channels} and {width}")
        self.latent_channels, self.width = latent_channels, width
        w = width
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), act(),                             # (B, w, 28, 28)
            nn.Conv2d(w, w, 4, stride=2, padding=1), act(),                   # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, padding=1), act(),
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1), act(),           # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), act(),
            nn.Conv2d(2 * w, 2 * latent_channels, 1),                         # (B, 2 * 4, 7, 7): mu, logvar
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * w, 3, padding=1), act(),           # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), act(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), act(),      # (B, w, 14, 14)
            nn.Conv2d(w, w, 3, padding=1), act(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), act(),          # (B, w, 28, 28)
            nn.Conv2d(w, 1, 3, padding=1),                                    # (B, 1, 28, 28) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, 28, 28) in [-1, 1] -> (mu, logvar), each (B, 4, 7, 7)."""
        check_image_batch(x, "x", channels=1, size=(28, 28))
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, 4, 7, 7) -> Bernoulli logits (B, 1, 28, 28)."""
        check_latents(z, "z", self.latent_channels)
        return self.decoder(z)


@dataclass
class AutoencoderArch:
    """Architecture of the autoencoder: the arguments of :class:`KLAutoencoder` (its ``arch`` in checkpoints)."""

    latent_channels: int = LATENT_CHANNELS
    width: int = 32


def autoencoder_config(profile: Profile, *, latent_channels: int = LATENT_CHANNELS) -> dict:
    """Architecture of the autoencoder for ``profile``: :class:`AutoencoderArch` as a JSON-able dict."""
    return arch_dict(AutoencoderArch(latent_channels=latent_channels, width=profile.width))


def make_autoencoder(arch: dict) -> KLAutoencoder:
    """Build a :class:`KLAutoencoder` from :func:`autoencoder_config`'s dict."""
    return KLAutoencoder(**arch_dict(AutoencoderArch(**arch)))


def train_autoencoder(profile: Profile, images: torch.Tensor, *, kl_weight: float = DEFAULT_KL_WEIGHT,
                      lr: float = 2e-3, epochs: int | None = None, seed: int = 0,
                      epoch_key: str = "autoencoder", name: str = "autoencoder") -> tuple[KLAutoencoder, dict, dict]:
    """Load or train the autoencoder on ``images`` (N, 1, 28, 28); returns ``(model, history, config)``.

    ``epochs`` defaults to ``profile.epochs(epoch_key)``. The checkpoint is ``<name>.pt``, by default
    ``autoencoder.pt`` (notebook 07's KL-weight comparison trains variants under other names)
    (shipped weights in ``data/checkpoints/`` are used when the profile allows and hold the same
    architecture and ``kl_weight``); a killed run resumes. ``config`` is the checkpoint's
    :class:`~course_utils.checkpoint.RunConfig` as a dict.
    """
    check_image_batch(images, "images", channels=1, size=(28, 28))
    device = images.device
    arch = autoencoder_config(profile)
    epochs = profile.epochs(epoch_key) if epochs is None else epochs
    config = RunConfig(
        model="KLAutoencoder", arch=arch, task={"kl_weight": kl_weight},
        train={"lr": lr, "lr_schedule": "cosine", "epochs": epochs, "batch_size": profile.batch_size,
               "n_images": int(len(images)), "seed": seed})
    torch.manual_seed(seed)
    model = make_autoencoder(arch).to(device)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        xb, _ = batch
        return vae_loss(m, xb, generator=g, kl_weight=kl_weight)

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        return train(model, loss_fn, loader, epochs, lr=lr, lr_schedule="cosine", desc=name,
                     resume_path=resume, resume_config=config.as_dict(), generator=g)

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained)
    return model.eval(), history, config.as_dict()
