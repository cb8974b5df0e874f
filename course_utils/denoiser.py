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

In notebook 03 the students write the pieces (``conv_block_forward``, ``up_and_concat``, the forward pass
``unet_forward``, ``denoising_loss``, the training step ``train_step``) and train their own network with
them: ``train_denoiser(..., step=their_step, unet=their_class)``.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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

__all__ = ["ConvBlock", "conv_block_forward", "up_and_concat", "Down", "Up", "DenoiserUNet", "unet_forward",
           "add_noise", "denoising_loss", "train_step", "StepFn", "denoise", "shape_walk", "DenoiserArch",
           "denoiser_config", "train_denoiser", "count_parameters", "TRAIN_SIGMA"]

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
        return unet_forward(x, self)


def unet_forward(x: torch.Tensor, unet: DenoiserUNet) -> torch.Tensor:
    """The forward pass of a :class:`DenoiserUNet` (notebook 03's module exercise).  x: (B, C, H, W) -> (B, C, H, W).

    Encoder: ``inc``, then max-pool and ConvBlock twice (``down1``, ``down2``); decoder: upsample, concatenate
    the encoder features of the same resolution (the skip), ConvBlock (``up1``, ``up2``); then the 1x1 ``out``.
    """
    check_image_batch(x, "x", channels=unet.in_channels)
    if x.shape[2] < 4 or x.shape[3] < 4:
        raise ValueError(f"images must be at least 4x4 pixels (two 2x down-samplings), got {tuple(x.shape)}")
    h1 = unet.inc(x)              # (B, w, H, W)
    h2 = unet.down1(h1)           # (B, 2w, H/2, W/2)
    h3 = unet.down2(h2)           # (B, 4w, H/4, W/4)
    h = unet.up1(h3, h2)          # (B, 2w, H/2, W/2)
    h = unet.up2(h, h1)           # (B, w, H, W)
    return unet.out(h)            # (B, C, H, W)


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


