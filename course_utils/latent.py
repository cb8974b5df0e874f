"""Latent diffusion glue: encode, scale, train, sample, decode (taught in 07_latent_diffusion).

Rombach et al. 2022 (Stable Diffusion) run the diffusion model on the latent of a pretrained
autoencoder instead of on pixels:

1. encode every training image once, z = E(x) (here the posterior mean, (4, 7, 7));
2. rescale to unit variance, z <- s * z with s = 1 / std(z) (:func:`compute_scale_factor`), so the
   forward process, whose noise has variance 1, destroys the signal on the intended schedule;
3. train the usual eps-prediction UNet on z (:func:`train_ldm`; class-conditional through
   cross-attention, with the null label for classifier-free guidance);
4. sample z_0 with DDIM, then decode x = D(z_0 / s) (:func:`decode_latents`; both steps from a given
   z_T and step noise: :func:`sample_images`, the reference of notebook 07's sampling loop).

:func:`training_throughput` measures the pixel and the latent model the same way (sampling both
runs through :func:`~course_utils.samplers.sample_batches`).
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn

from .autoencoder import LATENT_CHANNELS, LATENT_SIZE, KLAutoencoder, check_latents, make_autoencoder
from .checkpoint import CheckpointError, load_checkpoint, weights_digest
from .data import load_mnist
from .device import synchronize
from .diffusion import diffusion_loss, find_checkpoint, load_trained_unet, train_diffusion, unet_config
from .profiles import Profile
from .samplers import DDIMScheduler, sample
from .schedules import NoiseSchedule

__all__ = ["LATENT_SHAPE", "ldm_config", "encode_images", "compute_scale_factor", "train_ldm",
           "decode_latents", "sample_images", "latent_scheduler", "training_throughput", "load_trained_ldm"]

LATENT_SHAPE = (LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)


def ldm_config(profile: Profile) -> dict:
    """The latent UNet: 4 input channels, two levels (7 -> 4 after padding to 8), label read by cross-attention."""
    return unet_config(profile, conditional=True, in_channels=LATENT_SHAPE[0], channel_mults=(1, 2),
                       cond="cross_attention")


@torch.no_grad()
def encode_images(autoencoder: KLAutoencoder, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means mu (N, 4, 7, 7) of ``images`` (N, 1, 28, 28), unscaled, on the images' device."""
    autoencoder.eval()
    return torch.cat([autoencoder.encode(images[i:i + batch_size])[0] for i in range(0, len(images), batch_size)])


def compute_scale_factor(latents: torch.Tensor) -> float:
    """s = 1 / std(latents) over all entries, so that ``s * latents`` has unit variance (as the noise)."""
    check_latents(latents)
    if latents.numel() < 2:
        raise ValueError("need at least 2 latent values to estimate a standard deviation")
    return float(1.0 / latents.float().std())


def train_ldm(profile: Profile, latents: torch.Tensor, labels: torch.Tensor, *, autoencoder: KLAutoencoder,
              p_uncond: float = 0.1, **kwargs) -> tuple[nn.Module, dict, dict]:
    """Load or train the class-conditional latent diffusion model ``ldm`` on *scaled* ``latents`` (N, 4, 7, 7).

    A thin wrapper of :func:`~course_utils.diffusion.train_diffusion` with :func:`ldm_config`,
    ``p_uncond`` (classifier-free guidance) and the epoch budget ``profile.epochs("ldm")``.
    ``autoencoder`` is the one that made ``latents``: its fingerprint goes into the config's
    ``depends``, so a checkpoint trained on another autoencoder's latents is refused instead of
    decoding garbage.
    """
    check_latents(latents)
    if labels is None or len(labels) != len(latents):
        raise ValueError(f"need one label per latent: {len(latents)} latents, "
                         f"{'no' if labels is None else len(labels)} labels")
    std = latents.float().std().item()
    if not 0.5 < std < 2.0:
        raise ValueError(f"latents have std {std:.3g}; scale them to unit variance first "
                         "(latents * compute_scale_factor(latents))")
    if not isinstance(autoencoder, KLAutoencoder):
        raise TypeError(f"autoencoder must be the KLAutoencoder that encoded the latents, got {type(autoencoder).__name__}")
    return train_diffusion("ldm", profile, latents, labels, arch=ldm_config(profile), p_uncond=p_uncond,
                           epoch_key="ldm", depends={"autoencoder": weights_digest(autoencoder)}, **kwargs)


@torch.no_grad()
def decode_latents(autoencoder: KLAutoencoder, z: torch.Tensor, scale_factor: float,
                   batch_size: int = 1000) -> torch.Tensor:
    """Scaled latents (N, 4, 7, 7) -> images (N, 1, 28, 28) in [-1, 1]: D(z / s)."""
    check_latents(z)
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    autoencoder.eval()
    return torch.cat([autoencoder.decode(z[i:i + batch_size] / scale_factor) for i in range(0, len(z), batch_size)])


