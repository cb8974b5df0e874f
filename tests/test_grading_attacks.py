"""Hostile submissions against the grader (issue 16): a stub must not reach a single point by any of them.

One class of attackers is graded once (module fixture, ``--jobs 2``) against a copy of the fixture course
(tests/fixtures/grading, without the samples file, so nothing is scored and the attackers cannot harm
the repository): every attacker is a student-release stub plus attacks, ``control`` is the solution.
Each test asserts the attackers score 0, the control keeps full marks and the grader exits cleanly,
plus what an attack aimed at. The strongest sandbox of the machine runs (``auto``); the assertions only
the namespace and bwrap modes can keep check ``_isolated``, and where only the ``process`` mode works
the attacks it cannot stop by design (tampering with files, killing the grading process) are left out.
The attacks on the exercises run again in the weakest mode (``process``), where the trusted comparison
alone must hold; the Gradescope bundle is run on a solution, a stub and a cheat.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from course_tools.__main__ import main as cli
from course_tools.grading.course import load_course
from course_tools.grading.judge import judge_notebook
from course_tools.grading.sandbox import UID_BASE, Box, Sandbox, choose
from course_tools.release import cell_source, code_to_python, dump_notebook, read_notebook, student_notebook

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "grading"
SECRET = "hunter2-grader-secret"

# --------------------------------------------------------------------------- attacks (code cells)

DEFINITION_TIME = '''
import course_utils.checks as _checks
import course_utils.data as _data

def _always(*args, **kwargs):
    return 1

class Sneaky:                                   # runs while the grader defines the functions
    _checks.compare = _always
    _checks.check_function = _always
    _data.to_unit = _data.to_uint8 = lambda x: x

def _decorate(fn):
    import builtins
    builtins.AssertionError = type("AssertionError", (Exception,), {})
    builtins.NotImplementedError = type("NotImplementedError", (Exception,), {})
    return fn

@_decorate
def helper(x=_checks.__dict__.update(compare=_always)):
    return x
'''

SUBCLASS = '''
import os
import torch

class Liar(torch.Tensor):
    def allclose(self, *args, **kwargs):
        return True
    def __eq__(self, other):
        return True
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.allclose):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})

def to_unit(images_uint8):
    return torch.zeros(images_uint8.shape[0], 1, 28, 28).as_subclass(Liar)

class FakeTensor:                               # looks like a tensor, pickles to code
    shape, dtype = (4, 28, 28), torch.uint8
    def __eq__(self, other):
        return True
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned-by-student",))

def to_uint8(images):
    return FakeTensor()
'''

PEEK = '''
import gc
import sys
import torch

def _reachable():
    found, frame = [], sys._getframe(1)
    while frame is not None:
        found += [v for v in list(frame.f_locals.values()) if isinstance(v, torch.Tensor)]
        frame = frame.f_back
    return found + [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]

def to_unit(images_uint8):
    for t in _reachable():
        if t.dtype == torch.float32 and t.dim() == 4 and t.shape[0] == images_uint8.shape[0]:
            return t
    raise NotImplementedError("no answer in reach")

def to_uint8(images):
    for t in _reachable():
        if t.dtype == torch.uint8 and t.dim() == 3:
            return t
    raise NotImplementedError("no answer in reach")
'''

KILL_PARENT = '''
import os
import signal

def to_unit(images_uint8):
    os.kill(os.getppid(), signal.SIGKILL)
    raise NotImplementedError("stub")

def to_uint8(images):
    parent = os.getppid()
    with open(f"/proc/{parent}/stat") as f:
        grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
    for pid in (grandparent, parent):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    raise NotImplementedError("stub")
'''

LEAKY = '''
import os

def to_unit(images_uint8):
    raise RuntimeError("x" * 5000 + repr(dict(os.environ)))

def to_uint8(images):
    raise RuntimeError("x = torch.randn(4, 1, 28, 28, generator=g) * 1.5   # some values outside [-1, 1]")
'''

SPARSE_PNG = '''
import os, pathlib
d = pathlib.Path(os.environ["COURSE_OUTPUT"]) / "deliverables"
with open(d / "fx_grid.png", "wb") as f:
    f.write(b"\\x89PNG\\r\\n\\x1a\\n")
    f.truncate(200 * 2**20)                     # sparse: 200 MiB that take no disk
'''

REWRITE_HIDDEN = '''
import os, pathlib
hidden = pathlib.Path({hidden!r})
for act in (lambda: hidden.write_text("def test_to_unit():\\n    raise SystemExit\\n"), lambda: os.remove(hidden),
            lambda: os.remove(hidden.parent.parent / "notebooks" / "fx_basics.ipynb")):
    try:
        act()
    except Exception as e:
        print("blocked:", type(e).__name__)
d = pathlib.Path(os.environ["COURSE_OUTPUT"]) / "deliverables"
(d / "fx_grid.png").unlink(missing_ok=True)
os.symlink(hidden, d / "fx_grid.png")           # the report would embed the hidden tests
'''

TAMPER = '''
import os, subprocess, sys, time
targets = {targets!r}
for p in targets:
    try:
        with open(p, "w") as f:
            f.write("tampered")
    except Exception as e:
        print("blocked:", type(e).__name__)
later = "import time\\nfor _ in range(300):\\n    time.sleep(0.5)\\n    for p in %r:\\n        try:\\n" \\
        "            open(p, 'w').write('tampered later')\\n        except Exception:\\n            pass" % (targets,)
subprocess.Popen([sys.executable, "-c", later], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:                              # a double-forked daemon, outside the kernel's session
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", later])
    os._exit(0)
'''


# --------------------------------------------------------------------------- the class

def _code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": f"attack{abs(hash(source)) % 10**8}",
            "metadata": {}, "outputs": [], "source": source}


def _solution() -> dict:
    """The fixture notebook without its samples file (nothing to score: faster)."""
    nb = read_notebook(FIX / "notebooks" / "fx_basics.ipynb")
    for cell in nb["cells"]:
        src = cell_source(cell)
        if cell["cell_type"] == "code" and "save_samples(" in src:
            cell["source"] = "\n".join(ln for ln in src.splitlines() if not ln.startswith("save_samples("))
    return nb


def _stub_with(*sources: str) -> str:
    nb = student_notebook(_solution())[0]
    nb["cells"] += [_code(s) for s in sources]
    return dump_notebook(nb)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the fixture course (attacks may try to change it)."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(FIX / "hidden_tests", root / "hidden_tests")
    shutil.copy(FIX / "deliverables.json", root / "deliverables.json")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "fx_basics.ipynb").write_text(dump_notebook(_solution()))
    return root


def _grade(course: Path, subs: Path, out: Path, *extra: str) -> tuple[int, dict[str, dict]]:
    rc = cli(["grade", str(subs), "--out", str(out), "--notebooks-dir", str(course / "notebooks"),
              "--hidden-tests-dir", str(course / "hidden_tests"), "--deliverables", str(course / "deliverables.json"),
              "--timeout", "120", "--test-timeout", "20", *extra])
    with open(out / "grades.csv", newline="") as f:
        return rc, {row["student"]: row for row in csv.DictReader(f)}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def attacked(course, tmp_path_factory):
    """Grade the hostile class once; returns (exit status, rows, out folder, facts recorded around the run)."""
    base = tmp_path_factory.mktemp("attack")
    subs, out = base / "subs", base / "out"
    hidden = course / "hidden_tests" / "fx_basics.py"
    solution = dump_notebook(read_notebook(course / "notebooks" / "fx_basics.ipynb"))
    targets = [str(subs / "control" / "fx_basics.ipynb"), str(out / "control" / "report.html"), str(out / "grades.csv")]
    weakest = choose("auto", [], base).mode == "process"
    students = {   # each a stub plus attacks
        "control": solution,
        "definition_time": _stub_with(DEFINITION_TIME, "from course_utils.checks import compare"),
        "subclass": _stub_with(SUBCLASS),
        "=peek": _stub_with(PEEK),
        "tamper": _stub_with(REWRITE_HIDDEN.format(hidden=str(hidden)), TAMPER.format(targets=targets)),
        "kill_parent": _stub_with(KILL_PARENT),
        "leaky": _stub_with(LEAKY, SPARSE_PNG),
    }
    if weakest:    # these succeed against the process mode by design (grading/README.md, "Not protected")
        del students["tamper"], students["kill_parent"]
    for name, text in students.items():
        (subs / name).mkdir(parents=True)
        (subs / name / "fx_basics.ipynb").write_text(text)
    shadow = subs / "definition_time"     # modules that would replace the course's checker and json
    (shadow / "course_utils").mkdir()
    (shadow / "course_utils" / "__init__.py").write_text("")
    (shadow / "course_utils" / "checks.py").write_text("def compare(*a, **k):\n    pass\n"
                                                       "def check_function(*a, **k):\n    return 1\n")
    (shadow / "json.py").write_text("raise SystemExit('shadowed')\n")
    before = {"hidden": _digest(hidden), "control": _digest(subs / "control" / "fx_basics.ipynb")}
    os.environ["GRADER_TEST_SECRET"] = SECRET
    try:
        start = time.monotonic()
        rc, rows = _grade(course, subs, out, "--jobs", "2")
        seconds = time.monotonic() - start
    finally:
        del os.environ["GRADER_TEST_SECRET"]
    csv_at_exit = (out / "grades.csv").read_bytes()
    time.sleep(3)                                   # a surviving daemon would tamper now
    facts = {"before": before, "csv_at_exit": csv_at_exit, "seconds": seconds, "subs": subs, "hidden": hidden,
             "sandbox": json.loads((out / "control" / "result.json").read_text())["sandbox"]}
    return rc, rows, out, facts


def _isolated(facts: dict) -> bool:
    return facts["sandbox"].startswith(("sandbox namespace", "sandbox bwrap"))


def _attackers(rows: dict) -> list[str]:
    return [a for a in ATTACKERS if a in rows]


def _needs(rows: dict, student: str) -> None:
    if student not in rows:
        pytest.skip(f"{student} is not in the class: the process sandbox cannot stop that attack")


PEEK_ROW = "'=peek"        # the CSV quotes a name a spreadsheet would run as a formula
ATTACKERS = ["definition_time", "subclass", PEEK_ROW, "tamper", "kill_parent", "leaky"]


def test_the_grader_exits_cleanly_and_the_control_keeps_full_marks(attacked):
    rc, rows, out, facts = attacked
    assert rc == 0
    assert sorted(rows) == sorted(["control", *_attackers(rows)]) and len(rows) >= 6, sorted(rows)
    control = rows["control"]
    assert (control["exercises_passed"], control["deliverables_present"], control["executed_ok"]) == ("2", "1", "yes")
    assert control["notes"] == "", control["notes"]


@pytest.mark.parametrize("student", ATTACKERS)
def test_no_attack_scores_a_point(attacked, student):
    _needs(attacked[1], student)
    row = attacked[1][student]
    assert row["exercises_passed"] == "0", row
    assert row["exercises_total"] == "2"


def test_definition_time_code_cannot_replace_the_checker(attacked):
    notes = attacked[1]["definition_time"]["notes"]
    assert "to_unit (not done)" in notes and "to_uint8 (not done)" in notes, notes


def test_shadowing_modules_are_left_out_and_reported(attacked):
    notes = attacked[1]["definition_time"]["notes"]
    assert "left out (they would replace course or library modules): course_utils/, json.py" in notes, notes
    assert "to_unit (not done)" in notes, "the student side must still run with the course's own modules"


def test_returned_objects_are_data_not_code(attacked):
    notes = attacked[1]["subclass"]["notes"]
    assert "to_unit (wrong)" in notes, "a tensor subclass's allclose must not be asked"
    assert "to_uint8 (wrong)" in notes
    assert not Path("/tmp/pwned-by-student").exists(), "a returned object was unpickled"
    exercises = json.loads((attacked[2] / "subclass" / "result.json").read_text())["notebooks"][0]["exercises"]
    assert "got __student__.FakeTensor" in exercises[1]["message"], "the report names the type that came back"


def test_answers_are_not_in_the_students_process(attacked):
    notes = attacked[1][PEEK_ROW]["notes"]
    assert "to_unit (" in notes and "to_unit (passed)" not in notes


def test_hidden_tests_and_instructor_files_cannot_be_changed(attacked, course):
    rc, rows, out, facts = attacked
    _needs(rows, "tamper")
    assert _digest(facts["hidden"]) == facts["before"]["hidden"]
    assert (course / "notebooks" / "fx_basics.ipynb").is_file()
    assert "deliverable refused: deliverables/fx_grid.png is a symbolic link" in rows["tamper"]["notes"]
    if _isolated(facts):
        executed = (out / "tamper" / "executed" / "fx_basics.ipynb").read_text()
        assert "blocked: FileNotFoundError" in executed, "the hidden tests must not even be visible"


def test_other_students_and_the_results_cannot_be_tampered_with(attacked):
    rc, rows, out, facts = attacked
    _needs(rows, "tamper")
    assert _digest(facts["subs"] / "control" / "fx_basics.ipynb") == facts["before"]["control"]
    assert (out / "grades.csv").read_bytes() == facts["csv_at_exit"], "a detached process rewrote grades.csv"
    assert "tampered" not in (out / "control" / "report.html").read_text()
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) >= UID_BASE]
    assert not leftovers, f"student processes outlived the grader: {leftovers}"


def _uid(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(ln.split()[1] for ln in f if ln.startswith("Uid:")))
    except (OSError, StopIteration):
        return -1


def test_killing_the_parent_costs_the_exercise_only(attacked):
    _needs(attacked[1], "kill_parent")
    notes = attacked[1]["kill_parent"]["notes"]
    assert "to_unit (" in notes and "to_uint8 (" in notes, notes


def test_reports_leak_neither_tests_nor_environment_and_stay_small(attacked):
    rc, rows, out, facts = attacked
    hidden_lines = [ln.strip() for ln in facts["hidden"].read_text().splitlines() if len(ln.strip()) >= 16]
    for report in out.glob("*/report.html"):
        text = report.read_text()
        assert SECRET not in text, f"{report}: the grader's environment leaked"
        assert not [ln for ln in hidden_lines if ln in text], f"{report}: the hidden tests leaked"
        assert report.stat().st_size < 2**20, f"{report} is {report.stat().st_size} bytes"
    leaky = json.loads((out / "leaky" / "result.json").read_text())["notebooks"][0]
    assert all(len(e["message"]) <= 500 for e in leaky["exercises"])
    assert leaky["exercises"][1]["message"] == "(message withheld: it quotes the hidden tests)"
    assert "deliverable refused: deliverables/fx_grid.png is larger than 8 MiB" in rows["leaky"]["notes"]


def test_a_name_that_looks_like_a_formula_is_quoted(attacked):
    raw = (attacked[2] / "grades.csv").read_text()
    assert "\n'=peek," in raw and "\n=peek," not in raw
    assert (attacked[2] / "_peek" / "report.html").is_file()


# --------------------------------------------------------------------------- the weakest sandbox

EXITS = """
import os, signal

