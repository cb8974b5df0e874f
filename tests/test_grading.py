"""The grader, on a tiny fixture course (tests/fixtures/grading), plus checks of the real hidden tests.

Kernel runs are the slow part (a few seconds each), so one class of submissions is graded once
(module fixture, ``--jobs 2``) and most tests read its CSV and reports. Hostile submissions are in
tests/test_grading_attacks.py.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

import course_tools.grading.grader as grader
from course_tools.__main__ import main as cli
from course_tools.grading.course import load_deliverables
from course_tools.grading.files import image_problem, read_untrusted, report_names
from course_tools.grading.hidden import Build, load_hidden_tests
from course_tools.grading.judge import judge_notebook, verdict
from course_tools.grading.report import spreadsheet_safe
from course_tools.grading.sandbox import SandboxUnavailable, choose
from course_tools.grading.student import call_cases, forbidden, notebook_globals, student_namespace
from course_tools.grading.wire import Opaque, WireError, decode, encode
from course_tools.grading.worker import score_samples_file
from course_tools.release import cell_source, code_to_python, dump_notebook, find_exercises, read_notebook, \
    student_notebook
from course_utils.deliverables import save_samples
from course_utils.paths import data_dir

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "grading"
FIX_NB = FIX / "notebooks" / "fx_basics.ipynb"
HIDDEN = ROOT / "grading" / "hidden_tests"
COURSE_NBS = sorted((ROOT / "notebooks").glob("*.ipynb"))
course_nbs = pytest.mark.parametrize(
    "path", COURSE_NBS or [pytest.param(None, marks=pytest.mark.skip(reason="no notebook in notebooks/ yet"))],
    ids=lambda p: p.name if p else "none")


def _grade(subs: Path, out: Path, *extra: str, status: int = 0) -> dict[str, dict]:
    """Grade ``subs`` against the fixture course; rows of grades.csv by student."""
    rc = cli(["grade", str(subs), "--out", str(out), "--notebooks-dir", str(FIX / "notebooks"),
              "--hidden-tests-dir", str(FIX / "hidden_tests"), "--deliverables", str(FIX / "deliverables.json"),
              *extra])
    assert rc == status
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
    return [(i, code_to_python(cell_source(c))) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def _judge_here(tests, names: list[str], cells: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """``(status, message)`` per exercise, with both sides in this process (for trusted notebooks only).

    The answers still travel through the wire format and ``verdict``, as in the grader.
    """
    defined, out = student_namespace(cells), []
    for name in names:
        ex = tests.exercises[name]
        if name not in defined:
            out.append(("missing", ""))
            continue
        fn, calls = defined[name], []
        outputs = json.loads(json.dumps(call_cases(fn, ex.inputs, ex.no_grad,
                                                   guard=lambda: forbidden(ex.forbid, [notebook_globals(fn)], calls))))
        out.append(("delegated", ", ".join(sorted(set(calls)))) if calls else verdict(ex, outputs))
    return out


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory) -> Path:
    """A class: a zip with the solution, the student release, a syntax error that deletes a file,
    an invalid notebook, a broken zip and an invalid notebook whose names clash (zed, Zed), and
    entries that are skipped: an empty folder, a hidden folder and a stray file."""
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
    (subs / ".trash").mkdir()
    (subs / ".trash" / "fx_basics.ipynb").write_text(dump_notebook(solution))
    (subs / "zed.zip").write_bytes(b"this is not a zip")
    (subs / "Zed").mkdir()
    (subs / "Zed" / "fx_basics.ipynb").write_text("[]")
    (subs / "readme.txt").write_text("not a submission")
    _write_solution_variant(subs / "dave", solution, {   # delegates both exercises to course_utils's own answers
        "to_unit": "    return data.to_unit(images_uint8)\n",
        "to_uint8": "    from course_utils.data import to_uint8 as reference\n    return reference(images)\n"})
    _write_solution_variant(subs / "eve", solution, {    # correct, but computed differently from the reference
        "to_unit": "    x = images_uint8.to(torch.float32)[:, None]\n    return (x - 127.5) / 127.5\n",
        "to_uint8": "    x = torch.clamp(images.detach().cpu().float(), min=-1.0, max=1.0)\n"
                    "    return torch.round(127.5 * x + 127.5).to(torch.uint8)[:, 0]\n"})
    return subs


def _replace_solution(nb: dict, bodies: dict[str, str]) -> dict:
    """``nb`` with the solution block of each exercise ``name`` (a def, or a class whose method holds the block)
    replaced by ``bodies[name]``, written for a 4-space indent and re-indented to the block's."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        src = cell_source(cell)
        for name, body in bodies.items():
            if cell["cell_type"] == "code" and re.search(rf"^(def|class) {name}\b", src, re.M) \
                    and "### BEGIN SOLUTION" in src:
                head, rest = src.split("### BEGIN SOLUTION", 1)
                indent = head[head.rfind("\n") + 1:]
                head = head[:head.rfind("\n") + 1]
                body = "".join(indent + line[4:] + "\n" for line in body.splitlines())
                src = head + body + rest.split("### END SOLUTION", 1)[1].partition("\n")[2]
        cell["source"] = src
    return nb


