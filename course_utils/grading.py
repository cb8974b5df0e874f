"""Grade student submissions: ``python -m course_utils grade SUBMISSIONS_DIR [--out REPORT_DIR]``.

SUBMISSIONS_DIR holds one folder or ``.zip`` per student with that student's notebooks, by the
course's file names. For every student and every course notebook the grader

1. reads the notebook (an invalid notebook or a cell with a syntax error gets a report line);
2. runs the hidden tests of ``grading/hidden_tests/<notebook_stem>.py`` on the student's
   exercise functions (one point each), in a subprocess with a time limit;
3. executes the notebook in its own process (nbclient) in a scratch copy of the submission,
   with ``COURSE_PROFILE`` (smoke by default) and ``COURSE_OUTPUT`` set to a per-student folder;
4. checks the deliverables listed in ``grading/deliverables.json`` and scores any
   ``deliverables/<nb>_samples.pt`` with ``course_utils.metrics.evaluate_samples``.

Each student's report (``REPORT_DIR/<student>/report.html``) and the class CSV
(``REPORT_DIR/grades.csv``) are written as soon as that student is done. Nothing a submission
does (syntax errors, exceptions, endless loops, deleting files) stops the grader.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .grading_report import (ExerciseResult, NotebookResult, StudentResult, write_grades_csv,
                             write_student_report)
from .paths import data_dir, project_root
from .release import cell_source, code_to_python, find_exercises, read_notebook

__all__ = ["CourseNotebook", "GradeConfig", "ExerciseResult", "NotebookResult", "StudentResult", "load_course",
           "load_deliverables", "discover_submissions", "grade_student", "grade_submissions", "add_arguments", "main"]

MAX_UNZIPPED_BYTES = 500 * 2**20
_IGNORED_NAMES = {".ipynb_checkpoints", "__MACOSX", ".DS_Store", "__pycache__"}


@dataclass
class CourseNotebook:
    """What the grader needs to know about one instructor notebook."""

    name: str                       # file name, e.g. "01_vae_recap.ipynb"
    exercises: list[str]            # exercise function names, in notebook order
    deliverables: list[str]         # required files under deliverables/
    hidden_tests: str | None        # path of grading/hidden_tests/<stem>.py, None if absent

    @property
    def stem(self) -> str:
        return Path(self.name).stem


@dataclass
class GradeConfig:
    """Settings shared by every student of one grading run."""

    profile: str = "smoke"
    timeout: float = 300.0          # seconds to execute one notebook (after the kernel started)
    test_timeout: float = 60.0      # seconds per hidden test
    scratch: str = ""               # folder for the scratch copies
    threads: int = 1                # OMP_NUM_THREADS for the notebook kernels


# --------------------------------------------------------------------------- course and submissions

def load_course(notebooks_dir: Path, hidden_tests_dir: Path, deliverables_file: Path) -> list[CourseNotebook]:
    """Read the instructor notebooks, the hidden tests folder and the deliverables list."""
    paths = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if p.is_file())
    if not paths:
        raise FileNotFoundError(f"no instructor notebooks (*.ipynb) in {notebooks_dir}")
    required = load_deliverables(deliverables_file)
    course = []
    for p in paths:
        exercises = find_exercises(read_notebook(p), p.name)
        tests = Path(hidden_tests_dir) / f"{p.stem}.py"
        course.append(CourseNotebook(p.name, [e.name for e in exercises], required.get(p.stem, []),
                                     str(tests.resolve()) if tests.is_file() else None))
    return course


def load_deliverables(path: Path) -> dict[str, list[str]]:
    """``{notebook_stem: [file names]}`` from a JSON file; keys starting with ``_`` are comments."""
    path = Path(path)
    if not path.is_file():
        print(f"note: no deliverables list at {path}; no deliverable is required")
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for key, names in data.items():
        if key.startswith("_"):
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: {key!r} must map to a list of file names, got {names!r}")
        out[key] = names
    return out


def discover_submissions(submissions_dir: Path) -> list[tuple[str, Path]]:
    """``(student, path)`` for every folder or ``.zip`` in ``submissions_dir``, sorted by name."""
    found: dict[str, Path] = {}
    for p in sorted(Path(submissions_dir).iterdir()):
        if p.name.startswith(".") or p.name in _IGNORED_NAMES:
            continue
        if p.is_dir():
            name = p.name
        elif p.suffix.lower() == ".zip":
            name = p.stem if p.stem not in found and not (p.parent / p.stem).is_dir() else p.name
        else:
            print(f"note: ignoring {p.name}: a submission is a folder or a .zip")
            continue
        found[name] = p
    return sorted(found.items())


def _safe_name(student: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in student) or "_"


def _unpack(source: Path, dest: Path) -> None:
    """Copy a submission folder, or extract a zip safely, into ``dest``; ``ValueError`` if impossible."""
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns(*_IGNORED_NAMES))
        return
    try:
        with zipfile.ZipFile(source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if sum(i.file_size for i in infos) > MAX_UNZIPPED_BYTES:
                raise ValueError(f"{source.name} unpacks to more than {MAX_UNZIPPED_BYTES >> 20} MiB")
            dest.mkdir(parents=True)
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if not parts or parts[0] == "/" or ".." in parts or _IGNORED_NAMES & set(parts):
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{source.name} is not a valid zip file ({e})") from None


def _find_notebook(work: Path, name: str) -> Path | None:
    hits = [p for p in work.rglob(name) if p.is_file() and not p.is_symlink()
            and not _IGNORED_NAMES & set(p.relative_to(work).parts)]
    return min(hits, key=lambda p: (len(p.parts), str(p))) if hits else None


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


# --------------------------------------------------------------------------- subprocesses

def _run_worker(func: str, spec: dict, env: dict, cwd: Path, timeout: float) -> bool:
    """Run ``course_utils.grading_workers.<func>`` in a fresh Python with ``spec`` on stdin; False on timeout."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("grading_workers.py")), func],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)
    try:
        proc.communicate(json.dumps(spec).encode(), timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        return False


def _json_or_none(text: str):
    """Parsed JSON, or None for an empty or truncated file (a worker killed while writing)."""
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def _kill_group(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --------------------------------------------------------------------------- one notebook, one student

def _syntax_errors(nb: dict) -> list[str]:
    notes = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        try:
            compile(code_to_python(cell_source(cell)), f"cell {i + 1}", "exec")
        except SyntaxError as e:
            notes.append(f"syntax error in cell {i + 1}, line {e.lineno}: {e.msg}")
        except Exception as e:  # e.g. a cell source that is not text
            notes.append(f"cell {i + 1} could not be read: {type(e).__name__}: {e}")
    return notes


def _hidden_tests(course_nb: CourseNotebook, nb: dict, cfg: GradeConfig, env: dict, cwd: Path,
                  results_file: Path) -> list[ExerciseResult]:
    """Run the hidden tests on the exercises of ``nb`` in a subprocess; one result per exercise."""
    if not course_nb.exercises:
        return []
    results_file.unlink(missing_ok=True)
    cells = [(i, cell_source(c)) for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code"]
    spec = {"cells": cells, "names": course_nb.exercises, "tests": course_nb.hidden_tests, "stem": course_nb.stem,
            "test_timeout": cfg.test_timeout, "results": str(results_file)}
    finished = _run_worker("hidden_test_worker", spec, env, cwd, cfg.test_timeout * (len(course_nb.exercises) + 1) + 60)
    rows = {}
    for row in map(_json_or_none, results_file.read_text(encoding="utf-8").splitlines() if results_file.exists() else []):
        if isinstance(row, dict) and "name" in row:
            rows[row["name"]] = row
    out = []
    for name in course_nb.exercises:
        row = rows.get(name)
        if row is None:
            status = "timeout" if not finished else "error"
            msg = "the hidden tests ran out of time" if not finished else "the hidden-test process stopped early"
            out.append(ExerciseResult(name, False, status, msg))
        else:
            out.append(ExerciseResult(name, row["status"] == "passed", row["status"], row["message"]))
    return out


def _execute(nb_path: Path, executed: Path, status_file: Path, cfg: GradeConfig, env: dict,
             cwd: Path) -> tuple[str, bool, list[str]]:
    """Execute a notebook in a subprocess; returns (one-line status, executed ok, error lines)."""
    status_file.unlink(missing_ok=True)
    spec = {"notebook": str(nb_path), "executed": str(executed), "status": str(status_file),
            "timeout": cfg.timeout, "cwd": str(cwd)}
    finished = _run_worker("execute_worker", spec, env, cwd, cfg.timeout + 180)
    state = _json_or_none(status_file.read_text() if status_file.exists() else "")
    state = state if isinstance(state, dict) else {"status": "failed", "message": "the execution process died"}
    if not finished:
        _kill_group(state.get("kernel_pid"))
        state["status"] = "timeout"
    errors = []
    executed_nb = _json_or_none(executed.read_text(encoding="utf-8") if executed.exists() else "")
    if isinstance(executed_nb, dict):
        for i, cell in enumerate(executed_nb.get("cells", [])):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    first = (str(out.get("evalue", "")).strip().splitlines() or [""])[0][:200]
                    first = re.sub(r"\(\d+\.py, line (\d+)\)", r"(line \1)", first)  # ipykernel's temp file name
                    errors.append(f"cell {i + 1} raised {out.get('ename')}: {first}")
    if state["status"] == "timeout":
        where = f" (cell {state['cell'] + 1})" if state.get("cell") is not None else ""
        line = f"timed out after {cfg.timeout:g} s{where}"
    elif state["status"] != "ok":
        line = f"execution failed: {state['status']} {state.get('message', '')}".strip()
    elif errors:
        line = f"ran to the end; {len(errors)} cell(s) raised an error"
    else:
        line = "ran to the end without errors"
    return line, state["status"] == "ok" and not errors, errors


def _score_samples(course_nb: CourseNotebook, deliverables: Path, cfg: GradeConfig, env: dict,
                   cwd: Path) -> dict[str, dict]:
    names = sorted({f"{course_nb.stem}_samples.pt", f"{course_nb.stem.split('_')[0]}_samples.pt"})
    files = [deliverables / n for n in names if (deliverables / n).is_file()]
    out = {}
    classifier = data_dir() / "classifier.pt"
    for f in files:
        if not classifier.is_file():
            out[f.name] = {"note": f"not scored: the metric classifier {classifier.name} is missing from data/"}
            continue
        res_file = f.with_suffix(".score.json")
        n = 1000 if cfg.profile == "cpu" else 256
        finished = _run_worker("samples_worker", {"file": str(f), "out": str(res_file), "n": n}, env, cwd, 600)
        score = _json_or_none(res_file.read_text() if finished and res_file.exists() else "")
        out[f.name] = score if isinstance(score, dict) else {"note": "not scored: scoring ran out of time or failed"}
    return out


def _grade_notebook(course_nb: CourseNotebook, work: Path, output: Path, report_dir: Path, cfg: GradeConfig,
                    env: dict) -> NotebookResult:
    res = NotebookResult(course_nb.name)
    start = time.monotonic()
    res.deliverables = {d: False for d in course_nb.deliverables}
    path = _find_notebook(work, course_nb.name)
    missing_ex = [ExerciseResult(n, False, "missing", "no notebook to test") for n in course_nb.exercises]
    if path is None:
        res.notes.append(f"missing notebook {course_nb.name}")
        res.exercises, res.execution = missing_ex, "not run: notebook missing"
        return res
    if path.parent != work:
        res.notes.append(f"found as {path.relative_to(work)}")
    try:
        nb = read_notebook(path)
    except ValueError as e:
        res.notes.append(str(e))
        res.exercises, res.execution = missing_ex, "not run: not a valid notebook"
        return res
    res.notes.extend(_syntax_errors(nb))
    scratch = output.parent
    res.exercises = _hidden_tests(course_nb, nb, cfg, env, work, scratch / f"{course_nb.stem}.hidden.jsonl")
    pristine = scratch / f"{course_nb.stem}.submitted.ipynb"
    pristine.write_text(json.dumps(nb), encoding="utf-8")
    executed = report_dir / "executed" / course_nb.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    before = _files(work)
    res.execution, res.executed_ok, res.errors = _execute(pristine, executed, scratch / f"{course_nb.stem}.status.json",
                                                         cfg, env, path.parent)
    deleted = sorted(before - _files(work))
    if deleted:
        shown = ", ".join(deleted[:5]) + (f" and {len(deleted) - 5} more" if len(deleted) > 5 else "")
        res.notes.append(f"the notebook deleted files from its folder: {shown} (only the scratch copy)")
    deliverables = output / "deliverables"
    for name in course_nb.deliverables:
        res.deliverables[name] = (deliverables / name).is_file()
    res.samples = _score_samples(course_nb, deliverables, cfg, env, work)
    keep = [deliverables / n for n in list(course_nb.deliverables) + list(res.samples) if (deliverables / n).is_file()]
    for f in keep:
        (report_dir / "deliverables").mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, report_dir / "deliverables" / f.name)
    res.seconds = round(time.monotonic() - start, 1)
    return res


def _clean(text: str, *paths: Path) -> str:
    for p in paths:
        text = text.replace(str(p), "<scratch>")
    return text


def grade_student(student: str, source: str | Path, course: list[CourseNotebook], cfg: GradeConfig,
                  report_dir: str | Path) -> StudentResult:
    """Grade one student's submission (folder or zip) on every course notebook. Never raises."""
    source, report_dir = Path(source), Path(report_dir)
    result = StudentResult(student, source.name)
    scratch = Path(cfg.scratch) / _safe_name(student)
    shutil.rmtree(scratch, ignore_errors=True)
    work, output = scratch / "work", scratch / "output"
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        _unpack(source, work)
    except (ValueError, OSError) as e:
        result.notes.append(f"could not open the submission: {e}")
        for c in course:
            r = NotebookResult(c.name, execution="not run: submission unreadable",
                               exercises=[ExerciseResult(n, False, "missing", "no notebook") for n in c.exercises],
                               deliverables={d: False for d in c.deliverables})
            r.notes.append("submission could not be opened")
            result.notebooks.append(r)
        return result
    output.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, COURSE_PROFILE=cfg.profile, COURSE_OUTPUT=str(output), PYTHONHASHSEED="0",
               OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads), PYTHONDONTWRITEBYTECODE="1")
    env.pop("MPLBACKEND", None)  # let the kernel use its inline backend
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project_root()), env.get("PYTHONPATH")]))
    for c in course:
        try:
            r = _grade_notebook(c, work, output, report_dir, cfg, env)
        except Exception as e:  # a grader bug must not cost the other notebooks
            r = NotebookResult(c.name, execution="not graded",
                               exercises=[ExerciseResult(n, False, "error", "grader error") for n in c.exercises],
                               deliverables={d: False for d in c.deliverables})
            r.notes.append(f"grader error: {type(e).__name__}: {e}")
        r.notes = [_clean(n, scratch, source) for n in r.notes]
        r.errors = [_clean(n, scratch, source) for n in r.errors]
        for e in r.exercises:
            e.message = _clean(e.message, scratch, source)
        result.notebooks.append(r)
    return result


