"""The forward (noising) process q(x_t | x_0) and its noise schedules (taught in 02_forward_process).

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),   alpha_bar_t = prod_{s<=t} (1 - beta_s)

Timesteps are 0-based: t = 0 .. T-1, and ``alpha_bar[t]`` is the cumulative product up to t.
"""
from __future__ import annotations

import math

import torch

from .validation import check_alpha_bar, check_image_batch, check_same_shape, check_timesteps, extract

__all__ = ["SCHEDULES", "make_betas", "NoiseSchedule", "q_sample", "q_step", "q_sample_iterative", "marginal_moments",
           "sigma_from_alpha_bar", "TOY_MIXTURE", "mixture_score"]

SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid")


def make_betas(name: str = "linear", T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
               s: float = 0.008) -> torch.Tensor:
    """beta_1..beta_T (float64, shape (T,)) of the named schedule.

    linear / quadratic / sigmoid interpolate from ``beta_start`` to ``beta_end`` (Ho et al. 2020
    use linear 1e-4 -> 0.02, T = 1000); cosine is Nichol & Dhariwal 2021 with offset ``s``.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if name != "cosine" and not 0 <= min(beta_start, beta_end) <= max(beta_start, beta_end) < 1:
        raise ValueError(f"beta_start and beta_end must lie in [0, 1) (a beta of 1 or more destroys the signal in one "
                         f"step), got {beta_start!r} and {beta_end!r}")
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


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.  x0, eps: (B, C, H, W); t: (B,) int64."""
    check_image_batch(x0, "x0")
    check_same_shape(eps, x0, "eps", "x0")
    t = check_timesteps(t, len(alpha_bar), batch=x0.shape[0]).to(x0.device)
    ab = extract(alpha_bar, t, x0.shape).to(x0.dtype)                           # (B, 1, 1, 1)
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


# --- Added for 02_forward_process: the step-by-step chain, its moments, the equivalent noise level ---------


def _check_betas(betas: torch.Tensor) -> torch.Tensor:
    if not isinstance(betas, torch.Tensor) or betas.dim() != 1 or len(betas) == 0:
        shape = tuple(betas.shape) if isinstance(betas, torch.Tensor) else type(betas).__name__
        raise ValueError(f"betas must be a non-empty 1-D tensor of shape (T,), got {shape}")
    if not betas.dtype.is_floating_point:
        raise ValueError(f"betas must be floating point, got dtype {betas.dtype}")
    if betas.min() < 0 or betas.max() >= 1:
        raise ValueError(f"betas must lie in [0, 1), got values from {betas.min().item():.3g} to {betas.max().item():.3g}")
    return betas


def q_step(x_prev: torch.Tensor, t: int, eps: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """One step of the chain, x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps  (02_forward_process).

    x_prev, eps: (B, C, H, W) float; ``t``: one int in [0, T) (0-based, so step 0 turns x_0 into the
    first noisy image, whose ``alpha_bar[0] = 1 - beta_0``); betas: (T,).
    """
    check_image_batch(x_prev, "x_prev")
    check_same_shape(eps, x_prev, "eps", "x_prev")
    betas = _check_betas(betas)
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(betas):
        raise ValueError(f"t must be an int in [0, {len(betas) - 1}], got {t!r}")
    beta = float(betas[t])
    return (1 - beta) ** 0.5 * x_prev + beta ** 0.5 * eps


def q_sample_iterative(x0: torch.Tensor, t: int, betas: torch.Tensor,
                       generator: torch.Generator | None = None, noises: torch.Tensor | None = None) -> torch.Tensor:
    """x_t by running :func:`q_step` for steps 0..t with fresh noise each step (02_forward_process).

    The slow way to the same distribution as :func:`q_sample`'s one jump: the t + 1 Gaussian
    steps compose into N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I). x0: (B, C, H, W) float; ``t`` an
    int in [0, T). ``noises``: the eps of each step, (t + 1, B, C, H, W), so a caller (02's check) can feed
    two implementations the same draws; else they are drawn on the CPU from ``generator`` and moved to
    ``x0``'s device.
    """
    check_image_batch(x0, "x0")
    betas = _check_betas(betas)
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(betas):
        raise ValueError(f"t must be an int in [0, {len(betas) - 1}], got {t!r}")
    if noises is not None and tuple(noises.shape) != (t + 1, *x0.shape):
        raise ValueError(f"noises must hold one eps per step, shape (t + 1, *x0.shape) = {(t + 1, *x0.shape)}, "
                         f"got {tuple(noises.shape)}")
    x = x0
    for s in range(t + 1):
        if noises is None:
            eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)   # (B, C, H, W)
        else:
            eps = noises[s].to(device=x0.device, dtype=x0.dtype)
        x = q_step(x, s, eps, betas)
    return x


