"""Code the grader runs in subprocesses, never in its own process.

    python -m course_tools.grading.worker {execute,score_samples} SPEC.json

* ``execute`` (untrusted side, in the student's sandbox): execute a notebook with nbclient under a
  total time limit; the kernel runs in the notebook's folder of the student's scratch copy;
* ``score_samples`` (trusted side, the grader's user, with resource limits): check a samples file the
  grader copied out of the student's scratch and score it with the course metrics (``torch.load`` with
  ``weights_only=True``: the file is the student's, so no pickled code runs).

Each reads the JSON spec named on its command line and writes its results to the files the spec
names, so the grader keeps whatever was written even when it has to kill the process (it reads them
back as untrusted data). A worker imports only what it needs (executing a notebook needs no torch).
The hidden tests have their own untrusted entry point, ``student.py``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

__all__ = ["execute_worker", "score_samples_file", "samples_worker", "WORKERS", "main"]


def execute_worker(spec: dict) -> None:
    """Run the notebook ``spec["notebook"]`` with nbclient in ``spec["cwd"]``.

    Saves the executed notebook to ``spec["executed"]`` and the state to ``spec["status"]``.
    """
    # jsonschema (imported by nbformat) loads rfc3987_syntax, which builds a grammar for seconds
    # at import; nbformat never needs it, so make that optional import fail fast.
    sys.modules.setdefault("rfc3987_syntax", None)
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    for key in ("executed", "status"):
        Path(spec[key]).parent.mkdir(parents=True, exist_ok=True)
    state: dict = {"status": "failed", "cell": None, "message": ""}
    try:
        nb = nbformat.reads(Path(spec["notebook"]).read_text(encoding="utf-8"), as_version=4)
    except Exception as e:
        state["message"] = f"the notebook could not be loaded: {type(e).__name__}: {e}"[:300]
        Path(spec["status"]).write_text(json.dumps(state), encoding="utf-8")
        return
    deadline = [time.monotonic() + spec["timeout"]]

    def write_state() -> None:
        Path(spec["status"]).write_text(json.dumps(state), encoding="utf-8")

    def on_start(**kwargs) -> None:
        deadline[0] = time.monotonic() + spec["timeout"]
        write_state()

    def on_cell(cell=None, cell_index=None, **kwargs) -> None:
        state["cell"] = cell_index

    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, startup_timeout=120,
                            shutdown_kernel="immediate",
                            timeout_func=lambda cell: max(1, int(deadline[0] - time.monotonic() + 0.999)),
                            resources={"metadata": {"path": spec["cwd"]}},
                            on_notebook_start=on_start, on_cell_start=on_cell)
    try:
        client.execute()
        state["status"] = "ok"
    except CellTimeoutError:
        state["status"] = "timeout"
    except DeadKernelError as e:
        state["status"], state["message"] = "kernel died", str(e)[:300]
    except Exception as e:
        state["status"], state["message"] = "failed", f"{type(e).__name__}: {e}"[:300]
    finally:
        Path(spec["executed"]).write_text(nbformat.writes(nb), encoding="utf-8")
        write_state()


def score_samples_file(path: str | Path, n: int) -> dict:
    """Scores of the first ``n`` saved samples (``course_utils.deliverables`` format), or ``{"note": why not}``.

    With labels in the file, the class accuracy is scored too.
    """
    from course_utils.deliverables import load_samples
    from course_utils.metrics import evaluate_samples

    try:
        data = load_samples(path, min_samples=2)
        labels = None if data["labels"] is None else data["labels"][:n]
        return {k: round(float(v), 4) for k, v in evaluate_samples(data["images"][:n], labels).items()}
    except Exception as e:
        return {"note": f"not scored: {type(e).__name__}: {e}"[:300]}


def samples_worker(spec: dict) -> None:
    """Write :func:`score_samples_file`'s result for ``spec["file"]`` as JSON to ``spec["out"]``."""
    Path(spec["out"]).write_text(json.dumps(score_samples_file(spec["file"], spec["n"])), encoding="utf-8")


WORKERS: dict[str, Callable[[dict], None]] = {"execute": execute_worker, "score_samples": samples_worker}


def main(argv: list[str]) -> int:
    """Run the worker ``argv[0]`` (one of :data:`WORKERS`) on the spec file ``argv[1]``; 2 for a bad command line."""
    if len(argv) != 2 or argv[0] not in WORKERS:
        print(f"usage: python -m course_tools.grading.worker {{{','.join(WORKERS)}}} SPEC.json", file=sys.stderr)
        return 2
    WORKERS[argv[0]](json.loads(Path(argv[1]).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
