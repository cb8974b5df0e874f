"""Hidden tests of notebooks/00_setup.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py).
"""
import torch

from course_tools.grading.hidden import Case, Exercise
from course_utils import data, metrics


def test_to_unit() -> Exercise:
    g = torch.Generator().manual_seed(2024)
    odd_shape = torch.randint(0, 256, (3, 5, 7), generator=g, dtype=torch.uint8)   # not square
    extremes = torch.tensor([[[0, 255], [255, 0]]], dtype=torch.uint8)
    return Exercise(data.to_unit, cases=[(odd_shape,), (extremes,)], forbid=(data.to_unit,))


def test_to_uint8() -> Exercise:
    g = torch.Generator().manual_seed(7)
    overshoot = torch.randn(2, 1, 5, 7, generator=g) * 1.4          # beyond [-1, 1], not square
    exact = data.to_unit(torch.arange(256, dtype=torch.uint8).view(1, 16, 16))   # every level
    return Exercise(data.to_uint8, cases=[(overshoot,), (exact,), (overshoot.double(),)], forbid=(data.to_uint8,))


def test_gaussian_stats() -> Exercise:
    g = torch.Generator().manual_seed(11)
    shifted = torch.randn(40, 3, generator=g) * torch.tensor([0.5, 2.0, 1.0]) + 3.0   # (40, 3) float32
    pair = torch.randn(2, 6, generator=g, dtype=torch.float64)                      # the smallest N
    one = Case((torch.randn(1, 4, generator=g),), raises=ValueError,
               hint="gaussian_stats must raise ValueError for N < 2")
    three_d = Case((torch.randn(5, 2, 2, generator=g),), raises=ValueError,
                   hint="gaussian_stats must raise ValueError for 3-D features")
    return Exercise(metrics.gaussian_stats, cases=[(shifted,), (pair,), one, three_d], atol=1e-8,
                    forbid=(metrics.gaussian_stats,))
