"""Execute the course notebooks in order and report wall times: ``./course.sh run``.

Each notebook runs top to bottom in a fresh kernel with ``COURSE_PROFILE`` and
``COURSE_OUTPUT`` set, so its figures land in ``<out>/deliverables/`` and its checkpoints in
``<out>/checkpoints/``. Executed copies go to ``<out>/notebooks/`` and a summary to
``<out>/run_summary.json``. A failing notebook is reported by name and cell; the rest still run.

Examples::

    python -m course_tools run --profile smoke            # every notebook, smoke budgets
    python -m course_tools run --profile cpu 03_* 04_*    # a subset, by glob
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from course_utils.checkpoint import atomic_write_text
from course_utils.paths import project_root
from course_utils.profiles import get_profile

__all__ = ["add_arguments", "main", "select_notebooks", "run_notebook"]

DEFAULT_TIMEOUT_S = 1800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``run`` command."""
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="names, prefixes or globs of the notebooks to run (e.g. 00_setup.ipynb, 03, '0[1-3]_*'); "
                             "default: all")
    parser.add_argument("--profile", default=None,
                        help="run profile: smoke, cpu or full (default: $COURSE_PROFILE, else the machine's default)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: outputs/run-<profile>)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds allowed per cell (default: {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--notebooks-dir", type=Path, default=project_root() / "notebooks",
                        help="folder holding the notebooks (default: notebooks/)")


def select_notebooks(folder: Path, patterns: list[str]) -> list[Path]:
    """The ``*.ipynb`` files of ``folder`` in name order, kept when they match one of ``patterns``.

    A pattern matches a file by glob on its name or stem, or, without glob characters, as a
    prefix of its name (``03`` selects ``03_ddpm.ipynb``). Raises ``ValueError`` for a pattern
    that matches nothing.
    """
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not patterns:
        return found
    keep: set[Path] = set()
    for pat in patterns:
        pat = Path(pat).name
        hits = [p for p in found if fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(p.stem, pat)
                or (not any(c in pat for c in "*?[") and p.name.startswith(pat))]
        if not hits:
            names = ", ".join(p.name for p in found) or "none"
            raise ValueError(f"no notebook in {folder} matches {pat!r}; available: {names}")
        keep.update(hits)
    return [p for p in found if p in keep]


def run_notebook(path: Path, out_dir: Path, env: dict[str, str], timeout: int) -> dict[str, Any]:
    """Execute ``path`` in its own kernel and save the executed copy to ``out_dir``.

    Returns ``{"notebook", "status" ("ok" or "failed"), "seconds", "cell", "error"}``; ``cell``
    is the 0-based index of the failing cell in the notebook (``None`` when all ran).
    """
    import nbformat
    from nbclient import NotebookClient

    current: dict[str, int] = {}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        current["index"] = cell_index

    result: dict[str, Any] = {"notebook": path.name, "status": "ok", "seconds": 0.0, "cell": None, "error": None}
    start = time.perf_counter()
    nb = None
    try:
        nb = nbformat.read(path, as_version=4)
        kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, on_cell_start=on_cell_start,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute(env=env)
    except Exception as e:  # unreadable file, kernel start failure, CellExecutionError, CellTimeoutError, DeadKernelError
        result["status"] = "failed"
        result["cell"] = current.get("index")
        if getattr(e, "ename", None):
            result["error"] = f"{e.ename}: {e.evalue}".strip()
        else:
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            result["error"] = f"{type(e).__name__}: {lines[-1] if lines else ''}".strip()
    result["seconds"] = round(time.perf_counter() - start, 2)
    if nb is not None:  # the executed copy, with outputs up to the failing cell
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    return result


def _where(result: dict[str, Any]) -> str:
    return "" if result["cell"] is None else f"cell {result['cell']}: "


def _print_table(results: list[dict[str, Any]]) -> None:
    width = max([len("notebook")] + [len(r["notebook"]) for r in results])
    print(f"{'notebook':<{width}}  {'status':<6}  {'time (s)':>8}")
    for r in results:
        line = f"{r['notebook']:<{width}}  {r['status']:<6}  {r['seconds']:>8.1f}"
        if r["status"] != "ok":
            line += f"  {_where(r)}{r['error']}"
        print(line)
    print(f"{'total':<{width}}  {'':<6}  {sum(r['seconds'] for r in results):>8.1f}")


def main(args: argparse.Namespace) -> int:
    """Run the selected notebooks; 0 if all pass, 1 if any failed, 2 for bad arguments."""
    try:
        profile = get_profile(args.profile)
        notebooks = select_notebooks(Path(args.notebooks_dir), list(args.notebooks))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not notebooks:
        print(f"error: no notebooks in {args.notebooks_dir}", file=sys.stderr)
        return 2
    out = Path(args.out or project_root() / "outputs" / f"run-{profile.name}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COURSE_PROFILE": profile.name, "COURSE_OUTPUT": str(out)}
    print(f"running {len(notebooks)} notebook(s), profile {profile.name!r}, output {out}", flush=True)

    results = []
    for path in notebooks:
        print(f"  {path.name} ...", flush=True)
        r = run_notebook(path, out / "notebooks", env, args.timeout)
        if r["status"] != "ok":
            print(f"  FAILED {r['notebook']}: {_where(r)}{r['error']}", flush=True)
        results.append(r)

    _print_table(results)
    failed = [r["notebook"] for r in results if r["status"] != "ok"]
    summary = {"profile": profile.name, "output": str(out), "timeout_s": args.timeout,
               "total_seconds": round(sum(r["seconds"] for r in results), 2),
               "failed": failed, "notebooks": results}
    atomic_write_text(out / "run_summary.json", json.dumps(summary, indent=2) + "\n")
    if failed:
        print(f"{len(failed)} of {len(results)} notebook(s) failed: {', '.join(failed)}")
        return 1
    print(f"all {len(results)} notebook(s) ran")
    return 0