StepFn = Callable[..., "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, sigma: float, eps: torch.Tensor,
               grad_clip: float | None = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One training step of the denoiser on the minibatch ``x`` with the noise ``eps`` (both (B, C, H, W)).

    :func:`denoising_loss`, then the gradient (the old one cleared first), the gradient norm clipped to
    ``grad_clip`` (``None``: no clipping) and one ``optimizer`` step, as :func:`~course_utils.training.train`
    does. Returns ``(loss, stats)``: the loss before the step, detached (a scalar tensor), and two floats
    that say how the step went, ``stats["grad_norm"]``, the norm of the whole gradient before clipping,
    and ``stats["update_norm"]``, the norm of the change of all the weights. Notebook 03's students write it.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = denoising_loss(model, x, sigma, eps)                          # scalar, with a graph to the weights
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(params, math.inf if grad_clip is None else grad_clip)   # norm before clipping
    before = [p.detach().clone() for p in params]
    optimizer.step()
    update_norm = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(params, before)))
    return loss.detach(), {"grad_norm": grad_norm.item(), "update_norm": update_norm.item()}


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
                   verbose: bool = True, step: StepFn | None = None,
                   unet: type[nn.Module] | None = None) -> tuple[nn.Module, dict, dict]:
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

    A student's pieces (notebook 03 trains with theirs):

    * ``step``: a training step with :func:`train_step`'s signature, ``step(model, optimizer, x, sigma, eps)``,
      which computes the loss, back-propagates and updates the weights itself and returns the loss, or
      ``(loss, stats)`` with a dict of numbers that the history stores per step (:func:`train_step`'s
      ``grad_norm`` and ``update_norm``). It gets the batch and its noise (the same draws as the default
      recipe) and the AdamW optimizer ``train`` keeps (and saves for a resume).
    * ``unet``: the network class, built as ``unet(in_channels=..., width=...)`` with the parameter names of
      :class:`DenoiserUNet` (default), e.g. a subclass whose ``forward`` is the student's.

    Their names (``__name__``) are recorded in the config's ``train`` entry; shipped weights are never used
    for them.
    """
    check_image_batch(images, "images", channels=1)
    if len(images) < profile.batch_size:
        raise ValueError(f"need at least one batch of {profile.batch_size} images, got {len(images)}")
    if probe is not None:
        check_image_batch(probe, "probe", channels=1)
    if step is not None and not callable(step):
        raise TypeError(f"step must be a function step(model, optimizer, x, sigma, eps), got {type(step).__name__}")
    if unet is not None and not (isinstance(unet, type) and issubclass(unet, nn.Module)):
        raise TypeError(f"unet must be an nn.Module class such as DenoiserUNet, got {unet!r:.60}")
    device = images.device
    sigma = _check_sigma(sigma)
    arch = denoiser_config(profile)
    epochs = profile.epochs("denoiser") if epochs is None else epochs
    student = {**({"step": getattr(step, "__name__", type(step).__name__)} if step is not None else {}),
               **({"unet": unet.__name__} if unet is not None else {})}
    config = RunConfig(
        model="DenoiserUNet", arch=arch, task={"sigma": sigma},
        train={"lr": lr, "epochs": epochs, "batch_size": profile.batch_size, "n_images": int(len(images)),
               "seed": seed, "probe": _digest(probe) if probe is not None else None, **student})
    torch.manual_seed(seed)
    model = (unet or DenoiserUNet)(**arch).to(device)
    if unet is not None:
        with torch.device("meta"):                                  # the names only: no weights, no random draws
            want = set(DenoiserUNet(**arch).state_dict())
        if set(model.state_dict()) != want:
            raise ValueError(f"unet={unet.__name__} must have the layers of DenoiserUNet (the same parameter names); "
                             "keep its __init__")
    g = cpu_generator(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)        # what train() would make

    def loss_fn(m: nn.Module, batch: tuple) -> torch.Tensor:
        xb, _ = batch                                               # (B, 1, H, W)
        eps = randn(xb.shape, generator=g, device=device)           # (B, 1, H, W)
        if step is None:
            return denoising_loss(m, xb, sigma, eps)
        out = step(m, optimizer, xb, sigma, eps)                    # updates the weights itself
        loss, stats = out if isinstance(out, tuple) and len(out) == 2 else (out, {})
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not isinstance(stats, dict):
            raise TypeError(f"{student['step']} must return the loss as a scalar tensor, or (loss, dict of numbers), "
                            f"got {type(out).__name__}")
        # train() then clears the (absent) gradients, back-propagates through this detached copy, which reaches no
        # weight, and steps the optimizer, which skips weights without a gradient: the update stays the student's.
        # The stats (grad_norm, update_norm) go into the history, one value per step.
        return loss.detach().float().reshape(()).requires_grad_(), stats

    def on_epoch_end(epoch: int, m: nn.Module) -> dict:
        if probe is None:
            return {}
        out = denoise(m, probe.to(device)).cpu().tolist()
        return {"probe_first_epoch": out, "probe_last_epoch": out} if epoch == 0 else {"probe_last_epoch": out}

    def train_fn(resume: Path) -> dict:
        loader = TensorLoader(images, None, batch_size=profile.batch_size, seed=seed)
        extra = {} if step is None else {"grad_clip": None, "mixed_precision": False}   # the step clips, in float32
        hist = train(model, loss_fn, loader, epochs, optimizer=optimizer, lr=lr, desc=name, on_epoch_end=on_epoch_end,
                     resume_path=resume, resume_config=config.as_dict(), generator=g, **extra)
        return {k: v for k, v in hist.items() if k != "lr"}

    history = load_or_train(name, model, config, train_fn, shipped=profile.use_pretrained and not student,
                            verbose=verbose)
    return model.eval(), history, config.as_dict()
