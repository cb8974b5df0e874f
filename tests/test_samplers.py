"""DDPM / DDIM schedulers, classifier-free guidance and the sampling loop (course_utils.samplers, 04-06)."""
from __future__ import annotations

import pytest
import torch

from course_utils.device import cpu_generator, randn
from course_utils.samplers import (DDIMScheduler, DDPMScheduler, ddpm_step, guided_eps, pred_original_sample,
                                   sample)
from course_utils.schedules import NoiseSchedule
from course_utils.unet import UNet

SCHEDULE = NoiseSchedule("linear", 1000)


def algorithm2_step(eps, t, x_t, variance, generator):
    """x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) + sigma_t z (Ho et al. 2020)."""
    beta, alpha, ab = SCHEDULE.betas[t], SCHEDULE.alphas[t], SCHEDULE.alpha_bar[t]
    mean = (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
    if t == 0:
        return mean
    var = beta if variance == "beta" else SCHEDULE.posterior_variance[t]
    return mean + var.sqrt() * randn(x_t.shape, generator=generator)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_ddpm_step_is_algorithm_2(variance, t):
    g = cpu_generator(0)
    x_t, eps = randn(4, 1, 8, 8, generator=g), randn(4, 1, 8, 8, generator=g)
    scheduler = DDPMScheduler(SCHEDULE, variance=variance, clip_sample=False)
    got = scheduler.step(eps, t, x_t, generator=cpu_generator(1)).prev_sample
    want = algorithm2_step(eps, t, x_t, variance, cpu_generator(1))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_ddpm_step_pred_original_sample_and_clipping():
    g = cpu_generator(2)
    x0 = randn(3, 1, 8, 8, generator=g).clamp(-1, 1)
    eps = randn(3, 1, 8, 8, generator=g)
    t = 300
    x_t = SCHEDULE.q_sample(x0, torch.full((3,), t), eps)
    out = DDPMScheduler(SCHEDULE).step(eps, t, x_t, generator=cpu_generator(0))
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-4)     # the true eps recovers x_0
    big = DDPMScheduler(SCHEDULE).step(eps + 5, t, x_t, generator=cpu_generator(0)).pred_original_sample
    assert big.min() >= -1 and big.max() <= 1                           # clip_sample


def test_pred_original_sample_inverts_q_sample():
    g = cpu_generator(5)
    x0, eps = randn(3, 1, 8, 8, generator=g).clamp(-1, 1), randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([10, 500, 990])
    x_t = SCHEDULE.q_sample(x0, t, eps)
    ab = SCHEDULE.alpha_bar[t].view(-1, 1, 1, 1)                           # one level per image (B, 1, 1, 1)
    assert torch.allclose(pred_original_sample(x_t, eps, ab), x0, atol=1e-3)
    assert torch.equal(pred_original_sample(x_t, eps + 5, ab, clip_sample=True),
                       pred_original_sample(x_t, eps + 5, ab).clamp(-1, 1))
    assert torch.equal(pred_original_sample(x0, eps, 1.0), x0)          # alpha_bar = 1: no noise at all
    with pytest.raises(ValueError, match="eps has shape"):
        pred_original_sample(x_t, eps[:2], ab)
    with pytest.raises(ValueError, match=r"alpha_bar_t must lie in \(0, 1\]"):
        pred_original_sample(x_t, eps, 0.0)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("t", [999, 500, 1])
