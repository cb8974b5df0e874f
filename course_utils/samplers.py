"""Reverse-process samplers with the scheduler vocabulary of diffusers: ``set_timesteps``, ``step``.

The update rules are pure functions of the ``alpha_bar`` values and of the Gaussian noise ``z``,
which the caller passes in, so the schedulers, DDIM inversion (``editing.ddim_invert``) and the
exercise checks of notebooks 04 and 06 all use the same code:

* :func:`pred_original_sample`: x0_hat from x_t and eps (eq. 15 of Ho et al. 2020; eq. 9 of
  Song et al. 2021, the "predicted x_0" of their eq. 12).
* :func:`ddpm_step`: one ancestral step, the posterior mean and variance of Ho et al. eqs. 6-7
  (Algorithm 2), with variance sigma^2 = beta_t or the posterior variance beta-tilde_t (taught in 04).
* :func:`ddim_sigma`, :func:`ddim_step`: one DDIM step with eta in [0, 1] (Song et al. eqs. 16
  and 12; 0: deterministic; 1 over all T steps: DDPM's posterior) (taught in 06).

The schedulers look up alpha_bar for ``t`` and for the previous kept timestep, draw z on the CPU
from the given generator (``device.randn``) and call these functions:

* :class:`DDPMScheduler`: ancestral sampling (04); :class:`DDIMScheduler`: DDIM (06).
* :func:`guided_eps`: classifier-free guidance, eps = eps_u + w (eps_c - eps_u) (taught in 05).
* :func:`sample`: the loop that ties a model and a scheduler together; :func:`sample_batches`
  runs it over many samples in batches (the metrics of 04-07, ``course_tools generate``).

Both schedulers work on any subsequence of timesteps: between consecutive kept steps t > s
they use alpha_bar_t and alpha_bar_s, so with all T steps DDPM is exactly Algorithm 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .device import cpu_generator, randn
from .progress import progress_bar
from .schedules import NoiseSchedule
from .validation import check_alpha_bar, check_eta, check_labels, check_same_shape

__all__ = ["pred_original_sample", "ddpm_step", "ddim_sigma", "ddim_step", "StepOutput", "DDPMScheduler",
           "DDIMScheduler", "StepNoise", "guided_eps", "initial_noise", "sample", "sample_batches"]


def _level(alpha_bar: torch.Tensor | float, x: torch.Tensor, name: str) -> torch.Tensor:
    """``check_alpha_bar``, then a shape that broadcasts per image: one value, or (B, 1, 1, 1)."""
    a = check_alpha_bar(alpha_bar, name).to(x)
    if a.numel() > 1 and (a.dim() != x.dim() or a.shape[0] != x.shape[0] or any(n != 1 for n in a.shape[1:])):
        raise ValueError(f"{name} has shape {tuple(a.shape)} for a batch of shape {tuple(x.shape)}: give one level as "
                         f"a 0-d tensor or one per image as (B, 1, 1, 1), e.g. alpha_bar[t].view(-1, 1, 1, 1)")
    return a


def pred_original_sample(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor | float,
                         clip_sample: bool = False) -> torch.Tensor:
    """The estimate of x_0 from x_t and the noise estimate eps (taught in 04, used by both samplers):

        x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)

    Eq. 15 of Ho et al. 2020; eq. 9 of Song et al. 2021 (the "predicted x_0" of their eq. 12). It
    inverts x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps for a known eps. x_t, eps:
    (B, C, H, W); ``alpha_bar_t``: a number or a tensor that broadcasts against x_t (0-d, or
    (B, 1, 1, 1)). ``clip_sample`` clamps the estimate to the data range [-1, 1].
    """
    check_same_shape(eps, x_t)
    ab_t = _level(alpha_bar_t, x_t, "alpha_bar_t")
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()                       # (B, C, H, W)
    return x0_hat.clamp(-1, 1) if clip_sample else x0_hat


def _check_variance(variance: str) -> str:
    if variance not in ("beta", "beta_tilde"):
        raise ValueError(f"unknown variance {variance!r}; use 'beta' or 'beta_tilde'")
    return variance


def ddpm_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor | float,
              alpha_bar_prev: torch.Tensor | float, variance: str = "beta", noise: torch.Tensor | None = None,
              clip_sample: bool = False) -> torch.Tensor:
    """One ancestral step from x_t to the previous kept level, Algorithm 2 of Ho et al. 2020 (taught in 04).

    With beta = 1 - alpha_bar_t / alpha_bar_prev (beta_t between consecutive steps; the respaced
    beta between two kept steps t > s of a strided schedule) and x0_hat from
    :func:`pred_original_sample`, the step samples the posterior q(x_prev | x_t, x0_hat) of eqs. 6-7:

        mu_tilde = sqrt(alpha_bar_prev) beta / (1 - alpha_bar_t) x0_hat
                   + sqrt(1 - beta) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t        (eq. 7)
        x_prev   = mu_tilde + sigma z,   sigma^2 = beta ("beta") or beta_tilde
                   = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta ("beta_tilde", eq. 7)

    Without clipping, mu_tilde equals Algorithm 2's 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps).

    Args:
        x_t: the current sample (B, C, H, W).
        eps: the noise estimate eps_theta(x_t, t), (B, C, H, W).
        alpha_bar_t, alpha_bar_prev: the noise levels of x_t and of the returned sample (numbers or
            tensors that broadcast against x_t); alpha_bar_prev = 1 on the last step, to x_0.
        variance: "beta" or "beta_tilde".
        noise: z ~ N(0, I) of shape (B, C, H, W), drawn by the caller; ``None`` returns the mean
            mu_tilde (Algorithm 2 adds no noise on its last step).
        clip_sample: clamp x0_hat to [-1, 1] before taking the mean.

    Returns:
        x_prev, (B, C, H, W).
    """
    _check_variance(variance)
    if noise is not None:
        check_same_shape(noise, x_t, "noise", "x_t")
    ab_t = _level(alpha_bar_t, x_t, "alpha_bar_t")
    ab_prev = _level(alpha_bar_prev, x_t, "alpha_bar_prev")
    if (ab_prev < ab_t).any():
        raise ValueError("alpha_bar_prev must be >= alpha_bar_t: a DDPM step goes from t down to an earlier, less "
                         "noisy level (have the two levels been swapped?)")
    beta = 1 - ab_t / ab_prev                                                    # beta_t (or its strided equivalent)
    x0_hat = pred_original_sample(x_t, eps, ab_t, clip_sample)
    mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * x0_hat + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x_t
    if noise is None:
        return mean
    var = beta if variance == "beta" else beta * (1 - ab_prev) / (1 - ab_t)
    return mean + var.sqrt() * noise


def ddim_sigma(alpha_bar_t: torch.Tensor | float, alpha_bar_prev: torch.Tensor | float, eta: float) -> torch.Tensor:
    """sigma_t(eta) of a DDIM step from level alpha_bar_t to alpha_bar_prev, eq. 16 of Song et al. 2021:

        sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)

    Elementwise on numbers or on tensors of alpha_bar values (e.g. (T,) to plot it against t).
    With eta = 1 and consecutive steps sigma^2 is DDPM's posterior variance beta_tilde_t; with
    eta = 0 it is 0 and the step is deterministic. For a step *up* (alpha_bar_prev < alpha_bar_t,
    DDIM inversion) or from alpha_bar_t = 1 it is 0 as well. Taught in 06 (exercise 1).
    """
    eta = check_eta(eta)
    ab_t = check_alpha_bar(alpha_bar_t, "alpha_bar_t")
    ab_prev = check_alpha_bar(alpha_bar_prev, "alpha_bar_prev")
    return eta * ((1 - ab_prev) / (1 - ab_t).clamp(min=1e-12)).sqrt() * (1 - ab_t / ab_prev).clamp(min=0).sqrt()


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor | float,
              alpha_bar_prev: torch.Tensor | float, eta: float = 0.0, noise: torch.Tensor | None = None,
              clip_sample: bool = False) -> torch.Tensor:
    """One DDIM step from noise level alpha_bar_t to alpha_bar_prev, eq. 12 of Song et al. 2021 (taught in 06):

        x_prev = sqrt(alpha_bar_prev) x0_hat  +  sqrt(1 - alpha_bar_prev - sigma^2) eps  +  sigma z
                 "predicted x_0"                 "direction pointing to x_t"               random noise

    with x0_hat from :func:`pred_original_sample` and sigma = :func:`ddim_sigma` (eq. 16). With
    eta = 0 and alpha_bar_prev < alpha_bar_t the same update goes *up*, toward more noise: that is
    DDIM inversion (``editing.ddim_invert``, starting from alpha_bar = 1 at x_0).

    Args:
        x_t: the current sample (B, C, H, W).
        eps: the noise estimate eps_theta(x_t, t), (B, C, H, W).
        alpha_bar_t, alpha_bar_prev: the noise levels of x_t and of the returned sample (numbers or
            tensors that broadcast against x_t); alpha_bar_prev = 1 on the last step, to x_0.
        eta: in [0, 1]; 0 is deterministic DDIM, 1 over all T steps is DDPM with beta_tilde.
        noise: z ~ N(0, I) of shape (B, C, H, W), drawn by the caller; ``None`` leaves out sigma z
            (the mean of the step).
        clip_sample: clamp x0_hat to [-1, 1], then re-derive eps from the clipped x0_hat so that
            the two stay consistent (diffusers' ``use_clipped_model_output``).

    Returns:
        x_prev, (B, C, H, W).
    """
    eta = check_eta(eta)
    if noise is not None:
        check_same_shape(noise, x_t, "noise", "x_t")
    ab_t = _level(alpha_bar_t, x_t, "alpha_bar_t")
    ab_prev = _level(alpha_bar_prev, x_t, "alpha_bar_prev")
    x0_hat = pred_original_sample(x_t, eps, ab_t, clip_sample)                   # (B, C, H, W)
    if clip_sample:                                                              # eps that matches the clipped x0_hat
        eps = (x_t - ab_t.sqrt() * x0_hat) / (1 - ab_t).sqrt()
    sigma = ddim_sigma(ab_t, ab_prev, eta)
    x_prev = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev


@dataclass
class StepOutput:
    """What ``step`` returns; the field names are those of diffusers' ``DDPMSchedulerOutput``."""

    prev_sample: torch.Tensor              # x_{t-1}, or x_s for a strided step          (B, C, H, W)
    pred_original_sample: torch.Tensor     # x0_hat, the model's estimate of x_0 at t    (B, C, H, W)


class _Scheduler:
    """What both schedulers share: the noise schedule, the kept timesteps and the alpha_bar lookup."""

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True):
        self.schedule = schedule
        self.T = schedule.T
        self.clip_sample = clip_sample
        self.set_timesteps(self.T)

    def set_timesteps(self, num_inference_steps: int) -> "_Scheduler":
        """Keep ``num_inference_steps`` timesteps, evenly spaced from T-1 down to 0 and rounded.

        This is diffusers' ``timestep_spacing="linspace"``: ``linspace(0, T - 1, S).round()`` in
        descending order, e.g. 999, 979, 958, ..., 0 for S = 50 and T = 1000, and ``set_timesteps(T)``
        is the full chain. One step (S = 1) starts from pure noise at t = T-1 (linspace would give 0).
        Sets ``timesteps`` (int64, descending) and ``num_inference_steps``; returns the scheduler.
        """
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= self.T:
            raise ValueError(f"num_inference_steps must be an integer in [1, T={self.T}], got {num_inference_steps!r}")
        ts = torch.linspace(0, self.T - 1, num_inference_steps).round().long()
        if num_inference_steps == 1:
            ts = torch.tensor([self.T - 1])
        self.timesteps = ts.flip(0)                                  # descending, e.g. 999, 979, ..., 0
        self.num_inference_steps = num_inference_steps
        return self

    def prev_timestep(self, t: int) -> int:
        """The kept timestep after ``t`` in sampling order (s < t; t - 1 on the full chain), or -1 after the last."""
        idx = (self.timesteps == t).nonzero()
        if len(idx) == 0:
            raise ValueError(f"timestep {t} is not in this scheduler's timesteps; call set_timesteps first")
        i = int(idx[0])
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def _alpha_bars(self, t: int, prev_t: int) -> tuple[float, float]:
        # Python floats read on the CPU: checking and broadcasting them never waits for a GPU.
        alpha_bar = self.schedule.alpha_bar                                                    # (T,), CPU
        return float(alpha_bar[t]), float(alpha_bar[prev_t]) if prev_t >= 0 else 1.0          # alpha_bar_{-1} = 1


