"""Hidden tests of notebooks/04_time_conditioning.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). A tiny
probe model stands in for the course UNet; ``Generator(seed)`` is a fresh seeded generator per call.
"""
import torch

from course_tools.grading.hidden import Build, Exercise, Generator
from course_tools.grading.probes import TimeProbe
from course_utils import diffusion, unet
from course_utils.samplers import DDPMScheduler
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _l_simple(model, x0, schedule, generator):
    return diffusion.diffusion_loss(model, x0, schedule, generator=generator)


def _ddpm_step(eps, t, x_t, schedule, variance, generator):
    return DDPMScheduler(schedule, variance=variance, clip_sample=False).step(eps, t, x_t,
                                                                              generator=generator).prev_sample


def test_timestep_embedding() -> Exercise:
    t = torch.tensor([3, 77, 250, 998, 0])
    return Exercise(unet.timestep_embedding, cases=[(t, 6), (t, 64), (t[:2], 16, 1000.0)], atol=1e-3)


def test_l_simple() -> Exercise:
    probe = Build(TimeProbe, seed=0)
    x0 = _randn(6, 1, 8, 8, seed=1).clamp(-1, 1)
    return Exercise(_l_simple, cases=[(probe, x0, Build(NoiseSchedule, "linear", 50), Generator(3)),
                                      (probe, x0[:2], Build(NoiseSchedule, "cosine", 100), Generator(4))], no_grad=True)


def test_ddpm_step() -> Exercise:
    schedule = Build(NoiseSchedule, "linear", 80)
    eps, x_t = _randn(3, 1, 6, 6, seed=5), _randn(3, 1, 6, 6, seed=6)
    cases = [(eps, t, x_t, schedule, v, Generator(9)) for t in (79, 40, 1, 0) for v in ("beta", "beta_tilde")]
    return Exercise(_ddpm_step, cases=cases, atol=1e-4)
