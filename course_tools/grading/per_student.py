"""Grade one student (trusted side): :func:`grade_student`, run by ``grader.py`` in a process of its own.

For one submission the grader

1. copies it into a fresh scratch box (``files.copy_submission``) and reads every course notebook from
   that copy before any of the student's code runs;
2. per notebook: notes syntax errors, grades the exercises (``judge.py``: the student's functions run in
   the sandbox, the comparison here), executes the notebook in the sandbox (``worker.py execute``),
   copies out the deliverables that are regular PNG/GIF files within the size caps, and scores the
   samples file in a separate process of its own (``worker.py score_samples``);
3. kills whatever the student left running (``Sandbox.stop``) and deletes the box.

What the student's code leaves in the box (executed notebook, status, figures) is read with
``files.read_untrusted``: no links, regular files, size caps. Only the grader writes the report folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from course_utils.paths import data_dir

from ..release import cell_source, code_to_python
from .course import CourseNotebook
from .files import copy_submission, find_notebook, image_problem, list_files, read_untrusted
from .judge import describe_status, judge_notebook
from .report import MAX_IMAGE_BYTES, ExerciseResult, NotebookResult, StudentResult
from .sandbox import Box, Sandbox

__all__ = ["GradeConfig", "MAX_NOTEBOOK_BYTES", "MAX_SAMPLES_BYTES", "MAX_EXECUTED_BYTES", "grade_student"]

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_SAMPLES_BYTES = 64 * 2**20
MAX_EXECUTED_BYTES = 50 * 2**20
_STATUS_BYTES = 2**16


@dataclass
class GradeConfig:
    """Settings shared by every student of one grading run."""

    profile: str = "smoke"
    timeout: float = 300.0          # seconds to execute one notebook (after the kernel started)
    test_timeout: float = 60.0      # seconds per exercise
    scratch: str = ""               # folder for the scratch boxes
    threads: int = 1                # OMP_NUM_THREADS for the notebook kernels
    keep_scratch: bool = False


def _syntax_errors(nb: dict) -> list[str]:
    notes = []
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        try:
            compile(code_to_python(cell_source(cell)), f"cell {i + 1}", "exec")
        except SyntaxError as e:
            notes.append(f"syntax error in cell {i + 1}, line {e.lineno}: {e.msg}")
        except Exception as e:  # e.g. a cell source that is not text
            notes.append(f"cell {i + 1} could not be read: {type(e).__name__}")
    return notes


def _python(cell: dict) -> str:
    """A code cell as plain Python (IPython syntax turned into calls), "" when it cannot be read."""
    try:
        return code_to_python(cell_source(cell))
    except Exception:  # a cell source that is not text
        return ""


def _read_notebook(work: Path, name: str) -> tuple[Path | None, dict | str]:
    """``(path relative to work, notebook)`` or ``(path or None, why it cannot be used)``."""
    path = find_notebook(work, name)
    if path is None:
        return None, f"missing notebook {name}"
    rel = path.relative_to(work)
    try:
        nb = json.loads(read_untrusted(work, str(rel), MAX_NOTEBOOK_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        return rel, f"{name} is not a valid notebook: {str(e)[:200]}"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return rel, f"{name} is not a valid notebook: no list of cells"
    return rel, nb


def _keep(report_dir: Path, rel: str, data: bytes, res: NotebookResult) -> Path:
    """Write a copy next to the report (a file the grader owns) and record its SHA-256."""
    path = report_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with open(path, "xb") as f:
        f.write(data)
    res.files[rel] = hashlib.sha256(data).hexdigest()
    return path


def _execute(course_nb: CourseNotebook, nb: dict, cwd: Path, grade_config: GradeConfig, sandbox: Sandbox, box: Box,
             report_dir: Path, res: NotebookResult) -> None:
    """Execute the notebook in the sandbox; fill ``res.execution``, ``executed_ok`` and ``errors``."""
    stem = course_nb.stem
    pristine = box.spec / f"{stem}.ipynb"
    pristine.write_text(json.dumps(nb), encoding="utf-8")
    results = box.home / "results"
    spec = {"notebook": str(pristine), "executed": str(results / f"{stem}.executed.ipynb"),
            "status": str(results / f"{stem}.status.json"), "timeout": grade_config.timeout, "cwd": str(cwd)}
    (box.spec / f"{stem}.execute.json").write_text(json.dumps(spec), encoding="utf-8")
    env = sandbox.env(box, COURSE_PROFILE=grade_config.profile, COURSE_OUTPUT=str(box.output),
                      OMP_NUM_THREADS=str(grade_config.threads), MKL_NUM_THREADS=str(grade_config.threads))
    status, timed_out = sandbox.run([sys.executable, "-s", "-m", "course_tools.grading.worker", "execute",
                                     str(box.spec / f"{stem}.execute.json")], box, cwd, env, grade_config.timeout + 180)
    try:
        state = json.loads(read_untrusted(box.home, f"results/{stem}.status.json", _STATUS_BYTES))
    except (OSError, ValueError, RecursionError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("status"), str):
        state = {"status": "failed", "message": f"the execution process stopped ({describe_status(status)})"}
    if timed_out:
        state["status"] = "timeout"
    try:
        data = read_untrusted(box.home, f"results/{stem}.executed.ipynb", MAX_EXECUTED_BYTES)
        executed = json.loads(data)
        _keep(report_dir, f"executed/{course_nb.name}", data, res)
    except (OSError, ValueError, RecursionError):
        executed = None
    cells = executed.get("cells", []) if isinstance(executed, dict) else []
    for i, cell in enumerate(cells if isinstance(cells, list) else []):
        for out in (cell.get("outputs") or []) if isinstance(cell, dict) else []:
            if isinstance(out, dict) and out.get("output_type") == "error":
                first = (str(out.get("evalue", "")).strip().splitlines() or [""])[0][:200]
                first = re.sub(r"\(\d+\.py, line (\d+)\)", r"(line \1)", first)  # ipykernel's temp file name
                res.errors.append(f"cell {i + 1} raised {str(out.get('ename'))[:60]}: {first}")
    cell = state.get("cell")
    if state["status"] == "timeout":
        where = f" (cell {cell + 1})" if isinstance(cell, int) else ""
        res.execution = f"timed out after {grade_config.timeout:g} s{where}"
    elif state["status"] != "ok":
        res.execution = f"execution failed: {str(state['status'])[:40]} {str(state.get('message', ''))[:300]}".strip()
    elif res.errors:
        res.execution = f"ran to the end; {len(res.errors)} cell(s) raised an error"
    else:
        res.execution = "ran to the end without errors"
    res.executed_ok = state["status"] == "ok" and not res.errors


def _limit_scoring() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (8 * 2**30, 8 * 2**30))
    os.setsid()


def _score_samples(course_nb: CourseNotebook, box: Box, grade_config: GradeConfig, report_dir: Path,
                   res: NotebookResult) -> None:
    """Copy out and score each ``<stem>_samples.pt`` / ``<NN>_samples.pt`` the notebook saved."""
    names = sorted({f"{course_nb.stem}_samples.pt", f"{course_nb.stem.split('_')[0]}_samples.pt"})
    classifier = data_dir() / "classifier.pt"
    for name in names:
        try:
            data = read_untrusted(box.output, f"deliverables/{name}", MAX_SAMPLES_BYTES)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            res.samples[name] = {"note": f"not scored: {e}"}
            continue
        copy = _keep(report_dir, f"deliverables/{name}", data, res)
        if not classifier.is_file():
            res.samples[name] = {"note": f"not scored: the metric classifier {classifier.name} is missing from data/"}
            continue
        spec = box.root / f"{course_nb.stem}.score.json"    # the box root: the grader's, not the student's
        out = box.root / f"{course_nb.stem}.score.out.json"
        spec.write_text(json.dumps({"file": str(copy), "out": str(out), "n": 1000 if grade_config.profile == "cpu" else 256}))
        env = dict(os.environ, OMP_NUM_THREADS=str(grade_config.threads), MKL_NUM_THREADS=str(grade_config.threads))
        try:
            subprocess.run([sys.executable, "-I", "-m", "course_tools.grading.worker", "score_samples", str(spec)],
                           env=env, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           preexec_fn=_limit_scoring, check=False)
            score = json.loads(out.read_text())
        except (subprocess.TimeoutExpired, OSError, ValueError):
            score = None
        failed = {"note": "not scored: scoring ran out of time or failed"}
        res.samples[name] = score if isinstance(score, dict) else failed


def _deliverables(course_nb: CourseNotebook, box: Box, report_dir: Path, res: NotebookResult) -> None:
    for name in course_nb.deliverables:
        try:
            data = read_untrusted(box.output, f"deliverables/{name}", MAX_IMAGE_BYTES)
            problem = image_problem(name, data)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            problem = str(e)
        if problem:
            res.notes.append(f"deliverable refused: {problem}")
            continue
        _keep(report_dir, f"deliverables/{name}", data, res)
        res.deliverables[name] = True


def _grade_notebook(course_nb: CourseNotebook, found: tuple[Path | None, dict | str], grade_config: GradeConfig,
                    sandbox: Sandbox, box: Box, report_dir: Path) -> NotebookResult:
    res = NotebookResult(course_nb.name, hidden_tests=course_nb.tests.sha256)
    start = time.monotonic()
    res.deliverables = {d: False for d in course_nb.deliverables}
    rel, nb = found
    if not isinstance(nb, dict):
        res.notes.append(nb)
        res.exercises = [ExerciseResult(n, False, "missing", "no notebook to test") for n in course_nb.exercises]
        res.execution = "not run: notebook missing" if rel is None else "not run: not a valid notebook"
        return res
    if rel.parent != Path("."):
        res.notes.append(f"found as {rel}")
    res.notes.extend(_syntax_errors(nb))
    cwd = box.work / rel.parent
    cells = [(i, _python(c)) for i, c in enumerate(nb["cells"]) if isinstance(c, dict) and c.get("cell_type") == "code"]
    res.exercises = judge_notebook(course_nb.tests, course_nb.exercises, cells, sandbox, box, cwd, grade_config.test_timeout,
                                   course_nb.stem)
    before = list_files(box.work)
    _execute(course_nb, nb, cwd, grade_config, sandbox, box, report_dir, res)
    deleted = sorted(before - list_files(box.work))
    if deleted:
        shown = ", ".join(deleted[:5]) + (f" and {len(deleted) - 5} more" if len(deleted) > 5 else "")
        res.notes.append(f"the notebook deleted files from its folder: {shown} (only the scratch copy)")
    _deliverables(course_nb, box, report_dir, res)
    _score_samples(course_nb, box, grade_config, report_dir, res)
    res.execution, res.errors = course_nb.tests.scrub(res.execution), [course_nb.tests.scrub(e) for e in res.errors]
    res.seconds = round(time.monotonic() - start, 1)
    return res


def _unreadable(result: StudentResult, course: list[CourseNotebook], why: str) -> StudentResult:
    result.notes.append(f"could not open the submission: {why}")
    for c in course:
        r = NotebookResult(c.name, execution="not run: submission unreadable", hidden_tests=c.tests.sha256,
                           exercises=[ExerciseResult(n, False, "missing", "no notebook") for n in c.exercises],
                           deliverables={d: False for d in c.deliverables})
        r.notes.append("submission could not be opened")
        result.notebooks.append(r)
    return result


def _clean(text: str, *paths: Path) -> str:
    for p in paths:
        text = text.replace(str(p), "<scratch>")
    return text


def grade_student(student: str, source: str | Path, course: list[CourseNotebook], grade_config: GradeConfig,
                  sandbox: Sandbox, report_dir: str | Path, slot: int) -> StudentResult:
    """Grade one student's submission (folder or zip) on every course notebook, in a fresh box. Never raises.

    ``slot`` numbers the student in this run (its uid in the root sandbox modes).
    """
    source, report_dir = Path(source), Path(report_dir)
    result = StudentResult(student, source.name, sandbox=sandbox.describe())
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    root = Path(tempfile.mkdtemp(prefix=f"s{slot}-", dir=grade_config.scratch))
    box = sandbox.box(root, slot)
    try:
        try:
            result.notes += copy_submission(source, box.work)
        except (ValueError, OSError) as e:
            return _unreadable(result, course, str(e))
        box.create()
        found = {c.name: _read_notebook(box.work, c.name) for c in course}   # before any student code runs
        for c in course:
            try:
                r = _grade_notebook(c, found[c.name], grade_config, sandbox, box, report_dir)
            except Exception as e:  # a grader bug must not cost the other notebooks
                r = NotebookResult(c.name, execution="not graded", hidden_tests=c.tests.sha256,
                                   exercises=[ExerciseResult(n, False, "error", "grader error") for n in c.exercises],
                                   deliverables={d: False for d in c.deliverables})
                r.notes.append(f"grader error: {type(e).__name__}: {e}")
            r.notes = [_clean(n, root, source) for n in r.notes]
            r.errors = [_clean(n, root, source) for n in r.errors]
            for e in r.exercises:
                e.message = _clean(e.message, root, source)
            result.notebooks.append(r)
        return result
    finally:
        if not grade_config.keep_scratch:
            shutil.rmtree(root, ignore_errors=True)