def marginal_moments(x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean sqrt(alpha_bar_t) x_0 and variance (1 - alpha_bar_t) of q(x_t | x_0), both shaped like ``x0``.

    x0: (B, C, H, W) float; t: (B,) int64 (or one int for the whole batch).
    """
    check_image_batch(x0, "x0")
    t = check_timesteps(t, len(alpha_bar), batch=x0.shape[0]).to(x0.device)
    ab = extract(alpha_bar, t, x0.shape).to(x0.dtype)                           # (B, 1, 1, 1)
    return ab.sqrt() * x0, (1 - ab).expand_as(x0).clone()


def sigma_from_alpha_bar(alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t): the noise level of x_t / sqrt(alpha_bar_t) = x_0 + sigma_t eps.

    Dividing x_t by sqrt(alpha_bar_t) undoes the shrinking of the signal, leaving the clean image
    plus Gaussian noise of standard deviation sigma_t (02 compares denoisers this way; 03 trains at
    one fixed sigma). alpha_bar must lie in (0, 1].
    """
    ab = check_alpha_bar(alpha_bar)
    return ((1 - ab) / ab).sqrt()


# --- Added for 03_unet_denoiser (Tweedie's formula) and 06_ddim (the probability-flow ODE): an exact score ----

TOY_MIXTURE: dict = {"weights": (0.5, 0.2, 0.3), "means": (-0.9, 0.2, 0.9), "std": 0.05}
"""Notebook 02's 1-D toy data: background near -0.9, a rare grey mode, a stroke mode near 0.9."""


def mixture_score(x: torch.Tensor, alpha_bar: torch.Tensor | float, weights=TOY_MIXTURE["weights"],
                  means=TOY_MIXTURE["means"], std: float = TOY_MIXTURE["std"]) -> torch.Tensor:
    """The exact score d/dx log q_t(x) of 1-D Gaussian-mixture data diffused to level ``alpha_bar``.

    Data p(x_0) = sum_k w_k N(mu_k, std^2) has the marginal (02, section 4)

        q_t(x) = sum_k w_k N(x; m_k, v),   m_k = sqrt(alpha_bar) mu_k,   v = alpha_bar std^2 + 1 - alpha_bar,

    so its score is sum_k r_k(x) (m_k - x) / v, with r_k(x) the posterior probability of component
    k (computed with log-sum-exp, stable far in the tails). ``alpha_bar = 1`` gives the data's own
    score. Notebook 03 checks Tweedie's formula E[x_0 | x_t] = (x_t + (1 - alpha_bar) score) /
    sqrt(alpha_bar) with it against brute-force Bayes; notebook 06 integrates the probability-flow
    ODE with the exact noise estimate eps = -sqrt(1 - alpha_bar) score.

    Args:
        x: points, a float tensor of any shape (each entry is one 1-D point).
        alpha_bar: a number or a float tensor that broadcasts against ``x``, values in (0, 1].
        weights, means: K mixture weights (positive, summing to 1) and K component means.
        std: the common standard deviation of the components, > 0.

    Returns:
        the score at every entry of ``x``, same shape and dtype.
    """
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise ValueError(f"x must be a float tensor, got {type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    mu = torch.as_tensor(means, dtype=torch.float64).flatten()
    if len(w) == 0 or w.shape != mu.shape:
        raise ValueError(f"weights and means must be two non-empty lists of the same length, got {len(w)} and {len(mu)}")
    if (w <= 0).any() or abs(w.sum().item() - 1) > 1e-6:
        raise ValueError(f"weights must be positive and sum to 1, got {w.tolist()}")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ValueError(f"std must be a finite number > 0, got {std!r}")
    ab = check_alpha_bar(alpha_bar).to(device=x.device, dtype=x.dtype)
    ab = ab.view(ab.shape + (1,))                                                 # broadcasts against x[..., None]
    m = ab.sqrt() * mu.to(x)                                                      # (..., K) component means at level t
    v = ab * std ** 2 + 1 - ab                                                    # (..., 1) component variance
    xk = x[..., None]                                                             # (..., 1)
    log_r = w.log().to(x) - (xk - m) ** 2 / (2 * v)                               # (..., K), up to a shared constant
    r = torch.softmax(log_r, dim=-1)                                              # responsibilities r_k(x)
    return (r * (m - xk) / v).sum(-1)
