"""Results of the grader (``grading.py``): one HTML page per student and the class ``grades.csv``.

The HTML report is self-contained: deliverable images are embedded as base64 data URIs, so
it can be mailed to the student as one file.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .grading import CourseNotebook

__all__ = ["ExerciseResult", "NotebookResult", "StudentResult", "CSV_COLUMNS", "notebook_notes", "csv_rows", "write_grades_csv", "render_html", "write_student_report"]

CSV_COLUMNS = ["student", "notebook", "exercises_passed", "exercises_total", "deliverables_present",
               "deliverables_required", "executed_ok", "samples_ratio", "notes"]
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


@dataclass
class ExerciseResult:
    """The hidden test of one exercise."""

    name: str
    passed: bool
    status: str                     # passed, wrong, not done, error, missing, timeout, no hidden test
    message: str = ""


@dataclass
class NotebookResult:
    """Everything the grader found about one notebook of one student."""

    notebook: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    deliverables: dict[str, bool] = field(default_factory=dict)
    executed_ok: bool = False
    execution: str = "not run"      # one line on how execution went
    errors: list[str] = field(default_factory=list)     # cells that raised
    samples: dict[str, dict] = field(default_factory=dict)  # file -> scores or {"note": ...}
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        """Exercises passed (one point each)."""
        return sum(e.passed for e in self.exercises)


@dataclass
class StudentResult:
    """One student: a result per course notebook, plus notes on the submission itself."""

    student: str
    source: str
    notebooks: list[NotebookResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def notebook_notes(r: NotebookResult) -> list[str]:
    """Short, deterministic notes on one notebook (for the CSV and the report's summary table)."""
    notes = list(r.notes)
    failed = [f"{e.name} ({e.status})" for e in r.exercises if not e.passed]
    if failed:
        notes.append("exercises not passed: " + ", ".join(failed))
    if not r.executed_ok and not r.execution.startswith("not run"):
        notes.append(r.execution + (f" (first: {r.errors[0]})" if r.errors else ""))
    missing = [d for d, ok in r.deliverables.items() if not ok]
    if missing:
        notes.append("missing deliverables: " + ", ".join(missing))
    for name, score in r.samples.items():
        if "note" in score:
            notes.append(f"samples {name}: {score['note']}")
    return notes


def csv_rows(result: StudentResult) -> list[dict]:
    """One CSV row per notebook of a student (a single row when the grader could not list notebooks)."""
    rows = []
    for r in result.notebooks:
        ratios = [f"{s['ratio']:.4g}" for s in r.samples.values() if "ratio" in s]
        rows.append({"student": result.student, "notebook": r.notebook, "exercises_passed": r.passed,
                     "exercises_total": len(r.exercises), "deliverables_present": sum(r.deliverables.values()),
                     "deliverables_required": len(r.deliverables), "executed_ok": "yes" if r.executed_ok else "no",
                     "samples_ratio": ";".join(ratios), "notes": "; ".join(result.notes + notebook_notes(r))})
    if not rows:
        rows.append({c: "" for c in CSV_COLUMNS} | {"student": result.student, "notes": "; ".join(result.notes)})
    return rows


def write_grades_csv(results: Iterable[StudentResult], path: str | Path) -> Path:
    """Write the class CSV (sorted by student, then notebook) atomically."""
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for res in sorted(results, key=lambda r: r.student):
            writer.writerows(csv_rows(res))
    tmp.replace(path)
    return path


def _image(path: Path) -> str:
    kind = _IMAGE_TYPES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:{kind};base64,{data}" style="max-width:640px">'


def render_html(result: StudentResult, course: list[CourseNotebook], student_dir: Path) -> str:
    """The student's report as one HTML page (deliverables inline)."""
    e = html.escape
    total = sum(r.passed for r in result.notebooks)
    out_of = sum(len(r.exercises) for r in result.notebooks)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grades: {e(result.student)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{border:1px solid #ccc;"
             "padding:2px 6px}table{border-collapse:collapse}.ok{color:#070}.bad{color:#b00}</style></head><body>",
             f"<h1>Grades: {e(result.student)}</h1><p>Submission: {e(result.source)}. "
             f"Exercises passed: <b>{total} / {out_of}</b>.</p>"]
    parts += [f"<p class='bad'>{e(n)}</p>" for n in result.notes]
    parts.append("<table><tr><th>notebook</th><th>exercises</th><th>deliverables</th><th>executed</th>"
                 "<th>notes</th></tr>")
    for r in result.notebooks:
        parts.append(f"<tr><td>{e(r.notebook)}</td><td>{r.passed} / {len(r.exercises)}</td>"
                     f"<td>{sum(r.deliverables.values())} / {len(r.deliverables)}</td>"
                     f"<td>{'yes' if r.executed_ok else 'no'}</td><td>{e('; '.join(notebook_notes(r)))}</td></tr>")
    parts.append("</table>")
    for r in result.notebooks:
        parts.append(f"<h2>{e(r.notebook)}</h2><p>Execution: {e(r.execution)}"
                     + (f" ({r.seconds:g} s)" if r.seconds else "") + "</p>")
        if r.notes:
            parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in r.notes) + "</ul>")
        if r.errors:
            parts.append("<p>Cells that raised:</p><ul>" + "".join(f"<li><code>{e(x)}</code></li>" for x in r.errors)
                         + "</ul>")
        if r.exercises:
            parts.append("<table><tr><th>exercise</th><th>result</th><th>details</th></tr>")
            for x in r.exercises:
                cls = "ok" if x.passed else "bad"
                parts.append(f"<tr><td><code>{e(x.name)}</code></td><td class='{cls}'>{e(x.status)}</td>"
                             f"<td>{e(x.message)}</td></tr>")
            parts.append("</table>")
        for name, ok in r.deliverables.items():
            if ok:
                img = _image(student_dir / "deliverables" / name)
                parts.append(f"<h3>{e(name)}</h3>{img or '<p>(not an image; see the deliverables folder)</p>'}")
            else:
                parts.append(f"<h3>{e(name)}</h3><p class='bad'>missing</p>")
        for name, score in r.samples.items():
            text = score.get("note") or ", ".join(f"{k} {v:g}" for k, v in score.items())
            parts.append(f"<p>Samples <code>{e(name)}</code>: {e(text)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_student_report(result: StudentResult, course: list[CourseNotebook], student_dir: str | Path) -> Path:
    """Write ``report.html`` and ``result.json`` into ``student_dir``; returns the HTML path."""
    student_dir = Path(student_dir)
    student_dir.mkdir(parents=True, exist_ok=True)
    (student_dir / "result.json").write_text(json.dumps(asdict(result), indent=1) + "\n", encoding="utf-8")
    path = student_dir / "report.html"
    path.write_text(render_html(result, course, student_dir), encoding="utf-8")
    return path
