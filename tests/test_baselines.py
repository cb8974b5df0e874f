"""Classical denoising baseline: Gaussian blur and PSNR (course_utils.baselines, notebooks 02 and 03)."""
from __future__ import annotations

import math

import pytest
import torch

from course_utils.baselines import best_blur_sigma, blur_baseline, gaussian_blur, gaussian_kernel, psnr, rescaled_noisy
from course_utils.device import cpu_generator
from course_utils.schedules import NoiseSchedule, q_sample


def _images(seed: int = 0, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = -torch.ones(n, 1, 16, 16)
    for i in range(n):                                          # a bright square at a random place
        r, c = torch.randint(2, 10, (2,), generator=g).tolist()
        x[i, 0, r:r + 5, c:c + 4] = 1.0
    return x


def test_kernel_normalised_and_symmetric():
    k = gaussian_kernel(1.5)
    assert k.shape == (2 * math.ceil(4.5) + 1,)
    assert k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k, k.flip(0))
    assert gaussian_kernel(0.0).tolist() == [1.0]


def test_blur_keeps_constants_mean_and_shape():
    x = torch.full((2, 3, 10, 12), 0.3)
    assert torch.allclose(gaussian_blur(x, 2.0), x, atol=1e-6)             # reflect padding: no dark border
    y = _images()
    b = gaussian_blur(y, 1.0)
    assert b.shape == y.shape and b.dtype == y.dtype
    assert torch.equal(gaussian_blur(y, 0), y)
    assert b.std() < y.std()                                               # it smooths
    big = gaussian_blur(torch.randn(1, 1, 8, 8), 10.0)                     # radius capped below the image size
    assert big.shape == (1, 1, 8, 8)


def test_psnr_values():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.2                                                            # MSE 0.04 -> 10 log10(4 / 0.04) = 20 dB
    p = psnr(y, x)
    assert p.shape == (2,)
    assert p[0].item() == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(p[1].item())
    assert psnr(y, x, data_range=1.0)[0].item() == pytest.approx(20 - 10 * math.log10(4), abs=1e-4)


def test_blur_beats_noise_and_best_sigma():
    clean = _images(1, 8)
    g = torch.Generator().manual_seed(2)
    noisy = clean + 0.8 * torch.randn(clean.shape, generator=g)
    best, scores = best_blur_sigma(noisy, clean, sigmas=(0.0, 0.5, 1.0, 2.0))
    assert set(scores) == {0.0, 0.5, 1.0, 2.0}
    assert best > 0 and scores[best] == max(scores.values())
    assert blur_baseline(noisy, clean, best).mean() > psnr(noisy.clamp(-1, 1), clean).mean()


# --- bad input ---------------------------------------------------------------------------------------------

def test_bad_input():
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        gaussian_blur(torch.zeros(8, 8), 1.0)
    with pytest.raises(ValueError, match="float tensor"):
        gaussian_blur(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 1.0)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        gaussian_kernel(float("nan"))
    with pytest.raises(ValueError, match="radius"):
        gaussian_kernel(1.0, radius=-2)
    with pytest.raises(ValueError, match="estimate has shape"):
        psnr(x, torch.zeros(2, 1, 8, 7))
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x, data_range=0)
    with pytest.raises(ValueError, match="torch.Tensor"):
        psnr([1.0], x)
    with pytest.raises(ValueError, match="noisy has shape"):
        best_blur_sigma(x, torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="at least one blur width"):
        best_blur_sigma(x, x, sigmas=())
    with pytest.raises(ValueError, match="noisy has shape"):
        blur_baseline(x, torch.zeros(2, 1, 4, 4), 1.0)


def test_rescaled_noisy_is_x0_plus_sigma_eps_with_the_seeded_noise():
    x0 = _images(3)
    ab = NoiseSchedule("linear", 1000).alpha_bar
    y = rescaled_noisy(x0, 500, ab, seed=9)
    eps = torch.randn(x0.shape, generator=cpu_generator(9))
    sigma = ((1 - ab[500]) / ab[500]).sqrt()
    assert torch.allclose(y, x0 + sigma * eps, atol=1e-4)
    # bit for bit what notebook 02 computes: q_sample with the same noise, divided by sqrt(alpha_bar_t)
    want = q_sample(x0, torch.full((len(x0),), 500), eps, ab) / ab[500].sqrt()
    assert torch.equal(y, want) and torch.equal(rescaled_noisy(x0, 500, ab, seed=9), y)
    with pytest.raises(ValueError, match="t must be"):
        rescaled_noisy(x0, 1000, ab, seed=0)


def test_blur_baseline_scores_with_a_students_psnr():
    clean = _images(4, 6)
    noisy = clean + 0.7 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    calls = []

    def my_psnr(estimate, target):
        calls.append(estimate.shape)
        return psnr(estimate, target)

    best, scores = best_blur_sigma(noisy, clean, sigmas=(0.0, 1.0, 2.0), score=my_psnr)
    assert len(calls) == 3 and (best, scores) == best_blur_sigma(noisy, clean, sigmas=(0.0, 1.0, 2.0))
    assert torch.equal(blur_baseline(noisy, clean, best, score=my_psnr), blur_baseline(noisy, clean, best))
    neg_mse = lambda e, t: -((e - t) ** 2).flatten(1).mean(1)              # any "higher is better" score works
    assert best_blur_sigma(noisy, clean, sigmas=(0.0, 1.0, 2.0), score=neg_mse)[0] == best
    with pytest.raises(ValueError, match="score must be a function"):
        blur_baseline(noisy, clean, 1.0, score="psnr")
