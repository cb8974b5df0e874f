"""Hidden tests of notebooks/02_forward_process.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py).
``forbid`` lists course_utils's own implementation of each exercise: calling it scores "delegated".
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


def _chain(x0, betas, noises):
    """The chain with the given noises: q_step for s = 0 .. len(noises) - 1."""
    x = x0
    for s in range(len(noises)):
        x = schedules.q_step(x, s, noises[s], betas)
    return x


_BETAS = (schedules.make_betas, schedules.NoiseSchedule.__init__)      # NoiseSchedule(...).betas is the answer too


def test_q_sample() -> Exercise:
    ab = NoiseSchedule("cosine", 200).alpha_bar
    x0, eps = _randn(5, 2, 6, 7, seed=1), _randn(5, 2, 6, 7, seed=2)        # 2 channels, not square
    t = torch.tensor([199, 0, 57, 57, 120])                                   # one t per image, repeats
    return Exercise(schedules.q_sample, cases=[(x0, t, eps, ab), (x0[:1], t[:1], eps[:1], ab)],
                    forbid=(schedules.q_sample, schedules.NoiseSchedule.q_sample, schedules.marginal_moments))


def test_q_sample_iterative() -> Exercise:
    x0 = _randn(4, 2, 5, 6, seed=50).clamp(-1, 1)
    cosine = schedules.make_betas("cosine", 40).float()                      # ends with the 0.999 clip
    linear = _linear(25, 1e-3, 0.2)                                          # float64 betas
    return Exercise(_chain, cases=[(x0, cosine, _randn(40, 4, 2, 5, 6, seed=51)),
                                   (x0[:1], linear, _randn(1, 1, 2, 5, 6, seed=52)),
                                   (x0, linear, _randn(25, 4, 2, 5, 6, seed=53))],
                    forbid=(schedules.q_sample_iterative, schedules.q_step))


def test_linear_betas() -> Exercise:
    return Exercise(_linear, cases=[(2, 1e-4, 0.02), (123, 5e-4, 0.01), (64, 1e-3, 0.03)], forbid=_BETAS)


def test_cosine_betas() -> Exercise:
    return Exercise(_cosine, cases=[(7, 0.008), (333, 0.01), (1, 0.008)], forbid=_BETAS)


def test_psnr() -> Exercise:
    target = _randn(3, 2, 6, 5, seed=3).clamp(-1, 1)
    estimate = target + 0.05 * _randn(3, 2, 6, 5, seed=4) * torch.tensor([1.0, 3.0, 10.0]).view(3, 1, 1, 1)
    return Exercise(baselines.psnr, cases=[(estimate, target, 2.0), (estimate, target, 255.0)],
                    forbid=(baselines.psnr,))