def _write_solution_variant(folder: Path, solution: dict, bodies: dict[str, str]) -> None:
    folder.mkdir()
    (folder / "fx_basics.ipynb").write_text(dump_notebook(_replace_solution(solution, bodies)))


@pytest.fixture(scope="module")
def graded(class_dir, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    out = tmp_path_factory.mktemp("report")
    return out, _grade(class_dir, out, "--jobs", "2", "--timeout", "120")


def test_every_student_gets_a_row_and_skipped_entries_are_listed(graded):
    out, rows = graded
    assert sorted(rows) == ["Zed", "alice", "bob", "carol", "dave", "erin", "eve", "zed"]
    assert all(r["notebook"] == "fx_basics.ipynb" and r["exercises_total"] == "2" for r in rows.values())
    with open(out / "skipped.csv", newline="") as f:
        skipped = {row["entry"]: row["reason"] for row in csv.DictReader(f)}
    assert skipped == {".trash": "hidden (the name starts with a dot)", "frank": "no notebook (.ipynb) inside",
                       "readme.txt": "not a folder or .zip"}


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
    if (data_dir() / "classifier.pt").is_file():      # scored with the labels save_samples stored
        assert {"frechet", "ratio", "accuracy"} <= set(samples["fx_samples.pt"]), samples


def test_student_release_scores_zero(graded):
    bob = graded[1]["bob"]
    assert bob["exercises_passed"] == "0" and bob["executed_ok"] == "no"
    assert "to_unit (not done)" in bob["notes"] and "to_uint8 (not done)" in bob["notes"]
    assert bob["deliverables_present"] == "1", "cells after a failing exercise still run"


def test_delegating_to_the_reference_scores_zero(graded):
    dave = graded[1]["dave"]
    assert (dave["exercises_passed"], dave["exercises_delegated"]) == ("0", "2"), dave
    assert "to_unit (delegated)" in dave["notes"] and "to_uint8 (delegated)" in dave["notes"]
    assert dave["executed_ok"] == "yes", "the notebook itself runs: only the hidden tests refuse the delegation"
    report = (graded[0] / "dave" / "report.html").read_text()
    assert "course_utils.data.to_unit" in report, "the report does not say which reference was called"


def test_a_different_correct_implementation_gets_full_marks(graded):
    eve = graded[1]["eve"]
    assert (eve["exercises_passed"], eve["exercises_delegated"]) == ("2", "0"), eve


def test_syntax_error_and_deleted_file_are_reported(graded, class_dir):
    carol = graded[1]["carol"]
    assert "syntax error in cell 12, line 1" in carol["notes"]
    assert "deleted files from its folder: notes.txt" in carol["notes"]
    assert carol["exercises_passed"] == "2", "a syntax error elsewhere must not cost the exercises"
    assert carol["executed_ok"] == "no"
    assert (class_dir / "carol" / "notes.txt").read_text() == "my notes", "the original submission was touched"


def test_unreadable_submissions_are_reported(graded):
    out, rows = graded
    assert "not a valid notebook" in rows["erin"]["notes"]
    assert "not a valid zip file" in rows["zed"]["notes"]
    assert "not a valid notebook: no list of cells" in rows["Zed"]["notes"]
    for name in ("erin", "zed", "Zed"):
        assert (rows[name]["exercises_passed"], rows[name]["executed_ok"]) == ("0", "no")
    assert (out / "erin" / "report.html").is_file()
    assert "Grades: Zed<" in (out / "Zed" / "report.html").read_text()
    assert "Grades: zed<" in (out / "zed-2" / "report.html").read_text(), "names that clash get their own folder"


def test_jobs_1_and_jobs_2_give_the_same_csv(class_dir, graded, tmp_path):
    """Sequential grading of part of the class (one kernel run) gives the rows the concurrent run gave."""
    part = ["bob", "erin", "zed"]
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
    tests = load_hidden_tests(FIX / "hidden_tests" / "fx_basics.py", names)
    cells = _code_cells(solution)
    wrong = cells + [(99, "def to_unit(images_uint8):\n    return images_uint8.float() / SCALE - 1.0\n"
                          "def to_uint8(images):\n"
                          "    return (images.clamp(-1, 1) + 1).mul(SCALE).round().byte()[:, 0]")]
    cheat = [(0, "import torch\nfrom course_utils.data import to_unit, to_uint8")]
    status = lambda cells_: [r[0] for r in _judge_here(tests, names, cells_)]  # noqa: E731
    assert status(cells) == ["passed", "passed"]
    assert status(_code_cells(student_notebook(solution)[0])) == ["not done", "not done"]
    rows = _judge_here(tests, names, wrong)
    assert rows[0] == ("wrong", "to_unit case 0: shape (3, 28, 28), expected (3, 1, 28, 28)"), rows
    assert rows[1] == ("wrong", "to_uint8 must raise ValueError for images with 3 channels "
                                "(to_uint8 case 1: must raise ValueError, returned a value)"), rows
    assert status(cheat) == ["missing", "missing"], "an import of the reference is not the student's function"
    assert status(cells + [(99, "def to_unit(\n")]) == ["passed", "passed"], "a broken later cell is skipped"
    no_tests = load_hidden_tests(None, names)
    assert [e.broken for e in no_tests.exercises.values()] == ["no hidden test"] * 2


def test_the_student_side_runs_in_the_sandbox_with_a_clock_per_exercise(tmp_path):
    """The real student process: the student's own modules import, an endless exercise costs itself only."""
    names = ["to_unit", "to_uint8"]
    tests = load_hidden_tests(FIX / "hidden_tests" / "fx_basics.py", names)
    sandbox = choose("auto", [], tmp_path)
    box = sandbox.box(tmp_path / "box", 1)
    (box.root / "work").mkdir(parents=True)
    (box.root / "work" / "alice_helpers.py").write_text("SCALE = 127.5\n")
    box.create()
    cells = [(0, "import torch\nfrom alice_helpers import SCALE\n\ndef to_unit(images_uint8):\n    while True:\n"
                 "        pass\n\ndef to_uint8(images):\n    if images.shape[1] != 1:\n"
                 "        raise ValueError('channels')\n"
                 "    return ((images.clamp(-1, 1) + 1) * SCALE).round().to(torch.uint8).squeeze(1)")]
    results = judge_notebook(tests, names, cells, sandbox, box, box.work, 2, "fx")
    assert [(r.status, r.message) for r in results] == [("timeout", "took longer than 2 s"), ("passed", "")]


def test_samples_are_checked_before_scoring(tmp_path, monkeypatch):
    """The grader reads samples with course_utils.deliverables.load_samples: its errors become the report's note."""
    torch.save(torch.zeros(4, 3, 28, 28), tmp_path / "bad_shape.pt")
    torch.save(torch.full((4, 1, 28, 28), 3.0), tmp_path / "bad_range.pt")
    torch.save(torch.zeros(1, 1, 28, 28), tmp_path / "one.pt")
    assert "bad_shape.pt: images has 3 channels" in score_samples_file(tmp_path / "bad_shape.pt", 4)["note"]
    assert "must lie in [-1, 1]" in score_samples_file(tmp_path / "bad_range.pt", 4)["note"]
    assert "need at least 2 samples" in score_samples_file(tmp_path / "one.pt", 4)["note"]
    if not (data_dir() / "classifier.pt").is_file():
        pytest.skip("data/classifier.pt is missing: sample scores need the metric classifier")
    torch.save(torch.rand(32, 1, 28, 28) * 2 - 1, tmp_path / "ok.pt")            # a bare tensor, as notebooks wrote
    scores = score_samples_file(tmp_path / "ok.pt", 32)
    assert {"frechet", "floor", "ratio"} <= set(scores) and "accuracy" not in scores, scores
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "out"))
    labelled = save_samples("fx_samples", torch.rand(32, 1, 28, 28) * 2 - 1, torch.arange(32) % 10)
    scores = score_samples_file(labelled, 20)
    assert scores["n"] == 20 and 0 <= scores["accuracy"] <= 1 and scores["ratio"] > 0, scores


