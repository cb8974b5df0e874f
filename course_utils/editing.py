"""Editing with a DDIM sampler: inversion, interpolation, SDEdit, inpainting, visual anagrams (taught in 06_ddim).

Everything here reuses the scheduler vocabulary of :mod:`course_utils.samplers`: a
:class:`~course_utils.samplers.DDIMScheduler` (or DDPM) with ``set_timesteps`` and ``step``.

* :func:`ddim_invert`: the eta = 0 update :func:`course_utils.samplers.ddim_step` run *up* the
  timesteps (to the noisier level), image -> x_T.
* :func:`slerp`, :func:`slerp_path`: spherical interpolation between two noises x_T.
* :func:`sdedit`: noise an image to the timestep ``scheduler.timesteps[i_start]`` (counted from the
  noisy end, as in CS180) and denoise it from there.
* :func:`inpaint`: keep the known pixels from the forward process q(x_s | x_0) at every step.
* :func:`anagram_eps`, :func:`visual_anagram`: one sample that reads as class a, and as class b
  once transformed (e.g. rotated by 180 degrees), by averaging the two guided noise estimates.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .baselines import gaussian_blur
from .device import randn
from .progress import progress_bar
from .samplers import DDIMScheduler, _Scheduler, ddim_step, guided_eps, initial_noise
from .schedules import q_sample
from .validation import check_image_batch, check_labels, check_same_shape

__all__ = ["ddim_invert", "slerp", "slerp_path", "denoise_from", "sdedit", "check_mask", "inpaint", "VIEWS",
           "apply_view", "invert_view", "anagram_eps", "visual_anagram", "hybrid_eps", "hybrid_image"]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _eps_fn(model: nn.Module | None, x: torch.Tensor, y: torch.Tensor | int | None, guidance: float | None,
            eps_fn: EpsFn | None) -> EpsFn:
    """The noise estimate for images like ``x``: ``eps_fn`` if given, else the (guided) model with labels ``y``."""
    y = None if y is None else check_labels(y, x.shape[0], device=x.device)
    if eps_fn is not None:
        return eps_fn
    if model is None:
        raise ValueError("pass a model or an eps_fn(x, t) to compute the noise estimate")
    return lambda x, t: guided_eps(model, x, t, y, guidance)


@torch.no_grad()
def ddim_invert(model: nn.Module | None, x0: torch.Tensor, scheduler: DDIMScheduler, *,
                y: torch.Tensor | int | None = None, guidance: float | None = None, eps_fn: EpsFn | None = None,
                return_trajectory: bool = False, progress: bool = False,
                step_fn: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | tuple[torch.Tensor, list]:
    """Deterministic DDIM inversion: run the eta = 0 update *up* the scheduler's timesteps, x_0 -> x_T.

    Going from level s to the next kept timestep t > s, the noise is estimated at the new
    timestep on the current image, eps_theta(x_s, t) (it cannot be evaluated at x_t, which we do
    not have yet), then ``samplers.ddim_step(x_s, eps, alpha_bar_s, alpha_bar_t, eta=0)`` gives
    x_t = sqrt(ab_t) x0_hat + sqrt(1 - ab_t) eps, starting from alpha_bar = 1 at x_0. Decoding the
    result with a ``DDIMScheduler(eta=0, clip_sample=False)`` on the same timesteps gives ``x0``
    back, up to the error of that approximation. Returns x_T (and ``[(t, x_t), ...]`` with
    ``return_trajectory``). ``step_fn(x_s, eps, alpha_bar_s, alpha_bar_t)`` (0-d tensors for the two
    levels) replaces that update, e.g. by notebook 06's exercise ``ddim_invert_step``.
    """
    if not isinstance(scheduler, DDIMScheduler):
        raise ValueError(f"inversion needs a DDIMScheduler (the deterministic eta = 0 update), got "
                         f"{type(scheduler).__name__}")
    check_image_batch(x0, "x0")
    fn = _eps_fn(model, x0, y, guidance, eps_fn)
    alpha_bar = scheduler.schedule.alpha_bar.tolist()                            # (T,) floats: no GPU sync per step
    x, alpha_bar_s = x0, 1.0                                                      # x_0 is at level alpha_bar = 1
    traj = []
    for t in progress_bar(scheduler.timesteps.flip(0).tolist(), desc="DDIM inversion", unit="step",
                           enabled=progress):
        tb = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if step_fn is None:
            x = ddim_step(x, fn(x, tb), alpha_bar_s, alpha_bar[t], eta=0.0)      # up: alpha_bar[t] < alpha_bar_s
        else:
            x = step_fn(x, fn(x, tb), torch.tensor(alpha_bar_s), torch.tensor(alpha_bar[t]))
        alpha_bar_s = alpha_bar[t]
        if return_trajectory:
            traj.append((t, x.detach().cpu()))
    return (x, traj) if return_trajectory else x


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between z0 and z1 (B, ...), per item of the batch.

    slerp = sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1, where theta is the
    angle between the flattened z0 and z1. Falls back to the straight line when theta ~ 0.
    Gaussian noises of high dimension all have norm ~ sqrt(D); slerp keeps that norm, the straight
    line does not (its midpoint has norm ~ sqrt(D / 2)), which is why it is used between two x_T.
    """
    if not isinstance(z0, torch.Tensor) or not isinstance(z1, torch.Tensor) or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must be tensors of the same shape, got "
                         f"{tuple(getattr(z0, 'shape', ()))} and {tuple(getattr(z1, 'shape', ()))}")
    if z0.dim() < 2:
        raise ValueError(f"z0 and z1 need a batch dimension: shape (B, ...), got {tuple(z0.shape)}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    a = float(alpha)
    f0, f1 = z0.flatten(1).double(), z1.flatten(1).double()                      # (B, D)
    cos = (f0 * f1).sum(1) / (f0.norm(dim=1) * f1.norm(dim=1)).clamp(min=1e-12)
    theta = cos.clamp(-1, 1).acos()                                               # (B,)
    sin = theta.sin()
    small = sin.abs() < 1e-6
    w0 = torch.where(small, torch.full_like(theta, 1 - a), ((1 - a) * theta).sin() / sin.where(~small, 1.0))
    w1 = torch.where(small, torch.full_like(theta, a), (a * theta).sin() / sin.where(~small, 1.0))
    shape = (-1,) + (1,) * (z0.dim() - 1)
    return (w0.view(shape) * z0.double() + w1.view(shape) * z1.double()).to(z0.dtype)


def slerp_path(z0: torch.Tensor, z1: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` points of the great circle from ``z0`` to ``z1`` (each (1, C, H, W) or (C, H, W)) -> (n, C, H, W)."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    z0 = z0[0] if z0.dim() == 4 and z0.shape[0] == 1 else z0
    z1 = z1[0] if z1.dim() == 4 and z1.shape[0] == 1 else z1
    if z0.dim() != 3 or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must each be one noise of shape (C, H, W) or (1, C, H, W), got "
                         f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    return torch.cat([slerp(z0[None], z1[None], a) for a in torch.linspace(0, 1, n).tolist()])


@torch.no_grad()
def denoise_from(scheduler: _Scheduler, x: torch.Tensor, start: int, eps_fn: EpsFn, *,
                 generator: torch.Generator | None = None,
                 after_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 noise_fn: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Run the scheduler's steps from index ``start`` of ``scheduler.timesteps`` to the end.

    ``x`` must be at noise level ``scheduler.timesteps[start]``. ``after_step(x_s, s)`` may edit
    the result of each step (``s`` is the timestep reached, -1 for x_0); inpainting uses it.
    ``noise_fn(t)`` gives the step noise z of timestep t (a ``samplers.StepNoise``) instead of ``generator``.
    """
    steps = scheduler.timesteps.tolist()
    if not 0 <= start < len(steps):
        raise ValueError(f"start must index the scheduler's {len(steps)} timesteps, got {start}")
    for t in steps[start:]:
        tb = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        noise = noise_fn(t) if noise_fn is not None else None
        x = scheduler.step(eps_fn(x, tb), t, x, generator=generator, noise=noise).prev_sample
        if after_step is not None:
            x = after_step(x, scheduler.prev_timestep(t))
    return x


@torch.no_grad()
def sdedit(model: nn.Module | None, x0: torch.Tensor, scheduler: _Scheduler, i_start: int, *,
           y: torch.Tensor | int | None = None, guidance: float | None = None,
           generator: torch.Generator | None = None, eps_fn: EpsFn | None = None,
           eps: torch.Tensor | None = None, noise_fn: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022): noise ``x0`` to ``scheduler.timesteps[i_start]``, then denoise from there.

    ``i_start`` counts from the *noisy* end, as in Berkeley's CS180 diffusion project: the start
    is t = ``scheduler.timesteps[i_start]``, x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, followed by
    the remaining N - i_start steps of the schedule (N = ``scheduler.num_inference_steps``).
    i_start = 0 starts from (almost) pure noise, a fresh sample that keeps only a trace of the
    input; a larger i_start adds less noise and keeps more of the input, flaws included; i_start
    = N - 1 noises to the last timestep only (t = 0 for a schedule that ends there), which leaves
    the input nearly unchanged. The randomness can be passed in (notebook 06's exercise check): ``eps``
    (the shape of ``x0``) noises the input, ``noise_fn(t)`` gives each step's z (a ``samplers.StepNoise``);
    otherwise both are drawn from ``generator``.
    """
    check_image_batch(x0, "x0")
    n = scheduler.num_inference_steps
    if isinstance(i_start, bool) or not isinstance(i_start, int) or not 0 <= i_start < n:
        raise ValueError(f"i_start must be an integer in [0, {n - 1}] (an index into the scheduler's {n} timesteps, "
                         f"counted from the noisy end; call set_timesteps with more steps for a larger one), "
                         f"got {i_start!r}")
    t = int(scheduler.timesteps[i_start])
    if eps is None:
        eps = randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    else:
        check_same_shape(eps, x0, "eps", "x0")
    x_t = q_sample(x0, torch.full((x0.shape[0],), t, device=x0.device, dtype=torch.long), eps,
                   scheduler.schedule.alpha_bar)
    fn = _eps_fn(model, x0, y, guidance, eps_fn)
    return denoise_from(scheduler, x_t, i_start, fn, generator=generator, noise_fn=noise_fn)


def check_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Validate an inpainting mask for images ``x`` (B, C, H, W); returns it as float (B or 1, 1 or C, H, W).

    Accepted shapes: (H, W), (1 or C, H, W) and (1 or B, 1 or C, H, W); values in [0, 1] (1 = known
    pixel, kept from ``x``; 0 = generated).
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor of shape (H, W) or (B, 1, H, W), got {type(mask).__name__}")
    b, c, h, w = x.shape
    m = mask
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[None]
    ok = (m.dim() == 4 and tuple(m.shape[-2:]) == (h, w) and m.shape[1] in (1, c) and m.shape[0] in (1, b))
    if not ok:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}; "
                         f"use (H, W) = ({h}, {w}) or (B, 1, H, W) = ({b}, 1, {h}, {w})")
    m = m.to(device=x.device, dtype=x.dtype)
    if (m < 0).any() or (m > 1).any():
        raise ValueError("mask values must lie in [0, 1] (1 = keep the known pixel, 0 = generate it)")
    return m


@torch.no_grad()
def inpaint(model: nn.Module | None, x_known: torch.Tensor, mask: torch.Tensor, scheduler: _Scheduler, *,
            y: torch.Tensor | int | None = None, guidance: float | None = None,
            generator: torch.Generator | None = None, eps_fn: EpsFn | None = None,
            x_T: torch.Tensor | None = None, noise_fn: Callable[[int], torch.Tensor] | None = None,
            known_noise_fn: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Fill the pixels where ``mask`` is 0, keeping those where it is 1, with the same sampler.

    At every step the known region is replaced by a fresh sample of the forward process at the
    level just reached, x_s^known = sqrt(ab_s) x_known + sqrt(1 - ab_s) eps (x_known itself at
    the end), so the generated region is denoised in the context of the known one. With a
    class-conditional model, ``y`` and ``guidance`` choose what fills the hole.

    The sampler starts from x_T (drawn from ``generator`` unless given) with the known region
    replaced at level ``scheduler.timesteps[0]``. The randomness can be passed in (notebook 06's
    exercise check): ``noise_fn(t)`` gives the z of the step at t, ``known_noise_fn(s)`` the eps of
    the known region at level s (each a ``samplers.StepNoise``); otherwise they are drawn from ``generator``.
    """
    check_image_batch(x_known, "x_known")
    m = check_mask(mask, x_known)
    ab = scheduler.schedule.alpha_bar.to(x_known.device)

    def known_at(s: int) -> torch.Tensor:
        if s < 0:
            return x_known
        if known_noise_fn is not None:
            eps = known_noise_fn(s)
        else:
            eps = randn(x_known.shape, generator=generator, device=x_known.device, dtype=x_known.dtype)
        return ab[s].sqrt() * x_known + (1 - ab[s]).sqrt() * eps

    def after_step(x: torch.Tensor, s: int) -> torch.Tensor:
        return m * known_at(s) + (1 - m) * x

    x = initial_noise(tuple(x_known.shape), x_T, generator, x_known.device)
    x = after_step(x, int(scheduler.timesteps[0]))
    fn = _eps_fn(model, x_known, y, guidance, eps_fn)
    return denoise_from(scheduler, x, 0, fn, generator=generator, after_step=after_step, noise_fn=noise_fn)


# ----------------------------------------------------------------------------- visual anagrams

VIEWS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "identity": (lambda x: x, lambda x: x),
    "rot180": (lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1)),          # upside down
    "flip_v": (lambda x: x.flip(-2), lambda x: x.flip(-2)),                  # mirrored top-bottom
    "flip_h": (lambda x: x.flip(-1), lambda x: x.flip(-1)),                  # mirrored left-right
    "rot90": (lambda x: x.rot90(1, (-2, -1)), lambda x: x.rot90(-1, (-2, -1))),
    "transpose": (lambda x: x.transpose(-2, -1), lambda x: x.transpose(-2, -1)),
}


def _view(name: str):
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; choose one of {', '.join(VIEWS)}")
    return VIEWS[name]


def apply_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """The image ``x`` (..., H, W) seen through ``view`` (e.g. "rot180": upside down)."""
    return _view(view)[0](x)


def invert_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """Undo :func:`apply_view`."""
    return _view(view)[1](x)


def anagram_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
                guidance: float | None, view: str = "rot180") -> torch.Tensor:
    """Noise estimate of a visual anagram (Geng et al. 2024): the mean of two guided estimates,

        eps = 1/2 [ eps(x, t | a) + view^-1( eps(view(x), t | b) ) ],

    so that x denoises toward class a as it is, and toward class b seen through ``view``.
    The view must be a permutation of pixels (a flip or rotation) so that it keeps the noise Gaussian.
    """
    fwd, inv = _view(view)
    eps_a = guided_eps(model, x, t, y_a, guidance)
    eps_b = inv(guided_eps(model, fwd(x), t, y_b, guidance))
    return 0.5 * (eps_a + eps_b)


@torch.no_grad()
def visual_anagram(model: nn.Module, scheduler: _Scheduler, shape: tuple[int, ...], y_a: int | torch.Tensor,
                   y_b: int | torch.Tensor, *, view: str = "rot180", guidance: float | None = 3.0,
                   generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                   x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Samples (B, C, H, W) that read as class ``y_a`` as they are and as ``y_b`` through ``view``."""
    _view(view)
    if len(shape) == 4 and view in ("rot90", "transpose") and shape[-1] != shape[-2]:
        raise ValueError(f"view {view!r} needs square images, got {shape[-2]}x{shape[-1]}")
    return _sample_two_labels(model, scheduler, shape, y_a, y_b, generator, device, x_T,
                              lambda x, t, ya, yb: anagram_eps(model, x, t, ya, yb, guidance, view))


def _sample_two_labels(model: nn.Module, scheduler: _Scheduler, shape: tuple[int, ...], y_a: int | torch.Tensor,
                       y_b: int | torch.Tensor, generator: torch.Generator | None, device: torch.device | str,
                       x_T: torch.Tensor | None, eps_of: Callable) -> torch.Tensor:
    """Denoise x_T (or fresh noise of ``shape``) with ``eps_of(x, t, y_a, y_b)``: anagrams and hybrid images."""
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    ya, yb = check_labels(y_a, shape[0], device=device), check_labels(y_b, shape[0], device=device)
    x = initial_noise(shape, x_T, generator, device)
    if isinstance(model, nn.Module):
        model.eval()
    return denoise_from(scheduler, x, 0, lambda x, t: eps_of(x, t, ya, yb), generator=generator)


def hybrid_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y_far: torch.Tensor, y_near: torch.Tensor,
               guidance: float | None, sigma: float = 2.0) -> torch.Tensor:
    """Noise estimate of a hybrid image (Oliva et al. 2006, with diffusion as in Berkeley's CS180 project):

        eps = lowpass( eps(x, t | far) ) + highpass( eps(x, t | near) ),   highpass = identity - lowpass,

    with a Gaussian low-pass of std ``sigma`` pixels (``baselines.gaussian_blur``). The coarse shape
    follows class ``y_far`` (what a blurred or distant view shows), the fine strokes class ``y_near``.
    """
    eps_far = guided_eps(model, x, t, y_far, guidance)                              # (B, C, H, W)
    eps_near = guided_eps(model, x, t, y_near, guidance)
    return gaussian_blur(eps_far, sigma) + eps_near - gaussian_blur(eps_near, sigma)


@torch.no_grad()
def hybrid_image(model: nn.Module, scheduler: _Scheduler, shape: tuple[int, ...], y_far: int | torch.Tensor,
                 y_near: int | torch.Tensor, *, sigma: float = 2.0, guidance: float | None = 3.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Samples (B, C, H, W) whose low frequencies read as ``y_far`` and high frequencies as ``y_near`` (06)."""
    if not sigma > 0:
        raise ValueError(f"sigma (the low-pass std in pixels) must be positive, got {sigma!r}")
    return _sample_two_labels(model, scheduler, shape, y_far, y_near, generator, device, x_T,
                              lambda x, t, y_f, y_n: hybrid_eps(model, x, t, y_f, y_n, guidance, sigma))
