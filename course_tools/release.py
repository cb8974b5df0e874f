"""Write the student versions of the notebooks: ``./course.sh release [--out DIR]``.

The committed notebooks in ``notebooks/`` are the instructor (solution) versions. In the
student version every block between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
``raise NotImplementedError("<hint>")`` at the indentation of the marker, where the hint is
the first ``# HINT:`` comment inside the block (or a generic one), and every output and
execution count is cleared. Everything else (cell ids, metadata, markdown) is unchanged and
the output is byte-identical from one run to the next.

Markdown cells hide answers the same way (the self-check questions at the end of each
notebook): a block between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` (each on a
line of its own; HTML comments, so the instructor version renders without them) becomes
``*Your answer:*`` in the student version.

This module also finds the exercises of a notebook (the function or class around each
solution block); the grader (``grading/grader.py``) uses that to know what to test.

It edits notebook JSON only and imports nothing of ``course_utils`` (whose package loads
torch), so a release takes a second and needs no torch.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SolutionMarkerError", "BEGIN_MARKER", "END_MARKER", "GENERIC_HINT", "ANSWER_PLACEHOLDER", "strip_solutions",
           "strip_answers",
           "solution_blocks", "student_notebook", "release_notebooks", "read_notebook", "dump_notebook",
           "cell_source", "code_to_python", "Exercise", "find_exercises", "add_arguments", "main"]

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"
GENERIC_HINT = "Exercise: write this function (see the markdown above)"
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)#+\s*BEGIN SOLUTION\s*$")
_END_RE = re.compile(r"^[ \t]*#+\s*END SOLUTION\s*$")
_HINT_RE = re.compile(r"^\s*#\s*HINT:\s*(?P<hint>.*?)\s*$")
_MD_BEGIN_RE = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
_MD_END_RE = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
ANSWER_PLACEHOLDER = "*Your answer:*"
_ROOT = Path(__file__).resolve().parent.parent      # the repository (not course_utils.paths: it would load torch)


class SolutionMarkerError(ValueError):
    """``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers that do not pair up."""


def cell_source(cell: dict) -> str:
    """The source of a notebook cell as one string (JSON stores it as a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> None:
    """Store ``text`` in the same form (string or list of lines) the cell used."""
    cell["source"] = text.splitlines(keepends=True) if isinstance(cell.get("source"), list) else text


def solution_blocks(source: str, where: str = "cell") -> list[tuple[int, int, str, list[str]]]:
    """The solution blocks of one cell: ``(begin_line, end_line, indent, lines_between)``, 0-based.

    Raises :class:`SolutionMarkerError` naming ``where`` and the line for a nested or unclosed
    ``BEGIN`` or an ``END`` without its ``BEGIN``.
    """
    lines = source.splitlines()
    blocks, begin, indent = [], None, ""
    for i, line in enumerate(lines):
        m = _BEGIN_RE.match(line)
        if m:
            if begin is not None:
                raise SolutionMarkerError(f"{where}, line {i + 1}: {BEGIN_MARKER} inside the block opened on line "
                                          f"{begin + 1}; close the first block with {END_MARKER} before opening another")
            begin, indent = i, m.group("indent")
        elif _END_RE.match(line):
            if begin is None:
                raise SolutionMarkerError(f"{where}, line {i + 1}: {END_MARKER} without a {BEGIN_MARKER} before it")
            blocks.append((begin, i, indent, lines[begin + 1:i]))
            begin = None
    if begin is not None:
        raise SolutionMarkerError(f"{where}, line {begin + 1}: {BEGIN_MARKER} is never closed; "
                                  f"add {END_MARKER} at the end of the solution")
    return blocks


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace each solution block of ``source`` by a ``raise NotImplementedError(hint)`` stub.

    Returns ``(new_source, number_of_blocks)``. The stub takes the indentation of the
    ``BEGIN`` marker; the hint is the first ``# HINT:`` comment inside the block.
    """
    blocks = solution_blocks(source, where)
    if not blocks:
        return source, 0
    lines = source.splitlines()
    out, pos = [], 0
    for begin, end, indent, body in blocks:
        out.extend(lines[pos:begin])
        hint = next((m.group("hint") for m in map(_HINT_RE.match, body) if m and m.group("hint")), GENERIC_HINT)
        out.append(f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})")
        pos = end + 1
    out.extend(lines[pos:])
    text = "\n".join(out)
    if source.endswith("\n"):
        text += "\n"
    return text, len(blocks)


def _cell_label(nb_name: str, index: int, cell: dict) -> str:
    first = next((ln.strip() for ln in cell_source(cell).splitlines() if ln.strip()), "")
    return f"{nb_name}, cell {index + 1} ({first[:60]!r})"


def student_notebook(nb: dict, name: str = "notebook") -> tuple[dict, int]:
    """The student version of the notebook dict ``nb`` (a new dict) and its number of exercises."""
    nb = json.loads(json.dumps(nb))  # deep copy
    count = 0
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code":
            new, n = strip_solutions(cell_source(cell), _cell_label(name, i, cell))
            if n:
                _set_source(cell, new)
                count += n
            cell["outputs"] = []
            cell["execution_count"] = None
        elif cell.get("cell_type") == "markdown":
            new, n = strip_answers(cell_source(cell), _cell_label(name, i, cell))
            if n:
                _set_source(cell, new)
    return nb, count


def strip_answers(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace each ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` block of a markdown cell by
    :data:`ANSWER_PLACEHOLDER`; returns the new source and the number of blocks. Unpaired markers raise
    :class:`SolutionMarkerError` naming ``where`` and the line."""
    out, begin = [], None
    count = 0
    for i, line in enumerate(source.splitlines(keepends=True)):
        if _MD_BEGIN_RE.match(line):
            if begin is not None:
                raise SolutionMarkerError(f"{where}, line {i + 1}: <!-- BEGIN SOLUTION --> inside the answer opened "
                                          f"on line {begin + 1}; close it with <!-- END SOLUTION --> first")
            begin = i
        elif _MD_END_RE.match(line):
            if begin is None:
                raise SolutionMarkerError(f"{where}, line {i + 1}: <!-- END SOLUTION --> without a BEGIN before it")
            out.append(ANSWER_PLACEHOLDER + ("\n" if line.endswith("\n") else ""))
            begin = None
            count += 1
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise SolutionMarkerError(f"{where}, line {begin + 1}: <!-- BEGIN SOLUTION --> is never closed; "
                                  "add <!-- END SOLUTION --> after the answer")
    return "".join(out), count


def read_notebook(path: str | Path) -> dict:
    """Load a notebook as a plain dict; ``ValueError`` naming the file if it is not notebook JSON."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path.name} is not a valid notebook: {e}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path.name} is not a valid notebook: no list of cells")
    return nb


def dump_notebook(nb: dict) -> str:
    """Serialize like ``nbformat.write`` (sorted keys, one-space indent, trailing newline): deterministic."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def release_notebooks(notebooks_dir: str | Path | None = None, out_dir: str | Path | None = None,
                      verbose: bool = True) -> list[Path]:
    """Write the student version of every ``*.ipynb`` in ``notebooks_dir`` to ``out_dir``; return the paths."""
    src = Path(notebooks_dir) if notebooks_dir is not None else _ROOT / "notebooks"
    out = Path(out_dir) if out_dir is not None else _ROOT / "student"
    paths = sorted(p for p in src.glob("*.ipynb") if p.is_file())
    if not paths:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {src}")
    # Build everything first so a marker error leaves no half-written release behind.
    texts = {}
    for p in paths:
        nb, n = student_notebook(read_notebook(p), p.name)
        texts[p.name] = (dump_notebook(nb), n)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (text, n) in texts.items():
        target = out / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
        if verbose:
            print(f"{name}: {n} exercise(s) -> {target}")
    stale = sorted(p.name for p in out.glob("*.ipynb") if p.name not in texts)
    if stale and verbose:
        print(f"note: {out} also holds notebooks with no instructor version: {', '.join(stale)}")
    return written