def test_bad_worker_command_lines_fail(tmp_path):
    worker = [sys.executable, "-m", "course_tools.grading.worker"]
    bad = subprocess.run(worker + ["nope"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "execute,score_samples" in bad.stderr


def test_worker_module_loads_no_torch():
    """The execution worker (nbclient only) starts fast: importing it loads neither torch nor course_utils."""
    probe = ("import sys, course_tools.grading.worker\n"
             "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'course_utils'}))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "LOADED []" in r.stdout, r.stdout + r.stderr


def test_bad_command_lines_fail_cleanly(tmp_path, capsys):
    assert cli(["grade", str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert cli(["grade", str(tmp_path), "--notebooks-dir", str(tmp_path / "empty")]) == 1
    assert "no instructor notebooks" in capsys.readouterr().out


def test_a_dying_grading_process_is_reported_and_regraded_once(tmp_path, monkeypatch, capsys):
    """A grading process that dies costs a second try; dying twice leaves the student ungraded and the run fails."""
    subs = tmp_path / "subs"
    for name in ("erin", "nina"):
        (subs / name).mkdir(parents=True)
        (subs / name / "fx_basics.ipynb").write_text("not json")      # cheap to grade: nothing runs
    marker, real = tmp_path / "erin-died", grader.grade_student

    def dying(student, *args, **kwargs):
        if student == "nina" or not marker.exists():
            marker.touch()
            os._exit(3)
        return real(student, *args, **kwargs)

    monkeypatch.setattr(grader, "grade_student", dying)
    rows = _grade(subs, tmp_path / "out", "--jobs", "2", status=1)
    assert rows["erin"]["notes"].startswith("graded twice: the first grading process died (exit code 3)"), rows
    assert "not a valid notebook" in rows["erin"]["notes"]
    assert rows["nina"]["notes"] == "could not be graded: the grading process died twice (exit code 3; exit code 3)"
    assert "error: nina: not graded" in capsys.readouterr().out


def _descendants(pid: int) -> dict[int, str]:
    """``{pid: command line}`` of every living descendant of ``pid``."""
    parent_of, cmd = {}, {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent_of[int(p)] = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            cmd[int(p)] = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = {}, [pid]
    while frontier:
        kids = [c for c, par in parent_of.items() if par in frontier and c not in found]
        found.update({k: cmd[k] for k in kids})
        frontier = kids
    return found


def test_killing_the_grader_leaves_no_student_process(tmp_path):
    """SIGKILL to the grader mid-notebook: its grading process, the sandbox and the kernel all die with it."""
    (tmp_path / "subs" / "dave").mkdir(parents=True)
    looping = _with_cells(read_notebook(FIX_NB), "import time\nwhile True:\n    time.sleep(0.05)", at=1)
    (tmp_path / "subs" / "dave" / "fx_basics.ipynb").write_text(dump_notebook(looping))
    cmd = [sys.executable, "-m", "course_tools", "grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"),
           "--notebooks-dir", str(FIX / "notebooks"), "--hidden-tests-dir", str(FIX / "hidden_tests"),
           "--deliverables", str(FIX / "deliverables.json"), "--timeout", "120"]
    grader_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, tree = time.monotonic() + 120, {}
    while time.monotonic() < deadline and not any("ipykernel" in c for c in tree.values()):
        time.sleep(0.5)
        tree = _descendants(grader_proc.pid)
    grader_proc.kill()
    grader_proc.wait()
    assert any("ipykernel" in c for c in tree.values()), f"the notebook never started: {tree}"
    time.sleep(2)
    alive = {p: c for p, c in tree.items() if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"}
    assert not alive, f"left running after the grader died: {alive}"


def test_the_wire_format_carries_data_only():
    x = torch.arange(6, dtype=torch.float32).view(2, 3)
    value = {"t": (x, x.to(torch.bfloat16), torch.zeros(0, 2, dtype=torch.int64)), 3: [1.5, float("nan"), None, True]}
    back = decode(json.loads(json.dumps(encode(value))))
    assert back.keys() == value.keys() and type(back["t"]) is tuple
    assert back[3][:1] == [1.5] and back[3][1] != back[3][1] and back[3][2:] == [None, True]
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(back["t"], value["t"]))
    sub = torch.zeros(2).as_subclass(type("Sub", (torch.Tensor,), {}))
    assert type(decode(encode(sub, opaque=True))) is torch.Tensor, "a subclass comes back as a plain tensor"
    odd = decode(encode(object(), opaque=True))
    assert isinstance(odd, Opaque) and odd != odd and type(odd).__name__ == "builtins.object"
    with pytest.raises(WireError):
        encode(object())                                         # the grader never sends what it cannot encode
    for forged in ({"generator": 1}, {"build": ["os:system", None, ["ls"], {"dict": []}, None]},
                   {"tensor": ["float32", [4], "AAAA"]}, {"tensor": ["object", [1], ""]}, {"eval": "1"},
                   {"a": 1, "b": 2}):
        with pytest.raises(WireError):
            decode(forged)                                       # what a student process may send back
    with pytest.raises(WireError, match="factories come from"):
        decode({"build": ["os:system", None, ["ls"], {"dict": []}, None]}, inputs=True)
    gen = decode({"generator": 5}, inputs=True)
    assert torch.equal(torch.randn(3, generator=gen), torch.randn(3, generator=torch.Generator().manual_seed(5)))


def test_hidden_tests_build_inputs_and_keep_answers(tmp_path):
    from course_utils.denoiser import ConvBlock

    block = Build(ConvBlock, 1, 2, seed=3)
    built = decode(json.loads(json.dumps(encode(block))), inputs=True)
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), block.make().state_dict().values()))
    (tmp_path / "t.py").write_text(
        "import torch\nfrom course_tools.grading.hidden import Case, Exercise\n\n"
        "def test_good():\n"
        "    return Exercise(torch.neg, cases=[(torch.ones(2),), Case((None,), raises=TypeError)])\n\n"
        "def test_bad():\n    return 42\n")
    tests = load_hidden_tests(tmp_path / "t.py", ["good", "bad", "absent"])
    good = tests.exercises["good"]
    assert torch.equal(good.expected[0], -torch.ones(2)) and good.expected[1] is None and not good.broken
    assert "must return an Exercise" in tests.exercises["bad"].broken
    assert tests.exercises["absent"].broken == "no test_absent() in t.py"
    assert tests.scrub("AssertionError: def test_good():") == "(message withheld: it quotes the hidden tests)"
    assert tests.scrub("shape (2,), expected (3,)") == "shape (2,), expected (3,)"
    assert len(tests.sha256) == 64
    (tmp_path / "broken.py").write_text("raise RuntimeError('oops')\n")
    assert "broken.py does not load" in load_hidden_tests(tmp_path / "broken.py", ["x"]).exercises["x"].broken


def test_untrusted_files_are_read_safely(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ok.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    assert read_untrusted(tmp_path, "d/ok.png", 100).startswith(b"\x89PNG")
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", tmp_path / "d" / "link.png")
    os.symlink(tmp_path / "d", tmp_path / "dirlink")
    os.link(tmp_path / "secret", tmp_path / "d" / "hard.png")
    os.mkfifo(tmp_path / "d" / "fifo.png")
    for rel, why in [("d/link.png", "symbolic link"), ("dirlink/ok.png", "not a folder"), ("d/hard.png", "hard link"),
                     ("d/fifo.png", "not a regular file"), ("d/ok.png", "larger than")]:
        with pytest.raises(ValueError, match=why):
            read_untrusted(tmp_path, rel, 10 if rel == "d/ok.png" else 100)
    with pytest.raises(FileNotFoundError):
        read_untrusted(tmp_path, "d/absent.png", 100)
    assert image_problem("a.png", b"GIF89a") == "a.png is not a PNG file"
    assert image_problem("a.gif", b"GIF89a...") is None
    assert report_names(["a b", "a_b", "A_B", "..", "é", "grades.csv"]) == {
        "a b": "a_b", "a_b": "a_b-2", "A_B": "A_B-3", "..": "_", "é": "_-2", "grades.csv": "grades.csv-2"}
    assert [spreadsheet_safe(v) for v in ("=1+2", "+1", "-x", "@SUM(A1)", "ok", 3)] == ["'=1+2", "'+1", "'-x",
                                                                                        "'@SUM(A1)", "ok", 3]


def test_an_unavailable_sandbox_mode_is_refused(tmp_path):
    mode = "bwrap" if shutil.which("bwrap") is None else "uid" if os.geteuid() != 0 else None
    if mode is None:
        pytest.skip("every mode may work on this machine")
    with pytest.raises(SandboxUnavailable, match=f"sandbox {mode} unavailable"):
        choose(mode, [], tmp_path)
    assert choose("process", [], tmp_path).describe().startswith("sandbox process: ")


# --------------------------------------------------------------------------- the real course

@course_nbs
def test_every_exercise_has_a_hidden_test(path):
    names = [e.name for e in find_exercises(read_notebook(path), path.name)]
    tests = HIDDEN / f"{path.stem}.py"
    assert tests.is_file(), f"{path.name} has exercises {names} but no {tests.relative_to(ROOT)}"
    source = tests.read_text()
    missing = [n for n in names if not re.search(rf"^def test_{n}\(\)", source, re.M)]
    assert not missing, f"{tests.relative_to(ROOT)} lacks test_<name>() for {missing}"


@course_nbs
def test_hidden_tests_pass_on_the_solution_and_fail_on_the_release(path):
    nb = read_notebook(path)
    names = [e.name for e in find_exercises(nb, path.name)]
    tests = HIDDEN / f"{path.stem}.py"
    if not tests.is_file():
        pytest.skip(f"no hidden tests for {path.name} (test_every_exercise_has_a_hidden_test fails)")
    hidden = load_hidden_tests(tests, names)
    assert not [e.broken for e in hidden.exercises.values() if e.broken]
    solution = _judge_here(hidden, names, _code_cells(nb))
    assert all(status == "passed" for status, _ in solution), solution
    release = _judge_here(hidden, names, _code_cells(student_notebook(nb)[0]))
    assert all(status == "not done" for status, _ in release), release


@course_nbs
def test_every_hidden_test_forbids_the_course_answer(path):
    names = [e.name for e in find_exercises(read_notebook(path), path.name)]
    hidden = load_hidden_tests(HIDDEN / f"{path.stem}.py", names)
    bare = [n for n, ex in hidden.exercises.items() if not ex.forbid]
    assert not bare, f"{path.stem}: Exercise(..., forbid=...) is empty for {bare}: delegation would score"


@course_nbs
def test_delegating_every_exercise_scores_zero(path):
    """Each exercise's body replaced by a call of its first forbidden reference: every one is marked delegated."""
    nb = read_notebook(path)
    names = [e.name for e in find_exercises(nb, path.name)]
    hidden = load_hidden_tests(HIDDEN / f"{path.stem}.py", names)
    bodies = {}
    for name in names:
        module, qualname = hidden.exercises[name].forbid[0].split(":")
        bodies[name] = ("    import importlib\n"
                        f"    ref = importlib.import_module({module!r})\n"
                        f"    for part in {qualname.split('.')!r}:\n"
                        "        ref = getattr(ref, part)\n"
                        "    return ref(*[v for k, v in sorted(locals().items()) if k not in ('ref', 'part', 'importlib')])\n")
    results = _judge_here(hidden, names, _code_cells(_replace_solution(nb, bodies)))
    assert [status for status, _ in results] == ["delegated"] * len(names), list(zip(names, results))


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