def _grade_one(args: tuple) -> StudentResult:
    student, source, course, cfg, report_dir = args
    try:
        return grade_student(student, source, course, cfg, report_dir)
    except BaseException as e:  # pragma: no cover - grade_student already catches per notebook
        return StudentResult(student, Path(source).name, notes=[f"grader error: {type(e).__name__}: {e}"])


def grade_submissions(submissions_dir: str | Path, out_dir: str | Path, course: list[CourseNotebook],
                      cfg: GradeConfig, jobs: int = 1) -> list[StudentResult]:
    """Grade every submission; write each student's report and the class CSV as results arrive."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    students = discover_submissions(Path(submissions_dir))
    done: dict[str, StudentResult] = {}
    write_grades_csv(done.values(), out_dir / "grades.csv")

    def record(res: StudentResult) -> None:
        done[res.student] = res
        write_student_report(res, course, out_dir / _safe_name(res.student))
        write_grades_csv(sorted(done.values(), key=lambda r: r.student), out_dir / "grades.csv")

    tasks = [(s, str(p), course, cfg, str(out_dir / _safe_name(s))) for s, p in students]
    bar = tqdm(total=len(tasks), desc="grading", unit="student")
    if jobs <= 1 or len(tasks) <= 1:
        for t in tasks:
            bar.set_postfix_str(t[0])
            record(_grade_one(t))
            bar.update()
    else:
        import multiprocessing
        # fork is cheap (no re-import of torch) and safe here: the children only start subprocesses.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
            futures = {pool.submit(_grade_one, t): t for t in tasks}
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    res = fut.result()
                except Exception as e:  # a worker process died (e.g. out of memory)
                    res = StudentResult(t[0], Path(t[1]).name, notes=[f"grader error: {type(e).__name__}: {e}"])
                record(res)
                bar.update()
    bar.close()
    return [done[s] for s, _ in students]


# --------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m course_utils grade``."""
    root = project_root()
    parser.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR",
                        help="folder with one folder or .zip per student")
    parser.add_argument("--out", type=Path, default=root / "outputs" / "grading",
                        help="folder for the reports and grades.csv (default: outputs/grading)")
    parser.add_argument("--jobs", type=int, default=1, help="students graded at the same time (default 1)")
    parser.add_argument("--profile", choices=["smoke", "cpu"], default="smoke",
                        help="COURSE_PROFILE for executing the notebooks (default smoke)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed to execute one notebook (default 300)")
    parser.add_argument("--test-timeout", type=float, default=60.0, help="seconds per hidden test (default 60)")
    parser.add_argument("--notebooks-dir", type=Path, default=root / "notebooks",
                        help="instructor notebooks (default notebooks/)")
    parser.add_argument("--hidden-tests-dir", type=Path, default=root / "grading" / "hidden_tests",
                        help="hidden tests, one <notebook_stem>.py each (default grading/hidden_tests)")
    parser.add_argument("--deliverables", type=Path, default=root / "grading" / "deliverables.json",
                        help="JSON list of required deliverables per notebook (default grading/deliverables.json)")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch copies (printed at the end)")


