"""Input checks shared by every module: one clear ``ValueError`` that names the problem and the fix.

A teaching function reads as its formula plus one check line::

    def q_sample(x0, t, eps, alpha_bar):
        t = check_timesteps(t, len(alpha_bar), batch=len(x0))
        ab = extract(alpha_bar, t, x0.shape)                 # (B, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

There is one checker per kind of input (image batches, labels, timesteps, eta, alpha_bar values,
matching shapes) and one broadcasting helper, :func:`extract`, for per-timestep coefficients.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["check_image_batch", "check_same_shape", "check_labels", "check_timesteps", "check_eta", "check_alpha_bar",
           "extract"]


def _shape(x: object) -> object:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def check_image_batch(x: torch.Tensor, name: str = "x", *, channels: int | None = None,
                      size: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` is a float tensor of shape (B, C, H, W).

    ``channels`` fixes C and ``size`` fixes (H, W) (MNIST: ``channels=1, size=(28, 28)``).
    """
    c = "C" if channels is None else str(channels)
    hw = "H, W" if size is None else ", ".join(map(str, size))
    want = f"(B, {c}, {hw})"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {want}, got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add the channel axis with x.unsqueeze(1))" if x.dim() == 3 else ""
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels, expected {channels}: shape {want}, got {tuple(x.shape)}")
    if size is not None and tuple(x.shape[2:]) != tuple(size):
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}; "
                         "convert uint8 images with course_utils.data.to_unit")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str = "eps", name_b: str = "x_t") -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are tensors of the same shape (e.g. the noise and the image)."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {_shape(a)} but {name_b} has {_shape(b)}; they must match")


def check_labels(y: torch.Tensor | int, batch: int, *, num_classes: int | None = None, allow_null: bool = False,
                 device: torch.device | str | None = None, name: str = "labels") -> torch.Tensor:
    """Class labels as int64 of shape (batch,): a scalar is repeated, floats are refused.

    With ``num_classes`` the values must lie in [0, num_classes - 1], or up to ``num_classes``
    itself with ``allow_null`` (the null label of classifier-free guidance, notebook 05).
    """
    y = torch.as_tensor(y, device=device)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name} must be integers (torch.long), got dtype {y.dtype}")
    y = y.long()
    if y.dim() == 0:
        y = y.expand(batch)
    if tuple(y.shape) != (batch,):
        raise ValueError(f"expected {name} of shape ({batch},), one per image, got {tuple(y.shape)}")
    if num_classes is not None and len(y):
        top = num_classes if allow_null else num_classes - 1
        if y.min() < 0 or y.max() > top:
            null = f" (or {num_classes}, the null label)" if allow_null else ""
            raise ValueError(f"{name} must lie in [0, {num_classes - 1}]{null}, "
                             f"got values from {int(y.min())} to {int(y.max())}")
    return y


def check_timesteps(t: torch.Tensor | int, T: int, batch: int | None = None) -> torch.Tensor:
    """Integer timesteps in [0, T) as int64 of shape (B,) (a scalar is repeated ``batch`` times)."""
    t = torch.as_tensor(t)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"timesteps must be integers (torch.long), got dtype {t.dtype}")
    t = t.long()
    if t.dim() == 0 and batch is not None:
        t = t.expand(batch)
    if t.dim() != 1:
        raise ValueError(f"timesteps must have shape (B,), got {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{t.shape[0]} timesteps for a batch of {batch} images")
    if len(t) and (t.min() < 0 or t.max() >= T):
        raise ValueError(f"timesteps must lie in [0, {T - 1}], got values from {int(t.min())} to {int(t.max())}")
    return t


def check_eta(eta: float) -> float:
    """eta of DDIM as a float in [0, 1] (0: deterministic DDIM; 1: DDPM's posterior variance)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")
    return float(eta)


def check_alpha_bar(alpha_bar: torch.Tensor | float, name: str = "alpha_bar") -> torch.Tensor:
    """``alpha_bar`` values (a number, or a float tensor of any shape) as a tensor, each in (0, 1].

    A Python number becomes a float64 0-d tensor; a tensor is returned as it is (integer tensors
    are refused). Used by the samplers' update rules (04, 06) and ``schedules.sigma_from_alpha_bar`` (02).
    """
    if isinstance(alpha_bar, bool) or not isinstance(alpha_bar, (int, float, torch.Tensor)):
        raise ValueError(f"{name} must be a number or a float tensor with values in (0, 1], "
                         f"got {type(alpha_bar).__name__}")
    a = alpha_bar if isinstance(alpha_bar, torch.Tensor) else torch.tensor(float(alpha_bar), dtype=torch.float64)
    if not a.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got dtype {a.dtype}")
    if a.numel() and not ((a > 0) & (a <= 1)).all():
        raise ValueError(f"{name} must lie in (0, 1], got values from {a.min().item():.3g} to {a.max().item():.3g}")
    return a


def extract(a: torch.Tensor, t: torch.Tensor, x_shape: Sequence[int]) -> torch.Tensor:
    """``a[t]`` shaped to broadcast against a batch of shape ``x_shape``: (B,) -> (B, 1, 1, 1).

    ``a``: a per-timestep table (T,) such as ``alpha_bar``; ``t``: int64 (B,). The result lives
    on ``t``'s device, in ``a``'s dtype.
    """
    out = a.to(t.device)[t]                                        # (B,)
    return out.view(t.shape[0], *([1] * (len(x_shape) - 1)))        # (B, 1, 1, 1)
