"""Editing with DDIM (course_utils.editing): inversion, slerp, SDEdit, inpainting, visual anagrams (notebook 06)."""
from __future__ import annotations

import math

import pytest
import torch

from course_utils.device import cpu_generator, randn
from course_utils.editing import (VIEWS, anagram_eps, apply_view, check_mask, ddim_invert, denoise_from, inpaint,
                                  invert_view, sdedit, slerp, slerp_path, visual_anagram)
from course_utils.samplers import DDIMScheduler, DDPMScheduler, StepNoise, ddim_step, guided_eps, sample
from course_utils.schedules import NoiseSchedule
from course_utils.unet import UNet

SCHEDULE = NoiseSchedule("linear", 1000)


def _x(seed: int, shape=(2, 1, 8, 8)) -> torch.Tensor:
    return randn(shape, generator=cpu_generator(seed))


def _oracle(x0: torch.Tensor):
    """The exact noise predictor of a data set holding the single image x0."""
    ab = SCHEDULE.alpha_bar

    def eps_fn(x, t):
        a = ab[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()
    return eps_fn


@pytest.fixture(scope="module")
def tiny_cond_unet():
    torch.manual_seed(0)
    m = UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), attention=(False, True), num_classes=10).eval()
    for p in m.conv_out.parameters():          # the output conv starts at zero; make the model non-trivial
        torch.nn.init.normal_(p, std=0.02)
    return m


# ----------------------------------------------------------------------------- inversion

def test_inversion_round_trip_is_exact_for_a_noise_independent_of_x():
    e = _x(7)
    eps_fn = lambda x, t: e  # noqa: E731
    x0 = _x(1).clamp(-1, 1)
    s = DDIMScheduler(SCHEDULE, eta=0.0, clip_sample=False).set_timesteps(25)
    x_T = ddim_invert(None, x0, s, eps_fn=eps_fn)
    ab = SCHEDULE.alpha_bar[999]
    assert torch.allclose(x_T, ab.sqrt() * x0 + (1 - ab).sqrt() * e, atol=1e-4)
    back = sample(None, s, x0.shape, x_T=x_T, eps_fn=eps_fn, progress=False)
    assert (back - x0).abs().max() < 1e-3


def test_inversion_then_ddim_decoding_reconstructs_better_with_smaller_steps():
    """With eps depending on x, inversion uses eps(x_s, t) for eps(x_t, t): the error shrinks with the step size."""
    eps_fn = lambda x, t: 0.3 * x  # noqa: E731
    x0 = _x(2).clamp(-1, 1)
    errs = []
    for steps in (10, 50, 200):
        s = DDIMScheduler(SCHEDULE, eta=0.0, clip_sample=False).set_timesteps(steps)
        x_T = ddim_invert(None, x0, s, eps_fn=eps_fn)
        back = sample(None, s, x0.shape, x_T=x_T, eps_fn=eps_fn, progress=False)
        errs.append((back - x0).abs().max().item())
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


def test_inversion_step_is_the_eta_zero_ddim_step_going_up():
    e = _x(7)
    x0 = _x(1).clamp(-1, 1)
    s = DDIMScheduler(SCHEDULE, eta=0.0, clip_sample=False).set_timesteps(4)
    _, traj = ddim_invert(None, x0, s, eps_fn=lambda x, t: e, return_trajectory=True)
    ts = s.timesteps.flip(0).tolist()                                   # 0, 333, 666, 999
    assert torch.equal(traj[0][1], ddim_step(x0, e, 1.0, SCHEDULE.alpha_bar[0]))
    for (t_from, x_from), (t_to, x_to) in zip(traj, traj[1:]):
        assert torch.equal(x_to, ddim_step(x_from, e, SCHEDULE.alpha_bar[t_from], SCHEDULE.alpha_bar[t_to], eta=0.0))
    assert [t for t, _ in traj] == ts


def test_inversion_with_a_model_and_trajectory(tiny_cond_unet):
    x0 = _x(2).clamp(-1, 1)
    s = DDIMScheduler(SCHEDULE, clip_sample=False).set_timesteps(5)
    x_T, traj = ddim_invert(tiny_cond_unet, x0, s, y=torch.tensor([3, 4]), guidance=1.0, return_trajectory=True)
    assert x_T.shape == x0.shape and torch.isfinite(x_T).all()
    assert [t for t, _ in traj] == s.timesteps.flip(0).tolist()


def test_inversion_refuses_ddpm_and_missing_model():
    x0 = _x(0)
    with pytest.raises(ValueError, match="DDIMScheduler"):
        ddim_invert(None, x0, DDPMScheduler(SCHEDULE), eps_fn=lambda x, t: x)
    with pytest.raises(ValueError, match="model or an eps_fn"):
        ddim_invert(None, x0, DDIMScheduler(SCHEDULE).set_timesteps(5))
    with pytest.raises(ValueError, match="shape"):
        ddim_invert(None, x0[0], DDIMScheduler(SCHEDULE).set_timesteps(5), eps_fn=lambda x, t: x)


