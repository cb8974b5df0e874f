"""DDIM (course_utils.samplers: DDIMScheduler and the pure functions ddim_sigma, ddim_step), notebook 06."""
from __future__ import annotations

import pytest
import torch

from course_utils.device import cpu_generator, randn
from course_utils.samplers import DDIMScheduler, DDPMScheduler, ddim_sigma, ddim_step, ddpm_step, sample
from course_utils.schedules import NoiseSchedule

SCHEDULE = NoiseSchedule("linear", 1000)


def _x(seed: int, shape=(3, 1, 6, 6)) -> torch.Tensor:
    return randn(shape, generator=cpu_generator(seed))


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_eta_out_of_range_is_refused(eta):
    with pytest.raises(ValueError, match="eta"):
        DDIMScheduler(SCHEDULE, eta=eta)
    with pytest.raises(ValueError, match="eta"):
        DDIMScheduler(SCHEDULE).step(_x(0), 999, _x(1), eta=eta)
    with pytest.raises(ValueError, match="eta"):
        ddim_sigma(0.5, 0.6, eta)
    with pytest.raises(ValueError, match="eta"):
        ddim_step(_x(0), _x(1), 0.5, 0.6, eta=eta)


@pytest.mark.parametrize("steps", [0, 1001, 2.5, -3])
def test_more_steps_than_T_is_refused(steps):
    for scheduler in (DDIMScheduler(SCHEDULE), DDPMScheduler(SCHEDULE)):
        with pytest.raises(ValueError, match="num_inference_steps"):
            scheduler.set_timesteps(steps)


def test_strided_timesteps():
    s = DDIMScheduler(SCHEDULE).set_timesteps(10)
    ts = s.timesteps.tolist()
    assert len(ts) == 10 and ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert s.prev_timestep(ts[0]) == ts[1] and s.prev_timestep(0) == -1
    with pytest.raises(ValueError, match="not in this scheduler"):
        s.prev_timestep(500)


def test_eta_one_over_all_steps_is_ddpm_posterior_variance():
    ab, ab_prev = SCHEDULE.alpha_bar.double(), SCHEDULE.alpha_bar_prev.double()
    sigma2 = ddim_sigma(ab[1:], ab_prev[1:], 1.0) ** 2
    assert torch.allclose(sigma2, SCHEDULE.posterior_variance[1:].double(), atol=1e-7, rtol=1e-4)
    assert ddim_sigma(ab[1:], ab_prev[1:], 0.0).abs().max() == 0


def test_eta_one_step_mean_matches_ddpm_posterior_mean():
    """Without noise (the last step, or identical z), DDIM(eta=1) and DDPM(beta_tilde) agree step by step."""
    ddim = DDIMScheduler(SCHEDULE, eta=1.0)
    ddpm = DDPMScheduler(SCHEDULE, variance="beta_tilde")
    x, eps = _x(0), _x(1)
    for t in (999, 700, 300, 50, 1):
        a = ddim.step(eps, t, x, generator=cpu_generator(5)).prev_sample
        b = ddpm.step(eps, t, x, generator=cpu_generator(5)).prev_sample
        assert torch.allclose(a, b, atol=1e-4), t


def test_eta_zero_is_deterministic_and_eta_one_is_not():
    model = lambda x, t: 0.1 * x  # noqa: E731  (a stand-in noise predictor)
    x_T = _x(3)
    s0 = DDIMScheduler(SCHEDULE, eta=0.0).set_timesteps(20)
    a = sample(model, s0, x_T.shape, x_T=x_T, generator=cpu_generator(1), progress=False)
    b = sample(model, s0, x_T.shape, x_T=x_T, generator=cpu_generator(2), progress=False)
    assert torch.equal(a, b)
    s1 = DDIMScheduler(SCHEDULE, eta=1.0).set_timesteps(20)
    c = sample(model, s1, x_T.shape, x_T=x_T, generator=cpu_generator(1), progress=False)
    d = sample(model, s1, x_T.shape, x_T=x_T, generator=cpu_generator(2), progress=False)
    assert not torch.equal(c, d)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_functional_step_matches_scheduler(eta):
    s = DDIMScheduler(SCHEDULE, eta=eta, clip_sample=False).set_timesteps(50)
    x, eps = _x(0), _x(1)
    for t in s.timesteps[:-1].tolist()[::7]:
        prev = s.prev_timestep(t)
        want = s.step(eps, t, x, generator=cpu_generator(9)).prev_sample
        z = randn(x.shape, generator=cpu_generator(9))
        got = ddim_step(x, eps, SCHEDULE.alpha_bar[t], SCHEDULE.alpha_bar[prev], eta, noise=z)
        assert torch.allclose(got, want, atol=1e-5), t


