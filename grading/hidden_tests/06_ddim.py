"""Hidden tests of notebooks/06_ddim.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch

from course_utils import editing
from course_utils.checks import check_function
from course_utils.schedules import NoiseSchedule

_SCHED = NoiseSchedule("cosine", 200)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_ddim_sigma(fn):
    ab, ab_prev = _SCHED.alpha_bar, _SCHED.alpha_bar_prev
    kept = torch.tensor([180, 120, 60, 0])
    check_function(fn, editing.ddim_sigma, cases=[(ab[1:150], ab_prev[1:150], 0.7), (ab[kept[:-1]], ab[kept[1:]], 1.0),
                                                  (ab[kept[:-1]], ab[kept[1:]], 0.0)], quiet=True)


def test_ddim_step(fn):
    ab = _SCHED.alpha_bar
    x_t, eps, z = _randn(2, 1, 5, 5, seed=1), _randn(2, 1, 5, 5, seed=2), _randn(2, 1, 5, 5, seed=3)
    check_function(fn, editing.ddim_step, cases=[(x_t, eps, ab[150], ab[120], 0.0), (x_t, eps, ab[90], ab[10], 0.8, z),
                                                 (x_t, eps, ab[60], ab[59], 1.0)], atol=1e-4, quiet=True)


def test_ddim_invert_step(fn):
    ab = _SCHED.alpha_bar
    x_s, eps = _randn(2, 1, 5, 5, seed=4), _randn(2, 1, 5, 5, seed=5)
    ref = lambda x, e, a_s, a_t: editing.ddim_step(x, e, a_s, a_t, eta=0.0)  # noqa: E731
    check_function(fn, ref, cases=[(x_s, eps, ab[5], ab[60]), (x_s, eps, torch.tensor(1.0), ab[10]),
                                   (x_s, eps, ab[100], ab[150])], atol=1e-4, quiet=True)


def test_slerp(fn):
    z0, z1 = _randn(2, 3, 4, 4, seed=6), _randn(2, 3, 4, 4, seed=7)          # 3 channels
    flat0, flat1 = _randn(4, 10, seed=8), _randn(4, 10, seed=9)              # (B, D)
    check_function(fn, editing.slerp, cases=[(z0, z1, 0.25), (z0, z1, 1.0), (flat0, flat1, 0.6)], atol=1e-4, quiet=True)
