"""The KL-regularised autoencoder that gives latent diffusion its latent space (taught in 07_latent_diffusion).

Stable Diffusion's "VAE" is an autoencoder with a *light* KL penalty: the encoder outputs a
Gaussian q(z | x) = N(mu, diag(sigma^2)) over a small spatial latent, here (4, 7, 7) for a
(1, 28, 28) digit (16x fewer positions, 4x fewer numbers: 196 vs 784), and the loss is

    L = E_q[-log p(x | z)]  +  kl_weight * KL(q(z | x) || N(0, I)),

with ``kl_weight`` far below the VAE's 1. The reconstruction term keeps the detail; the small KL
term keeps the latent bounded and smooth (nearby latents decode to similar digits) without
squeezing it to N(0, I). Its scale is therefore arbitrary, which is why latent diffusion divides
the latents by their standard deviation (``latent.compute_scale_factor``).
"""
from __future__ import annotations

import torch
from torch import nn

from .checkpoint import load_or_train
from .data import TensorLoader
from .device import randn
from .paths import resume_path, shipped_checkpoint_dir
from .profiles import Profile
from .training import train
from .vae import check_images, reconstruction_loss

__all__ = ["LATENT_CHANNELS", "LATENT_SIZE", "KLAutoencoder", "kl_term", "autoencoder_loss", "autoencoder_config",
           "train_autoencoder"]

LATENT_CHANNELS = 4
LATENT_SIZE = 7
DEFAULT_KL_WEIGHT = 1e-2


class KLAutoencoder(nn.Module):
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

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, LATENT_SIZE, LATENT_SIZE)

    def check_latents(self, z: torch.Tensor, what: str = "z") -> None:
        """Raise ``ValueError`` unless ``z`` is a float tensor of shape (B, 4, 7, 7)."""
        want = self.latent_shape
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != want:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"{what} must have shape (B, {', '.join(map(str, want))}), got {shape}")
        if not z.dtype.is_floating_point:
            raise ValueError(f"{what} must be a float tensor, got dtype {z.dtype}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, 28, 28) in [-1, 1] -> (mu, logvar), each (B, 4, 7, 7)."""
        check_images(x, "x")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, 4, 7, 7) -> Bernoulli logits (B, 1, 28, 28)."""
        self.check_latents(z)
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, 4, 7, 7) -> images (B, 1, 28, 28) in [-1, 1]."""
        return torch.sigmoid(self.decode_logits(z)) * 2 - 1

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (logits, mu, logvar); ``eps`` (B, 4, 7, 7) samples z = mu + sigma eps (None: z = mu)."""
        mu, logvar = self.encode(x)
        z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps.to(mu.device)
        return self.decode_logits(z), mu, logvar


def kl_term(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per image, summed over all latent entries: (B, ...) -> (B,).

    KL = 1/2 * sum_j ( mu_j^2 + sigma_j^2 - 1 - log sigma_j^2 ), in nats.
    """
    if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor) or mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must be tensors of the same shape, got "
                         f"{tuple(getattr(mu, 'shape', ()))} and {tuple(getattr(logvar, 'shape', ()))}")
    if mu.dim() < 2:
        raise ValueError(f"mu and logvar need a batch dimension (B, ...), got {tuple(mu.shape)}")
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def autoencoder_loss(model: KLAutoencoder, x: torch.Tensor, kl_weight: float = DEFAULT_KL_WEIGHT,
                     eps: torch.Tensor | None = None, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction (Bernoulli, nats per image) + ``kl_weight`` * KL, averaged over the batch.

    Returns ``(loss, {"recon": ..., "kl": ...})`` as ``training.train`` expects. The latent is
    sampled, z = mu + sigma eps, so the decoder learns to tolerate small latent errors.
    """
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
    mu, logvar = model.encode(x)
    if eps is None:
        eps = randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = reconstruction_loss(model.decode_logits(z), x).mean()
    kl = kl_term(mu, logvar).mean()
    return recon + kl_weight * kl, {"recon": recon.item(), "kl": kl.item()}


def autoencoder_config(profile: Profile, *, kl_weight: float = DEFAULT_KL_WEIGHT,
                       latent_channels: int = LATENT_CHANNELS) -> dict:
    """Architecture of the autoencoder for ``profile`` (stored in its checkpoint)."""
    return {"model": "KLAutoencoder", "latent_channels": latent_channels, "width": profile.width,
            "kl_weight": kl_weight}


def train_autoencoder(profile: Profile, images: torch.Tensor, *, kl_weight: float = DEFAULT_KL_WEIGHT,
                      lr: float = 2e-3, epochs: int | None = None, seed: int = 0,
                      epoch_key: str = "autoencoder") -> tuple[KLAutoencoder, dict, dict]:
    """Load or train the autoencoder on ``images`` (N, 1, 28, 28); returns ``(model, history, config)``.

    ``epochs`` defaults to ``profile.epochs(epoch_key)``. The checkpoint is ``autoencoder.pt``
    (shipped weights in ``data/checkpoints/`` are used when the profile allows and match).
    """
    check_images(images, "images")
    device = images.device
    arch = autoencoder_config(profile, kl_weight=kl_weight)
    epochs = profile.epochs(epoch_key) if epochs is None else epochs
    config = {"arch": arch, "lr": lr, "epochs": epochs, "batch_size": profile.batch_size,
              "n_images": int(len(images)), "seed": seed}
    torch.manual_seed(seed)
    model = KLAutoencoder(arch["latent_channels"], arch["width"]).to(device)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        xb, _ = batch
        return autoencoder_loss(m, xb, kl_weight, generator=g)

    resume = resume_path("autoencoder")

    def train_fn() -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        return train(model, loss_fn, loader, epochs, lr=lr, lr_schedule="cosine", desc="autoencoder",
                     resume_path=resume, resume_config=config, generator=g)

    # Shipped weights were trained with another budget: only the architecture has to match.
    shipped = [shipped_checkpoint_dir() / "autoencoder.pt"] if profile.use_pretrained else []
    history = load_or_train("autoencoder", model, config, train_fn, extra_paths=shipped, pretrained_keys=["arch"])
    resume.unlink(missing_ok=True)
    return model.eval(), history, config
