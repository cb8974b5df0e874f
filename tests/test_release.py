"""The student release: solution blocks become stubs, outputs go, nothing leaks, output is deterministic."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from course_tools.__main__ import main as cli
from course_tools.release import (GENERIC_HINT, SolutionMarkerError, cell_source, dump_notebook, find_exercises,
                                  read_notebook, release_notebooks, solution_blocks, strip_solutions,
                                  student_notebook)

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_NB = ROOT / "tests" / "fixtures" / "grading" / "notebooks" / "fx_basics.ipynb"
COURSE_NBS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Every check on real notebooks also runs on the grader fixture, so it is exercised before notebooks exist.
ALL_NBS = [FIXTURE_NB] + COURSE_NBS


def _notebook(*sources: str) -> dict:
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                       "outputs": [], "source": s} for i, s in enumerate(sources)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_stub_keeps_indentation_and_uses_the_hint():
    src = ("def f(x):\n    y = x + 1\n    ### BEGIN SOLUTION\n    # HINT: square it\n    return y ** 2\n"
           "    ### END SOLUTION\n")
    out, n = strip_solutions(src)
    assert n == 1
    assert out == 'def f(x):\n    y = x + 1\n    raise NotImplementedError("square it")\n'
    ast.parse(out)


def test_generic_hint_and_nested_indentation():
    src = ("class A:\n    def f(self, xs):\n        for x in xs:\n            ### BEGIN SOLUTION\n"
           "            print(x)  # HINT: not at the start of a line, so not a hint\n            ### END SOLUTION\n"
           "        return xs")
    out, n = strip_solutions(src)
    assert n == 1
    assert f'            raise NotImplementedError("{GENERIC_HINT}")' in out.splitlines()
    assert "print(x)" not in out and out.endswith("return xs")
    ast.parse(out)


def test_hint_with_quotes_is_escaped():
    out, _ = strip_solutions('def f():\n    ### BEGIN SOLUTION\n    # HINT: use "sum" and a \\ slash\n'
                             '    return 1\n    ### END SOLUTION\n')
    tree = ast.parse(out)
    raise_call = tree.body[0].body[0].exc
    assert raise_call.args[0].value == 'use "sum" and a \\ slash'


@pytest.mark.parametrize("source, problem", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a ### BEGIN SOLUTION"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", "inside the block"),
])
def test_unbalanced_markers_name_notebook_and_cell(tmp_path, source, problem):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    (src_dir / "bad.ipynb").write_text(json.dumps(_notebook("import torch", source)))
    with pytest.raises(SolutionMarkerError) as err:
        release_notebooks(src_dir, tmp_path / "out", verbose=False)
    assert "bad.ipynb, cell 2" in str(err.value) and problem in str(err.value)
    assert not (tmp_path / "out").exists(), "a failed release must not write anything"
    assert cli(["release", "--notebooks-dir", str(src_dir), "--out", str(tmp_path / "out")]) == 1


def test_block_outside_a_function_cannot_be_graded():
    nb = _notebook("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n")
    with pytest.raises(SolutionMarkerError, match="not inside a top-level function"):
        find_exercises(nb, "top.ipynb")
    assert [e.name for e in find_exercises(read_notebook(FIXTURE_NB))] == ["to_unit", "to_uint8"]


def test_release_clears_outputs_keeps_metadata_and_is_deterministic(tmp_path):
    nb = read_notebook(FIXTURE_NB)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            cell["execution_count"] = i
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["secret output\n"]}]
            cell["metadata"] = {"tags": ["keep-me"]}
    src = tmp_path / "src"
    src.mkdir()
    (src / FIXTURE_NB.name).write_text(dump_notebook(nb))
    assert cli(["release", "--notebooks-dir", str(src), "--out", str(tmp_path / "a")]) == 0
    release_notebooks(src, tmp_path / "b", verbose=False)
    first = (tmp_path / "a" / FIXTURE_NB.name).read_bytes()
    assert first == (tmp_path / "b" / FIXTURE_NB.name).read_bytes()
    student = json.loads(first)
    code = [c for c in student["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert all(c["metadata"] == {"tags": ["keep-me"]} for c in code)
    assert student["metadata"] == nb["metadata"]
    assert [c["id"] for c in student["cells"]] == [c["id"] for c in nb["cells"]]
    assert [c["source"] for c in student["cells"] if c["cell_type"] == "markdown"] == \
        [c["source"] for c in nb["cells"] if c["cell_type"] == "markdown"]


def _solution_lines(nb: dict) -> tuple[set[str], set[str]]:
    """(stripped lines inside solution blocks, stripped lines of code cells outside them)."""
    inside, outside = set(), set()
    for cell in nb["cells"]:
        lines = cell_source(cell).splitlines()
        in_block = set()
        if cell["cell_type"] == "code":
            for begin, end, _, _ in solution_blocks(cell_source(cell)):
                in_block.update(range(begin, end + 1))
        for i, line in enumerate(lines):
            if line.strip():
                (inside if i in in_block else outside).add(line.strip())
    return inside, outside


@pytest.mark.parametrize("path", ALL_NBS, ids=lambda p: p.name)
def test_no_solution_text_leaks(path):
    """No line of a solution block is in the student version (outputs included).

    A short line (<= 30 characters, like ``return x``) that the instructor notebook also has
    outside the solution blocks is ordinary code, not the answer, and is allowed.
    """
    nb = read_notebook(path)
    student, _ = student_notebook(nb, path.name)
    text = dump_notebook(student)
    student_lines = set()
    for cell in student["cells"]:
        student_lines.update(ln.strip() for ln in cell_source(cell).splitlines())
        for out in cell.get("outputs", []):
            student_lines.update(ln.strip() for ln in json.dumps(out).split("\\n"))
    inside, outside = _solution_lines(nb)
    leaks = [ln for ln in sorted(inside) if ln in student_lines and not (len(ln) <= 30 and ln in outside)]
    assert not leaks, f"{path.name}: solution lines left in the student version: {leaks}"
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


@pytest.mark.parametrize("path", ALL_NBS, ids=lambda p: p.name)
def test_every_exercise_has_a_stub_that_parses(path):
    nb = read_notebook(path)
    student, count = student_notebook(nb, path.name)
    exercises = find_exercises(nb, path.name)
    assert count >= len(exercises) >= 1, f"{path.name} has no exercise"
    for ex in exercises:
        src = cell_source(student["cells"][ex.cell])
        blocks = len(solution_blocks(cell_source(nb["cells"][ex.cell])))
        assert src.count("raise NotImplementedError(") >= blocks, f"{path.name} cell {ex.cell + 1}: no stub"
        tree = ast.parse(src)  # the stub is correctly indented
        assert ex.name in {n.name for n in tree.body if hasattr(n, "name")}, f"{ex.name} lost its def"


def test_committed_student_copies_equal_a_fresh_release(tmp_path):
    committed = ROOT / "student"
    if not committed.is_dir():
        pytest.skip("student/ does not exist yet: generate it with `./course.sh release` "
                    "once the notebooks are final")
    release_notebooks(ROOT / "notebooks", tmp_path, verbose=False)
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    ours = {p.name: p.read_bytes() for p in committed.glob("*.ipynb")}
    assert sorted(ours) == sorted(fresh), "student/ and notebooks/ hold different notebooks; re-run the release"
    stale = [name for name in fresh if ours[name] != fresh[name]]
    assert not stale, f"student/ is out of date for {stale}; run `./course.sh release`"


def test_release_command_does_not_load_torch(tmp_path):
    """``python -m course_tools release`` only edits JSON: a real release in a fresh Python, torch never imported."""
    src = tmp_path / "src"
    src.mkdir()
    (src / FIXTURE_NB.name).write_bytes(FIXTURE_NB.read_bytes())
    probe = ("import runpy, sys\n"
             f"sys.argv = ['course_tools', 'release', '--notebooks-dir', {str(src)!r}, "
             f"'--out', {str(tmp_path / 'out')!r}]\n"
             "try:\n    runpy.run_module('course_tools', run_name='__main__', alter_sys=True)\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'course_utils'}))\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, r.stdout
    student = read_notebook(tmp_path / "out" / FIXTURE_NB.name)
    assert "raise NotImplementedError(" in "".join(cell_source(c) for c in student["cells"])


def test_markdown_answers_are_hidden_in_the_release():
    from course_tools.release import ANSWER_PLACEHOLDER, SolutionMarkerError, strip_answers, student_notebook
    md = "**Q1.** Why?\n<!-- BEGIN SOLUTION -->\nBecause the secret answer.\n<!-- END SOLUTION -->\n**Q2.** And?\n"
    out, n = strip_answers(md)
    assert n == 1 and "secret" not in out and ANSWER_PLACEHOLDER in out and "**Q2.** And?" in out
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": md.splitlines(keepends=True)}]}
    student, _ = student_notebook(nb)
    assert "secret" not in "".join(student["cells"][0]["source"])
    with pytest.raises(SolutionMarkerError, match="never closed"):
        strip_answers("<!-- BEGIN SOLUTION -->\nno end\n", "nb, cell 3")


def test_a_fresh_release_stops_each_cell_that_needs_an_exercise_with_one_line(tmp_path, monkeypatch):
    """Notebook 02 as a student gets it, run top to bottom with errors allowed (as the grader runs it).

    Every failing cell shows one line naming an unfinished exercise (no traceback chain, no other error),
    and the cells that need no exercise still run: the data loads, the text cells after the failures print.
    """
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / "02_forward_process.ipynb"
    student, _ = student_notebook(read_notebook(path), path.name)
    (tmp_path / path.name).write_text(dump_notebook(student))
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "out"))
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [(i, o) for i, c in enumerate(code) for o in c.outputs if o.output_type == "error"]
    exercises = {e.name for e in find_exercises(read_notebook(path), path.name)}
    assert errors, "the release ran without a single unfinished exercise"
    for i, err in errors:
        assert len(err.traceback) == 1, f"code cell {i}: a traceback chain instead of one line: {err.ename}"
        assert err.ename in ("NotImplementedError", "ExerciseNotDone", "NameError"), (i, err.ename, err.evalue)
        assert any(f"`{name}`" in err.traceback[0] for name in exercises), (i, err.traceback[0])
    ran = [i for i, c in enumerate(code) if c.outputs and not any(o.output_type == "error" for o in c.outputs)]
    assert ran and ran[-1] > errors[0][0], "no cell produced output after the first unfinished exercise"
