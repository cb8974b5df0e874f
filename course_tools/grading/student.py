"""The untrusted side of the hidden tests: ``python -m course_tools.grading.student REQUEST.json`` (in the sandbox).

The request (written by ``judge.py``) holds the notebook's code cells (as plain Python: the grader has
already turned IPython syntax such as ``%magic`` into calls) and, per exercise, the encoded
inputs of every case (``wire.py``) — never an expected answer, never the hidden-test source. This process

1. defines the student's functions from the cells (:func:`student_namespace`: imports, ``def``/``class``
   statements and literal constants only, so no training runs);
2. for each exercise calls the student's function on every case and reports what it returned or raised.

It writes JSON lines on its standard output (the grader reads them; everything the student's code prints
goes to /dev/null)::

    {"event": "ready"}                                   the functions are defined
    {"event": "start", "exercise": name}                 the grader's clock for this exercise starts
    {"event": "result", "exercise": name, "outputs": [{"value": encoded} | {"raised": [class names], "message": str}]}
    {"event": "result", "exercise": name, "missing": true}      no ``def name`` in the notebook
    {"event": "result", "exercise": name, "delegated": ["module:qualname", ...], "outputs": [...]}

While one exercise runs, what the request lists in its ``forbid`` (course_utils's own implementation of
that exercise) is replaced by a stub that raises :class:`Delegated` and records the call
(:func:`forbidden`): in its module, in every module that imported it by name, on its class for a method,
and in the notebook's namespace. An answer that calls one is reported as delegated, whatever it returns.

Nothing here can change a verdict except the returned values and the delegation record: the grader
compares the values with answers it computed itself.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterator, TextIO

__all__ = ["STATEMENT_TIMEOUT", "Delegated", "student_namespace", "forbidden", "notebook_globals", "call_cases", "main"]

STATEMENT_TIMEOUT = 10.0     # seconds for one top-level statement of the notebook (a slow import is skipped)
_MESSAGE_CHARS = 300


class _Timeout(BaseException):
    """Raised by SIGALRM while a notebook statement runs (a BaseException so ``except Exception`` misses it)."""


def _alarm(seconds: float) -> None:
    def handler(signum, frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))


class Delegated(BaseException):
    """Raised by the stub of a forbidden reference (a BaseException, so ``except Exception`` does not hide it)."""


def _resolve(name: str) -> tuple[Any, str, Any]:
    """``(owner, attribute, object)`` for ``"module:qualname"`` (the owner is a module or a class)."""
    module, _, qualname = name.partition(":")
    owner: Any = importlib.import_module(module)
    parts = qualname.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    return owner, parts[-1], owner.__dict__[parts[-1]] if isinstance(owner, type) else getattr(owner, parts[-1])


@contextlib.contextmanager
def forbidden(names: list[str], namespaces: list[dict], calls: list[str]) -> Iterator[None]:
    """Replace each ``"module:qualname"`` of ``names`` by a raising stub that appends its name to ``calls``.

    The object is replaced wherever it is bound by name: its owner (module or class), every loaded module
    holding the same object, and each dict of ``namespaces`` (the notebook's globals). Restored on exit.
    """
    patched: list[tuple[Any, str, Any]] = []
    try:
        for name in names:
            try:
                owner, attr, original = _resolve(name)
            except (ImportError, AttributeError, KeyError, ValueError):
                continue

            def stub(*args: Any, _name: str = name, **kwargs: Any) -> Any:
                calls.append(_name)
                raise Delegated(f"{_name.replace(':', '.')} is the course's own answer to this exercise")

            targets = [owner] + [m for m in list(sys.modules.values()) if m is not None and m is not owner]
            for target in targets:
                try:
                    items = list(vars(target).items())
                except TypeError:
                    continue
                for key, value in items:
                    if value is original:
                        patched.append((target, key, value))
                        setattr(target, key, stub)
            for ns in namespaces:
                for key, value in list(ns.items()):
                    if value is original:
                        patched.append((ns, key, value))
                        ns[key] = stub
        yield
    finally:
        for target, key, value in reversed(patched):
            if isinstance(target, dict):
                target[key] = value
            else:
                setattr(target, key, value)


def student_namespace(cells: list[tuple[int, str]]) -> dict[str, Any]:
    """Define a notebook's functions: ``{name: object}`` for every top-level ``def``/``class``.

    Only top-level imports, ``def``/``class`` statements and literal constant assignments (``T = 1000``)
    of the code cells ``(index, python source)`` run, in order, so an exercise sees what it would see in the
    notebook minus the heavy work; the last definition of a name wins. A statement that fails or takes
    longer than :data:`STATEMENT_TIMEOUT` is skipped. Main thread only.
    """
    ns: dict = {"__name__": "__student__"}
    defined: dict = {}
    for index, source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # reported by the grader's own syntax check
        for node in tree.body:
            is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            is_const = isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            if not (is_def or is_const or isinstance(node, (ast.Import, ast.ImportFrom))):
                continue
            try:
                _alarm(STATEMENT_TIMEOUT)
                exec(compile(ast.Module([node], type_ignores=[]), f"<cell {index + 1}>", "exec"), ns)
            except BaseException:
                pass  # e.g. a failing import: an exercise that needs it fails with a NameError
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if is_def and node.name in ns:
                defined[node.name] = ns[node.name]
    return defined


def notebook_globals(fn: Any) -> dict | None:
    """The notebook namespace an exercise was defined in: a function's globals, or a class's methods' globals."""
    for obj in (fn, *vars(fn).values()) if isinstance(fn, type) else (fn,):
        g = getattr(obj, "__globals__", None)
        if isinstance(g, dict):
            return g
    return None


def _raised(e: BaseException) -> dict:
    try:
        message = str(e)[:_MESSAGE_CHARS]
    except BaseException:
        message = ""
    return {"raised": [c.__name__ for c in type(e).__mro__][:16], "message": message}


def _student_module(cls: type, encoded_args: Any) -> Any:
    """A module exercise (a class whose ``forward`` the student writes): the student's module for one case.

    The case's first argument is a ``Build`` of the reference module; the student's class is built with the
    same constructor arguments (and seed) and given the reference's weights, in eval mode.
    """
    import torch

    from .wire import WireError, decode

    first = encoded_args.get("tuple", [None])[0] if isinstance(encoded_args, dict) and encoded_args.get("tuple") \
        else None
    spec = first.get("build") if isinstance(first, dict) else None
    if not (isinstance(spec, list) and len(spec) == 5):
        raise WireError("a class exercise needs a Build of the reference module as the first argument of each case")
    _, seed, args, kwargs, state = spec
    if seed is not None:
        torch.manual_seed(seed)
    module = cls(*decode(args, True), **decode(kwargs, True))
    if state is not None:
        module.load_state_dict(decode(state, True))
    return module.eval() if isinstance(module, torch.nn.Module) else module


def call_cases(fn: Any, inputs: list, no_grad: bool, guard: Any = contextlib.nullcontext) -> list[dict]:
    """``{"value": encoded}`` or ``{"raised": ...}`` for ``fn`` on each case ``[encoded args, encoded kwargs]``.

    ``guard()`` is entered around each call of ``fn`` only (not around decoding the inputs or encoding
    the result), so building the inputs never counts as the student's doing. When ``fn`` is a class (a
    module exercise), each case's first argument is a ``Build`` of the reference module: the student's
    class is built the same way with the reference's weights (:func:`_student_module`) and called on the
    other arguments, so the hidden test reads ``Exercise(lambda ref, *a: ref(*a), cases=[(Build(...), x)])``.
    """
    import torch

    from .wire import decode, encode

    outputs = []
    for args, kwargs in inputs:
        try:
            call = _student_module(fn, args) if isinstance(fn, type) else fn
            args, kwargs = decode(args, inputs=True), decode(kwargs, inputs=True)
            if isinstance(fn, type):
                args = args[1:]                     # the reference module: the student's own stands in for it
            with torch.no_grad() if no_grad else torch.enable_grad(), guard():
                value = call(*args, **kwargs)
            outputs.append({"value": encode(value, opaque=True)})
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: they cost this case only
            outputs.append(_raised(e))
    return outputs


def _emit(channel: TextIO, **event: Any) -> None:
    channel.write(json.dumps(event) + "\n")
    channel.flush()


def main(argv: list[str]) -> int:
    """Answer the request in ``argv[0]``; 2 for a bad command line."""
    if len(argv) != 1:
        print("usage: python -m course_tools.grading.student REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    defined = student_namespace([(int(i), str(s)) for i, s in request["cells"]])
    _emit(channel, event="ready")
    for ex in request["exercises"]:
        name = ex["name"]
        if name not in defined:
            _emit(channel, event="result", exercise=name, missing=True)
            continue
        _emit(channel, event="start", exercise=name)
        fn, calls = defined[name], []
        namespaces = [g] if isinstance(g := notebook_globals(fn), dict) else []
        names = [str(f) for f in ex.get("forbid") or []]
        outputs = call_cases(fn, ex["inputs"], ex["no_grad"], guard=lambda: forbidden(names, namespaces, calls))
        extra = {"delegated": sorted(set(calls))} if calls else {}
        _emit(channel, event="result", exercise=name, outputs=outputs, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
