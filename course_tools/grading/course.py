"""The course as the grader sees it: notebooks, their exercises, required deliverables and hidden tests.

:func:`load_course` reads it from the instructor notebooks (the exercises are the top-level ``def``s
around the solution blocks); :func:`load_manifest` from the ``course.json`` of a Gradescope bundle,
which :func:`write_manifest` writes so that the bundle needs no instructor notebook. Either way the
hidden tests are loaded once, here, with their answers (:mod:`hidden`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..release import find_exercises, read_notebook
from .hidden import HiddenTests, load_hidden_tests

__all__ = ["CourseNotebook", "load_deliverables", "load_course", "write_manifest", "load_manifest", "broken_tests"]


@dataclass
class CourseNotebook:
    """What the grader needs to know about one course notebook."""

    name: str                       # file name, e.g. "01_vae_recap.ipynb"
    exercises: list[str]            # exercise function names, in notebook order
    deliverables: list[str]         # required files under deliverables/
    tests: HiddenTests              # loaded hidden tests, with their answers

    @property
    def stem(self) -> str:
        return Path(self.name).stem


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


def _notebook(name: str, exercises: list[str], deliverables: list[str], hidden_tests_dir: Path) -> CourseNotebook:
    tests = Path(hidden_tests_dir) / f"{Path(name).stem}.py"
    return CourseNotebook(name, exercises, deliverables,
                          load_hidden_tests(tests.resolve() if tests.is_file() else None, exercises))


def load_course(notebooks_dir: Path, hidden_tests_dir: Path, deliverables_file: Path) -> list[CourseNotebook]:
    """Read the instructor notebooks, the deliverables list, and load the hidden tests."""
    paths = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if p.is_file())
    if not paths:
        raise FileNotFoundError(f"no instructor notebooks (*.ipynb) in {notebooks_dir}")
    required = load_deliverables(deliverables_file)
    return [_notebook(p.name, [e.name for e in find_exercises(read_notebook(p), p.name)], required.get(p.stem, []),
                      hidden_tests_dir) for p in paths]


def write_manifest(course: list[CourseNotebook], path: Path) -> None:
    """``course.json``: every notebook with its exercises and deliverables (no solution, no test)."""
    data = [{"name": c.name, "exercises": c.exercises, "deliverables": c.deliverables} for c in course]
    Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_manifest(path: Path, hidden_tests_dir: Path) -> list[CourseNotebook]:
    """The course from a ``course.json`` written by :func:`write_manifest`, with its hidden tests."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [_notebook(d["name"], list(d["exercises"]), list(d["deliverables"]), hidden_tests_dir) for d in data]


def broken_tests(course: list[CourseNotebook]) -> list[str]:
    """Instructor-facing lines for every exercise whose hidden test is missing or fails to prepare."""
    return [f"{c.name}: {e.name}: {e.broken}" for c in course for e in c.tests.exercises.values() if e.broken]