# ----------------------------------------------------------------------------- slerp

def test_slerp_endpoints_norm_and_orthogonal_midpoint():
    z0, z1 = _x(0, (3, 4, 7, 7)), _x(1, (3, 4, 7, 7))
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-6)
    assert torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-6)
    # two orthonormal vectors: the midpoint is (e0 + e1) / sqrt(2), of norm 1
    e0, e1 = torch.zeros(1, 4), torch.zeros(1, 4)
    e0[0, 0], e1[0, 1] = 1.0, 1.0
    mid = slerp(e0, e1, 0.5)
    assert torch.allclose(mid, torch.tensor([[1, 1, 0, 0]]) / math.sqrt(2), atol=1e-6)
    # Gaussian noises of the same norm keep it along the path; the straight line does not
    path = slerp_path(z0[:1], z1[:1], 5)
    assert path.shape == (5, 4, 7, 7)
    norms = path.flatten(1).norm(dim=1)
    assert (norms - norms[0]).abs().max() / norms[0] < 0.15
    lerp_mid = 0.5 * (z0[0] + z1[0])
    assert lerp_mid.norm() < 0.85 * norms[2]


def test_slerp_parallel_inputs_fall_back_to_lerp():
    z = _x(0, (2, 5))
    assert torch.allclose(slerp(z, 2 * z, 0.5), 1.5 * z, atol=1e-5)


def test_slerp_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        slerp(_x(0, (2, 3)), _x(1, (2, 4)), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        slerp(_x(0, (2, 3)), _x(1, (2, 3)), 1.5)
    with pytest.raises(ValueError, match="batch"):
        slerp(torch.ones(3), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="n must"):
        slerp_path(_x(0, (1, 1, 4, 4)), _x(1, (1, 1, 4, 4)), 1)


# ----------------------------------------------------------------------------- SDEdit

def test_sdedit_with_the_oracle_returns_the_data_point():
    x0 = _x(3).clamp(-1, 1)
    s = DDIMScheduler(SCHEDULE, clip_sample=False).set_timesteps(25)
    for i_start in (0, 18, 24):
        out = sdedit(None, _x(4), s, i_start, eps_fn=_oracle(x0), generator=cpu_generator(0))
        assert torch.allclose(out, x0, atol=1e-3), i_start


def test_sdedit_large_i_start_stays_close_to_the_input(tiny_cond_unet):
    """i_start counts from the noisy end (CS180): a late start adds little noise and keeps the input."""
    x0 = _x(5).clamp(-1, 1)
    s = DDIMScheduler(SCHEDULE).set_timesteps(25)
    near = sdedit(tiny_cond_unet, x0, s, 24, y=2, guidance=2.0, generator=cpu_generator(0))
    far = sdedit(tiny_cond_unet, x0, s, 5, y=2, guidance=2.0, generator=cpu_generator(0))
    assert (near - x0).abs().mean() < (far - x0).abs().mean()


def test_sdedit_starts_at_the_indexed_timestep_and_runs_the_remaining_steps():
    """The noise estimate is queried at timesteps[i_start], timesteps[i_start + 1], ..., 0 and nowhere else."""
    x0, e = _x(3).clamp(-1, 1), _x(7)
    s = DDIMScheduler(SCHEDULE, clip_sample=False).set_timesteps(10)
    seen = []

    def eps_fn(x, t):
        seen.append(int(t[0]))
        return e
    sdedit(None, x0, s, 3, eps_fn=eps_fn, generator=cpu_generator(0))
    assert seen == s.timesteps[3:].tolist()                                        # 7 steps, from timesteps[3]


@pytest.mark.parametrize("i_start", [-1, 25, 3.0, True])
def test_sdedit_i_start_out_of_range(i_start):
    s = DDIMScheduler(SCHEDULE).set_timesteps(25)
    with pytest.raises(ValueError, match="i_start must be"):
        sdedit(None, _x(0), s, i_start, eps_fn=lambda x, t: x)


# ----------------------------------------------------------------------------- inpainting

def test_inpaint_keeps_the_known_region_and_fills_the_hole():
    x_known = _x(1).clamp(-1, 1)
    target = -x_known                                   # what the oracle model "believes" the data is
    mask = torch.ones(8, 8)
    mask[2:6, 2:6] = 0
    s = DDIMScheduler(SCHEDULE, clip_sample=False).set_timesteps(10)
    out = inpaint(None, x_known, mask, s, eps_fn=_oracle(target), generator=cpu_generator(0))
    keep = mask.bool().expand_as(out)
    assert torch.equal(out[keep], x_known[keep])
    assert torch.allclose(out[~keep], target[~keep], atol=0.05)
    full = inpaint(None, x_known, torch.ones(2, 1, 8, 8), s, eps_fn=_oracle(target), generator=cpu_generator(0))
    assert torch.equal(full, x_known)


def test_inpaint_with_ddpm_and_a_class(tiny_cond_unet):
    x_known = _x(2).clamp(-1, 1)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    out = inpaint(tiny_cond_unet, x_known, mask, DDPMScheduler(SCHEDULE).set_timesteps(5), y=torch.tensor([1, 7]),
                  guidance=3.0, generator=cpu_generator(0))
    assert out.shape == x_known.shape and torch.equal(out[..., :4], x_known[..., :4])


@pytest.mark.parametrize("shape", [(7, 8), (2, 2, 8, 8), (3, 1, 8, 8), (8,), (1, 1, 1, 8, 8)])
def test_mask_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match="mask"):
        check_mask(torch.ones(shape), _x(0))


