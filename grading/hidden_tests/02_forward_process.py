"""Hidden tests of notebooks/02_forward_process.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py).
"""
import torch

from course_tools.grading.hidden import Exercise
from course_utils import baselines, schedules
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _linear(T, beta_start, beta_end):
    return schedules.make_betas("linear", T, beta_start=beta_start, beta_end=beta_end)


def _cosine(T, s):
    return schedules.make_betas("cosine", T, s=s)


def test_q_sample() -> Exercise:
    ab = NoiseSchedule("cosine", 200).alpha_bar
    x0, eps = _randn(5, 2, 6, 7, seed=1), _randn(5, 2, 6, 7, seed=2)        # 2 channels, not square
    t = torch.tensor([199, 0, 57, 57, 120])                                   # one t per image, repeats
    return Exercise(schedules.q_sample, cases=[(x0, t, eps, ab), (x0[:1], t[:1], eps[:1], ab)])


def test_linear_betas() -> Exercise:
    return Exercise(_linear, cases=[(2, 1e-4, 0.02), (123, 5e-4, 0.01), (64, 1e-3, 0.03)])


def test_cosine_betas() -> Exercise:
    return Exercise(_cosine, cases=[(7, 0.008), (333, 0.01), (1, 0.008)])


def test_psnr() -> Exercise:
    target = _randn(3, 2, 6, 5, seed=3).clamp(-1, 1)
    estimate = target + 0.05 * _randn(3, 2, 6, 5, seed=4) * torch.tensor([1.0, 3.0, 10.0]).view(3, 1, 1, 1)
    return Exercise(baselines.psnr, cases=[(estimate, target, 2.0), (estimate, target, 255.0)])
