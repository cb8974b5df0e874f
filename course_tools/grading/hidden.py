"""Hidden tests: what ``grading/hidden_tests/<notebook>.py`` declares, and how the grader loads it (trusted side).

A hidden-test file defines ``test_<exercise>()`` for every exercise of its notebook, returning an
:class:`Exercise`: the reference callable, the cases (inputs) and the tolerances::

    from course_tools.grading.hidden import Build, Case, Exercise, Generator

    def test_q_sample() -> Exercise:
        x0, eps = ...
        return Exercise(schedules.q_sample, cases=[(x0, t, eps, ab), Case((x0[:1], t[:1], eps[:1], ab))])

``forbid`` lists what in ``course_utils`` implements the exercise itself (the function, a method such as
``DDPMScheduler.step``): while the student's function runs in the grader, those are replaced by stubs that
raise, so an answer that calls them is marked ``delegated`` with no point. The package's other helpers (a
network, a schedule's tables) stay callable.

Inputs are tensors, Python values, :class:`Generator` (a fresh seeded ``torch.Generator`` per call) and
:class:`Build` (an object made the same way on both sides, a module with the grader's weights). A
``Case(args, raises=ValueError, hint=...)`` passes when the student's function raises that exception.

The grader reads each file once (its SHA-256 goes into the reports), runs it, encodes every case's inputs
and computes every expected answer itself, here, before any student code runs. Only the encoded inputs
reach the student process (``student.py``); the answers and the comparison never leave the grader.
"""
from __future__ import annotations

import hashlib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .wire import Build, Generator, decode, encode

__all__ = ["Build", "Case", "Exercise", "Generator", "forbidden_name", "LoadedExercise", "HiddenTests", "load_hidden_tests"]

_QUOTE_MIN = 16     # a message holding a line of the hidden tests at least this long is withheld


@dataclass(frozen=True)
class Case:
    """One call of the exercise: ``fn(*args, **kwargs)``; with ``raises``, the call must raise that exception."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    raises: type[Exception] | None = None
    hint: str = ""      # added to the message when this case fails


@dataclass(frozen=True)
class Exercise:
    """What ``test_<name>()`` returns: compare the student's function with ``reference`` on ``cases``.

    A case is a tuple of arguments, a dict of keyword arguments or a :class:`Case`.
    """

    reference: Callable[..., Any] | None
    cases: Sequence[Case | tuple | dict]
    atol: float = 1e-5
    rtol: float = 1e-4
    no_grad: bool = False       # run both sides under torch.no_grad()
    forbid: Sequence[Callable[..., Any]] = ()   # course_utils's own implementations of the exercise


def forbidden_name(obj: Any) -> str:
    """``"module:qualname"`` of a function or method of ``course_utils``, as the student side resolves it."""
    fn = getattr(obj, "__func__", obj)
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or not module.startswith("course_utils"):
        raise ValueError(f"forbid= takes functions and methods of course_utils, not {obj!r}")
    return f"{module}:{qualname}"


@dataclass
class LoadedExercise:
    """One exercise, ready to grade: the encoded inputs for the student and, kept here, the answers."""

    name: str
    inputs: list = field(default_factory=list)          # per case: [encoded args, encoded kwargs]
    expected: list = field(default_factory=list)        # per case: the reference's output (None for raises)
    cases: list[Case] = field(default_factory=list)
    atol: float = 1e-5
    rtol: float = 1e-4
    no_grad: bool = False
    forbid: list[str] = field(default_factory=list)     # "module:qualname" stubbed while the student's code runs
    broken: str = ""            # why the instructor's test could not be prepared ("" when it is fine)


@dataclass
class HiddenTests:
    """The hidden tests of one notebook, loaded once."""

    file: str                   # path, for messages ("" when the notebook has none)
    sha256: str
    exercises: dict[str, LoadedExercise]
    source_lines: frozenset[str] = frozenset()

    def scrub(self, message: str) -> str:
        """``message`` unless it quotes a line of the hidden tests (then a note saying it was withheld)."""
        if any(line in message for line in self.source_lines):
            return "(message withheld: it quotes the hidden tests)"
        return message


def _case(c: Case | tuple | dict) -> Case:
    if isinstance(c, Case):
        return c
    if isinstance(c, dict):
        return Case(kwargs=c)
    if isinstance(c, tuple):
        return Case(args=c)
    raise TypeError(f"a case is a tuple of arguments, a dict of keyword arguments or a Case, not {type(c).__name__}")


def _prepare(name: str, ex: Any) -> LoadedExercise:
    if not isinstance(ex, Exercise):
        raise TypeError(f"test_{name}() must return an Exercise, not {type(ex).__name__}")
    out = LoadedExercise(name, cases=[_case(c) for c in ex.cases], atol=ex.atol, rtol=ex.rtol, no_grad=ex.no_grad,
                         forbid=[forbidden_name(f) for f in ex.forbid])
    if not out.cases:
        raise ValueError(f"test_{name}() has no cases")
    for i, case in enumerate(out.cases):
        inputs = [encode(tuple(case.args)), encode(dict(case.kwargs))]
        out.inputs.append(inputs)
        if case.raises is not None:
            out.expected.append(None)
            continue
        if ex.reference is None:
            raise ValueError(f"test_{name}(): case {i} needs a reference (or raises=...)")
        args, kwargs = decode(inputs[0], inputs=True), decode(inputs[1], inputs=True)  # what the student gets
        with torch.no_grad() if ex.no_grad else torch.enable_grad():
            out.expected.append(ex.reference(*args, **kwargs))
    return out


def load_hidden_tests(path: str | Path | None, names: list[str]) -> HiddenTests:
    """Read, hash and run the hidden tests of one notebook, and prepare each exercise of ``names``.

    An exercise whose ``test_<name>`` is missing or fails to prepare gets ``broken`` set (every student
    then sees an error naming the instructor's problem, the grader prints it); nothing raises.
    """
    if path is None:
        return HiddenTests("", "", {n: LoadedExercise(n, broken="no hidden test") for n in names})
    path = Path(path)
    source = path.read_bytes()
    text = source.decode("utf-8", errors="replace")
    tests = HiddenTests(str(path), hashlib.sha256(source).hexdigest(), {},
                        frozenset(s for s in (ln.strip() for ln in text.splitlines()) if len(s) >= _QUOTE_MIN))
    module = types.ModuleType(f"hidden_tests_{path.stem}")
    module.__file__ = str(path)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except Exception as e:
        why = f"{path.name} does not load: {type(e).__name__}: {e}"
        tests.exercises = {n: LoadedExercise(n, broken=why) for n in names}
        return tests
    for name in names:
        test = getattr(module, f"test_{name}", None)
        if test is None:
            tests.exercises[name] = LoadedExercise(name, broken=f"no test_{name}() in {path.name}")
            continue
        try:
            tests.exercises[name] = _prepare(name, test())
        except Exception as e:
            tests.exercises[name] = LoadedExercise(name, broken=f"test_{name}() fails: {type(e).__name__}: {e}")
    return tests
