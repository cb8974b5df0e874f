"""Hidden tests of notebooks/04_time_conditioning.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). A tiny
probe model stands in for the course UNet, small ``unet.ResBlock``s (built with the grader's weights)
for the residual block, and ``probes.strided_scheduler`` builds the schedulers of the sampling loop.
``forbid`` lists course_utils's own answer to each exercise: an answer that calls it scores nothing.
"""
import torch

from course_tools.grading.hidden import Build, Exercise
from course_tools.grading.probes import TimeProbe, strided_scheduler
from course_utils import diffusion, samplers, unet
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _ddpm_sample(model, scheduler, x_T, noise):
    return samplers.sample(model, scheduler, tuple(x_T.shape), x_T=x_T, noise_fn=noise, return_trajectory=True,
                           progress=False)


def test_timestep_embedding() -> Exercise:
    t = torch.tensor([3, 77, 250, 998, 0])
    return Exercise(unet.timestep_embedding, cases=[(t, 6), (t, 64), (t[:2], 16, 1000.0)], atol=1e-3,
                    forbid=(unet.timestep_embedding,))


def test_res_block_forward() -> Exercise:
    widen = Build(unet.ResBlock, 6, 12, 20, seed=3)          # 6 -> 12 channels: the 1x1 skip convolution
    same = Build(unet.ResBlock, 8, 8, 10, seed=4)            # same width: the identity skip
    x6, x8 = _randn(3, 6, 5, 7, seed=1), _randn(2, 8, 4, 4, seed=2) * 2
    e20, e10 = _randn(3, 20, seed=3), _randn(2, 10, seed=4)
    return Exercise(unet.ResBlock.forward, cases=[(widen, x6, e20), (same, x8, e10), (widen, x6[:1], e20[:1])],
                    no_grad=True, forbid=(unet.ResBlock.forward,))


def test_l_simple() -> Exercise:
    probe = Build(TimeProbe, seed=0)
    x0 = _randn(6, 1, 8, 8, seed=1).clamp(-1, 1)
    eps = _randn(6, 1, 8, 8, seed=2)
    t50, t100 = torch.tensor([0, 49, 7, 25, 3, 40]), torch.tensor([99, 0])
    return Exercise(diffusion.l_simple, cases=[(probe, x0, t50, eps, Build(NoiseSchedule, "linear", 50)),
                                               (probe, x0[:2], t100, eps[2:4], Build(NoiseSchedule, "cosine", 100))],
                    no_grad=True, forbid=(diffusion.l_simple, diffusion.diffusion_loss))


def test_ddpm_step() -> Exercise:
    ab = NoiseSchedule("linear", 80).alpha_bar
    x_t, eps, z = _randn(3, 1, 6, 6, seed=6), _randn(3, 1, 6, 6, seed=5), _randn(3, 1, 6, 6, seed=7)
    cases = [(x_t, eps, ab[t], ab[t - 1], v, z, False) for t in (79, 40, 1) for v in ("beta", "beta_tilde")]
    cases += [(x_t, eps, float(ab[0]), 1.0, "beta_tilde", None, False),          # the last step
              (x_t, eps, float(ab[60]), float(ab[20]), "beta", z, False),        # a strided step
              (x_t * 3, eps, ab[30], ab[29], "beta_tilde", z, True)]             # x0_hat clipped
    return Exercise(samplers.ddpm_step, cases=cases, atol=1e-4,
                    forbid=(samplers.ddpm_step, samplers.DDPMScheduler.step))


def test_ddpm_sample() -> Exercise:
    model = Build(TimeProbe, seed=1)
    x_T = _randn(3, 1, 8, 8, seed=8)
    cases = [(model, Build(strided_scheduler, "ddpm", "linear", 60, 5), x_T, Build(samplers.StepNoise, (3, 1, 8, 8), 9)),
             (model, Build(strided_scheduler, "ddpm", "cosine", 40, 40, variance="beta_tilde", clip_sample=False),
              x_T[:2], Build(samplers.StepNoise, (2, 1, 8, 8), 10))]
    return Exercise(_ddpm_sample, cases=cases, atol=1e-4, no_grad=True,
                    forbid=(samplers.sample, samplers.sample_batches, samplers.DDPMScheduler.step))
