"""``./course.sh generate``: sample digits from the trained models into an .npz file.

The file holds ``images`` (uint8, N x 28 x 28, 0 = black background as in MNIST) and ``labels``
(int64: the requested class, or -1 for unconditional samples). Same seed, same output on the
same device. Models: ``ddpm`` (notebook 04), ``cfg`` (05), ``ldm`` (07); the default guidance
is notebook 05's best weight (``course_utils.deliverables.best_w``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from course_utils.data import to_uint8
from course_utils.deliverables import best_w
from course_utils.device import get_device
from course_utils.samplers import DDIMScheduler, DDPMScheduler, sample_batches
from course_utils.schedules import NoiseSchedule

__all__ = ["generate", "add_arguments", "main"]


def _labels(model: str, num: int, label: int | None) -> torch.Tensor | None:
    if model == "ddpm":
        return None
    if label is not None:
        return torch.full((num,), label, dtype=torch.long)
    return torch.arange(num) % 10                                 # all classes evenly


@torch.no_grad()
def generate(model: str = "cfg", num: int = 16, label: int | None = None, guidance: float | None = None,
             sampler: str = "ddim", steps: int = 50, eta: float = 0.0, seed: int = 0,
             device: str | torch.device | None = None, progress: bool = True,
             batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``num`` digits; returns ``(images uint8 (N, 28, 28), labels int64 (N,))``.

    ``batch_size`` samples go through the network at once (twice as many inputs with guidance); on a
    CPU, batches of about 50 run faster per sample than 500 (they stay in cache).
    """
    from course_utils.diffusion import load_trained_unet

    if model not in ("ddpm", "cfg", "ldm"):
        raise ValueError(f"unknown model {model!r}; choose ddpm, cfg or ldm")
    if num < 1:
        raise ValueError(f"--num must be at least 1, got {num}")
    if label is not None and model == "ddpm":
        raise ValueError("the ddpm model is unconditional: drop --label or use --model cfg")
    if label is not None and not 0 <= label <= 9:
        raise ValueError(f"--label must be a digit 0-9, got {label}")
    dev = get_device(str(device) if device else None)
    y = _labels(model, num, label)
    w = None if model == "ddpm" else (best_w() if guidance is None else guidance)
    if model == "ldm":
        from course_utils.latent import load_trained_ldm
        unet, decode, latent_shape, config = load_trained_ldm(dev)
        item_shape = latent_shape
    else:
        unet, config = load_trained_unet(model, dev)
        decode, item_shape = None, (1, 28, 28)
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])        # what the model was trained to invert
    clip = model != "ldm"                                        # latents have no [-1, 1] range to clip to
    scheduler = (DDIMScheduler(schedule, eta=eta, clip_sample=clip) if sampler == "ddim"
                 else DDPMScheduler(schedule, clip_sample=clip))
    scheduler.set_timesteps(steps)
    x = sample_batches(unet, scheduler, num, item_shape, labels=y, guidance=w, seed=seed, device=dev, decode=decode,
                       batch_size=batch_size, progress=progress)
    labels = y if y is not None else torch.full((num,), -1, dtype=torch.long)
    return to_uint8(x).numpy(), labels.numpy().astype(np.int64)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the ``generate`` command."""
    p.add_argument("--model", choices=["ddpm", "cfg", "ldm"], default="cfg", help="which trained model (default cfg)")
    p.add_argument("--num", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--label", type=int, default=None, help="digit to draw (default: all classes evenly)")
    p.add_argument("--guidance", type=float, default=None, help="CFG weight w (default: the best w of notebook 05)")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddim")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("samples.npz"), help="output .npz file")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.set_defaults(_parser=p)


def main(args: argparse.Namespace) -> int:
    """Sample and write the .npz; exit status 0, 1 for a missing model or bad input, 2 for usage errors."""
    parser: argparse.ArgumentParser = args._parser
    if args.num < 1:
        parser.error(f"--num must be at least 1, got {args.num}")
    if args.label is not None and not 0 <= args.label <= 9:
        parser.error(f"--label must be a digit 0-9, got {args.label}")
    if args.label is not None and args.model == "ddpm":
        parser.error("--label needs a conditional model (--model cfg or ldm); ddpm is unconditional")
    if args.steps < 1 or args.steps > 1000:
        parser.error(f"--steps must lie in [1, 1000], got {args.steps}")
    if not 0.0 <= args.eta <= 1.0:
        parser.error(f"--eta must lie in [0, 1], got {args.eta}")
    if args.sampler == "ddpm" and args.eta != 0.0:
        parser.error("--eta applies to --sampler ddim only")
    if args.out.suffix != ".npz":
        parser.error(f"--out must end in .npz, got {args.out}")
    try:
        t0 = time.perf_counter()
        images, labels = generate(args.model, args.num, args.label, args.guidance, args.sampler, args.steps,
                                  args.eta, args.seed, args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        parser.exit(1, f"error: {e}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=images, labels=labels)
    tmp.replace(args.out)
    print(f"wrote {len(images)} samples of model {args.model} to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
