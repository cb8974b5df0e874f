"""Latent diffusion glue: encode, scale, train, sample, decode (taught in 07_latent_diffusion).

Rombach et al. 2022 (Stable Diffusion) run the diffusion model on the latent of a pretrained
autoencoder instead of on pixels:

1. encode every training image once, z = E(x) (here the posterior mean, (4, 7, 7));
2. rescale to unit variance, z <- s * z with s = 1 / std(z) (:func:`compute_scale_factor`), so the
   forward process, whose noise has variance 1, destroys the signal on the intended schedule;
3. train the usual eps-prediction UNet on z (:func:`train_ldm`; class-conditional through
   cross-attention, with the null label for classifier-free guidance);
4. sample z_0 with DDIM, then decode x = D(z_0 / s) (:func:`decode_latents`).

:func:`generate` and :func:`training_throughput` measure the pixel and the latent model the same way.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn

from .autoencoder import KLAutoencoder
from .checkpoint import weights_digest
from .device import cpu_generator, randn
from .diffusion import diffusion_loss, train_diffusion, unet_config
from .profiles import Profile
from .samplers import DDIMScheduler, _Scheduler, sample
from .schedules import NoiseSchedule

__all__ = ["LATENT_SHAPE", "ldm_config", "encode_images", "compute_scale_factor", "check_latents", "train_ldm",
           "decode_latents", "latent_scheduler", "generate", "training_throughput", "load_trained_ldm"]

LATENT_SHAPE = (4, 7, 7)


def ldm_config(profile: Profile) -> dict:
    """The latent UNet: 4 input channels, two levels (7 -> 4 after padding to 8), label read by cross-attention."""
    return unet_config(profile, conditional=True, in_channels=LATENT_SHAPE[0], channel_mults=(1, 2),
                       cond="cross_attention")


def check_latents(z: torch.Tensor, what: str = "latents") -> None:
    """Raise ``ValueError`` unless ``z`` is a float tensor of shape (N, 4, 7, 7)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != LATENT_SHAPE:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, LATENT_SHAPE))}), got {shape}; "
                         "encode images with encode_images(autoencoder, images)")
    if not z.dtype.is_floating_point:
        raise ValueError(f"{what} must be a float tensor, got dtype {z.dtype}")


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
    ``autoencoder`` is the one that made ``latents``: its fingerprint goes into the config, so a
    checkpoint trained on another autoencoder's latents is refused instead of decoding garbage.
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
                           epoch_key="ldm", extra_config={"autoencoder": weights_digest(autoencoder)}, **kwargs)


@torch.no_grad()
def decode_latents(autoencoder: KLAutoencoder, z: torch.Tensor, scale_factor: float,
                   batch_size: int = 1000) -> torch.Tensor:
    """Scaled latents (N, 4, 7, 7) -> images (N, 1, 28, 28) in [-1, 1]: D(z / s)."""
    check_latents(z)
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    autoencoder.eval()
    return torch.cat([autoencoder.decode(z[i:i + batch_size] / scale_factor) for i in range(0, len(z), batch_size)])


def latent_scheduler(profile: Profile, steps: int | None = None, eta: float = 0.0) -> DDIMScheduler:
    """DDIM on the "linear" schedule with ``steps`` (default ``profile.sample_steps``) and *no* clipping.

    Pixel samplers clip the predicted x_0 to the data range [-1, 1]; unit-variance latents have no
    such range (many entries lie beyond +-1), so clipping them would distort every step.
    """
    sched = DDIMScheduler(NoiseSchedule("linear", profile.num_timesteps), eta=eta, clip_sample=False)
    return sched.set_timesteps(steps or profile.sample_steps)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate(model: nn.Module, scheduler: _Scheduler, labels: torch.Tensor, item_shape: tuple[int, int, int], *,
             guidance: float | None = 3.0, seed: int = 0, batch_size: int = 500,
             device: torch.device | str = "cpu", decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
             progress: bool = False) -> tuple[torch.Tensor, float]:
    """Sample one item of shape ``item_shape`` per label, in batches; returns ``(samples, seconds)``.

    ``decode`` (e.g. ``lambda z: decode_latents(ae, z, s)``) maps each batch to images inside the
    timed region, so pixel and latent sampling are timed on equal terms. Noise comes from
    ``cpu_generator(seed)``, so the same seed gives the same samples on any device.
    """
    if len(item_shape) != 3:
        raise ValueError(f"item_shape must be (C, H, W), got {tuple(item_shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device)
    labels = torch.as_tensor(labels).long()
    g = cpu_generator(seed)
    x_T = randn((len(labels), *item_shape), generator=g)        # all starting noises first: batching-independent
    out = []
    _sync(device)
    start = time.perf_counter()
    for i in range(0, len(labels), batch_size):
        y = labels[i:i + batch_size].to(device)
        x = sample(model, scheduler, (len(y), *item_shape), y=y, guidance=guidance, generator=g, device=device,
                   x_T=x_T[i:i + batch_size].to(device), progress=progress)
        out.append(decode(x) if decode is not None else x)
    _sync(device)
    seconds = time.perf_counter() - start
    return torch.cat(out), seconds


def training_throughput(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                        batch_size: int = 128, steps: int = 3, warmup: int = 1, p_uncond: float = 0.1,
                        schedule: str = "linear", T: int = 1000, lr: float = 2e-3, seed: int = 0) -> float:
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
    sched = NoiseSchedule(schedule, T)
    x = images[:batch_size]
    y = labels[:batch_size] if labels is not None else None
    g = torch.Generator().manual_seed(seed)
    dev = x.device

    def one_step() -> None:
        loss = diffusion_loss(m, x, sched, y=y, p_uncond=p_uncond if y is not None else 0.0, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one_step()
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(dev)
    return steps * len(x) / (time.perf_counter() - start)


def load_trained_ldm(device: torch.device | str = "cpu") -> tuple[nn.Module, Callable, tuple[int, int, int], dict]:
    """The trained latent model for sampling outside the notebook (``python -m course_utils generate --model ldm``).

    Loads the ``ldm`` and ``autoencoder`` checkpoints and recomputes the scale factor exactly as
    notebook 07 does: 1 / std of the posterior means of the first ``n_images`` training images.
    Returns ``(unet, decode, latent_shape, config)`` where ``decode(z)`` maps scaled latents to images.
    """
    from .checkpoint import CheckpointError, load_checkpoint
    from .data import load_mnist
    from .diffusion import find_checkpoint, load_trained_unet

    unet, cfg = load_trained_unet("ldm", device)
    path = find_checkpoint("autoencoder")
    try:
        ae_cfg = torch.load(path, map_location="cpu", weights_only=True)["config"]
        arch = ae_cfg["arch"]
    except Exception as e:
        raise CheckpointError(f"autoencoder checkpoint {path} is corrupt ({e}); delete it and rerun notebook 07") from e
    ae = KLAutoencoder(arch["latent_channels"], arch["width"])
    load_checkpoint(path, ae)
    found = weights_digest(ae)
    if cfg.get("autoencoder") not in (None, found):
        raise CheckpointError(f"the ldm checkpoint was trained on the latents of another autoencoder than {path} "
                              f"(fingerprint {cfg['autoencoder']}, found {found}); rerun notebook 07 "
                              "so that both are trained together, or restore data/checkpoints/")
    ae = ae.to(device).eval()
    x, _ = load_mnist("train", n=int(cfg["n_images"]), device=device)
    scale = compute_scale_factor(encode_images(ae, x))
    return unet, (lambda z: decode_latents(ae, z, scale)), LATENT_SHAPE, cfg
