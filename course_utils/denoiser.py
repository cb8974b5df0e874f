"""A plain UNet, written from scratch, trained as a one-step denoiser (taught in 03_unet_denoiser).

The task: given z = x + sigma * eps (a clean digit x in [-1, 1] plus Gaussian noise of one fixed
level sigma), predict x. The loss is the mean squared error to the clean image, whose minimiser
is the posterior mean E[x | z].

The network (no time input: it only ever sees one noise level)::

    x (B, 1, 28, 28)
    inc    ConvBlock(1, w)                    (B, w, 28, 28)  ----------------------------.
    down1  max-pool, ConvBlock(w, 2w)         (B, 2w, 14, 14) ---------------.            |
    down2  max-pool, ConvBlock(2w, 4w)        (B, 4w, 7, 7)     bottleneck    |            |
    up1    upsample, concat, ConvBlock(6w, 2w)(B, 2w, 14, 14) <-- skip -------'            |
    up2    upsample, concat, ConvBlock(3w, w) (B, w, 28, 28)  <-- skip --------------------'
    out    1x1 conv                           (B, 1, 28, 28)

A ConvBlock is (3x3 conv -> GroupNorm -> SiLU) twice. Notebook 04 adds the time input
(``unet.py``); this module is the version without it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import RunConfig, arch_dict, load_or_train
from .data import TensorLoader
from .device import cpu_generator, randn
from .profiles import Profile
from .training import train
from .unet import count_parameters
from .validation import check_image_batch

__all__ = ["ConvBlock", "conv_block_forward", "up_and_concat", "Down", "Up", "DenoiserUNet", "add_noise",
           "denoising_loss", "denoise", "shape_walk", "DenoiserArch", "denoiser_config", "train_denoiser",
           "count_parameters", "TRAIN_SIGMA"]

TRAIN_SIGMA = 0.5   # the one noise level notebook 03 trains at


def _groups(ch: int) -> int:
    return math.gcd(8, ch)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class ConvBlock(nn.Module):
    """(3x3 conv -> GroupNorm -> SiLU) twice: (B, in_ch, H, W) -> (B, out_ch, H, W).

    The 3x3 convolutions with padding 1 keep the spatial size; GroupNorm keeps the activations
    at a sane scale whatever the batch size; SiLU (x * sigmoid(x)) is a smooth ReLU.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        _check_positive_int(in_ch, "in_ch")
        _check_positive_int(out_ch, "out_ch")
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_block_forward(x, self)


def conv_block_forward(x: torch.Tensor, block: ConvBlock) -> torch.Tensor:
    """The forward pass of a :class:`ConvBlock`: silu(norm2(conv2(silu(norm1(conv1(x)))))).  x: (B, C_in, H, W)."""
    check_image_batch(x, "x", channels=block.conv1.in_channels)
    h = F.silu(block.norm1(block.conv1(x)))       # (B, C_out, H, W)
    return F.silu(block.norm2(block.conv2(h)))    # (B, C_out, H, W)


