"""Hidden tests of notebooks/02_forward_process.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch

from course_utils import baselines, schedules
from course_utils.checks import check_function
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_q_sample(fn):
    ab = NoiseSchedule("cosine", 200).alpha_bar
    x0, eps = _randn(5, 2, 6, 7, seed=1), _randn(5, 2, 6, 7, seed=2)        # 2 channels, not square
    t = torch.tensor([199, 0, 57, 57, 120])                                   # one t per image, repeats
    check_function(fn, schedules.q_sample, cases=[(x0, t, eps, ab), (x0[:1], t[:1], eps[:1], ab)], quiet=True)


def test_linear_betas(fn):
    ref = lambda T, a, b: schedules.make_betas("linear", T, beta_start=a, beta_end=b)  # noqa: E731
    check_function(fn, ref, cases=[(2, 1e-4, 0.02), (123, 5e-4, 0.01), (64, 1e-3, 0.03)], quiet=True)


def test_cosine_betas(fn):
    ref = lambda T, s: schedules.make_betas("cosine", T, s=s)  # noqa: E731
    check_function(fn, ref, cases=[(7, 0.008), (333, 0.01), (1, 0.008)], quiet=True)


def test_psnr(fn):
    target = _randn(3, 2, 6, 5, seed=3).clamp(-1, 1)
    estimate = target + 0.05 * _randn(3, 2, 6, 5, seed=4) * torch.tensor([1.0, 3.0, 10.0]).view(3, 1, 1, 1)
    check_function(fn, baselines.psnr, cases=[(estimate, target, 2.0), (estimate, target, 255.0)], quiet=True)
