"""Exercise checks: compare a student's function with the reference and say what differs.

Every exercise in the notebooks ends with a check cell::

    check_function(my_forward, reference_forward, cases=[(x0, t, eps)])

It prints one line per passing case and raises ``AssertionError`` naming the first
difference (type, shape, dtype or values, with the largest error and where it is). When the
outputs are images, the failing case is also drawn: the student's row above the expected one.
Module exercises (a block whose ``__init__`` is given and whose ``forward`` the student writes)
are checked with :func:`check_module`, which loads the reference's weights into the student's
module first.

Inside Jupyter, importing this module also installs a short message for unfinished exercises
(:func:`install_exercise_messages`): a cell that calls an exercise still raising
``NotImplementedError`` prints one line naming the exercise to finish instead of a traceback, and
a later ``NameError`` says which unfinished exercise left the name undefined.
"""
from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["compare", "check_function", "check_module", "ExerciseNotDone", "install_exercise_messages",
           "unfinished_exercises"]


class ExerciseNotDone(AssertionError):
    """The student's function still raises NotImplementedError."""


_UNFINISHED: list[str] = []       # exercises seen raising NotImplementedError in this kernel, in order


def unfinished_exercises() -> list[str]:
    """Names of the exercises that raised ``NotImplementedError`` in this session (for messages)."""
    return list(_UNFINISHED)


def _note_unfinished(name: str) -> None:
    if name not in _UNFINISHED:
        _UNFINISHED.append(name)


def _looks_like_images(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] in (1, 3) and min(x.shape[2:]) >= 8 \
        and x.dtype.is_floating_point


def _show_pair(got: torch.Tensor, want: torch.Tensor, title: str) -> None:
    """Draw up to 8 images of the student's output above the expected ones (in a notebook only)."""
    if "ipykernel" not in sys.modules:
        return
    try:
        from .plotting import show_images
        n = min(8, len(want))
        show_images(torch.cat([got[:n].detach().float().cpu(), want[:n].detach().float().cpu()]), nrow=n,
                    row_labels=["yours", "expected"], title=title, scale=0.8)
    except Exception:  # noqa: BLE001 - a drawing problem must not hide the real message
        pass


