"""Grade student submissions: ``./course.sh grade SUBMISSIONS_DIR [--out REPORT_DIR] [--jobs N]``.

SUBMISSIONS_DIR holds one folder or ``.zip`` per student with that student's notebooks, by the
course's file names. The grader (this process) loads the course and its hidden tests once, with their
answers (``course.py``, ``hidden.py``), picks the sandbox (``sandbox.py``), fingerprints the
originals, then grades each student in a process of its own (``per_student.py``), ``--jobs`` at a
time. A grading process that dies (out of memory, killed) is reported with its exit code or signal
and the student is graded once more; a second death leaves that student ungraded, and the grader
exits with status 1. So does a submission or hidden-test file that changed during the run.

Each student's report (``REPORT_DIR/<student>/report.html``) and the class CSV
(``REPORT_DIR/grades.csv``) are written as soon as that student is done, and all of them again from
the grader's memory at the end; entries that were skipped are listed in ``REPORT_DIR/skipped.csv``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from course_utils.paths import project_root

from .course import CourseNotebook, broken_tests, load_course
from .files import discover_submissions, report_names, tree_digest
from .judge import describe_status
from .per_student import GradeConfig, grade_student
from .report import StudentResult, spreadsheet_safe, write_grades_csv, write_student_report, write_text_atomic
from .sandbox import MODES, Limits, Sandbox, SandboxUnavailable, choose, guard_grading_process

__all__ = ["Outcome", "grade_submissions", "add_course_arguments", "add_arguments", "prepare", "main"]


@dataclass
class Outcome:
    """A grading run: the results, the skipped entries, and what went wrong on the grader's side."""

    results: list[StudentResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)      # non-empty: the run's exit status is 1


@dataclass
class _Task:
    student: str
    source: Path
    report_dir: Path
    slot: int
    deaths: list[str] = field(default_factory=list)


@dataclass
class _Running:
    task: _Task
    proc: multiprocessing.process.BaseProcess
    conn: object | None
    data: bytes | None = None


def _grade_in_child(conn, task: _Task, course: list[CourseNotebook], grade_config: GradeConfig, sandbox: Sandbox) -> None:
    """The body of a student's grading process: grade, send the result as JSON, exit."""
    guard_grading_process()
    result = grade_student(task.student, task.source, course, grade_config, sandbox, task.report_dir, task.slot)
    conn.send_bytes(json.dumps(asdict(result)).encode())
    conn.close()


def _start(task: _Task, course: list[CourseNotebook], grade_config: GradeConfig, sandbox: Sandbox) -> _Running:
    # fork: cheap (torch and the loaded hidden tests are inherited); the child only starts subprocesses
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_grade_in_child, args=(child, task, course, grade_config, sandbox), daemon=True)
    proc.start()
    child.close()
    return _Running(task, proc, parent)


def _ungraded(task: _Task, sandbox: Sandbox) -> StudentResult:
    return StudentResult(task.student, task.source.name, sandbox=sandbox.describe(), graded=False,
                         notes=["could not be graded: the grading process died twice (" + "; ".join(task.deaths) + ")"])


def _write_skipped(skipped: list[tuple[str, str]], path: Path) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["entry", "reason"])
    writer.writerows([spreadsheet_safe(name), reason] for name, reason in skipped)
    write_text_atomic(path, buffer.getvalue())