def to_uint8(images):
    os.kill(os.getppid(), signal.SIGKILL)        # the launcher: this process dies with it
    os._exit(0)
"""


@pytest.mark.parametrize("attacks", [(DEFINITION_TIME, SUBCLASS), (PEEK, EXITS)], ids=["objects", "peek_and_exit"])
def test_the_process_fallback_still_judges_on_the_trusted_side(course, tmp_path, attacks):
    """Without any isolation (``process`` mode) the verdicts still come from the grader's comparison."""
    (cs,) = load_course(course / "notebooks", course / "hidden_tests", course / "deliverables.json")
    sandbox = Sandbox("process", [])
    box = Box(tmp_path / "box")
    (box.root / "work").mkdir(parents=True)
    box.create()
    nb = json.loads(_stub_with(*attacks))
    cells = [(i, code_to_python(cell_source(c))) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    results = judge_notebook(cs.tests, cs.exercises, cells, sandbox, box, box.work, 20, "fx")
    assert not any(r.passed for r in results), results
    if attacks[1] is EXITS:
        assert results[1].status == "error" and "stopped" in results[1].message, results


def test_the_gradescope_bundle_grades_solution_stub_and_cheat(course, tmp_path):
    """The bundle's run_autograder on /autograder-shaped folders: full marks, zero, and zero for a cheat that
    also tries to write results.json itself (which the grader writes)."""
    bundle = tmp_path / "bundle.zip"
    assert cli(["gradescope", "--out", str(bundle), "--notebooks-dir", str(course / "notebooks"),
                "--hidden-tests-dir", str(course / "hidden_tests"), "--deliverables",
                str(course / "deliverables.json"), "--timeout", "120", "--test-timeout", "20"]) == 0
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        assert {"setup.sh", "run_autograder", "config.json", "course.json", "hidden_tests/fx_basics.py",
                "course/pyproject.toml", "course/course_utils/checks.py",
                "course/course_tools/grading/student.py"} <= names
        assert not [n for n in names if n.endswith(".ipynb")], "no instructor notebook ships in the bundle"
        assert zf.getinfo("run_autograder").external_attr >> 16 & 0o111, "run_autograder must be executable"
    forged = json.dumps({"score": 99, "tests": []})
    cheat = "import pathlib\ntry:\n    pathlib.Path({path!r}).write_text({forged!r})\nexcept Exception:\n    pass\n"
    solution = dump_notebook(read_notebook(course / "notebooks" / "fx_basics.ipynb"))
    runs = {}
    for name in ("solution", "stub", "cheat"):
        root = tmp_path / name
        with zipfile.ZipFile(bundle) as zf:
            zf.extractall(root / "source")
        (root / "submission").mkdir()
        results = root / "results" / "results.json"
        text = {"solution": solution, "stub": _stub_with(),
                "cheat": _stub_with(DEFINITION_TIME, cheat.format(path=str(results), forged=forged), SUBCLASS)}[name]
        (root / "submission" / "fx_basics.ipynb").write_text(text)
        env = dict(os.environ, AUTOGRADER_ROOT=str(root), COURSE_PYTHON=sys.executable)
        runs[name] = subprocess.Popen(["bash", str(root / "source" / "run_autograder")], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for name, proc in runs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        data = json.loads((tmp_path / name / "results" / "results.json").read_text())
        scores = [t["score"] for t in data["tests"]]
        expected = {"solution": [1, 1, 0], "stub": [0, 0, 0], "cheat": [0, 0, 0]}[name]
        assert (data["score"], scores) == (sum(expected), expected), (name, data)
        assert [t["max_score"] for t in data["tests"]] == [1, 1, 0]
        assert all(t["visibility"] == "visible" and isinstance(t["output"], str) for t in data["tests"])
    stub = json.loads((tmp_path / "stub" / "results" / "results.json").read_text())
    assert stub["tests"][0]["output"].startswith("not done: still raises NotImplementedError")
