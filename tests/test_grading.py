"""The grader, on a tiny fixture course (tests/fixtures/grading), plus checks of the real hidden tests.

Kernel runs are the slow part (a few seconds each), so one class of submissions is graded once
(module fixture, ``--jobs 2``) and most tests read its CSV and reports.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

from course_utils.__main__ import main as cli
from course_utils.grading import load_deliverables
from course_utils.grading_workers import run_hidden_tests, score_samples_file
from course_utils.paths import data_dir
from course_utils.release import cell_source, dump_notebook, find_exercises, read_notebook, student_notebook

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "grading"
FIX_NB = FIX / "notebooks" / "fx_basics.ipynb"
HIDDEN = ROOT / "grading" / "hidden_tests"
COURSE_NBS = sorted((ROOT / "notebooks").glob("*.ipynb"))
course_nbs = pytest.mark.parametrize(
    "path", COURSE_NBS or [pytest.param(None, marks=pytest.mark.skip(reason="no notebook in notebooks/ yet"))],
    ids=lambda p: p.name if p else "none")


def _grade(subs: Path, out: Path, *extra: str) -> dict[str, dict]:
    """Grade ``subs`` against the fixture course; rows of grades.csv by student."""
    rc = cli(["grade", str(subs), "--out", str(out), "--notebooks-dir", str(FIX / "notebooks"),
              "--hidden-tests-dir", str(FIX / "hidden_tests"), "--deliverables", str(FIX / "deliverables.json"),
              *extra])
    assert rc == 0
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _with_cells(nb: dict, *sources: str, at: int | None = None) -> dict:
    nb = json.loads(json.dumps(nb))
    cells = [{"cell_type": "code", "execution_count": None, "id": f"extra-{i}", "metadata": {}, "outputs": [],
              "source": s} for i, s in enumerate(sources)]
    at = len(nb["cells"]) if at is None else at
    nb["cells"][at:at] = cells
    return nb


def _code_cells(nb: dict) -> list[tuple[int, str]]:
    return [(i, cell_source(c)) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory) -> Path:
    """A class: a zip with the solution, the student release, a syntax error that deletes a file,
    an invalid notebook, an empty folder, a broken zip and a stray file."""
    subs = tmp_path_factory.mktemp("submissions")
    solution = read_notebook(FIX_NB)
    with zipfile.ZipFile(subs / "alice.zip", "w") as zf:
        zf.writestr("fx_basics.ipynb", dump_notebook(solution))
    (subs / "bob").mkdir()
    (subs / "bob" / "fx_basics.ipynb").write_text(dump_notebook(student_notebook(solution)[0]))
    (subs / "carol").mkdir()
    (subs / "carol" / "notes.txt").write_text("my notes")
    carol = _with_cells(solution, "import os\nos.remove('notes.txt')", "def broken(:\n    pass")
    (subs / "carol" / "fx_basics.ipynb").write_text(dump_notebook(carol))
    (subs / "erin").mkdir()
    (subs / "erin" / "fx_basics.ipynb").write_text('{"cells": [ not json')
    (subs / "frank").mkdir()
    (subs / "zed.zip").write_bytes(b"this is not a zip")
    (subs / "readme.txt").write_text("not a submission")
    return subs


@pytest.fixture(scope="module")
def graded(class_dir, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    out = tmp_path_factory.mktemp("report")
    return out, _grade(class_dir, out, "--jobs", "2", "--timeout", "120")


def test_every_student_gets_a_row(graded):
    _, rows = graded
    assert sorted(rows) == ["alice", "bob", "carol", "erin", "frank", "zed"]
    assert all(r["notebook"] == "fx_basics.ipynb" and r["exercises_total"] == "2" for r in rows.values())


def test_solution_in_a_zip_gets_full_marks(graded):
    out, rows = graded
    alice = rows["alice"]
    assert (alice["exercises_passed"], alice["deliverables_present"], alice["deliverables_required"],
            alice["executed_ok"]) == ("2", "1", "1", "yes"), alice
    report = (out / "alice" / "report.html").read_text()
    assert "data:image/png;base64," in report, "the deliverable figure is not inline in the report"
    assert (out / "alice" / "executed" / "fx_basics.ipynb").is_file()
    samples = json.loads((out / "alice" / "result.json").read_text())["notebooks"][0]["samples"]
    assert list(samples) == ["fx_samples.pt"], "the saved samples were not picked up"


def test_student_release_scores_zero(graded):
    bob = graded[1]["bob"]
    assert bob["exercises_passed"] == "0" and bob["executed_ok"] == "no"
    assert "to_unit (not done)" in bob["notes"] and "to_uint8 (not done)" in bob["notes"]
    assert bob["deliverables_present"] == "1", "cells after a failing exercise still run"


def test_syntax_error_and_deleted_file_are_reported(graded, class_dir):
    carol = graded[1]["carol"]
    assert "syntax error in cell 12, line 1" in carol["notes"]
    assert "deleted files from its folder: notes.txt" in carol["notes"]
    assert carol["exercises_passed"] == "2", "a syntax error elsewhere must not cost the exercises"
    assert carol["executed_ok"] == "no"
    assert (class_dir / "carol" / "notes.txt").read_text() == "my notes", "the original submission was touched"


def test_unreadable_submissions_are_reported(graded):
    rows = graded[1]
    assert "not a valid notebook" in rows["erin"]["notes"]
    assert "missing notebook fx_basics.ipynb" in rows["frank"]["notes"]
    assert "not a valid zip file" in rows["zed"]["notes"]
    for name in ("erin", "frank", "zed"):
        assert (rows[name]["exercises_passed"], rows[name]["executed_ok"]) == ("0", "no")
        assert (graded[0] / name / "report.html").is_file()


def test_jobs_1_and_jobs_2_give_the_same_csv(class_dir, graded, tmp_path):
    """Sequential grading of part of the class (one kernel run) gives the rows the concurrent run gave."""
    part = ["bob", "erin", "frank", "zed"]
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in part:
        src = class_dir / name if (class_dir / name).is_dir() else class_dir / f"{name}.zip"
        (shutil.copytree if src.is_dir() else shutil.copy)(src, subs / src.name)
    _grade(subs, tmp_path / "out", "--jobs", "1", "--timeout", "120")
    lines = (graded[0] / "grades.csv").read_text().splitlines(keepends=True)
    expected = [lines[0]] + [ln for ln in lines[1:] if ln.split(",")[0] in part]
    assert len(expected) == len(part) + 1
    assert (tmp_path / "out" / "grades.csv").read_text() == "".join(expected)


def test_endless_loop_times_out(tmp_path):
    subs = tmp_path / "subs"
    (subs / "dave").mkdir(parents=True)
    looping = _with_cells(read_notebook(FIX_NB), "import time\nwhile True:\n    time.sleep(0.05)", at=1)
    (subs / "dave" / "fx_basics.ipynb").write_text(dump_notebook(looping))
    start = time.monotonic()
    dave = _grade(subs, tmp_path / "out", "--timeout", "5")["dave"]
    assert time.monotonic() - start < 120
    assert "timed out after 5 s (cell 2)" in dave["notes"]
    assert dave["executed_ok"] == "no"
    assert dave["exercises_passed"] == "2", "hidden tests do not depend on executing the notebook"


def test_hidden_tests_tell_what_is_wrong():
    solution = read_notebook(FIX_NB)
    names = [e.name for e in find_exercises(solution)]
    tests = str(FIX / "hidden_tests" / "fx_basics.py")
    cells = _code_cells(solution)
    wrong = cells + [(99, "def to_unit(images_uint8):\n    return images_uint8.float() / SCALE - 1.0")]
    cheat = [(0, "import torch\nfrom course_utils.data import to_unit, to_uint8")]
    loop = cells + [(99, "def to_uint8(images):\n    while True:\n        pass")]
    status = lambda cells_, timeout=30: [r["status"] for r in run_hidden_tests(cells_, names, tests, "fx", timeout)]
    assert status(cells) == ["passed", "passed"]
    assert status(_code_cells(student_notebook(solution)[0])) == ["not done", "not done"]
    rows = run_hidden_tests(wrong, names, tests, "fx")
    assert rows[0]["status"] == "wrong" and "shape (3, 28, 28), expected (3, 1, 28, 28)" in rows[0]["message"]
    assert status(cheat) == ["missing", "missing"], "an import of the reference is not the student's function"
    assert status(loop, timeout=1) == ["passed", "timeout"]
    assert status(cells + [(99, "def to_unit(\n")]) == ["passed", "passed"], "a broken later cell is skipped"
    no_tests = run_hidden_tests(cells, names, None, "fx")
    assert [r["status"] for r in no_tests] == ["no hidden test"] * 2 and "grading/hidden_tests/fx.py" in \
        no_tests[0]["message"]


def test_samples_are_checked_before_scoring(tmp_path):
    torch.save(torch.zeros(4, 3, 28, 28), tmp_path / "bad_shape.pt")
    torch.save(torch.full((4, 1, 28, 28), 3.0), tmp_path / "bad_range.pt")
    assert "expected a tensor (N, 1, 28, 28)" in score_samples_file(tmp_path / "bad_shape.pt", 4)["note"]
    assert "must lie in [-1, 1]" in score_samples_file(tmp_path / "bad_range.pt", 4)["note"]
    if not (data_dir() / "classifier.pt").is_file():
        pytest.skip("data/classifier.pt is missing: sample scores need the metric classifier")
    torch.save(torch.rand(32, 1, 28, 28) * 2 - 1, tmp_path / "ok.pt")
    scores = score_samples_file(tmp_path / "ok.pt", 32)
    assert {"frechet", "floor", "ratio"} <= set(scores) and scores["ratio"] > 0, scores


def test_bad_command_lines_fail_cleanly(tmp_path, capsys):
    assert cli(["grade", str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert cli(["grade", str(tmp_path), "--notebooks-dir", str(tmp_path / "empty")]) == 1
    assert "no instructor notebooks" in capsys.readouterr().out


# --------------------------------------------------------------------------- the real course

@course_nbs
def test_every_exercise_has_a_hidden_test(path):
    names = [e.name for e in find_exercises(read_notebook(path), path.name)]
    tests = HIDDEN / f"{path.stem}.py"
    assert tests.is_file(), f"{path.name} has exercises {names} but no {tests.relative_to(ROOT)}"
    source = tests.read_text()
    missing = [n for n in names if not re.search(rf"^def test_{n}\(", source, re.M)]
    assert not missing, f"{tests.relative_to(ROOT)} lacks test_<name>(fn) for {missing}"


@course_nbs
def test_hidden_tests_pass_on_the_solution_and_fail_on_the_release(path):
    nb = read_notebook(path)
    names = [e.name for e in find_exercises(nb, path.name)]
    tests = HIDDEN / f"{path.stem}.py"
    if not tests.is_file():
        pytest.skip(f"no hidden tests for {path.name} (test_every_exercise_has_a_hidden_test fails)")
    solution = run_hidden_tests(_code_cells(nb), names, str(tests), path.stem)
    assert all(r["status"] == "passed" for r in solution), solution
    release = run_hidden_tests(_code_cells(student_notebook(nb)[0]), names, str(tests), path.stem)
    assert all(r["status"] == "not done" for r in release), release


def test_deliverables_list_names_real_notebooks_and_figures():
    listed = load_deliverables(ROOT / "grading" / "deliverables.json")
    assert listed, "grading/deliverables.json lists no deliverable"
    for stem, names in listed.items():
        nb_path = ROOT / "notebooks" / f"{stem}.ipynb"
        assert all(n.startswith(stem.split("_")[0] + "_") for n in names), f"{stem}: names start with its number"
        if not nb_path.is_file():
            continue  # notebook not written yet
        source = "".join(cell_source(c) for c in read_notebook(nb_path)["cells"])
        absent = [n for n in names if Path(n).stem not in source]
        assert not absent, f"{nb_path.name} never saves the deliverables {absent} listed in grading/deliverables.json"


@course_nbs
def test_every_notebook_lists_its_deliverables(path):
    listed = load_deliverables(ROOT / "grading" / "deliverables.json")
    assert path.stem in listed, f"add \"{path.stem}\": [its required figures] to grading/deliverables.json"