def code_to_python(source: str) -> str:
    """Cell source with IPython syntax (``%magic``, ``!cmd``) turned into plain Python."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython ships with the course environment
        return source
    return TransformerManager().transform_cell(source)


@dataclass(frozen=True)
class Exercise:
    """One exercise: the top-level function (or class) ``name`` defined in code cell ``cell`` (0-based)."""

    name: str
    cell: int


def find_exercises(nb: dict, name: str = "notebook") -> list[Exercise]:
    """The exercises of an instructor notebook, in order: the top-level ``def``/``class`` around each block.

    Raises :class:`SolutionMarkerError` for unpaired markers, for a block outside any top-level
    function or class (it could not be graded) and for a cell that does not parse.
    """
    found: list[Exercise] = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = cell_source(cell)
        label = _cell_label(name, i, cell)
        blocks = solution_blocks(src, label)
        if not blocks:
            continue
        try:
            tree = ast.parse(code_to_python(src))
        except SyntaxError as e:
            raise SolutionMarkerError(f"{label}: the exercise cell does not parse: {e}") from None
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        for begin, _, _, _ in blocks:
            line = begin + 1
            owner = next((d for d in defs if d.lineno <= line <= (d.end_lineno or d.lineno)), None)
            if owner is None:
                raise SolutionMarkerError(f"{label}, line {line}: the solution block is not inside a top-level "
                                          "function or class, so it cannot be graded; put it in a def")
            ex = Exercise(owner.name, i)
            if ex not in found:
                found.append(ex)
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``release`` command."""
    parser.add_argument("--out", type=Path, default=None, help="folder for the student notebooks (default: student/)")
    parser.add_argument("--notebooks-dir", type=Path, default=None,
                        help="folder of instructor notebooks (default: notebooks/)")


def main(args: argparse.Namespace) -> int:
    """Write the student release; exit status 1 with a clear message on marker errors."""
    try:
        release_notebooks(args.notebooks_dir, args.out)
    except (SolutionMarkerError, ValueError, FileNotFoundError) as e:
        print(f"release failed: {e}")
        return 1
    return 0
