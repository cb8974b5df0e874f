"""Grade on Gradescope: ``./course.sh gradescope --out bundle.zip`` writes an autograder bundle.

Gradescope builds a Docker image from the bundle (``setup.sh``, once) and runs ``run_autograder`` for
every submission in a fresh container (one student per container, so classes of any size scale
out). The layout follows what otter-grader produces::

    setup.sh            installs Python, CPU torch and the course (pip install -e course/) into /opt/course-venv
    run_autograder      python -m course_tools.grading.gradescope /autograder
    config.json         profile, time limits, memory limit, sandbox mode, test visibility
    course.json         notebooks, their exercises and deliverables (no instructor notebook ships)
    hidden_tests/       one <notebook>.py each (made readable by root only in setup.sh)
    course/             pyproject.toml, README.md, course_utils/, course_tools/, data/

``run_autograder`` grades ``/autograder/submission`` (the student's notebooks) with the same engine as
``./course.sh grade`` (sandbox, trusted comparison, deliverable checks) and writes
``/autograder/results/results.json`` in Gradescope's schema: one test per exercise (score 0 or 1),
one 0-point test per notebook with how it ran, and the total. ``AUTOGRADER_ROOT`` (or the argument of
``python -m course_tools.grading.gradescope``) replaces ``/autograder``, so it can be tried locally on a
folder of the same shape; ``COURSE_PYTHON`` replaces the venv's Python.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from course_utils.paths import data_dir, project_root

from .course import CourseNotebook, load_course, load_manifest, write_manifest
from .per_student import grade_student
from .report import NotebookResult, StudentResult, notebook_notes
from .sandbox import SandboxUnavailable, guard_grading_process

__all__ = ["VISIBILITIES", "build_bundle", "results_json", "run_autograder", "add_arguments", "main"]

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder image (see course_tools/grading/gradescope.py).
set -euo pipefail
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /opt/course-venv
/opt/course-venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch torchvision
/opt/course-venv/bin/pip install --no-cache-dir -e /autograder/source/course
chmod -R go-rwx /autograder/source/hidden_tests   # students' code never runs as root: it cannot read them
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grade /autograder/submission into /autograder/results/results.json.
set -euo pipefail
python="${COURSE_PYTHON:-/opt/course-venv/bin/python}"
exec "$python" -m course_tools.grading.gradescope "${AUTOGRADER_ROOT:-/autograder}"
"""