def main(args: argparse.Namespace) -> int:
    """Grade the submissions and print where the reports are."""
    if not args.submissions.is_dir():
        print(f"grade: {args.submissions} is not a folder; pass the folder holding one folder or .zip per student")
        return 1
    if args.jobs < 1 or args.timeout <= 0 or args.test_timeout <= 0:
        print("grade: --jobs, --timeout and --test-timeout must be positive")
        return 1
    try:
        course = load_course(args.notebooks_dir, args.hidden_tests_dir, args.deliverables)
    except (ValueError, FileNotFoundError) as e:
        print(f"grade: cannot read the course: {e}")
        return 1
    for c in course:
        if c.exercises and c.hidden_tests is None:
            print(f"warning: {c.name} has exercises but no hidden tests in {args.hidden_tests_dir}; they score 0")
    scratch = Path(tempfile.mkdtemp(prefix="course-grade-"))
    cfg = GradeConfig(profile=args.profile, timeout=args.timeout, test_timeout=args.test_timeout,
                      scratch=str(scratch), threads=max(1, min(4, (os.cpu_count() or 1) // args.jobs)))
    try:
        results = grade_submissions(args.submissions, args.out, course, cfg, jobs=args.jobs)
    finally:
        if args.keep_scratch:
            print(f"scratch copies kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if not results:
        print(f"no submissions (folders or .zip files) in {args.submissions}")
    print(f"graded {len(results)} submission(s); class grades in {args.out / 'grades.csv'}, "
          f"reports in {args.out}/<student>/report.html")
    return 0