class DDPMScheduler(_Scheduler):
    """Ancestral sampling, x_{t-1} ~ N(mu_tilde(x_t, x0_hat), sigma_t^2 I) (Ho et al. 2020, taught in 04).

    ``variance="beta"`` uses sigma_t^2 = beta_t, ``"beta_tilde"`` the posterior variance
    (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t. ``clip_sample`` clamps x0_hat to [-1, 1].
    """

    def __init__(self, schedule: NoiseSchedule, variance: str = "beta", clip_sample: bool = True):
        self.variance = _check_variance(variance)
        super().__init__(schedule, clip_sample)

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor,
             generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> StepOutput:
        """Predict the sample at the previous kept timestep by reversing the diffusion process.

        Implements Algorithm 2 of Ho et al. 2020 (https://arxiv.org/abs/2006.11239): the posterior
        q(x_{t-1} | x_t, x_0) of eqs. 6-7 with x_0 replaced by x0_hat of eq. 15, through the pure
        function :func:`ddpm_step`. On a strided schedule ``set_timesteps(S)`` the step goes from t
        to the next kept timestep s with beta = 1 - alpha_bar_t / alpha_bar_s ("respacing").

        Args:
            eps (`torch.Tensor` of shape (B, C, H, W)): the noise estimate eps_theta(x_t, t) of the
                model (diffusers' ``model_output``).
            t (`int`): the current timestep, one of ``self.timesteps``.
            x_t (`torch.Tensor` of shape (B, C, H, W)): the current sample (diffusers' ``sample``).
            generator (`torch.Generator`, optional): a CPU generator for the noise z, drawn on the CPU
                and moved to x_t's device (one draw per step, none on the last), so the same seed
                gives the same images on every device.
            noise (`torch.Tensor` of shape (B, C, H, W), optional): the z to use instead of drawing one
                (ignored on the last step, which adds none); see :class:`StepNoise`.

        Returns:
            `StepOutput`: ``prev_sample``, x at ``prev_timestep(t)`` (x_0 after the last step), and
            ``pred_original_sample``, x0_hat (clamped to [-1, 1] when ``clip_sample``); both (B, C, H, W).
        """
        t = int(t)
        # 1. get previous step value (=t-1; the next kept timestep on a strided schedule; -1 after the last)
        prev_t = self.prev_timestep(t)
        # 2. compute alphas: alpha_bar_t and alpha_bar_prev (alpha_bar_{-1} = 1)
        alpha_bar_t, alpha_bar_prev = self._alpha_bars(t, prev_t)
        # 3. compute predicted original sample from predicted noise, "predicted x_0" of eq. 15 (clipped if clip_sample)
        x0_hat = pred_original_sample(x_t, eps, alpha_bar_t, self.clip_sample)
        # 4. draw z ~ N(0, I) on the CPU, except on the last step (Algorithm 2, line 3: z = 0 when t = 1)
        if prev_t < 0:
            noise = None
        elif noise is None:
            noise = randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        # 5. x_prev = mu_tilde(x_t, x0_hat) + sigma_t z: posterior mean and variance, eqs. 6-7 (Algorithm 2, line 4)
        prev_sample = ddpm_step(x_t, eps, alpha_bar_t, alpha_bar_prev, self.variance, noise, self.clip_sample)
        return StepOutput(prev_sample=prev_sample, pred_original_sample=x0_hat)


