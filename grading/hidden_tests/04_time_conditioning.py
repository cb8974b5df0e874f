"""Hidden tests of notebooks/04_time_conditioning.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch
from torch import nn

from course_utils import diffusion, unet
from course_utils.checks import check_function
from course_utils.device import cpu_generator
from course_utils.samplers import DDPMScheduler
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class _Probe(nn.Module):
    """A tiny noise predictor eps(x_t, t) whose output depends on both inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t):
        return self.conv(x) + (t.float() / 100).view(-1, 1, 1, 1)


def test_timestep_embedding(fn):
    t = torch.tensor([3, 77, 250, 998, 0])
    check_function(fn, unet.timestep_embedding, cases=[(t, 6), (t, 64), (t[:2], 16, 1000.0)], atol=1e-3, quiet=True)


def test_l_simple(fn):
    probe = _Probe()
    x0 = _randn(6, 1, 8, 8, seed=1).clamp(-1, 1)
    ours = lambda m, x, s, seed: fn(m, x, s, cpu_generator(seed))  # noqa: E731
    ref = lambda m, x, s, seed: diffusion.diffusion_loss(m, x, s, generator=cpu_generator(seed))  # noqa: E731
    with torch.no_grad():
        check_function(ours, ref, cases=[(probe, x0, NoiseSchedule("linear", 50), 3),
                                         (probe, x0[:2], NoiseSchedule("cosine", 100), 4)], name="l_simple", quiet=True)


def test_ddpm_step(fn):
    schedule = NoiseSchedule("linear", 80)
    eps, x_t = _randn(3, 1, 6, 6, seed=5), _randn(3, 1, 6, 6, seed=6)

    def ref(e, t, x, s, v, seed):
        return DDPMScheduler(s, variance=v, clip_sample=False).step(e, t, x, generator=cpu_generator(seed)).prev_sample

    ours = lambda e, t, x, s, v, seed: fn(e, t, x, s, v, cpu_generator(seed))  # noqa: E731
    cases = [(eps, t, x_t, schedule, v, 9) for t in (79, 40, 1, 0) for v in ("beta", "beta_tilde")]
    check_function(ours, ref, cases=cases, atol=1e-4, name="ddpm_step", quiet=True)