@torch.no_grad()
def sample_images(model: nn.Module, autoencoder: KLAutoencoder, scheduler: DDIMScheduler, z_T: torch.Tensor,
                  y: torch.Tensor, guidance: float, scale_factor: float,
                  noise_fn: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Images (B, 1, 28, 28) in [-1, 1] from the scaled latent noise ``z_T`` (B, 4, 7, 7): the latent sampling loop.

    Runs ``scheduler`` from ``z_T`` with classifier-free guidance of weight ``guidance`` on labels ``y``
    (B,) (:func:`~course_utils.samplers.sample`; ``noise_fn(t)``, e.g. a
    :class:`~course_utils.samplers.StepNoise`, gives the step noise of a stochastic scheduler), then
    decodes z_0 with :func:`decode_latents`: D(z_0 / s). The reference of notebook 07's ``latent_sample``.
    """
    check_latents(z_T, "z_T")
    z_0 = sample(model, scheduler, tuple(z_T.shape), y=y, guidance=guidance, x_T=z_T, noise_fn=noise_fn,
                 device=z_T.device, progress=False)                               # (B, 4, 7, 7), scaled
    return decode_latents(autoencoder, z_0, scale_factor)


def latent_scheduler(profile: Profile, steps: int | None = None, eta: float = 0.0) -> DDIMScheduler:
    """DDIM on the "linear" schedule with ``steps`` (default ``profile.sample_steps``) and *no* clipping.

    Pixel samplers clip the predicted x_0 to the data range [-1, 1]; unit-variance latents have no
    such range (many entries lie beyond +-1), so clipping them would distort every step.
    """
    scheduler = DDIMScheduler(NoiseSchedule("linear", profile.num_timesteps), eta=eta, clip_sample=False)
    return scheduler.set_timesteps(steps or profile.sample_steps)


def training_throughput(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                        batch_size: int = 128, steps: int = 3, warmup: int = 1, p_uncond: float = 0.1,
                        schedule_name: str = "linear", T: int = 1000, lr: float = 2e-3, seed: int = 0) -> float:
    """Training images per second of ``model`` (timed on a copy, so ``model`` is untouched).

    Runs ``warmup`` untimed then ``steps`` timed AdamW steps of the diffusion loss on the first
    ``batch_size`` of ``images`` (pixels or latents), which is what one step of ``train_diffusion`` does.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    m = copy.deepcopy(model).train()
    for p in m.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    schedule = NoiseSchedule(schedule_name, T)
    x = images[:batch_size]
    y = labels[:batch_size] if labels is not None else None
    g = torch.Generator().manual_seed(seed)
    dev = x.device

    def one_step() -> None:
        loss = diffusion_loss(m, x, schedule, y=y, p_uncond=p_uncond if y is not None else 0.0, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one_step()
    synchronize(dev)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    synchronize(dev)
    return steps * len(x) / (time.perf_counter() - start)


def load_trained_ldm(device: torch.device | str = "cpu") -> tuple[nn.Module, Callable, tuple[int, int, int], dict]:
    """The trained latent model for sampling outside the notebook (``./course.sh generate --model ldm``).

    Loads the ``ldm`` and ``autoencoder`` checkpoints and recomputes the scale factor exactly as
    notebook 07 does: 1 / std of the posterior means of the first ``n_images`` training images.
    Returns ``(unet, decode, latent_shape, config)`` where ``decode(z)`` maps scaled latents to images.
    """
    unet, config = load_trained_unet("ldm", device)
    path = find_checkpoint("autoencoder")
    try:
        arch = torch.load(path, map_location="cpu", weights_only=True)["config"]["arch"]
        ae = make_autoencoder(arch)
    except Exception as e:
        raise CheckpointError(f"autoencoder checkpoint {path} is corrupt ({type(e).__name__}: {e}); "
                              "delete it and rerun notebook 07") from e
    load_checkpoint(path, ae)
    found = weights_digest(ae)
    if config["depends"].get("autoencoder") != found:
        raise CheckpointError(f"the ldm checkpoint was trained on the latents of another autoencoder than {path} "
                              f"(fingerprint {config['depends'].get('autoencoder')}, found {found}); rerun notebook 07 "
                              "so that both are trained together, or restore data/checkpoints/")
    ae = ae.to(device).eval()
    x, _ = load_mnist("train", n=int(config["train"]["n_images"]), device=device)
    scale = compute_scale_factor(encode_images(ae, x))
    return unet, (lambda z: decode_latents(ae, z, scale)), LATENT_SHAPE, config