class DDIMScheduler(_Scheduler):
    """DDIM (Song et al. 2021, taught in 06): x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps + sigma z.

    ``eta`` in [0, 1] sets sigma (eq. 16): 0 is deterministic, 1 over all T steps is DDPM with
    beta_tilde. ``clip_sample`` clamps x0_hat to [-1, 1] and re-derives eps from it.
    """

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, clip_sample: bool = True):
        self.eta = check_eta(eta)
        super().__init__(schedule, clip_sample)

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None,
             eta: float | None = None, noise: torch.Tensor | None = None) -> StepOutput:
        """Predict the sample at the previous kept timestep with the DDIM update.

        Implements eqs. 12 and 16 of Song et al. 2021 (https://arxiv.org/abs/2010.02502) through the
        pure function :func:`ddim_step`: from x_t at timestep t to x_s at s = ``prev_timestep(t)``,

            x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps + sigma z,
            sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s).

        Args:
            eps (`torch.Tensor` of shape (B, C, H, W)): the noise estimate eps_theta(x_t, t) of the
                model (diffusers' ``model_output``).
            t (`int`): the current timestep, one of ``self.timesteps``.
            x_t (`torch.Tensor` of shape (B, C, H, W)): the current sample (diffusers' ``sample``).
            generator (`torch.Generator`, optional): a CPU generator for the noise z, drawn on the CPU
                and moved to x_t's device only when the step adds noise (eta > 0, not the last step).
            eta (`float`, optional): overrides the scheduler's ``eta`` for this step.
            noise (`torch.Tensor` of shape (B, C, H, W), optional): the z to use instead of drawing one
                (only when the step adds noise); see :class:`StepNoise`.

        Returns:
            `StepOutput`: ``prev_sample``, x_s (x_0 after the last step), and ``pred_original_sample``,
            x0_hat (clamped to [-1, 1] when ``clip_sample``); both (B, C, H, W).
        """
        t = int(t)
        eta = self.eta if eta is None else check_eta(eta)
        # 1. get previous step value (=t-1 on the full chain; the next kept timestep s otherwise; -1 after the last)
        prev_t = self.prev_timestep(t)
        # 2. compute alphas: alpha_bar_t and alpha_bar_prev (alpha_bar_{-1} = 1)
        alpha_bar_t, alpha_bar_prev = self._alpha_bars(t, prev_t)
        # 3. compute predicted original sample from predicted noise, "predicted x_0" of eq. 12 (clipped if clip_sample)
        x0_hat = pred_original_sample(x_t, eps, alpha_bar_t, self.clip_sample)
        # 4. draw z ~ N(0, I) on the CPU when the step adds noise (eta > 0 and not the last step)
        if eta == 0 or prev_t < 0:
            noise = None
        elif noise is None:
            noise = randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        # 5. x_prev of eq. 12: "predicted x_0" + "direction pointing to x_t" + sigma_t(eta) z, sigma of eq. 16
        prev_sample = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise, self.clip_sample)
        return StepOutput(prev_sample=prev_sample, pred_original_sample=x0_hat)


