"""The grader's side of the hidden tests: run the student side (``student.py``) in the sandbox, judge here.

:func:`judge_notebook` writes a request (cells + encoded inputs) into the student's read-only ``spec``
folder, starts ``python -m course_tools.grading.student`` through the sandbox and reads its events,
with a clock per exercise. What comes back is decoded as data (``wire.decode``: plain values and plain
tensors) and compared with the answers :mod:`hidden` computed before any student code ran, with
``course_utils.checks.compare`` imported here, in the grader. An exercise that times out, crashes or
exits costs that exercise only: the student side is started again for the remaining ones.
"""
from __future__ import annotations

import itertools
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from course_utils.checks import compare

from .hidden import HiddenTests, LoadedExercise
from .report import ExerciseResult
from .sandbox import Box, Sandbox
from .wire import WireError, decode

__all__ = ["READY_TIMEOUT", "MAX_OUTPUT", "verdict", "judge_notebook", "describe_status"]

READY_TIMEOUT = 120.0           # seconds to start Python, import torch and define the notebook's functions
MAX_OUTPUT = 64 * 2**20         # bytes of answers one student process may send
_MESSAGE_CHARS = 500


def describe_status(returncode: int) -> str:
    """``exit code 3`` or ``killed by signal SIGKILL`` for a ``Popen.returncode``."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _clean(text: Any) -> str:
    return "".join(c if c.isprintable() else " " for c in str(text))[:_MESSAGE_CHARS]


def _hint(case_hint: str, message: str) -> str:
    return f"{case_hint} ({message})" if case_hint else message


def verdict(ex: LoadedExercise, outputs: Any) -> tuple[str, str]:
    """``(status, message)`` of one exercise from what the student side returned for its cases."""
    if not isinstance(outputs, list) or len(outputs) != len(ex.cases):
        return "error", "the student process sent a malformed answer"
    for i, (case, out, want) in enumerate(zip(ex.cases, outputs, ex.expected)):
        where = f"{ex.name} case {i}"
        if not isinstance(out, dict):
            return "error", "the student process sent a malformed answer"
        if "raised" in out:
            mro = [str(c) for c in out["raised"]] if isinstance(out["raised"], list) and out["raised"] else ["?"]
            message, kind = _clean(out.get("message", "")), _clean(mro[0])[:60]
            if "NotImplementedError" in mro:
                return "not done", f"still raises NotImplementedError ({message})"
            if case.raises is not None and case.raises.__name__ in mro:
                continue
            if case.raises is not None:
                return "wrong", _hint(case.hint, f"{where}: must raise {case.raises.__name__}, raised {kind}")
            return "error", f"{kind}: {message}"
        if case.raises is not None:
            return "wrong", _hint(case.hint, f"{where}: must raise {case.raises.__name__}, returned a value")
        try:
            got = decode(out.get("value"))
        except (WireError, RecursionError) as e:
            return "wrong", f"{where}: returned a value the grader cannot read ({_clean(e)})"
        try:
            compare(got, want, ex.atol, ex.rtol, where=where)
        except AssertionError as e:
            return "wrong", _hint(case.hint, _clean(e) or "a hidden check failed")
        except Exception as e:  # noqa: BLE001 - a value compare() does not handle
            return "wrong", f"{where}: returned a value that cannot be compared ({type(e).__name__})"
    return "passed", ""


class _Reader:
    """JSON-line events from a student process, with a deadline, a size cap and the tail of its stderr."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buffer, self.total, self.stderr = proc, b"", 0, b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)
        self.selector.register(proc.stderr, selectors.EVENT_READ)

    def next(self, deadline: float) -> dict | str:
        """The next event, or ``"timeout"``, ``"ended"`` (end of output) or ``"too much output"``."""
        while True:
            if b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(event, dict):
                    return event
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            for key, _ in self.selector.select(remaining):
                chunk = os.read(key.fileobj.fileno(), 1 << 20)
                if key.fileobj is self.proc.stderr:
                    self.stderr = (self.stderr + chunk)[-4096:]
                    if not chunk:
                        self.selector.unregister(self.proc.stderr)
                    continue
                if not chunk:
                    return "ended"
                self.buffer += chunk
                self.total += len(chunk)
                if self.total > MAX_OUTPUT:
                    return "too much output"