def grade_submissions(submissions_dir: str | Path, out_dir: str | Path, course: list[CourseNotebook],
                      grade_config: GradeConfig, sandbox: Sandbox, jobs: int = 1) -> Outcome:
    """Grade every submission, ``jobs`` at a time; write the reports and the CSV as results arrive."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    students, skipped = discover_submissions(Path(submissions_dir))
    outcome = Outcome(skipped=skipped)
    _write_skipped(skipped, out_dir / "skipped.csv")
    names = report_names([s for s, _ in students])
    originals = {s: tree_digest(p) for s, p in students}
    queue = [_Task(s, p, out_dir / names[s], slot) for slot, (s, p) in enumerate(students)]
    done: dict[str, StudentResult] = {}
    write_grades_csv([], out_dir / "grades.csv")

    def record(res: StudentResult, task: _Task) -> None:
        if task.deaths and res.graded:
            res.notes.insert(0, f"graded twice: the first grading process died ({task.deaths[0]})")
        done[res.student] = res
        write_student_report(res, task.report_dir)
        write_grades_csv(done.values(), out_dir / "grades.csv")

    running: list[_Running] = []
    bar = tqdm(total=len(queue), desc="grading", unit="student")
    try:
        while queue or running:
            while queue and len(running) < jobs:
                running.append(_start(queue.pop(0), course, grade_config, sandbox))
            ready = wait([r.conn for r in running if r.conn is not None] + [r.proc.sentinel for r in running])
            for r in running:
                if r.conn is not None and r.conn in ready:
                    try:
                        r.data = r.conn.recv_bytes()
                    except (EOFError, OSError):
                        pass
                    r.conn.close()
                    r.conn = None
            for r in [r for r in running if r.conn is None and not r.proc.is_alive()]:
                running.remove(r)
                r.proc.join()
                if r.data is not None:
                    record(StudentResult.from_dict(json.loads(r.data)), r.task)
                    bar.update()
                    continue
                r.task.deaths.append(describe_status(r.proc.exitcode if r.proc.exitcode is not None else -9))
                if len(r.task.deaths) < 2:
                    queue.insert(0, r.task)
                else:
                    record(_ungraded(r.task, sandbox), r.task)
                    outcome.problems.append(f"{r.task.student}: not graded ({'; '.join(r.task.deaths)})")
                    bar.update()
    finally:
        for r in running:
            r.proc.kill()
        bar.close()
    outcome.results = [done[s] for s, _ in students if s in done]
    for res in outcome.results:                       # final pass: every report from the grader's memory
        write_student_report(res, out_dir / names[res.student])
    write_grades_csv(outcome.results, out_dir / "grades.csv")
    for s, p in students:
        if tree_digest(p) != originals[s]:
            outcome.problems.append(f"{s}: the original submission {p} changed during grading")
    for c in course:
        f = Path(c.tests.file) if c.tests.file else None
        if f is not None and (not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != c.tests.sha256):
            outcome.problems.append(f"the hidden tests {f} changed during grading (graded with SHA-256 "
                                    f"{c.tests.sha256[:12]}...)")
    return outcome


# --------------------------------------------------------------------------- command line

def add_course_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``grade`` and ``gradescope`` share: profile, time and memory limits, sandbox, the course's files."""
    root = project_root()
    parser.add_argument("--profile", choices=["smoke", "cpu"], default="smoke",
                        help="COURSE_PROFILE for executing the notebooks (default smoke)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed to execute one notebook (default 300)")
    parser.add_argument("--test-timeout", type=float, default=60.0, help="seconds per exercise (default 60)")
    parser.add_argument("--sandbox", choices=["auto", *MODES], default="auto",
                        help="how to isolate the students' code (default auto: the strongest this machine offers)")
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                        help=f"memory (heap) of each student process, MiB (default {Limits.memory_mb})")
    parser.add_argument("--notebooks-dir", type=Path, default=root / "notebooks",
                        help="instructor notebooks (default notebooks/)")
    parser.add_argument("--hidden-tests-dir", type=Path, default=root / "grading" / "hidden_tests",
                        help="hidden tests, one <notebook_stem>.py each (default grading/hidden_tests)")
    parser.add_argument("--deliverables", type=Path, default=root / "grading" / "deliverables.json",
                        help="JSON list of required deliverables per notebook (default grading/deliverables.json)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``grade`` command."""
    root = project_root()
    parser.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR",
                        help="folder with one folder or .zip per student")
    parser.add_argument("--out", type=Path, default=root / "outputs" / "grading",
                        help="folder for the reports and grades.csv (default: outputs/grading)")
    parser.add_argument("--jobs", type=int, default=1, help="students graded at the same time (default 1)")
    add_course_arguments(parser)
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch copies (printed at the end)")


def prepare(course: list[CourseNotebook], secrets: list[Path], sandbox_mode: str = "auto",
            memory_mb: int = Limits.memory_mb, jobs: int = 1, **settings) -> tuple[GradeConfig, Sandbox]:
    """A scratch folder, the run's settings (``settings``: :class:`GradeConfig` fields) and its sandbox.

    Prints the sandbox and the broken hidden tests; :class:`SandboxUnavailable` for a mode that
    cannot run here. ``secrets`` are the folders no student may see (the scratch is added).
    """
    for line in broken_tests(course):
        print(f"warning: hidden test unavailable, every student gets an error: {line}")
    scratch = Path(tempfile.mkdtemp(prefix="course-grade-"))
    scratch.chmod(0o711)      # each student's box inside is private; the uid mode needs to pass through
    try:
        sandbox = choose(sandbox_mode, secrets + [scratch], scratch, Limits(memory_mb=memory_mb))
    except SandboxUnavailable:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    print(sandbox.describe())
    grade_config = GradeConfig(scratch=str(scratch), threads=max(1, min(4, (os.cpu_count() or 1) // jobs)), **settings)
    return grade_config, sandbox


def main(args: argparse.Namespace) -> int:
    """Grade the submissions and print where the reports are; 1 when someone could not be graded."""
    if not args.submissions.is_dir():
        print(f"grade: {args.submissions} is not a folder; pass the folder holding one folder or .zip per student")
        return 1
    if args.jobs < 1 or args.timeout <= 0 or args.test_timeout <= 0 or args.memory_mb <= 0:
        print("grade: --jobs, --timeout, --test-timeout and --memory-mb must be positive")
        return 1
    try:
        course = load_course(args.notebooks_dir, args.hidden_tests_dir, args.deliverables)
        secrets = [args.notebooks_dir, args.hidden_tests_dir, args.submissions, args.out]
        grade_config, sandbox = prepare(course, secrets, args.sandbox, args.memory_mb, args.jobs, profile=args.profile,
                               timeout=args.timeout, test_timeout=args.test_timeout, keep_scratch=args.keep_scratch)
    except (ValueError, FileNotFoundError, SandboxUnavailable) as e:
        print(f"grade: {e}")
        return 1
    try:
        outcome = grade_submissions(args.submissions, args.out, course, grade_config, sandbox, jobs=args.jobs)
    finally:
        if args.keep_scratch:
            print(f"scratch copies kept in {grade_config.scratch}")
        else:
            shutil.rmtree(grade_config.scratch, ignore_errors=True)
    if not outcome.results:
        print(f"no submissions (folders or .zip files) in {args.submissions}")
    for name, why in outcome.skipped:
        print(f"skipped {name}: {why}")
    print(f"graded {len(outcome.results)} submission(s); class grades in {args.out / 'grades.csv'}, "
          f"reports in {args.out}/<student>/report.html")
    for line in outcome.problems:
        print(f"error: {line}")
    return 1 if outcome.problems else 0
