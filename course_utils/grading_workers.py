"""Code the grader (``grading.py``) runs in subprocesses, never in its own process.

* ``hidden_test_worker``: define a student's exercise functions and run the hidden tests on them;
* ``execute_worker``: execute a notebook with nbclient under a total time limit;
* ``samples_worker``: check a saved samples tensor and score it with the course metrics.

Each reads a JSON spec on stdin and writes its results to the files the spec names, so the
grader keeps whatever was written even when it has to kill the process. The grader runs this
file as a script (``python grading_workers.py execute_worker``) so that a worker imports only
what it needs (executing a notebook needs no torch); hence the absolute imports inside functions.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # run as a script: course_utils/ itself must not shadow top-level modules

import json  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

__all__ = ["student_namespace", "run_hidden_tests", "hidden_test_worker", "execute_worker", "score_samples_file",
           "samples_worker"]


class _Timeout(BaseException):
    """Raised by SIGALRM inside a worker (a BaseException so ``except Exception`` does not swallow it)."""


def _alarm(seconds: float) -> None:
    def handler(signum, frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))


def student_namespace(cells: list[tuple[int, str]]) -> dict:
    """Define a notebook's functions: ``{name: object}`` for every top-level ``def``/``class``.

    Only top-level imports, ``def``/``class`` statements and literal constant assignments
    (``T = 1000``) of the code cells ``(index, source)`` are run, in order, so an exercise sees
    what it would see in the notebook minus the heavy work; the last definition of a name wins.
    Statements that fail (e.g. an import of a missing module) are skipped. Main thread only.
    """
    import ast
    import contextlib
    import io

    from course_utils.release import code_to_python

    ns: dict = {"__name__": "__student__"}
    defined: dict = {}
    sink = io.StringIO()
    previous = signal.getsignal(signal.SIGALRM)
    try:
        for index, source in cells:
            try:
                tree = ast.parse(code_to_python(source))
            except SyntaxError:
                continue  # reported by the grader's own syntax check
            for node in tree.body:
                is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                is_const = isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                if not (is_def or is_const or isinstance(node, (ast.Import, ast.ImportFrom))):
                    continue
                try:
                    _alarm(10)
                    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                        exec(compile(ast.Module([node], type_ignores=[]), f"<cell {index + 1}>", "exec"), ns)
                except (Exception, _Timeout):
                    pass  # e.g. a failing import: an exercise that needs it fails with a NameError
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if is_def and node.name in ns:
                    defined[node.name] = ns[node.name]
    finally:
        signal.signal(signal.SIGALRM, previous)
    return defined


def run_hidden_tests(cells: list[tuple[int, str]], names: list[str], tests_file: str | None, stem: str,
                     test_timeout: float = 60.0, emit: Callable[..., None] | None = None) -> list[dict]:
    """Run ``test_<name>(fn)`` from ``tests_file`` on each exercise ``name`` defined by ``cells``.

    Returns (and passes to ``emit`` as soon as known) one ``{name, status, message}`` per
    exercise; status is passed, wrong, not done, error, timeout, missing or "no hidden test".
    Runs the student's code in this process: the grader calls it in a subprocess.
    """
    import contextlib
    import importlib.util
    import io

    from course_utils.checks import ExerciseNotDone

    defined = student_namespace(cells)
    tests, broken = None, ""
    if tests_file:
        try:
            mod_spec = importlib.util.spec_from_file_location(f"hidden_tests_{Path(tests_file).stem}", tests_file)
            tests = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(tests)
        except Exception as e:
            broken = f"the hidden tests {Path(tests_file).name} do not load: {type(e).__name__}: {e}"
    rows, sink = [], io.StringIO()
    previous = signal.getsignal(signal.SIGALRM)
    for name in names:
        test = getattr(tests, f"test_{name}", None) if tests else None
        if broken:
            status, message = "error", broken
        elif test is None:
            status, message = "no hidden test", f"instructor: add test_{name}(fn) to grading/hidden_tests/{stem}.py"
        elif name not in defined:
            status, message = "missing", f"no `def {name}` found in the notebook"
        else:
            try:
                _alarm(test_timeout)
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    test(defined[name])
                status, message = "passed", ""
            except (ExerciseNotDone, NotImplementedError) as e:
                status, message = "not done", f"still raises NotImplementedError ({e})"
            except AssertionError as e:
                status, message = "wrong", str(e) or "a hidden check failed"
            except _Timeout:
                status, message = "timeout", f"took longer than {test_timeout:g} s"
            except Exception as e:
                status, message = "error", f"{type(e).__name__}: {e}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        row = {"name": name, "status": status, "message": message[:500]}
        rows.append(row)
        if emit is not None:
            emit(**row)
    return rows


def hidden_test_worker() -> None:
    """Subprocess side of the hidden tests: read a spec on stdin, write one JSON line per exercise."""
    spec = json.load(sys.stdin)
    sys.path.insert(0, ".")  # as in the notebook, the student's own modules next to it are importable
    with open(spec["results"], "a", encoding="utf-8") as out:
        def emit(**row) -> None:
            out.write(json.dumps(row) + "\n")
            out.flush()
        run_hidden_tests(spec["cells"], spec["names"], spec["tests"], spec["stem"], spec["test_timeout"], emit)


def execute_worker() -> None:
    """Subprocess side of execution: run a notebook with nbclient, save it, write a status JSON."""
    # jsonschema (imported by nbformat) loads rfc3987_syntax, which builds a grammar for seconds
    # at import; nbformat never needs it, so make that optional import fail fast.
    sys.modules.setdefault("rfc3987_syntax", None)
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    spec = json.load(sys.stdin)
    state: dict = {"status": "failed", "cell": None, "kernel_pid": None, "message": ""}
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
        state["kernel_pid"] = getattr(client.km.provisioner, "pid", None)
        write_state()

    def on_cell(cell=None, cell_index=None, **kwargs) -> None:
        state["cell"] = cell_index

    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, startup_timeout=120, shutdown_kernel="immediate",
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
    """Scores of a saved samples tensor (N, 1, 28, 28) in [-1, 1], or ``{"note": why it was not scored}``."""
    import torch

    from course_utils.metrics import evaluate_samples

    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28) or len(x) < 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected a tensor (N, 1, 28, 28) with N >= 2, got {shape}")
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("samples contain NaN or inf")
        if x.min() < -1.01 or x.max() > 1.01:
            raise ValueError(f"samples must lie in [-1, 1], found [{x.min():.3g}, {x.max():.3g}]")
        return {k: round(float(v), 4) for k, v in evaluate_samples(x[:n]).items()}
    except Exception as e:
        return {"note": f"not scored: {type(e).__name__}: {e}"[:300]}


def samples_worker() -> None:
    """Subprocess side of sample scoring: write :func:`score_samples_file`'s result as JSON."""
    spec = json.load(sys.stdin)
    Path(spec["out"]).write_text(json.dumps(score_samples_file(spec["file"], spec["n"])), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in __all__ or not sys.argv[1].endswith("_worker"):
        sys.exit("usage: python grading_workers.py {hidden_test_worker,execute_worker,samples_worker} < spec.json")
    globals()[sys.argv[1]]()