def _run_once(pending: list[LoadedExercise], cells: list, sandbox: Sandbox, box: Box, cwd: Path, request: Path,
              test_timeout: float) -> tuple[dict[str, Any], bool, str | None, str]:
    """One student process: ``(outputs by exercise, ready, exercise it stopped in, how it stopped)``."""
    request.write_text(json.dumps({"cells": cells, "exercises": [
        {"name": ex.name, "inputs": ex.inputs, "no_grad": ex.no_grad, "forbid": ex.forbid} for ex in pending]}),
        encoding="utf-8")
    env = sandbox.env(box, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = sandbox.popen([sys.executable, "-s", "-m", "course_tools.grading.student", str(request)], box, cwd, env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader, outputs, ready, current = _Reader(proc), {}, False, None
    names = {ex.name for ex in pending}
    deadline, how = time.monotonic() + READY_TIMEOUT, "ended"
    try:
        while len(outputs) < len(pending):
            event = reader.next(deadline)
            if isinstance(event, str):
                how = event
                break
            kind, name = event.get("event"), event.get("exercise")
            if kind == "ready":
                ready, deadline = True, time.monotonic() + test_timeout
            elif ready and name in names and name not in outputs:
                if kind == "start":
                    current, deadline = name, time.monotonic() + test_timeout
                elif kind == "result":
                    delegated = event.get("delegated")
                    outputs[name] = "missing" if event.get("missing") is True else \
                        ("delegated", delegated) if isinstance(delegated, list) and delegated else event.get("outputs")
                    current, deadline = None, time.monotonic() + test_timeout
    finally:
        status = sandbox.stop(proc, box)
    if len(outputs) < len(pending) and how == "ended":
        how = describe_status(status)
        last = reader.stderr.decode(errors="replace").strip().splitlines()
        if not ready and last:
            how += f"; {_clean(last[-1])[:200]}"
    if ready and current is None:
        current = next((ex.name for ex in pending if ex.name not in outputs), None)
    return outputs, ready, current, how


def judge_notebook(tests: HiddenTests, names: list[str], cells: list[tuple[int, str]], sandbox: Sandbox, box: Box,
                   cwd: Path, test_timeout: float, label: str) -> list[ExerciseResult]:
    """Grade the exercises ``names`` of one notebook (its code ``cells``); one result per exercise, in order.

    The student side runs in ``cwd`` (the notebook's folder in the scratch copy, so the student's own
    modules import); its requests are ``spec/<label>-request-<n>.json``.
    """
    results: dict[str, ExerciseResult] = {}
    for name in names:
        ex = tests.exercises.get(name)
        if ex is None or ex.broken:
            why = ex.broken if ex else "no hidden test"
            status = "no hidden test" if why == "no hidden test" else "error"
            results[name] = ExerciseResult(name, False, status, f"the hidden test is unavailable ({why}); "
                                           "tell the instructor")
    pending = [tests.exercises[n] for n in names if n not in results]
    for attempt in itertools.count():
        if not pending:
            break
        request = box.spec / f"{label}-request-{attempt}.json"
        outputs, ready, current, how = _run_once(pending, cells, sandbox, box, cwd, request, test_timeout)
        for ex in pending:
            if ex.name in outputs:
                out = outputs[ex.name]
                if out == "missing":
                    status, message = "missing", f"no `def {ex.name}` found in the notebook"
                elif isinstance(out, tuple):
                    called = ", ".join(_clean(n).replace(":", ".") for n in out[1][:3])
                    status, message = "delegated", (f"calls {called}, course_utils's own implementation of this "
                                                    "exercise: write it yourself (other helpers are fine)")
                else:
                    status, message = verdict(ex, out)
                results[ex.name] = ExerciseResult(ex.name, status == "passed", status, tests.scrub(message))
        if not ready:
            for ex in pending:
                if ex.name not in results:
                    results[ex.name] = ExerciseResult(ex.name, False, "error", tests.scrub(
                        f"the notebook's functions could not be defined: the process stopped ({how})"))
            break
        if current is not None:
            status = "timeout" if how == "timeout" else "error"
            message = f"took longer than {test_timeout:g} s" if how == "timeout" else \
                f"the process running it stopped ({how})"
            results[current] = ExerciseResult(current, False, status, tests.scrub(message))
        pending = [ex for ex in pending if ex.name not in results]
    return [results[n] for n in names]
