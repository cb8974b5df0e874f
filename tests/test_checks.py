"""Exercise checks (course_utils.checks)."""
from __future__ import annotations

import pytest
import torch

from course_utils.checks import ExerciseNotDone, check_function, check_module, compare
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


# --------------------------------------------------------------------------- module exercises, unfinished exercises

def test_check_module_shares_the_weights_and_names_the_layers():
    from torch import nn

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 3)
            self.norm = nn.LayerNorm(3)

        def forward(self, x):
            return self.norm(self.proj(x)).relu()

    class Student(Reference):                       # same layers, another way to write forward
        def forward(self, x):
            h = x @ self.proj.weight.T + self.proj.bias
            return torch.clamp(self.norm(h), min=0)

    class Wrong(Reference):
        def forward(self, x):
            return self.proj(x).relu()              # forgot the norm

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.norm = nn.LayerNorm(3)

    torch.manual_seed(0)
    x = torch.randn(5, 4)
    student = Student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    assert check_module(student, Reference(), cases=[(x,)], quiet=True) == 1
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items()), "the student's module changed"
    with pytest.raises(AssertionError, match="values differ"):
        check_module(Wrong(), Reference(), cases=[(x,)])
    with pytest.raises(AssertionError, match=r"missing \['proj.bias', 'proj.weight'\]"):
        check_module(Renamed(), Reference(), cases=[(x,)])


def _run_notebook(*sources: str) -> list[dict]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    return nb.cells


def test_an_unfinished_exercise_stops_a_cell_with_one_line():
    cells = _run_notebook(
        "from course_utils.checks import check_function",
        "def q_sample(x0, t, eps):\n    raise NotImplementedError('use eq. 4 of notebook 02')",
        "x_t = q_sample(1.0, 2, 3.0)",
        "print(x_t)",
        "print('independent cell', 6 * 7)",
        "_ = check_function(q_sample, lambda x0, t, eps: x0, cases=[(1.0, 2, 3.0)])",
        "1 / 0",
        "class MyBlock:\n    def forward(self, x):\n        raise NotImplementedError('attention, eq. 1')",
        "MyBlock().forward(1)")
    errors = {i: o for i, c in enumerate(cells) for o in c.outputs if o.output_type == "error"}
    assert sorted(errors) == [2, 3, 5, 6, 8], errors
    assert "needs the exercise `MyBlock`" in errors[8].traceback[0] and "`class MyBlock`" in errors[8].traceback[0]
    for i in (2, 3, 5):
        assert len(errors[i].traceback) == 1, f"cell {i} shows a traceback chain: {errors[i].traceback}"
    assert "needs the exercise `q_sample`" in errors[2].traceback[0] and "use eq. 4 of notebook 02" in errors[2].traceback[0]
    assert "x_t" in errors[3].traceback[0] and "unfinished exercise(s) `q_sample`" in errors[3].traceback[0]
    assert "Exercise not finished: `q_sample`" in errors[5].traceback[0]
    assert "independent cell 42" in "".join(o.get("text", "") for o in cells[4].outputs)
    assert len(errors[6].traceback) > 1 and errors[6].ename == "ZeroDivisionError", "other errors keep their traceback"


def test_a_python_float_is_asked_for_by_name():
    import numpy as np
    with pytest.raises(AssertionError, match="expected a Python float .* got float32"):
        compare(np.float32(0.5), 0.5)
    compare(1, 1.0)                                                        # an int that equals it is fine


def test_checks_compute_in_full_float32_and_restore_the_flags():
    seen = []

    def student(x):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return x

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        check_function(student, lambda x: x, cases=[(torch.ones(2),)], quiet=True)
        assert seen == [(False, False)]
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (before[0], True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before[1]
