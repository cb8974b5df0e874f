"""Results of the grader (``grader.py``): one HTML page per student and the class ``grades.csv``.

The HTML report is self-contained: deliverable images are embedded as base64 data URIs, so
it can be mailed to the student as one file. Only the copies the grader made (``deliverables/`` next
to the report) are embedded, when they still have the SHA-256 recorded at grading time, are real
PNG/GIF files and fit the size caps. CSV cells that a spreadsheet would run as a formula are quoted.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .files import image_problem, read_untrusted

__all__ = ["ExerciseResult", "NotebookResult", "StudentResult", "CSV_COLUMNS", "MAX_IMAGE_BYTES",
           "MAX_EMBEDDED_BYTES", "notebook_notes", "csv_rows", "spreadsheet_safe", "write_text_atomic",
           "write_grades_csv", "render_html", "write_student_report"]

CSV_COLUMNS = ["student", "notebook", "exercises_passed", "exercises_total", "exercises_delegated", "deliverables_present",
               "deliverables_required", "executed_ok", "samples_ratio", "notes"]
MAX_IMAGE_BYTES = 8 * 2**20         # one deliverable
MAX_EMBEDDED_BYTES = 32 * 2**20     # all the images of one report
_IMAGE_TYPES = {".png": "image/png", ".gif": "image/gif"}


@dataclass
class ExerciseResult:
    """The hidden test of one exercise."""

    name: str
    passed: bool
    status: str     # passed, wrong, not done, error, missing, timeout, no hidden test, delegated (called the reference)
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
    hidden_tests: str = ""          # SHA-256 of the hidden-test file the exercises were graded with
    files: dict[str, str] = field(default_factory=dict)     # copies next to the report -> their SHA-256

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
    sandbox: str = ""               # how the student's code was isolated (Sandbox.describe())
    graded: bool = True             # False when the grader could not grade this student

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudentResult":
        """The inverse of ``dataclasses.asdict`` (results travel from the grading processes as JSON)."""
        nbs = [NotebookResult(**{f.name: d[f.name] for f in fields(NotebookResult) if f.name in d})
               for d in data.get("notebooks", [])]
        for nb in nbs:
            nb.exercises = [ExerciseResult(**e) for e in nb.exercises]
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data and f.name != "notebooks"},
                   notebooks=nbs)


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
                     "exercises_total": len(r.exercises),
                     "exercises_delegated": sum(e.status == "delegated" for e in r.exercises),
                     "deliverables_present": sum(r.deliverables.values()),
                     "deliverables_required": len(r.deliverables), "executed_ok": "yes" if r.executed_ok else "no",
                     "samples_ratio": ";".join(ratios), "notes": "; ".join(result.notes + notebook_notes(r))})
    if not rows:
        rows.append({c: "" for c in CSV_COLUMNS} | {"student": result.student, "notes": "; ".join(result.notes)})
    return rows


def spreadsheet_safe(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run as a formula (``= + - @``...)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_grades_csv(results: Iterable[StudentResult], path: str | Path) -> Path:
    """Write the class CSV (sorted by student, then notebook) atomically."""
    path = Path(path)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for res in sorted(results, key=lambda r: r.student):
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in csv_rows(res))
    write_text_atomic(path, buffer.getvalue())
    return path


class _Images:
    """Embeds the grader's copies of one student's images, within :data:`MAX_EMBEDDED_BYTES` in all."""

    def __init__(self, student_dir: Path):
        self.student_dir, self.budget = student_dir, MAX_EMBEDDED_BYTES

    def tag(self, name: str, sha256: str | None) -> str:
        kind = _IMAGE_TYPES.get(Path(name).suffix.lower())
        if kind is None:
            return "<p>(not an image; see the deliverables folder)</p>"
        try:
            data = read_untrusted(self.student_dir, f"deliverables/{name}", MAX_IMAGE_BYTES)
        except (OSError, ValueError) as e:
            return f"<p class='bad'>(not shown: {html.escape(str(e))})</p>"
        if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
            return "<p class='bad'>(not shown: the file changed after grading)</p>"
        if image_problem(name, data) or len(data) > self.budget:
            return "<p class='bad'>(not shown: not an image, or the report is full)</p>"
        self.budget -= len(data)
        b64 = base64.b64encode(data).decode("ascii")
        return f'<img alt="{html.escape(name)}" src="data:{kind};base64,{b64}" style="max-width:640px">'


def render_html(result: StudentResult, student_dir: Path) -> str:
    """The student's report as one HTML page (deliverables inline)."""
    e = html.escape
    images = _Images(Path(student_dir))
    total = sum(r.passed for r in result.notebooks)
    out_of = sum(len(r.exercises) for r in result.notebooks)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grades: {e(result.student)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{border:1px solid #ccc;"
             "padding:2px 6px}table{border-collapse:collapse}.ok{color:#070}.bad{color:#b00}</style></head><body>",
             f"<h1>Grades: {e(result.student)}</h1><p>Submission: {e(result.source)}. "
             f"Exercises passed: <b>{total} / {out_of}</b>.</p>",
             f"<p><small>Graded in a {e(result.sandbox)}</small></p>" if result.sandbox else ""]
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
                     + (f" ({r.seconds:g} s)" if r.seconds else "") + "</p>"
                     + (f"<p><small>Hidden tests SHA-256 {e(r.hidden_tests)}</small></p>" if r.hidden_tests else ""))
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
                parts.append(f"<h3>{e(name)}</h3>{images.tag(name, r.files.get(f'deliverables/{name}'))}")
            else:
                parts.append(f"<h3>{e(name)}</h3><p class='bad'>missing</p>")
        for name, score in r.samples.items():
            text = score.get("note") or ", ".join(f"{k} {v:g}" for k, v in score.items())
            parts.append(f"<p>Samples <code>{e(name)}</code>: {e(text)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a new file and rename it over ``path`` (a link left at ``path`` is replaced, never followed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "x", encoding="utf-8", newline="") as f:
        f.write(text)
    tmp.replace(path)


def write_student_report(result: StudentResult, student_dir: str | Path) -> Path:
    """Write ``report.html`` and ``result.json`` into ``student_dir``; returns the HTML path."""
    student_dir = Path(student_dir)
    student_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(student_dir / "result.json", json.dumps(asdict(result), indent=1) + "\n")
    path = student_dir / "report.html"
    write_text_atomic(path, render_html(result, student_dir))
    return path