class StepNoise:
    """The fresh Gaussian z of every sampling step, keyed by the step's timestep: ``noise(t)`` -> (B, C, H, W).

    Taught in 04. The z of timestep ``t`` comes from its own CPU generator seeded from ``(seed, t)``,
    so it is the same whatever order a loop asks for it in, and whether or not it asks at all on a
    step that adds no noise: a student's sampling loop and :func:`sample` (``noise_fn=``) given the
    same ``StepNoise`` take the same steps.
    """

    def __init__(self, shape: tuple[int, ...], seed: int = 0, device: torch.device | str = "cpu"):
        self.shape, self.seed, self.device = tuple(shape), int(seed), device

    def __call__(self, t: int | torch.Tensor) -> torch.Tensor:
        g = cpu_generator(self.seed * 1_000_003 + int(t))
        return randn(self.shape, generator=g, device=self.device)                 # (B, C, H, W)

    def __repr__(self) -> str:
        return f"StepNoise(shape={self.shape}, seed={self.seed})"


def guided_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, w: float | None,
               null_label: int | None = None) -> torch.Tensor:
    """Noise estimate with classifier-free guidance: eps_u + w (eps_c - eps_u).

    w = 0: unconditional; w = 1: plain conditional; w > 1: pushed further toward the class.
    ``y=None`` or ``w=None`` calls the model once, without guidance.
    """
    t = torch.as_tensor(t, device=x.device).expand(len(x)) if not torch.is_tensor(t) or t.dim() == 0 else t   # (B,)
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
           trajectory_every: int = 1, progress: bool = True, eps_fn: Callable | None = None,
           noise_fn: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor | tuple[torch.Tensor, list]:
    """Run ``scheduler`` from x_T ~ N(0, I) (or the given ``x_T``) down to x_0.

    ``eps_fn(x, t_batch)`` overrides the noise estimate (used for editing tricks in 06);
    otherwise it is ``guided_eps(model, x, t, y, guidance)``. ``noise_fn(t)`` gives the step noise z of
    timestep t (a :class:`StepNoise`) instead of ``generator``. Returns x_0, or
    ``(x_0, [(t, x_s, pred_original_sample), ...])`` with ``return_trajectory``: after the step at
    each ``t`` (every ``trajectory_every`` steps and the last), the sample reached and x0_hat.
    """
    if isinstance(trajectory_every, bool) or not isinstance(trajectory_every, int) or trajectory_every < 1:
        raise ValueError(f"trajectory_every must be a positive int (keep every k-th step), got {trajectory_every!r}")
    x = initial_noise(shape, x_T, generator, device)
    if y is not None:
        y = check_labels(y, shape[0], device=device)
    traj = []
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    steps = scheduler.timesteps.tolist()
    for i, t in enumerate(progress_bar(steps, desc=f"{type(scheduler).__name__[:-9]} {len(steps)} steps",
                                       unit="step", enabled=progress)):
        tb = torch.full((shape[0],), t, device=device, dtype=torch.long)
        eps = eps_fn(x, tb) if eps_fn is not None else guided_eps(model, x, tb, y, guidance)
        out = scheduler.step(eps, t, x, generator=generator, noise=noise_fn(t) if noise_fn is not None else None)
        x = out.prev_sample
        if return_trajectory and (i % trajectory_every == 0 or i == len(steps) - 1):
            traj.append((t, x.detach().cpu(), out.pred_original_sample.detach().cpu()))
    if was_training and isinstance(model, nn.Module):
        model.train()
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def sample_batches(model: nn.Module | Callable, scheduler: _Scheduler, n: int,
                   item_shape: tuple[int, ...] = (1, 28, 28), *, labels: torch.Tensor | None = None,
                   guidance: float | None = None, seed: int = 0, batch_size: int = 500,
                   device: torch.device | str = "cpu", decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   progress: bool = True) -> torch.Tensor:
    """``n`` samples of shape ``item_shape`` in batches of ``batch_size``, returned on the CPU: (n, *item_shape).

    All the starting noises x_T are drawn first from ``cpu_generator(seed)``, so a deterministic
    scheduler (DDIM with eta = 0) gives the same samples whatever the batch size or device; the
    step noise of a stochastic scheduler comes from the same generator. ``labels`` (n,) and
    ``guidance`` make class-conditional samples (05, 07); ``decode`` maps each batch to images
    (the latent model's decoder, 07). One progress bar counts samples.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if labels is not None:
        labels = check_labels(labels, n)
    g = cpu_generator(seed)
    x_T = randn((n, *item_shape), generator=g)                                      # (n, *item_shape), CPU
    out = []
    with progress_bar(total=n, desc=f"sampling {n}", unit="sample", enabled=progress) as bar:
        for i in range(0, n, batch_size):
            x_T_batch = x_T[i:i + batch_size]
            y = labels[i:i + batch_size].to(device) if labels is not None else None
            x = sample(model, scheduler, tuple(x_T_batch.shape), y=y, guidance=guidance, generator=g,
                       device=device, x_T=x_T_batch, progress=False)
            out.append((decode(x) if decode is not None else x).cpu())
            bar.update(len(x_T_batch))
    return torch.cat(out)