def test_mask_values_and_type():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_mask(torch.full((8, 8), 2.0), _x(0))
    with pytest.raises(ValueError, match="torch.Tensor"):
        check_mask([[1.0]], _x(0))
    assert check_mask(torch.ones(1, 8, 8), _x(0)).shape == (1, 1, 8, 8)


# ----------------------------------------------------------------------------- anagrams

@pytest.mark.parametrize("view", list(VIEWS))
def test_views_are_invertible_pixel_permutations(view):
    x = _x(0, (2, 1, 6, 6))
    v = apply_view(x, view)
    assert torch.equal(invert_view(v, view), x)
    assert torch.equal(v.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_rot180_is_upside_down():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    assert apply_view(x, "rot180").flatten().tolist() == [3.0, 2.0, 1.0, 0.0]


def test_anagram_eps_averages_two_guided_estimates(tiny_cond_unet):
    x, t = _x(1), torch.tensor([500, 500])
    ya, yb = torch.tensor([6, 6]), torch.tensor([9, 9])
    same = anagram_eps(tiny_cond_unet, x, t, ya, ya, 3.0, view="identity")
    assert torch.allclose(same, guided_eps(tiny_cond_unet, x, t, ya, 3.0), atol=1e-6)
    got = anagram_eps(tiny_cond_unet, x, t, ya, yb, 3.0, view="rot180")
    want = 0.5 * (guided_eps(tiny_cond_unet, x, t, ya, 3.0)
                  + guided_eps(tiny_cond_unet, x.flip(-2, -1), t, yb, 3.0).flip(-2, -1))
    assert torch.allclose(got, want, atol=1e-6)


def test_visual_anagram_runs_and_checks_input(tiny_cond_unet):
    s = DDIMScheduler(SCHEDULE).set_timesteps(4)
    out = visual_anagram(tiny_cond_unet, s, (2, 1, 8, 8), 6, 9, generator=cpu_generator(0))
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown view"):
        visual_anagram(tiny_cond_unet, s, (2, 1, 8, 8), 6, 9, view="spin")
    with pytest.raises(ValueError, match="square"):
        visual_anagram(tiny_cond_unet, s, (2, 1, 8, 6), 6, 9, view="rot90")
    with pytest.raises(ValueError, match="labels"):
        visual_anagram(tiny_cond_unet, s, (2, 1, 8, 8), torch.tensor([6, 6, 6]), 9)


# ----------------------------------------------------------------------------- randomness passed in (06)

def test_ddim_invert_with_a_step_fn_gets_tensors_and_matches_the_default():
    e = _x(7)
    x0 = _x(1).clamp(-1, 1)
    s = DDIMScheduler(SCHEDULE, eta=0.0, clip_sample=False).set_timesteps(6)
    seen = []

    def step_fn(x, eps, ab_s, ab_t):
        seen.append((type(ab_s), type(ab_t)))
        return ddim_step(x, eps, ab_s, ab_t, eta=0.0)
    got = ddim_invert(None, x0, s, eps_fn=lambda x, t: e, step_fn=step_fn)
    assert torch.allclose(got, ddim_invert(None, x0, s, eps_fn=lambda x, t: e), atol=1e-6)
    assert seen == [(torch.Tensor, torch.Tensor)] * 6


def test_denoise_from_with_step_noise_matches_sample(tiny_cond_unet):
    s = DDIMScheduler(SCHEDULE, eta=0.7).set_timesteps(6)
    x_T, noise, y = _x(3), StepNoise((2, 1, 8, 8), 4), torch.tensor([1, 2])
    want = sample(tiny_cond_unet, s, x_T.shape, x_T=x_T, y=y, guidance=2.0, noise_fn=noise, progress=False)
    got = denoise_from(s, x_T, 0, lambda x, t: guided_eps(tiny_cond_unet, x, t, y, 2.0), noise_fn=noise)
    assert torch.equal(got, want)
    other = denoise_from(s, x_T, 0, lambda x, t: guided_eps(tiny_cond_unet, x, t, y, 2.0),
                         noise_fn=StepNoise(x_T.shape, 5))
    assert not torch.allclose(other, want)


def test_sdedit_with_eps_and_step_noise_is_q_sample_then_the_remaining_steps(tiny_cond_unet):
    x0, eps, noise = _x(5).clamp(-1, 1), _x(6), StepNoise((2, 1, 8, 8), 7)
    s = DDIMScheduler(SCHEDULE, eta=1.0).set_timesteps(10)
    got = sdedit(tiny_cond_unet, x0, s, 4, y=3, guidance=2.0, eps=eps, noise_fn=noise)
    t = int(s.timesteps[4])
    x_t = SCHEDULE.alpha_bar[t].sqrt() * x0 + (1 - SCHEDULE.alpha_bar[t]).sqrt() * eps
    y = torch.tensor([3, 3])
    want = denoise_from(s, x_t, 4, lambda x, tb: guided_eps(tiny_cond_unet, x, tb, y, 2.0), noise_fn=noise)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.equal(got, sdedit(tiny_cond_unet, x0, s, 4, y=3, guidance=2.0, eps=eps, noise_fn=noise,
                                   generator=cpu_generator(9)))                 # the generator is not used
    with pytest.raises(ValueError, match="eps"):
        sdedit(tiny_cond_unet, x0, s, 4, eps=eps[:1])


def test_inpaint_with_passed_in_noise_replaces_the_known_region_at_every_level():
    x_known, x_T = _x(1).clamp(-1, 1), _x(2)
    noise, known = StepNoise((2, 1, 8, 8), 3), StepNoise((2, 1, 8, 8), 4)
    mask = torch.ones(8, 8)
    mask[:, 4:] = 0
    s = DDIMScheduler(SCHEDULE, eta=0.5, clip_sample=False).set_timesteps(5)
    seen = []

    def eps_fn(x, t):
        level = int(t[0])
        ab = SCHEDULE.alpha_bar[level]
        want = ab.sqrt() * x_known + (1 - ab).sqrt() * known(level)
        seen.append(torch.allclose(x[..., :4], want[..., :4], atol=1e-6))
        return 0.1 * x
    out = inpaint(None, x_known, mask, s, eps_fn=eps_fn, x_T=x_T, noise_fn=noise, known_noise_fn=known)
    assert seen == [True] * 5 and torch.equal(out[..., :4], x_known[..., :4])
    again = inpaint(None, x_known, mask, s, eps_fn=lambda x, t: 0.1 * x, x_T=x_T, noise_fn=noise,
                    known_noise_fn=known, generator=cpu_generator(0))
    assert torch.equal(out, again)
    moved = inpaint(None, x_known, mask, s, eps_fn=lambda x, t: 0.1 * x, x_T=-x_T, noise_fn=noise,
                    known_noise_fn=known)
    assert not torch.allclose(moved[..., 4:], out[..., 4:])


def test_hybrid_eps_takes_low_frequencies_from_one_class_and_high_from_the_other():
    from course_utils.baselines import gaussian_blur
    from course_utils.editing import hybrid_eps, hybrid_image

    class ByClass(torch.nn.Module):                 # eps = a smooth ramp for class 1, a checkerboard for class 7
        num_classes = 10

        def forward(self, x, t, y):
            ramp = torch.linspace(-1, 1, x.shape[-1]).expand_as(x)
            checker = ((torch.arange(x.shape[-1])[None, :] + torch.arange(x.shape[-2])[:, None]) % 2 * 2 - 1.0)
            return torch.where((y == 1).view(-1, 1, 1, 1), ramp, checker.expand_as(x).float())

    x, t = torch.zeros(2, 1, 16, 16), torch.tensor([5, 5])
    m = ByClass()
    both = hybrid_eps(m, x, t, torch.tensor([1, 1]), torch.tensor([7, 7]), None, sigma=2.0)
    ramp, checker = m(x, t, torch.tensor([1, 1])), m(x, t, torch.tensor([7, 7]))
    assert torch.allclose(both, gaussian_blur(ramp, 2.0) + checker - gaussian_blur(checker, 2.0))
    assert torch.allclose(gaussian_blur(both, 2.0), gaussian_blur(gaussian_blur(ramp, 2.0), 2.0), atol=0.05)
    schedule = NoiseSchedule("linear", 50)
    out = hybrid_image(m, DDIMScheduler(schedule).set_timesteps(5), (2, 1, 16, 16), 1, 7, guidance=None,
                       generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="sigma"):
        hybrid_image(m, DDIMScheduler(schedule).set_timesteps(5), (2, 1, 16, 16), 1, 7, sigma=0)