def _add(zf: zipfile.ZipFile, arcname: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build_bundle(course: list[CourseNotebook], out: Path, config: dict) -> Path:
    """Write the autograder zip for ``course`` (hidden tests as loaded, byte for byte) to ``out``."""
    root = project_root()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_manifest(course, Path(tmp) / "course.json")
        manifest = (Path(tmp) / "course.json").read_bytes()
    with zipfile.ZipFile(out, "w") as zf:
        _add(zf, "setup.sh", SETUP_SH.encode(), executable=True)
        _add(zf, "run_autograder", RUN_AUTOGRADER.encode(), executable=True)
        _add(zf, "config.json", (json.dumps(config, indent=1) + "\n").encode())
        _add(zf, "course.json", manifest)
        for c in course:
            if c.tests.file:
                data = Path(c.tests.file).read_bytes()
                _add(zf, f"hidden_tests/{c.stem}.py", data)
        for name in ("pyproject.toml", "README.md"):
            _add(zf, f"course/{name}", (root / name).read_bytes())
        for package in ("course_utils", "course_tools"):
            for f in sorted((root / package).rglob("*.py")):
                _add(zf, f"course/{f.relative_to(root)}", f.read_bytes())
        for f in sorted(p for p in data_dir().rglob("*") if p.is_file()):
            _add(zf, f"course/data/{f.relative_to(data_dir())}", f.read_bytes())
    return out


def _notebook_output(r: NotebookResult) -> str:
    lines = [f"Execution: {r.execution}"] + [f"- {n}" for n in notebook_notes(r)]
    lines += [f"Cell error: {e}" for e in r.errors[:10]]
    for name, score in r.samples.items():
        lines.append(f"Samples {name}: " + (score.get("note") or ", ".join(f"{k} {v:g}" for k, v in score.items())))
    if r.hidden_tests:
        lines.append(f"Hidden tests SHA-256: {r.hidden_tests}")
    return "\n".join(lines)


def results_json(result: StudentResult, visibility: str, seconds: float) -> dict:
    """Gradescope's ``results.json`` for one graded submission."""
    tests = []
    for r in result.notebooks:
        stem = Path(r.notebook).stem
        for e in r.exercises:
            tests.append({"name": f"{stem}: {e.name}", "score": 1.0 if e.passed else 0.0, "max_score": 1.0,
                          "status": "passed" if e.passed else "failed", "visibility": visibility,
                          "output": e.status + (f": {e.message}" if e.message else "")})
        tests.append({"name": f"{stem}: notebook runs, deliverables", "score": 0.0, "max_score": 0.0,
                      "status": "passed" if r.executed_ok and all(r.deliverables.values()) else "failed",
                      "visibility": visibility, "output": _notebook_output(r)})
    output = "\n".join(result.notes + [f"Graded in a {result.sandbox}"])
    return {"score": float(sum(r.passed for r in result.notebooks)), "execution_time": round(seconds),
            "output": output, "tests": tests}


def run_autograder(root: Path) -> int:
    """Grade ``root/submission`` with the bundle in ``root/source``; write ``root/results/results.json``."""
    from .grader import prepare

    start = time.monotonic()
    source, results = root / "source", root / "results"
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    course = load_manifest(source / "course.json", source / "hidden_tests")
    results.mkdir(exist_ok=True)
    guard_grading_process()
    try:
        grade_config, sandbox = prepare(course, [source / "hidden_tests", source / "config.json", results], config["sandbox"],
                               config["memory_mb"], profile=config["profile"], timeout=config["timeout"],
                               test_timeout=config["test_timeout"])
    except SandboxUnavailable as e:
        print(f"gradescope: {e}")
        return 1
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = grade_student("submission", root / "submission", course, grade_config, sandbox, Path(tmp) / "report", 0)
    finally:
        shutil.rmtree(grade_config.scratch, ignore_errors=True)
    data = results_json(result, config["visibility"], time.monotonic() - start)
    (results / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"score {data['score']:g} / {sum(t['max_score'] for t in data['tests']):g}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``gradescope`` command (the grading options are ``grade``'s, :func:`add_course_arguments`)."""
    from .grader import add_course_arguments
    parser.add_argument("--out", type=Path, default=project_root() / "outputs" / "gradescope_autograder.zip",
                        help="the bundle to write (default outputs/gradescope_autograder.zip)")
    parser.add_argument("--visibility", choices=VISIBILITIES, default="visible",
                        help="when students see each test's result on Gradescope (default visible)")
    add_course_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Write the bundle and say how to upload it."""
    try:
        course = load_course(args.notebooks_dir, args.hidden_tests_dir, args.deliverables)
    except (ValueError, FileNotFoundError) as e:
        print(f"gradescope: cannot read the course: {e}")
        return 1
    config = {"profile": args.profile, "timeout": args.timeout, "test_timeout": args.test_timeout,
              "memory_mb": args.memory_mb, "sandbox": args.sandbox, "visibility": args.visibility}
    out = build_bundle(course, args.out, config)
    total = sum(len(c.exercises) for c in course)
    print(f"wrote {out} ({out.stat().st_size >> 20} MiB, {len(course)} notebooks, {total} points); upload it as a "
          "Gradescope programming assignment's autograder (Ubuntu base image)")
    return 0


if __name__ == "__main__":
    sys.exit(run_autograder(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/autograder")))
