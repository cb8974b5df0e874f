"""A small convolutional VAE for MNIST and its loss, the negative ELBO (taught in 01_vae_recap).

The encoder maps an image x to the mean ``mu`` and log-variance ``logvar`` of a diagonal
Gaussian posterior q(z | x); the reparameterisation ``z = mu + sigma * eps`` with
``eps ~ N(0, I)`` keeps sampling differentiable; the decoder maps z to Bernoulli logits of the
28x28 pixels. The loss per image is

    -ELBO(x) = E_q[-log p(x | z)]  +  KL(q(z | x) || N(0, I))
             =      reconstruction  +  KL

both in nats, summed over pixels / latent dimensions and averaged over the batch.
Images are float tensors in [-1, 1] of shape (B, 1, 28, 28), as ``data.load_mnist`` returns them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .device import randn
from .validation import check_image_batch, check_same_shape

__all__ = ["GaussianLatentModel", "ConvVAE", "reparameterise", "kl_divergence", "reconstruction_loss", "vae_loss",
           "sample_prior"]


def _check_pair(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor) or mu.dim() < 2:
        raise ValueError(f"mu and logvar must be tensors with a batch axis, (B, ...), got "
                         f"{tuple(getattr(mu, 'shape', ()))} and {tuple(getattr(logvar, 'shape', ()))}")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    if not (mu.dtype.is_floating_point and logvar.dtype.is_floating_point):
        raise ValueError(f"mu and logvar must be float tensors, got {mu.dtype} and {logvar.dtype}")


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2). All (B, D) (or (B, C, h, w) latents, 07); ``eps = 0`` gives mu."""
    _check_pair(mu, logvar)
    check_same_shape(eps, mu, "eps", "mu")
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per image, summed over every latent entry: (B, ...) -> (B,), in nats.

    KL = 1/2 * sum_j ( mu_j^2 + sigma_j^2 - 1 - log sigma_j^2 ). The VAE's latent is (B, D); the
    autoencoder of latent diffusion (07) has a (B, 4, 7, 7) one and uses the same formula.
    """
    _check_pair(mu, logvar)
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x | z) per image under independent Bernoulli pixels: (B, 1, 28, 28) x2 -> (B,), in nats.

    ``x`` in [-1, 1] is mapped to a pixel intensity in [0, 1] (the Bernoulli "probability of ink").
    """
    check_image_batch(x, "x", channels=1, size=(28, 28))
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must have the shape of x {tuple(x.shape)}")
    target = (x + 1) / 2
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)


class GaussianLatentModel(nn.Module):
    """An encoder to a diagonal Gaussian q(z | x) and a decoder to Bernoulli pixel logits.

    What the VAE (01) and the KL autoencoder of latent diffusion (07) share: subclasses define
    ``encode(x) -> (mu, logvar)`` and ``decode_logits(z)``; decoding and the forward pass are here.
    """

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B, 1, 28, 28) in [-1, 1] (the Bernoulli means, rescaled)."""
        return torch.sigmoid(self.decode_logits(z)) * 2 - 1

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (logits, mu, logvar); ``eps`` samples z = mu + sigma eps, None means the posterior mean (eps = 0)."""
        mu, logvar = self.encode(x)
        z = reparameterise(mu, logvar, torch.zeros_like(mu) if eps is None else eps.to(mu.device))
        return self.decode_logits(z), mu, logvar


class ConvVAE(GaussianLatentModel):
    """Encoder conv(28 -> 14 -> 7) -> (mu, logvar); decoder linear -> convT(7 -> 14 -> 28) -> logits.

    ``width`` is the channel count of the first conv (the profile's ``width``); ``latent_dim`` is
    the size of z (16 for samples, 2 for a latent space you can plot).
    """

    def __init__(self, latent_dim: int = 16, width: int = 32):
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be positive, got {latent_dim} and {width}")
        self.latent_dim, self.width = latent_dim, width
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1), nn.SiLU(),            # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),        # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 49, 256), nn.SiLU(),           # (B, 256)
            nn.Linear(256, 2 * latent_dim),                                # (B, 2 * latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.SiLU(),
            nn.Linear(256, 2 * w * 49), nn.SiLU(),
            nn.Unflatten(1, (2 * w, 7, 7)),                                # (B, 2w, 7, 7)
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.SiLU(),  # (B, w, 14, 14)
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1),              # (B, 1, 28, 28) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, 28, 28) in [-1, 1] -> (mu, logvar), each (B, latent_dim)."""
        check_image_batch(x, "x", channels=1, size=(28, 28))
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> Bernoulli logits (B, 1, 28, 28)."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {shape}")
        if not z.dtype.is_floating_point:
            raise ValueError(f"z must be a float tensor, got dtype {z.dtype}")
        return self.decoder(z)


def vae_loss(model: GaussianLatentModel, x: torch.Tensor, eps: torch.Tensor | None = None,
             generator: torch.Generator | None = None, kl_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative ELBO averaged over the batch, and its two terms: ``(loss, {"recon": ..., "kl": ...})``.

    loss = reconstruction + ``kl_weight`` * KL. ``kl_weight = 1`` is the ELBO of the VAE (01); the
    autoencoder of latent diffusion (07) uses a small weight, trading a less regular latent for
    sharper reconstructions. ``eps`` (the shape of mu) is drawn from ``generator`` when not given.
    The shape of the return value is what ``training.train`` expects of a loss that logs extra terms.
    """
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
    check_image_batch(x, "x", channels=1, size=(28, 28))
    mu, logvar = model.encode(x)
    if eps is None:
        eps = randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = reparameterise(mu, logvar, eps)
    recon = reconstruction_loss(model.decode_logits(z), x).mean()
    kl = kl_divergence(mu, logvar).mean()
    return recon + kl_weight * kl, {"recon": recon.item(), "kl": kl.item()}


@torch.no_grad()
def sample_prior(model: ConvVAE, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """n new images (n, 1, 28, 28) in [-1, 1]: z ~ N(0, I), then the decoder's mean."""
    device = device or next(model.parameters()).device
    z = randn(n, model.latent_dim, generator=generator, device=device)
    return model.decode(z)
