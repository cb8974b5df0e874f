"""Forward process and noise schedules (course_utils.schedules, notebook 02)."""
from __future__ import annotations

import math

import pytest
import torch

from course_utils import schedules
from course_utils.schedules import (SCHEDULES, NoiseSchedule, make_betas, marginal_moments, q_sample, q_sample_iterative,
                                    q_step, sigma_from_alpha_bar)


@pytest.mark.parametrize("name", SCHEDULES)
def test_betas_shape_range_and_alpha_bar_decreasing(name):
    betas = make_betas(name, 1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert (betas > 0).all() and (betas < 1).all()
    s = NoiseSchedule(name, 1000)
    assert s.alpha_bar.shape == (1000,)
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert s.alpha_bar[-1] < 1e-3                              # all four end (almost) at pure noise with T = 1000
    assert torch.allclose(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
    snr = s.log_snr()
    assert (snr[1:] < snr[:-1]).all()


def test_linear_endpoints_and_cosine_formula():
    b = make_betas("linear", 1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2   # noqa: E731
    ab = NoiseSchedule("cosine", T).alpha_bar
    for t in (0, 100, 500, 900):
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-4, abs=1e-7)


def test_short_linear_chain_keeps_signal():
    ab_T = NoiseSchedule("linear", 300).alpha_bar[-1].item()
    assert 0.04 < ab_T < 0.06                                    # ~22% of the signal amplitude survives


def test_q_sample_matches_formula():
    s = NoiseSchedule("linear", 100)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([0, 50, 99])
    want = s.alpha_bar[t].sqrt().view(-1, 1, 1, 1) * x0 + (1 - s.alpha_bar[t]).sqrt().view(-1, 1, 1, 1) * eps
    assert torch.allclose(q_sample(x0, t, eps, s.alpha_bar), want)
    assert torch.allclose(s.q_sample(x0, t, eps), want)


def test_iterated_chain_has_closed_form_moments():
    s = NoiseSchedule("linear", 200)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    g = torch.Generator().manual_seed(1)
    for t in (0, 60, 199):
        xt = q_sample_iterative(x0, t, s.betas, generator=g)
        mean, var = marginal_moments(x0[:1], torch.tensor([t]), s.alpha_bar)
        assert xt.mean().item() == pytest.approx(mean.item(), abs=0.02)
        assert xt.var().item() == pytest.approx(var.item(), abs=0.02)


def test_q_step_is_one_step_of_the_chain():
    s = NoiseSchedule("linear", 10)
    x = torch.ones(2, 1, 2, 2)
    eps = torch.zeros_like(x)
    assert torch.allclose(q_step(x, 0, eps, s.betas), x * s.alphas[0].sqrt())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    once = q_sample_iterative(x, 0, s.betas, generator=g1)
    assert torch.allclose(once, q_step(x, 0, torch.randn(x.shape, generator=g2), s.betas))


def test_q_sample_iterative_with_given_noises():
    s = NoiseSchedule("cosine", 20)
    x = torch.rand(3, 1, 4, 4) * 2 - 1
    noises = torch.randn(6, 3, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    expected = x
    for step in range(6):
        expected = q_step(expected, step, noises[step], s.betas)
    assert torch.allclose(q_sample_iterative(x, 5, s.betas, noises=noises), expected)
    drawn = q_sample_iterative(x, 5, s.betas, generator=torch.Generator().manual_seed(4))   # the same draws, in step order
    assert torch.allclose(drawn, expected)
    with pytest.raises(ValueError, match=r"one eps per step"):
        q_sample_iterative(x, 4, s.betas, noises=noises)


def test_sigma_from_alpha_bar():
    assert sigma_from_alpha_bar(1.0).item() == 0.0
    assert sigma_from_alpha_bar(0.2).item() == pytest.approx(2.0)
    assert torch.allclose(sigma_from_alpha_bar(torch.tensor([0.5, 0.8])), torch.tensor([1.0, 0.5]))


# --- bad input ---------------------------------------------------------------------------------------------

def test_unknown_schedule_name():
    with pytest.raises(ValueError, match="unknown schedule 'linnear'; choose one of linear"):
        make_betas("linnear")
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule("exp")


@pytest.mark.parametrize("T", [0, -5, 2.5])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T must be a positive integer"):
        make_betas("linear", T)


def test_q_sample_bad_input():
    s = NoiseSchedule("linear", 10)
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"x0 must have shape \(B, C, H, W\)"):
        q_sample(torch.zeros(2, 4, 4), torch.tensor([0, 1]), torch.zeros(2, 4, 4), s.alpha_bar)
    with pytest.raises(ValueError, match="eps has shape"):
        q_sample(x0, torch.tensor([0, 1]), torch.zeros(2, 1, 4, 5), s.alpha_bar)
    with pytest.raises(ValueError, match="must lie in"):
        q_sample(x0, torch.tensor([0, 10]), torch.zeros_like(x0), s.alpha_bar)
    with pytest.raises(ValueError, match="3 timesteps for a batch of 2"):
        q_sample(x0, torch.tensor([0, 1, 2]), torch.zeros_like(x0), s.alpha_bar)


def test_new_functions_bad_input():
    s = NoiseSchedule("linear", 10)
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"t must be an int in \[0, 9\]"):
        q_step(x, 10, torch.zeros_like(x), s.betas)
    with pytest.raises(ValueError, match=r"t must be an int"):
        q_sample_iterative(x, torch.tensor(3), s.betas)
    with pytest.raises(ValueError, match="float tensor"):
        q_sample_iterative(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 3, s.betas)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        q_step(torch.zeros(4, 4), 0, torch.zeros(4, 4), s.betas)
    with pytest.raises(ValueError, match="eps has shape"):
        q_step(x, 0, torch.zeros(2, 1, 4, 3), s.betas)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        q_step(x, 0, torch.zeros_like(x), torch.tensor([1.5]))
    with pytest.raises(ValueError, match="1-D tensor"):
        q_sample_iterative(x, 0, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="must lie in"):
        marginal_moments(x, torch.tensor([0, 11]), s.alpha_bar)
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        sigma_from_alpha_bar(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="floating point"):
        sigma_from_alpha_bar(torch.tensor([1]))


def test_exports():
    for name in ("q_step", "q_sample_iterative", "marginal_moments", "sigma_from_alpha_bar"):
        assert name in schedules.__all__
    assert "check_timesteps" not in schedules.__all__             # it lives in course_utils.validation


# ----------------------------------------------------------------------------- the exact mixture score (03, 06)

def _log_marginal(x, ab, w, mu, std):
    """log q_t(x) of the diffused 1-D mixture, written out independently of mixture_score."""
    w, mu = torch.tensor(w, dtype=torch.float64), torch.tensor(mu, dtype=torch.float64)
    v = ab * std ** 2 + 1 - ab
    comp = w.log() - 0.5 * math.log(2 * math.pi * v) - (x[..., None] - math.sqrt(ab) * mu) ** 2 / (2 * v)
    return torch.logsumexp(comp, -1)


@pytest.mark.parametrize("ab", [1.0, 0.9, 0.3, 1e-3])
def test_mixture_score_is_the_gradient_of_the_log_marginal(ab):
    mix = schedules.TOY_MIXTURE
    x = torch.linspace(-4, 4, 201, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(_log_marginal(x, ab, mix["weights"], mix["means"], mix["std"]).sum(), x)
    got = schedules.mixture_score(x.detach(), ab)
    assert got.shape == x.shape and got.dtype == torch.float64
    assert torch.allclose(got, grad, rtol=1e-9, atol=1e-9)


def test_mixture_score_single_gaussian_and_broadcasting():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64).view(9, 1, 1, 1)
    ab = torch.linspace(0.1, 1.0, 9, dtype=torch.float64).view(9, 1, 1, 1)           # one level per point
    got = schedules.mixture_score(x, ab, weights=[1.0], means=[0.5], std=0.2)
    want = -(x - ab.sqrt() * 0.5) / (ab * 0.04 + 1 - ab)
    assert got.shape == x.shape and torch.allclose(got, want, atol=1e-12)
    far = schedules.mixture_score(torch.tensor([-1e3, 1e3], dtype=torch.float64), 1.0)   # stable in the tails
    assert torch.isfinite(far).all() and far[0] > 0 > far[1]


def test_mixture_score_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="sum to 1"):
        schedules.mixture_score(x, 0.5, weights=[0.5, 0.6], means=[0.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        schedules.mixture_score(x, 0.5, weights=[1.0], means=[0.0, 1.0])
    with pytest.raises(ValueError, match="std"):
        schedules.mixture_score(x, 0.5, std=0.0)
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        schedules.mixture_score(x, 0.0)
    with pytest.raises(ValueError, match="float tensor"):
        schedules.mixture_score(torch.zeros(3, dtype=torch.long), 0.5)


@pytest.mark.parametrize("name", ["linear", "quadratic", "sigmoid"])
def test_make_betas_refuses_betas_of_one_or_more(name):
    with pytest.raises(ValueError, match=r"beta_start and beta_end must lie in \[0, 1\)"):
        make_betas(name, 10, beta_end=1.5)
    with pytest.raises(ValueError, match="must lie in"):
        NoiseSchedule(name, 10, beta_end=1.0)
