"""Hidden tests of notebooks/06_ddim.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py).
"""
import torch

from course_tools.grading.hidden import Exercise
from course_utils import editing, samplers
from course_utils.schedules import NoiseSchedule

_SCHED = NoiseSchedule("cosine", 200)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _invert_step(x, eps, ab_s, ab_t):
    return samplers.ddim_step(x, eps, ab_s, ab_t, eta=0.0)


def test_ddim_sigma() -> Exercise:
    ab, ab_prev = _SCHED.alpha_bar, _SCHED.alpha_bar_prev
    kept = torch.tensor([180, 120, 60, 0])
    return Exercise(samplers.ddim_sigma, cases=[(ab[1:150], ab_prev[1:150], 0.7), (ab[kept[:-1]], ab[kept[1:]], 1.0),
                                                (ab[kept[:-1]], ab[kept[1:]], 0.0)])


def test_ddim_step() -> Exercise:
    ab = _SCHED.alpha_bar
    x_t, eps, z = _randn(2, 1, 5, 5, seed=1), _randn(2, 1, 5, 5, seed=2), _randn(2, 1, 5, 5, seed=3)
    return Exercise(samplers.ddim_step, cases=[(x_t, eps, ab[150], ab[120], 0.0), (x_t, eps, ab[90], ab[10], 0.8, z),
                                               (x_t, eps, ab[60], ab[59], 1.0)], atol=1e-4)


def test_ddim_invert_step() -> Exercise:
    ab = _SCHED.alpha_bar
    x_s, eps = _randn(2, 1, 5, 5, seed=4), _randn(2, 1, 5, 5, seed=5)
    return Exercise(_invert_step, cases=[(x_s, eps, ab[5], ab[60]), (x_s, eps, torch.tensor(1.0), ab[10]),
                                         (x_s, eps, ab[100], ab[150])], atol=1e-4)


def test_slerp() -> Exercise:
    z0, z1 = _randn(2, 3, 4, 4, seed=6), _randn(2, 3, 4, 4, seed=7)          # 3 channels
    flat0, flat1 = _randn(4, 10, seed=8), _randn(4, 10, seed=9)              # (B, D)
    return Exercise(editing.slerp, cases=[(z0, z1, 0.25), (z0, z1, 1.0), (flat0, flat1, 0.6)], atol=1e-4)
