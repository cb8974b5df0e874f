"""Devices and randomness (taught in 00_setup).

Random tensors are drawn on the CPU from a seeded ``torch.Generator`` and then moved to
the device, so a CPU run and a GPU run with the same seed see the same noise.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "seed_everything", "cpu_generator", "randn", "synchronize", "describe_environment"]


def get_device(prefer: str | None = None) -> torch.device:
    """``cuda`` if available, else ``mps`` (Apple), else ``cpu``; ``$COURSE_DEVICE`` or ``prefer`` overrides."""
    want = prefer or os.environ.get("COURSE_DEVICE") or None
    if want:
        dev = torch.device(want)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {want!r} requested but CUDA is not available; use 'cpu' or unset COURSE_DEVICE")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {want!r} requested but MPS is not available; use 'cpu' or unset COURSE_DEVICE")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: pass it to :func:`randn` for reproducible noise."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def randn(*shape: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU, then moved to ``device``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    return torch.randn(*shape, generator=generator, dtype=dtype).to(device)


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on a CUDA ``device`` (no-op elsewhere), so a timer measures it (07)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_environment() -> dict[str, str]:
    """Versions and device, for the top of every notebook and for BENCHMARKS.md."""
    import platform
    dev = get_device()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(dev),
        "cuda": torch.version.cuda or "none",
        "cpu threads": str(torch.get_num_threads()),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