def test_step_recovers_x0_with_the_true_noise():
    """With the exact eps of x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, one eta=0 step lands on q(x_s | x0) with that eps."""
    x0, eps = _x(0).clamp(-1, 1), _x(1)
    ab_t, ab_s = SCHEDULE.alpha_bar[800], SCHEDULE.alpha_bar[200]
    x_t = ab_t.sqrt() * x0 + (1 - ab_t).sqrt() * eps
    x_s = ddim_step(x_t, eps, ab_t, ab_s, eta=0.0)
    assert torch.allclose(x_s, ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps, atol=1e-5)
    assert torch.allclose(ddim_step(x_t, eps, ab_t, 1.0), x0, atol=1e-4)


def test_step_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        ddim_step(_x(0), _x(1, (3, 1, 5, 5)), 0.5, 0.6)
    with pytest.raises(ValueError, match="shape"):
        DDIMScheduler(SCHEDULE).step(_x(1, (3, 1, 5, 5)), 999, _x(0))
    with pytest.raises(ValueError, match="alpha_bar"):
        ddim_step(_x(0), _x(1), 1.5, 0.6)
    with pytest.raises(ValueError, match=r"alpha_bar_prev must lie in \(0, 1\]"):
        ddim_sigma(0.5, torch.tensor([0.5, 0.0]), 1.0)
    with pytest.raises(ValueError, match="noise has shape"):
        ddim_step(_x(0), _x(1), 0.5, 0.6, eta=1.0, noise=_x(2, (3, 1, 5, 5)))


@pytest.mark.parametrize("clip_sample", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_scheduler_step_is_the_pure_function_with_the_same_noise(eta, clip_sample):
    """DDIMScheduler.step = ddim_step with the z it drew from the generator, on every kept step (the last: no z)."""
    s = DDIMScheduler(SCHEDULE, eta=eta, clip_sample=clip_sample).set_timesteps(20)
    x, eps = 2 * _x(0), _x(1)                                           # 2 x: large enough for clipping to matter
    for t in s.timesteps.tolist():
        prev = s.prev_timestep(t)
        ab_prev = SCHEDULE.alpha_bar[prev] if prev >= 0 else torch.tensor(1.0)
        noise = randn(x.shape, generator=cpu_generator(t)) if eta > 0 and prev >= 0 else None
        out = s.step(eps, t, x, generator=cpu_generator(t))
        assert torch.equal(out.prev_sample, ddim_step(x, eps, SCHEDULE.alpha_bar[t], ab_prev, eta, noise, clip_sample)), t


def test_eta_one_over_all_steps_is_the_ddpm_beta_tilde_step_with_the_same_noise():
    """The identity is exact; in float64 it holds to rounding even at t = 1, where float32 loses digits."""
    ab = SCHEDULE.alpha_bar.double()
    x, eps, z = _x(0).double(), _x(1).double(), _x(2).double()
    for t in (999, 700, 300, 50, 1):
        for clip_sample in (False, True):
            a = ddim_step(x, eps, ab[t], ab[t - 1], eta=1.0, noise=z, clip_sample=clip_sample)
            b = ddpm_step(x, eps, ab[t], ab[t - 1], "beta_tilde", noise=z, clip_sample=clip_sample)
            assert torch.allclose(a, b, atol=1e-9), (t, clip_sample)


def test_eta_one_ddim_chain_over_all_T_steps_is_the_ddpm_chain():
    """Both schedulers draw one z per step from the generator, so the whole chains agree, not just one step."""
    eps_fn = lambda x, t: 0.5 * x  # noqa: E731  (a stand-in noise predictor)
    x_T = _x(3)
    ddim = sample(None, DDIMScheduler(SCHEDULE, eta=1.0), x_T.shape, x_T=x_T, eps_fn=eps_fn, generator=cpu_generator(4),
                  progress=False)
    ddpm = sample(None, DDPMScheduler(SCHEDULE, variance="beta_tilde"), x_T.shape, x_T=x_T, eps_fn=eps_fn,
                  generator=cpu_generator(4), progress=False)
    assert torch.allclose(ddim, ddpm, atol=1e-3)


@pytest.mark.parametrize("steps", [10, 50])
def test_respaced_ddpm_with_beta_tilde_is_ddim_with_eta_one(steps):
    # notebook 06, section 3: the sampler of 04 and 05 is DDIM's eta = 1 (without clipping, Song et al. 2021)
    ddpm = DDPMScheduler(SCHEDULE, variance="beta_tilde", clip_sample=False).set_timesteps(steps)
    ddim = DDIMScheduler(SCHEDULE, eta=1.0, clip_sample=False).set_timesteps(steps)
    assert torch.equal(ddpm.timesteps, ddim.timesteps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    for t in ddpm.timesteps.tolist():
        eps, z = torch.randn(x.shape, generator=g, dtype=x.dtype), torch.randn(x.shape, generator=g, dtype=x.dtype)
        a = ddpm.step(eps, t, x, noise=z).prev_sample
        b = ddim.step(eps, t, x, noise=z).prev_sample
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (t, (a - b).abs().max())
        x = a
