"""The classical denoising baseline a learned denoiser has to beat (taught in 02, reused in 03).

* :func:`gaussian_blur`: a separable Gaussian filter, the oldest denoiser there is: it averages
  each pixel with its neighbours, which cancels independent noise but also blurs the edges.
* :func:`psnr`: peak signal-to-noise ratio in dB, ``10 log10(range^2 / MSE)``, per image.
* :func:`best_blur_sigma` / :func:`blur_baseline`: pick the blur width on a few images, then
  score it, so the baseline is as strong as it can be at each noise level (with :func:`psnr`, or
  with ``score=`` another per-image score: notebook 02 passes the student's PSNR).
* :func:`rescaled_noisy`: the noisy images both notebooks score on, x_t / sqrt(alpha_bar_t)
  = x_0 + sigma_t eps with seeded noise, so 03 reproduces 02's exact draw.

Images are float tensors (B, C, H, W) in [-1, 1], so the data range is 2.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .device import cpu_generator, randn
from .schedules import q_sample
from .validation import check_image_batch, check_same_shape

__all__ = ["DEFAULT_BLUR_SIGMAS", "Score", "gaussian_kernel", "gaussian_blur", "psnr", "best_blur_sigma",
           "blur_baseline", "rescaled_noisy"]

DEFAULT_BLUR_SIGMAS: tuple[float, ...] = (0.0, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"blur sigma must be a finite number >= 0 (in pixels), got {sigma!r}")
    return float(sigma)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian weights exp(-k^2 / (2 sigma^2)), k = -radius..radius (float32, (2r+1,)).

    ``radius`` defaults to ceil(3 sigma); sigma = 0 gives the identity kernel [1].
    """
    sigma = _check_sigma(sigma)
    if radius is None:
        radius = math.ceil(3 * sigma)
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an int >= 0, got {radius!r}")
    if sigma == 0:
        k = torch.zeros(2 * radius + 1)
        k[radius] = 1.0
        return k
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every channel of ``images`` (B, C, H, W) with a Gaussian of std ``sigma`` pixels.

    Separable: one 1-D convolution along the rows, one along the columns. Borders are reflected
    (not zero-padded), so the blur does not darken or brighten the edge of the image.
    """
    check_image_batch(images, "images")
    sigma = _check_sigma(sigma)
    if sigma == 0:
        return images.clone()
    b, c, h, w = images.shape
    radius = min(math.ceil(3 * sigma), h - 1, w - 1)         # reflect padding needs radius < size
    k = gaussian_kernel(sigma, radius).to(images.device, images.dtype)
    x = images.reshape(b * c, 1, h, w)                        # blur each channel on its own
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))                      # along the rows    (B*C, 1, H + 2r, W)
    x = F.conv2d(x, k.view(1, 1, -1, 1))                      # along the columns (B*C, 1, H, W)
    return x.reshape(b, c, h, w)


def psnr(estimate: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, (B,):  10 log10(data_range^2 / MSE).

    MSE is the mean over channels and pixels of each image. ``data_range`` is max - min of the
    images (2 for [-1, 1]). Identical images give ``inf``. Higher is better; every halving of
    the MSE adds about 3 dB.
    """
    check_image_batch(estimate, "estimate")
    check_image_batch(target, "target")
    check_same_shape(estimate, target, "estimate", "target")
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number (2 for images in [-1, 1]), got {data_range!r}")
    mse = ((estimate.float() - target.float()) ** 2).flatten(1).mean(1)       # (B,)
    return 10 * torch.log10(data_range ** 2 / mse)


def _check_pair(noisy: torch.Tensor, clean: torch.Tensor) -> None:
    check_image_batch(noisy, "noisy")
    check_image_batch(clean, "clean")
    check_same_shape(noisy, clean, "noisy", "clean")


Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score(estimate, target) -> (B,)``, higher is better: :func:`psnr` or a student's version of it (02)."""


def _check_score(score: Score | None) -> Score:
    if score is None:
        return psnr            # looked up at call time, not bound as a default
    if not callable(score):
        raise ValueError(f"score must be a function score(estimate, target) -> (B,), like psnr, got {score!r}")
    return score


def best_blur_sigma(noisy: torch.Tensor, clean: torch.Tensor, sigmas: Sequence[float] = DEFAULT_BLUR_SIGMAS,
                    score: Score | None = None) -> tuple[float, dict[float, float]]:
    """The blur width with the highest mean PSNR on (noisy, clean), and the mean PSNR of every width.

    Blurred images are clamped to [-1, 1] before scoring (a free improvement: the clean images
    live there). Tune on a few images, score on others with :func:`blur_baseline`. ``score``: the
    per-image score to maximise instead of :func:`psnr` (called as ``score(estimate, target)``).
    """
    _check_pair(noisy, clean)
    score = _check_score(score)
    if len(sigmas) == 0:
        raise ValueError("sigmas must hold at least one blur width")
    scores = {float(s): float(score(gaussian_blur(noisy, s).clamp(-1, 1), clean).mean()) for s in sigmas}
    best = max(scores, key=lambda s: scores[s])
    return best, scores


def blur_baseline(noisy: torch.Tensor, clean: torch.Tensor, sigma: float, score: Score | None = None) -> torch.Tensor:
    """PSNR per image (B,) of ``gaussian_blur(noisy, sigma)`` clamped to [-1, 1], against ``clean``.

    ``score``: another per-image score instead of :func:`psnr` (called as ``score(estimate, target)``).
    """
    _check_pair(noisy, clean)
    score = _check_score(score)
    return score(gaussian_blur(noisy, sigma).clamp(-1, 1), clean)


def rescaled_noisy(x0: torch.Tensor, t: int, alpha_bar: torch.Tensor, seed: int) -> torch.Tensor:
    """y_t = x_t / sqrt(alpha_bar_t) = x_0 + sigma_t eps, with eps from ``cpu_generator(seed)`` (02 section 5, 03 section 7).

    x_t is ``schedules.q_sample`` at timestep ``t`` (one int for the whole batch) with the noise
    eps ~ N(0, I) drawn on the CPU (the same on every device); dividing by sqrt(alpha_bar_t) undoes
    the shrinking of the signal, leaving noise of level sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t).
    Notebook 02 scores the blur baseline on these images and notebook 03 scores its UNets on the
    very same draw (same images, ``t`` and ``seed``). x0: (B, C, H, W); alpha_bar: (T,).
    """
    check_image_batch(x0, "x0")
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(alpha_bar):
        raise ValueError(f"t must be an int in [0, {len(alpha_bar) - 1}], got {t!r}")
    eps = randn(x0.shape, generator=cpu_generator(seed), device=x0.device)          # (B, C, H, W)
    x_t = q_sample(x0, torch.full((len(x0),), t, dtype=torch.long), eps, alpha_bar)
    return x_t / alpha_bar[t].sqrt()