def test_pure_ddpm_step_is_algorithm_2_with_the_same_noise(variance, t):
    g = cpu_generator(6)
    x_t, eps = randn(4, 1, 8, 8, generator=g), randn(4, 1, 8, 8, generator=g)
    z = randn(x_t.shape, generator=cpu_generator(1))
    got = ddpm_step(x_t, eps, SCHEDULE.alpha_bar[t], SCHEDULE.alpha_bar[t - 1], variance, noise=z)
    want = algorithm2_step(eps, t, x_t, variance, cpu_generator(1))    # draws the same z
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    mean = ddpm_step(x_t, eps, SCHEDULE.alpha_bar[t], SCHEDULE.alpha_bar[t - 1], variance)    # noise=None: the mean
    assert torch.allclose(mean, (x_t - SCHEDULE.betas[t] / (1 - SCHEDULE.alpha_bar[t]).sqrt() * eps) / SCHEDULE.alphas[t].sqrt(),
                          atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown variance"):
        ddpm_step(x_t, eps, SCHEDULE.alpha_bar[t], SCHEDULE.alpha_bar[t - 1], "learned")


@pytest.mark.parametrize("clip_sample", [False, True])
@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_scheduler_step_is_the_pure_function_with_the_same_noise(variance, clip_sample):
    """DDPMScheduler.step = ddpm_step with the z it drew from the generator (none on the last step)."""
    g = cpu_generator(7)
    x, eps = 2 * randn(2, 1, 8, 8, generator=g), randn(2, 1, 8, 8, generator=g)
    s = DDPMScheduler(SCHEDULE, variance=variance, clip_sample=clip_sample).set_timesteps(12)
    for t in s.timesteps.tolist():
        prev = s.prev_timestep(t)
        ab_prev = SCHEDULE.alpha_bar[prev] if prev >= 0 else torch.tensor(1.0)
        noise = randn(x.shape, generator=cpu_generator(t)) if prev >= 0 else None
        out = s.step(eps, t, x, generator=cpu_generator(t))
        want = ddpm_step(x, eps, SCHEDULE.alpha_bar[t], ab_prev, variance, noise, clip_sample)
        assert torch.equal(out.prev_sample, want), t
        assert torch.equal(out.pred_original_sample, pred_original_sample(x, eps, SCHEDULE.alpha_bar[t], clip_sample))


def test_set_timesteps_strides_and_one_step_starts_at_noise():
    s = DDIMScheduler(SCHEDULE)
    assert s.timesteps.tolist() == list(range(999, -1, -1))
    s.set_timesteps(10)
    ts = s.timesteps.tolist()
    assert len(ts) == 10 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert s.prev_timestep(999) == ts[1] and s.prev_timestep(0) == -1
    assert s.set_timesteps(1).timesteps.tolist() == [999]


@pytest.mark.parametrize("steps", [0, -5, 1001, 2.5, True])
def test_bad_step_counts_raise(steps):
    for cls in (DDPMScheduler, DDIMScheduler):
        with pytest.raises(ValueError, match="num_inference_steps"):
            cls(SCHEDULE).set_timesteps(steps)


def test_bad_scheduler_inputs_raise():
    with pytest.raises(ValueError, match="variance"):
        DDPMScheduler(SCHEDULE, variance="learned")
    with pytest.raises(ValueError, match="eta"):
        DDIMScheduler(SCHEDULE, eta=1.5)
    s = DDIMScheduler(SCHEDULE).set_timesteps(10)
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="not in this scheduler"):
        s.step(x, 500, x)                                              # 500 is not one of the 10 kept steps
    with pytest.raises(ValueError, match="eps has shape"):
        s.step(torch.zeros(1, 1, 5, 5), 999, x)


def test_ddim_eta0_is_deterministic_and_exact_for_true_eps():
    g = cpu_generator(3)
    x0 = randn(2, 1, 8, 8, generator=g).clamp(-1, 1)
    eps = randn(2, 1, 8, 8, generator=g)
    s = DDIMScheduler(SCHEDULE, eta=0.0).set_timesteps(10)
    t = int(s.timesteps[3])
    x_t = SCHEDULE.q_sample(x0, torch.full((2,), t), eps)
    out = s.step(eps, t, x_t)
    prev = s.prev_timestep(t)
    want = SCHEDULE.q_sample(x0, torch.full((2,), prev), eps)              # same x_0, same eps, one kept step earlier
    assert torch.allclose(out.prev_sample, want, atol=1e-4)


class ToyEps(torch.nn.Module):
    """eps(x, t, y) = 0.1 x + 0.01 y: cheap, label-aware, with num_classes like the UNet."""

    num_classes = 10

    def forward(self, x, t, y=None):
        y = torch.full((x.shape[0],), 10) if y is None else y
        return 0.1 * x + 0.01 * y.float().view(-1, 1, 1, 1)


def test_guided_eps_convention():
    m = ToyEps()
    x, t, y = torch.randn(3, 1, 4, 4), torch.tensor([5, 5, 5]), torch.tensor([1, 2, 3])
    eps_u, eps_c = m(x, t, torch.full_like(y, 10)), m(x, t, y)
    for w in (0.0, 1.0, 3.0):
        assert torch.allclose(guided_eps(m, x, t, y, w), eps_u + w * (eps_c - eps_u))
    assert torch.allclose(guided_eps(m, x, t, y, 0.0), eps_u)
    assert torch.allclose(guided_eps(m, x, t, y, 1.0), eps_c)
    assert torch.allclose(guided_eps(m, x, t, None, 3.0), eps_u)        # no label: unconditional
    with pytest.raises(ValueError, match="class-conditional"):
        guided_eps(lambda x, t, y=None: x, x, t, y, 2.0)


def test_sample_loop_reproducible_trajectory_and_checks():
    torch.manual_seed(0)
    m = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False), num_classes=10)
    scheduler = DDPMScheduler(SCHEDULE, variance="beta_tilde").set_timesteps(5)
    a, traj = sample(m, scheduler, (2, 1, 12, 12), y=torch.tensor([1, 2]), guidance=2.0, generator=cpu_generator(0),
                     return_trajectory=True, progress=False)
    b = sample(m, scheduler, (2, 1, 12, 12), y=torch.tensor([1, 2]), guidance=2.0, generator=cpu_generator(0),
               progress=False)
    assert torch.equal(a, b) and a.shape == (2, 1, 12, 12)
    assert [t for t, _, _ in traj] == scheduler.timesteps.tolist()
    assert torch.equal(traj[-1][1], a)
    with pytest.raises(ValueError, match="x_T has shape"):
        sample(m, scheduler, (2, 1, 12, 12), x_T=torch.zeros(2, 1, 10, 10), progress=False)
    with pytest.raises(ValueError, match="labels must lie"):
        sample(m, scheduler, (2, 1, 12, 12), y=torch.tensor([3, 11]), progress=False)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        sample(m, scheduler, (2, 3, 12, 12), progress=False)               # wrong number of channels