@contextmanager
def exact_float32() -> Iterator[None]:
    """Compute in full float32 on a CUDA GPU: TF32 off for cuDNN convolutions (on by default) and matmuls.

    TF32 rounds to about 1e-3 relative and cuDNN picks its algorithm by batch size, so a correct answer
    that batches its network calls differently from the reference (05's two guided passes in one batch
    or two) could miss the checks' tolerances there. No effect on a CPU.
    """
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def compare(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-4, where: str = "output") -> None:
    """Raise ``AssertionError`` describing the first difference between ``got`` and ``want``."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise AssertionError(f"{where}: expected a {type(want).__name__} of {len(want)} items, got {type(got).__name__}"
                                 + (f" of {len(got)}" if isinstance(got, (tuple, list)) else ""))
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, atol, rtol, f"{where}[{i}]")
        return
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            raise AssertionError(f"{where}: expected a dict with keys {sorted(want)}, got {got!r:.80}")
        for k in want:
            compare(got[k], want[k], atol, rtol, f"{where}[{k!r}]")
        return
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{where}: expected a torch.Tensor, got {type(got).__name__}")
        if got.shape != want.shape:
            raise AssertionError(f"{where}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        if got.dtype != want.dtype:
            raise AssertionError(f"{where}: dtype {got.dtype}, expected {want.dtype}")
        g, w = got.detach().cpu(), want.detach().cpu()
        if g.dtype.is_floating_point or g.dtype.is_complex:
            if torch.isnan(g).any() and not torch.isnan(w).any():
                raise AssertionError(f"{where}: contains NaN")
            if not torch.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True):
                err = (g - w).abs()
                i = int(err.flatten().argmax())
                idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), g.shape)) if g.dim() else ()
                raise AssertionError(f"{where}: values differ; largest error {err.max().item():.3g} at index {idx} "
                                     f"(got {g.flatten()[i].item():.5g}, expected {w.flatten()[i].item():.5g})")
        elif not torch.equal(g, w):
            n = int((g != w).sum())
            raise AssertionError(f"{where}: {n} of {g.numel()} entries differ")
        return
    if isinstance(want, float) or isinstance(got, float):
        if isinstance(want, float) and not isinstance(got, (int, float)):
            raise AssertionError(f"{where}: expected a Python float (e.g. float(x) or x.item()), got {type(got).__name__} "
                                 f"{got!r}")
        if abs(got - want) > atol + rtol * abs(want):
            raise AssertionError(f"{where}: got {got!r}, expected {want!r}")
        return
    if got != want:
        raise AssertionError(f"{where}: got {got!r}, expected {want!r}")


def check_function(student: Callable, reference: Callable, cases: Sequence[tuple | dict],
                   atol: float = 1e-5, rtol: float = 1e-4, name: str | None = None, quiet: bool = False,
                   show: bool = True) -> int:
    """Call ``student`` and ``reference`` on every case (a tuple of args or a dict of kwargs) and compare.

    Randomness is part of a case (pass ``t``, ``eps``, ``noise`` as arguments), so every correct
    answer passes whatever order it computes things in. Returns the number of cases checked; raises
    ``AssertionError`` on the first difference, after drawing the two outputs when they are
    images (B, 1 or 3, H, W) and ``show`` is true.
    """
    name = name or getattr(student, "__name__", "function")
    for i, case in enumerate(cases):
        args, kwargs = ((), case) if isinstance(case, dict) else (tuple(case), {})
        with exact_float32():
            want = reference(*args, **kwargs)
        try:
            with exact_float32():
                got = student(*args, **kwargs)
        except NotImplementedError as e:
            _note_unfinished(name)
            raise ExerciseNotDone(f"{name} is not implemented yet: {e}") from None
        try:
            compare(got, want, atol, rtol, where=f"{name} case {i}")
        except AssertionError:
            if show and _looks_like_images(want) and isinstance(got, torch.Tensor) and got.shape == want.shape:
                _show_pair(got, want, f"{name}, case {i}: your output (top) and the expected one (bottom)")
            raise
    if not quiet:
        print(f"{name}: all {len(cases)} cases match the reference")
    return len(cases)


def check_module(student: nn.Module, reference: nn.Module, cases: Sequence[tuple | dict], atol: float = 1e-5,
                 rtol: float = 1e-4, name: str | None = None, quiet: bool = False) -> int:
    """Check a module exercise: load ``reference``'s weights into ``student``, then compare their outputs.

    The exercise gives the layers (``__init__``, same names and shapes as the reference) and the
    student writes ``forward``; with shared weights the two modules must agree on every case (a
    tuple of ``forward`` arguments or a dict of keyword arguments), in eval mode. ``student`` is
    not changed: a copy gets the weights. Returns the number of cases checked.
    """
    name = name or type(student).__name__
    want_keys, got_keys = set(reference.state_dict()), set(student.state_dict())
    if want_keys != got_keys:
        missing, extra = sorted(want_keys - got_keys), sorted(got_keys - want_keys)
        raise AssertionError(f"{name}: its layers differ from the reference's; keep the __init__ the exercise gives"
                             + (f"; missing {missing[:6]}" if missing else "") + (f"; unexpected {extra[:6]}" if extra else ""))
    trial = copy.deepcopy(student)
    try:
        trial.load_state_dict(reference.state_dict())
    except RuntimeError as e:
        raise AssertionError(f"{name}: a layer has another shape than the reference's ({str(e).splitlines()[-1].strip()})"
                             ) from None
    trial.eval()
    reference.eval()
    with torch.no_grad():
        return check_function(trial, reference, cases, atol=atol, rtol=rtol, name=name, quiet=quiet)


def _exercise_name(tb: Any) -> str | None:
    """The innermost function of the traceback defined in a notebook cell (the unfinished exercise)."""
    name = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if "ipykernel" in code.co_filename or code.co_filename.startswith("<ipython-input") \
                or code.co_filename.startswith("<cell"):
            if code.co_name != "<module>":
                name = getattr(code, "co_qualname", code.co_name).split(".<locals>.")[0]   # Class.forward
        tb = tb.tb_next
    return name


def _exercise_message(etype: type, value: BaseException, tb: Any) -> str | None:
    """One line for an unfinished exercise or for a NameError it caused; None for any other error."""
    if issubclass(etype, ExerciseNotDone):
        text = str(value)
        exercise = text.split(" is not implemented yet")[0]
        _note_unfinished(exercise)
        return (f"Exercise not finished: `{exercise}` still raises NotImplementedError. Write it in its cell (search "
                f"this notebook for `def {exercise}`), run that cell, then run this one again.")
    if issubclass(etype, NotImplementedError):
        qualname = _exercise_name(tb)
        if qualname is None:
            return None
        exercise = qualname.split(".")[0]                   # a module exercise: the class whose method is unfinished
        _note_unfinished(exercise)
        hint = str(value).strip()
        where = f"class {exercise}" if "." in qualname else f"def {exercise}"
        return (f"This cell needs the exercise `{exercise}`, which is not finished yet. Write it in its cell "
                f"(search this notebook for `{where}`), run that cell, then run this one again."
                + (f" Hint: {hint}" if hint else ""))
    if issubclass(etype, NameError) and _UNFINISHED:
        names = ", ".join(f"`{n}`" for n in _UNFINISHED)
        return (f"{value}: a cell above could not compute it because of the unfinished exercise(s) {names}. "
                f"Finish them, then run the notebook again from the top.")
    return None


def install_exercise_messages() -> bool:
    """In IPython, replace the traceback of an unfinished exercise by one line naming it; True if installed.

    Other errors keep their normal traceback. Jupyter still counts the cell as failed (so "Run all"
    stops there); the cells that do not need the exercise run as usual when run on their own.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "_course_exercise_messages", False):
        return shell is not None

    import inspect
    # IPython < 8.x showed what the handler returns; newer versions leave the display to the handler
    shown_by_ipython = "_showtraceback" in inspect.getsource(type(shell).set_custom_exc)

    def handler(self, etype, value, tb, tb_offset=None):
        message = _exercise_message(etype, value, tb)
        if shown_by_ipython:
            return [f"{etype.__name__}: {message}"] if message is not None else \
                self.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        if message is None:
            self.showtraceback(running_compiled_code=True)      # the usual traceback
        else:
            self._showtraceback(etype, value, [f"{etype.__name__}: {message}"])
        return None

    shell.set_custom_exc((NotImplementedError, ExerciseNotDone, NameError), handler)
    shell._course_exercise_messages = True
    return True


install_exercise_messages()
