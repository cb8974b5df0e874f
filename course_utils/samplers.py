"""Reverse-process samplers with the scheduler vocabulary of diffusers: ``set_timesteps``, ``step``.

* :class:`DDPMScheduler`: ancestral sampling, Algorithm 2 of Ho et al. 2020 (taught in 04),
  with variance sigma_t^2 = beta_t or the posterior variance beta-tilde_t.
* :class:`DDIMScheduler`: Song et al. 2021, on a strided subset of timesteps, with eta in
  [0, 1] (0: deterministic; 1 over all T steps: DDPM's posterior) (taught in 06).
* :func:`guided_eps`: classifier-free guidance, eps = eps_u + w (eps_c - eps_u) (taught in 05).
* :func:`sample`: the loop that ties a model and a scheduler together.

Both schedulers work on any subsequence of timesteps: between consecutive kept steps t > s
they use alpha_bar_t and alpha_bar_s, so with all T steps DDPM is exactly Algorithm 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import randn
from .schedules import NoiseSchedule

__all__ = ["StepOutput", "DDPMScheduler", "DDIMScheduler", "guided_eps", "initial_noise", "sample"]


@dataclass
class StepOutput:
    prev_sample: torch.Tensor     # x_{t-1} (or x_s for a strided step)   (B, C, H, W)
    pred_x0: torch.Tensor         # the model's estimate of x_0 at this step


class _Scheduler:
    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True):
        self.schedule = schedule
        self.T = schedule.T
        self.clip_sample = clip_sample
        self.set_timesteps(self.T)

    def set_timesteps(self, num_inference_steps: int) -> "_Scheduler":
        """Use ``num_inference_steps`` evenly strided timesteps, from T-1 down to 0."""
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= self.T:
            raise ValueError(f"num_inference_steps must be an integer in [1, T={self.T}], got {num_inference_steps!r}")
        ts = torch.linspace(0, self.T - 1, num_inference_steps).round().long()
        if num_inference_steps == 1:                                 # one step starts from pure noise, t = T-1
            ts = torch.tensor([self.T - 1])
        self.timesteps = ts.flip(0)                                  # descending, e.g. 999, 979, ..., 0
        self.num_inference_steps = num_inference_steps
        return self

    def prev_timestep(self, t: int) -> int:
        """The kept timestep after ``t`` (-1 after the last one)."""
        idx = (self.timesteps == t).nonzero()
        if len(idx) == 0:
            raise ValueError(f"timestep {t} is not in this scheduler's timesteps; call set_timesteps first")
        i = int(idx[0])
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def _alphas(self, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.schedule.alpha_bar.to(device)
        s = self.prev_timestep(t)
        ab_prev = ab[s] if s >= 0 else torch.ones((), device=device)
        return ab[t], ab_prev

    def _pred_x0(self, x_t: torch.Tensor, eps: torch.Tensor, ab_t: torch.Tensor) -> torch.Tensor:
        x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        return x0.clamp(-1, 1) if self.clip_sample else x0

    @staticmethod
    def _check(eps: torch.Tensor, x_t: torch.Tensor) -> None:
        if eps.shape != x_t.shape:
            raise ValueError(f"eps has shape {tuple(eps.shape)} but x_t has {tuple(x_t.shape)}")


class DDPMScheduler(_Scheduler):
    """Ancestral sampling: x_{t-1} ~ N(mu_theta(x_t, t), sigma_t^2 I).

    ``variance="beta"`` uses sigma_t^2 = beta_t, ``"beta_tilde"`` the posterior variance
    (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t.
    """

    def __init__(self, schedule: NoiseSchedule, variance: str = "beta", clip_sample: bool = True):
        if variance not in ("beta", "beta_tilde"):
            raise ValueError(f"unknown variance {variance!r}; use 'beta' or 'beta_tilde'")
        self.variance = variance
        super().__init__(schedule, clip_sample)

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None) -> StepOutput:
        self._check(eps, x_t)
        t = int(t)
        ab_t, ab_prev = self._alphas(t, x_t.device)
        beta = 1 - ab_t / ab_prev                                     # beta_t (or its strided equivalent)
        x0 = self._pred_x0(x_t, eps, ab_t)
        # posterior mean of q(x_{t-1} | x_t, x_0)
        mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x_t
        if self.prev_timestep(t) < 0:
            return StepOutput(mean, x0)                               # last step: no noise
        var = beta if self.variance == "beta" else beta * (1 - ab_prev) / (1 - ab_t)
        z = randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return StepOutput(mean + var.sqrt() * z, x0)


class DDIMScheduler(_Scheduler):
    """x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s)."""

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, clip_sample: bool = True):
        self.eta = self._check_eta(eta)
        super().__init__(schedule, clip_sample)

    @staticmethod
    def _check_eta(eta: float) -> float:
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta}")
        return float(eta)

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None,
             eta: float | None = None) -> StepOutput:
        self._check(eps, x_t)
        eta = self.eta if eta is None else self._check_eta(eta)
        t = int(t)
        ab_t, ab_prev = self._alphas(t, x_t.device)
        x0 = self._pred_x0(x_t, eps, ab_t)
        if self.clip_sample:  # re-derive eps from the clipped x0 so both stay consistent
            eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_prev).sqrt()
        x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0 and self.prev_timestep(t) >= 0:
            x_prev = x_prev + sigma * randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return StepOutput(x_prev, x0)


def guided_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, w: float | None,
               null_label: int | None = None) -> torch.Tensor:
    """Noise estimate with classifier-free guidance: eps_u + w (eps_c - eps_u).

    w = 0: unconditional; w = 1: plain conditional; w > 1: pushed further toward the class.
    ``y=None`` or ``w=None`` calls the model once, without guidance.
    """
    if y is None or w is None:
        return model(x, t, y) if y is not None else model(x, t)
    null = null_label if null_label is not None else getattr(model, "num_classes", None)
    if null is None:
        raise ValueError("classifier-free guidance needs a class-conditional model (num_classes set)")
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([torch.full_like(y, null), y]))
    eps_u, eps_c = both.chunk(2)
    return eps_u + w * (eps_c - eps_u)


def initial_noise(shape: tuple[int, ...], x_T: torch.Tensor | None, generator: torch.Generator | None,
                  device: torch.device | str) -> torch.Tensor:
    """x_T ~ N(0, I) drawn on the CPU (or the given ``x_T``, checked against ``shape``), on ``device``."""
    if x_T is None:
        return randn(shape, generator=generator, device=device)
    if tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
    return x_T.to(device)


@torch.no_grad()
def sample(model: nn.Module | Callable, scheduler: _Scheduler, shape: tuple[int, ...], *,
           y: torch.Tensor | None = None, guidance: float | None = None, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", x_T: torch.Tensor | None = None, return_trajectory: bool = False,
           trajectory_every: int = 1, progress: bool = True, eps_fn: Callable | None = None):
    """Run ``scheduler`` from x_T ~ N(0, I) (or the given ``x_T``) down to x_0.

    ``eps_fn(x, t_batch)`` overrides the noise estimate (used for editing tricks in 06);
    otherwise it is ``guided_eps(model, x, t, y, guidance)``. Returns x_0, or
    ``(x_0, [(t, x_t, pred_x0), ...])`` with ``return_trajectory`` (every ``trajectory_every`` steps).
    """
    x = initial_noise(shape, x_T, generator, device)
    if y is not None:
        y = torch.as_tensor(y, device=device).long()
        if y.dim() == 0:
            y = y.expand(shape[0])
    traj = []
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    steps = scheduler.timesteps.tolist()
    for i, t in enumerate(tqdm(steps, desc=f"{type(scheduler).__name__[:-9]} {len(steps)} steps",
                               leave=False, disable=not progress, mininterval=1.0)):
        tb = torch.full((shape[0],), t, device=device, dtype=torch.long)
        eps = eps_fn(x, tb) if eps_fn is not None else guided_eps(model, x, tb, y, guidance)
        out = scheduler.step(eps, t, x, generator=generator)
        x = out.prev_sample
        if return_trajectory and (i % trajectory_every == 0 or i == len(steps) - 1):
            traj.append((t, x.detach().cpu(), out.pred_x0.detach().cpu()))
    if was_training and isinstance(model, nn.Module):
        model.train()
    return (x, traj) if return_trajectory else x