def test_sample_batches_does_not_depend_on_the_batch_size():
    from course_utils.samplers import sample_batches
    scheduler = DDIMScheduler(NoiseSchedule("linear", 50)).set_timesteps(5)
    model = lambda x, t: 0.1 * x                                             # noqa: E731  a fixed eps estimate
    a = sample_batches(model, scheduler, 7, (1, 4, 4), seed=3, batch_size=7, progress=False)
    b = sample_batches(model, scheduler, 7, (1, 4, 4), seed=3, batch_size=2, progress=False)
    assert a.shape == (7, 1, 4, 4) and torch.equal(a, b)
    c = sample_batches(model, scheduler, 7, (1, 4, 4), seed=4, batch_size=7, progress=False)
    assert not torch.equal(a, c)


def test_sample_batches_decodes_each_batch_and_checks_its_arguments():
    from course_utils.samplers import sample_batches
    scheduler = DDIMScheduler(NoiseSchedule("linear", 50)).set_timesteps(3)
    model = lambda x, t: torch.zeros_like(x)                                 # noqa: E731
    out = sample_batches(model, scheduler, 5, (2, 3, 3), seed=0, batch_size=2, progress=False,
                         decode=lambda z: z.sum(1, keepdim=True))
    assert out.shape == (5, 1, 3, 3)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        sample_batches(model, scheduler, 0, (1, 3, 3))
    with pytest.raises(ValueError, match="labels of shape"):
        sample_batches(model, scheduler, 4, (1, 3, 3), labels=torch.zeros(3, dtype=torch.long))


def test_step_noise_is_keyed_by_timestep_and_drives_the_schedulers():
    from course_utils.samplers import StepNoise
    noise = StepNoise((2, 1, 4, 4), seed=5)
    a, b = noise(700), noise(3)
    assert torch.equal(noise(3), b) and torch.equal(noise(700), a) and not torch.equal(a, b)
    assert not torch.equal(StepNoise((2, 1, 4, 4), seed=6)(3), b)
    schedule = NoiseSchedule("linear", 100)
    model = lambda x, t: 0.2 * x                                            # noqa: E731
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for scheduler in (DDPMScheduler(schedule).set_timesteps(10), DDIMScheduler(schedule, eta=0.5).set_timesteps(10)):
        want = sample(model, scheduler, (2, 1, 4, 4), x_T=x_T, noise_fn=noise, progress=False)
        x = x_T.clone()
        for t in scheduler.timesteps.tolist():                                # a loop that asks for z itself
            z = noise(t)
            x = scheduler.step(model(x, t), t, x, noise=z).prev_sample
        assert torch.allclose(x, want)
        other = sample(model, scheduler, (2, 1, 4, 4), x_T=x_T, noise_fn=StepNoise((2, 1, 4, 4), 9), progress=False)
        assert not torch.allclose(other, want)


def test_step_levels_must_broadcast_per_image_and_go_down():
    x, eps = torch.zeros(4, 1, 4, 4), torch.zeros(4, 1, 4, 4)
    ab = torch.tensor([0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"one per image as \(B, 1, 1, 1\)"):
        ddpm_step(x, eps, ab, ab.clone().fill_(0.6))                      # (B,) would broadcast along the width
    with pytest.raises(ValueError, match=r"one per image as \(B, 1, 1, 1\)"):
        pred_original_sample(x, eps, ab)
    assert ddpm_step(x, eps, ab.view(-1, 1, 1, 1), 0.6, noise=torch.zeros_like(x)).shape == x.shape
    with pytest.raises(ValueError, match="swapped"):
        ddpm_step(x, eps, 0.6, 0.5)


def test_sample_refuses_a_zero_trajectory_stride_and_guided_eps_takes_an_int_t():
    model = lambda x, t, y=None: x * 0 + t.float().view(-1, 1, 1, 1) / 1000    # noqa: E731
    with pytest.raises(ValueError, match="trajectory_every"):
        sample(model, DDIMScheduler(NoiseSchedule("linear", 10)), (2, 1, 4, 4), return_trajectory=True,
               trajectory_every=0, progress=False)
    x = torch.zeros(3, 1, 4, 4)
    assert torch.equal(guided_eps(model, x, 5, None, None), guided_eps(model, x, torch.full((3,), 5), None, None))
