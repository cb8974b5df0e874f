"""The forward (noising) process q(x_t | x_0) and its noise schedules (taught in 02_forward_process).

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),   alpha_bar_t = prod_{s<=t} (1 - beta_s)

Timesteps are 0-based: t = 0 .. T-1, and ``alpha_bar[t]`` is the cumulative product up to t.
"""
from __future__ import annotations

import math

import torch

__all__ = ["SCHEDULES", "make_betas", "NoiseSchedule", "q_sample", "check_timesteps"]

SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid")


def make_betas(name: str = "linear", T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
               s: float = 0.008) -> torch.Tensor:
    """beta_1..beta_T (float64, shape (T,)) of the named schedule.

    linear / quadratic / sigmoid interpolate from ``beta_start`` to ``beta_end`` (Ho et al. 2020
    use linear 1e-4 -> 0.02, T = 1000); cosine is Nichol & Dhariwal 2021 with offset ``s``.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if name == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if name == "quadratic":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=torch.float64) ** 2
    if name == "sigmoid":
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (beta_end - beta_start) + beta_start
    if name == "cosine":
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def check_timesteps(t: torch.Tensor, T: int, batch: int | None = None) -> torch.Tensor:
    """Validate integer timesteps in [0, T) (shape (B,) or scalar); returns them as int64 (B,)."""
    if not isinstance(t, torch.Tensor):
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


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.  x0, eps: (B, C, H, W); t: (B,) int64."""
    if x0.dim() != 4:
        raise ValueError(f"x0 must have shape (B, C, H, W), got {tuple(x0.shape)}")
    if eps.shape != x0.shape:
        raise ValueError(f"eps has shape {tuple(eps.shape)} but x0 has {tuple(x0.shape)}")
    t = check_timesteps(t, len(alpha_bar), batch=x0.shape[0])
    ab = alpha_bar.to(x0.device, x0.dtype)[t.to(x0.device)].view(-1, 1, 1, 1)   # (B, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


class NoiseSchedule:
    """All per-step quantities of one schedule, as float32 tensors of shape (T,).

    ``betas``, ``alphas`` = 1 - betas, ``alpha_bar`` = cumprod(alphas), ``alpha_bar_prev``
    (alpha_bar_{t-1}, with 1 before the first step), ``posterior_variance`` = beta-tilde_t, the
    variance of q(x_{t-1} | x_t, x_0).
    """

    def __init__(self, name: str = "linear", T: int = 1000, **kwargs: float):
        self.name, self.T = name, T
        betas = make_betas(name, T, **kwargs)                      # float64 for accurate products
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.betas = betas.float()
        self.alphas = alphas.float()
        self.alpha_bar = alpha_bar.float()
        self.alpha_bar_prev = alpha_bar_prev.float()
        self.posterior_variance = (betas * (1 - alpha_bar_prev) / (1 - alpha_bar)).float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Noise ``x0`` to step ``t`` in one jump (see :func:`q_sample`)."""
        return q_sample(x0, t, eps, self.alpha_bar)

    def log_snr(self) -> torch.Tensor:
        """log(alpha_bar_t / (1 - alpha_bar_t)), the signal-to-noise ratio in log scale, (T,)."""
        ab = self.alpha_bar.double()
        return (ab.log() - (1 - ab).log()).float()

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.name!r}, T={self.T}, alpha_bar_T={self.alpha_bar[-1].item():.2e})"
