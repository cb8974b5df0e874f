"""Hidden tests of notebooks/00_setup.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch

from course_utils import data, metrics
from course_utils.checks import check_function


def _raises_value_error(fn, *args) -> bool:
    try:
        fn(*args)
    except ValueError:
        return True
    return False


def test_to_unit(fn):
    g = torch.Generator().manual_seed(2024)
    odd_shape = torch.randint(0, 256, (3, 5, 7), generator=g, dtype=torch.uint8)   # not square
    extremes = torch.tensor([[[0, 255], [255, 0]]], dtype=torch.uint8)
    check_function(fn, data.to_unit, cases=[(odd_shape,), (extremes,)], quiet=True)


def test_to_uint8(fn):
    g = torch.Generator().manual_seed(7)
    overshoot = torch.randn(2, 1, 5, 7, generator=g) * 1.4          # beyond [-1, 1], not square
    exact = data.to_unit(torch.arange(256, dtype=torch.uint8).view(1, 16, 16))   # every level
    check_function(fn, data.to_uint8, cases=[(overshoot,), (exact,), (overshoot.double(),)], quiet=True)


def test_gaussian_stats(fn):
    g = torch.Generator().manual_seed(11)
    shifted = torch.randn(40, 3, generator=g) * torch.tensor([0.5, 2.0, 1.0]) + 3.0   # (40, 3) float32
    pair = torch.randn(2, 6, generator=g, dtype=torch.float64)                      # the smallest N
    check_function(fn, metrics.gaussian_stats, cases=[(shifted,), (pair,)], atol=1e-8, quiet=True)
    assert _raises_value_error(fn, torch.randn(1, 4)), "gaussian_stats must raise ValueError for N < 2"
    assert _raises_value_error(fn, torch.randn(5, 2, 2)), "gaussian_stats must raise ValueError for 3-D features"
