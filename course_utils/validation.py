"""Input checks shared by the modules: a clear ValueError that names the problem and the fix."""
from __future__ import annotations

import torch

__all__ = ["check_image_batch"]


def check_image_batch(x: torch.Tensor, name: str = "x", channels: int | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` is a float tensor of shape (B, C, H, W) (with ``channels`` channels)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}; "
                         "convert uint8 images with data.to_unit")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels, the model expects {channels}: shape (B, {channels}, H, W)")
