"""Exercise checks (course_utils.checks)."""
from __future__ import annotations

import pytest
import torch

from course_utils.checks import ExerciseNotDone, check_function, compare
from course_utils.data import to_unit

CASES = [(torch.arange(12, dtype=torch.uint8).view(3, 2, 2) * 20,), (torch.full((1, 28, 28), 255, dtype=torch.uint8),)]


def test_reference_against_itself(capsys):
    assert check_function(to_unit, to_unit, cases=CASES) == 2
    assert "to_unit: all 2 cases match" in capsys.readouterr().out


def test_kwargs_cases_and_quiet(capsys):
    assert check_function(lambda a, b=1: a * b, lambda a, b=1: a * b, cases=[{"a": 2.0, "b": 3.0}], quiet=True) == 1
    assert capsys.readouterr().out == ""


def test_shape_difference():
    def student(x):
        return x.float() / 127.5 - 1                  # forgot the channel axis
    with pytest.raises(AssertionError, match=r"shape \(3, 2, 2\), expected \(3, 1, 2, 2\)"):
        check_function(student, to_unit, CASES, name="to_unit")


def test_dtype_difference():
    def student(x):
        return (x.double().unsqueeze(1) / 127.5 - 1)
    with pytest.raises(AssertionError, match="dtype torch.float64, expected torch.float32"):
        check_function(student, to_unit, CASES)


def test_value_difference_names_worst_index():
    def student(x):
        y = to_unit(x)
        y[2, 0, 1, 0] += 0.5
        return y
    with pytest.raises(AssertionError) as info:
        check_function(student, to_unit, CASES, name="to_unit")
    msg = str(info.value)
    assert "to_unit case 0" in msg and "values differ" in msg and "(2, 0, 1, 0)" in msg and "0.5" in msg


def test_second_case_is_reported():
    def student(x):
        return to_unit(x) if x.shape[0] == 3 else to_unit(x) * 0
    with pytest.raises(AssertionError, match="case 1"):
        check_function(student, to_unit, CASES)


def test_not_implemented():
    def student(x):
        raise NotImplementedError("write to_unit")
    with pytest.raises(ExerciseNotDone, match="not implemented yet: write to_unit"):
        check_function(student, to_unit, CASES)
    assert issubclass(ExerciseNotDone, AssertionError)


def test_compare_containers_and_scalars():
    compare((torch.ones(2), 1.0), (torch.ones(2), 1.0 + 1e-9))
    with pytest.raises(AssertionError, match="tuple of 2 items"):
        compare((torch.ones(2),), (torch.ones(2), 1.0))
    with pytest.raises(AssertionError, match=r"output\['b'\]"):
        compare({"a": 1, "b": torch.zeros(2)}, {"a": 1, "b": torch.ones(2)})
    with pytest.raises(AssertionError, match="expected a torch.Tensor"):
        compare([1, 2], torch.tensor([1, 2]))
    with pytest.raises(AssertionError, match="1 of 3 entries differ"):
        compare(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))
    with pytest.raises(AssertionError, match="NaN"):
        compare(torch.tensor([float("nan")]), torch.tensor([0.0]))
    with pytest.raises(AssertionError, match="got 0.5, expected 0.25"):
        compare(0.5, 0.25)