def up_and_concat(h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Upsample ``h`` (B, C1, h, w) to the size of ``skip`` (B, C2, H, W) by nearest neighbour and
    concatenate along the channels: (B, C1 + C2, H, W). The skip connection of the UNet."""
    check_image_batch(h, "h")
    check_image_batch(skip, "skip")
    if h.shape[0] != skip.shape[0]:
        raise ValueError(f"h has batch {h.shape[0]} but skip has {skip.shape[0]}")
    if h.shape[2] > skip.shape[2] or h.shape[3] > skip.shape[3]:
        raise ValueError(f"h {tuple(h.shape)} must be smaller than skip {tuple(skip.shape)}: "
                         "upsample the coarse features to the size of the fine ones")
    h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")     # (B, C1, H, W)
    return torch.cat([h, skip], dim=1)                               # (B, C1 + C2, H, W)


class Down(nn.Module):
    """Halve the resolution (2x2 max-pool), then a ConvBlock: (B, in, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.block = ConvBlock(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.max_pool2d(x, 2))


class Up(nn.Module):
    """Upsample, concatenate the skip, then a ConvBlock: (B, c, h, w), (B, s, H, W) -> (B, out, H, W)."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.block = ConvBlock(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(up_and_concat(x, skip))


class DenoiserUNet(nn.Module):
    """The plain UNet of notebook 03: two down-sampling levels, skip connections, no time input.

    ``width`` (``profile.width``) is the channel count at full resolution; it doubles at each
    level down (w, 2w, 4w). Any input of at least 4x4 pixels works (28 -> 14 -> 7 for MNIST).
    """

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(width, "width")
        self.in_channels, self.width = in_channels, width
        c1, c2, c3 = width, 2 * width, 4 * width
        self.inc = ConvBlock(in_channels, c1)     # (B, w, 28, 28)
        self.down1 = Down(c1, c2)                 # (B, 2w, 14, 14)
        self.down2 = Down(c2, c3)                 # (B, 4w, 7, 7)
        self.up1 = Up(c3, c2, c2)                 # (B, 2w, 14, 14)
        self.up2 = Up(c2, c1, c1)                 # (B, w, 28, 28)
        self.out = nn.Conv2d(c1, in_channels, 1)  # (B, 1, 28, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "x", channels=self.in_channels)
        if x.shape[2] < 4 or x.shape[3] < 4:
            raise ValueError(f"images must be at least 4x4 pixels (two 2x down-samplings), got {tuple(x.shape)}")
        h1 = self.inc(x)              # (B, w, H, W)
        h2 = self.down1(h1)           # (B, 2w, H/2, W/2)
        h3 = self.down2(h2)           # (B, 4w, H/4, W/4)
        h = self.up1(h3, h2)          # (B, 2w, H/2, W/2)
        h = self.up2(h, h1)           # (B, w, H, W)
        return self.out(h)            # (B, C, H, W)


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def add_noise(x: torch.Tensor, sigma: float, eps: torch.Tensor) -> torch.Tensor:
    """z = x + sigma * eps: the noisy input of the one-step denoiser.  x, eps: (B, C, H, W)."""
    check_image_batch(x, "x")
    sigma = _check_sigma(sigma)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps has shape {shape} but x has {tuple(x.shape)}; draw eps with x's shape")
    return x + sigma * eps


def denoising_loss(model: nn.Module, x: torch.Tensor, sigma: float, eps: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``model(x + sigma * eps)`` and the clean ``x`` (a scalar)."""
    z = add_noise(x, sigma, eps)                # (B, C, H, W)
    return F.mse_loss(model(z), x)


@torch.no_grad()
def denoise(model: nn.Module, z: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``model(z)`` in eval mode, without gradients, ``batch_size`` images at a time.  z: (B, C, H, W)."""
    check_image_batch(z, "z")
    _check_positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    out = torch.cat([model(z[i:i + batch_size]) for i in range(0, len(z), batch_size)]) if len(z) else z.clone()
    model.train(was_training)
    return out


@torch.no_grad()
def shape_walk(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Run ``x`` through ``model`` and return ``(child name, output shape)`` for each top-level child, in call order.

    Forward hooks record the output of every direct child module (``inc``, ``down1`` ...)."""
    check_image_batch(x, "x")
    stages: list[tuple[str, tuple[int, ...]]] = [("input", tuple(x.shape))]
    hooks = [child.register_forward_hook(lambda m, inp, out, name=name: stages.append((name, tuple(out.shape))))
             for name, child in model.named_children()]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return stages


@dataclass
class DenoiserArch:
    """Architecture of the plain UNet: the arguments of :class:`DenoiserUNet` (its ``arch`` in checkpoints)."""

    in_channels: int = 1
    width: int = 32


def denoiser_config(profile: Profile) -> dict:
    """Architecture of the denoiser for ``profile``: :class:`DenoiserArch` as a JSON-able dict."""
    return arch_dict(DenoiserArch(in_channels=1, width=profile.width))


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().float().numpy().round(4).tobytes()).hexdigest()[:12]


def train_denoiser(profile: Profile, images: torch.Tensor, *, sigma: float = TRAIN_SIGMA, probe: torch.Tensor | None = None,
                   lr: float = 3e-3, epochs: int | None = None, seed: int = 0, name: str = "denoiser",
                   verbose: bool = True) -> tuple[DenoiserUNet, dict, dict]:
    """Load or train the one-step denoiser of notebook 03 on ``images`` (N, 1, H, W) at noise level ``sigma``.

    Wires the course pieces together: a :class:`~course_utils.data.TensorLoader` over ``images``,
    :func:`~course_utils.training.train` with :func:`denoising_loss` (fresh noise every batch, drawn
    from a seeded CPU generator), and :func:`~course_utils.checkpoint.load_or_train` so a re-run
    loads the checkpoint and a killed run resumes. ``probe`` (noisy images, (P, 1, H, W)) is
    denoised after the first and after the last epoch (``on_epoch_end``); the results are stored
    in the history as ``probe_first_epoch`` and ``probe_last_epoch`` (nested lists:
    ``torch.tensor(...)`` them), so they survive a reload. ``epochs`` defaults to
    ``profile.epochs("denoiser")``. Returns ``(model, history, config)``, the config being the
    checkpoint's :class:`~course_utils.checkpoint.RunConfig` as a dict.
    """
    check_image_batch(images, "images", channels=1)
    if len(images) < profile.batch_size:
        raise ValueError(f"need at least one batch of {profile.batch_size} images, got {len(images)}")
    if probe is not None:
        check_image_batch(probe, "probe", channels=1)
    device = images.device
    sigma = _check_sigma(sigma)
    arch = denoiser_config(profile)
    epochs = profile.epochs("denoiser") if epochs is None else epochs
    config = RunConfig(
        model="DenoiserUNet", arch=arch, task={"sigma": sigma},
        train={"lr": lr, "epochs": epochs, "batch_size": profile.batch_size, "n_images": int(len(images)),
               "seed": seed, "probe": _digest(probe) if probe is not None else None})
    torch.manual_seed(seed)
    model = DenoiserUNet(**arch).to(device)
    g = cpu_generator(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> torch.Tensor:
        xb, _ = batch                                               # (B, 1, H, W)
        eps = randn(xb.shape, generator=g, device=device)           # (B, 1, H, W)
        return denoising_loss(m, xb, sigma, eps)

    def on_epoch_end(epoch: int, m: nn.Module) -> dict:
        if probe is None:
            return {}
        out = denoise(m, probe.to(device)).cpu().tolist()
        return {"probe_first_epoch": out, "probe_last_epoch": out} if epoch == 0 else {"probe_last_epoch": out}

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        hist = train(model, loss_fn, loader, epochs, lr=lr, desc=name, on_epoch_end=on_epoch_end,
                     resume_path=resume, resume_config=config.as_dict(), generator=g)
        return {k: v for k, v in hist.items() if k != "lr"}

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained, verbose=verbose)
    return model.eval(), history, config.as_dict()
