"""Exercise checks: compare a student's function with the reference and say what differs.

Every exercise in the notebooks ends with a check cell::

    check_function(my_forward, reference_forward, cases=[(x0, t, eps)])

It prints one line per passing case and raises ``AssertionError`` naming the first
difference (type, shape, dtype or values, with the largest error and where it is).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

__all__ = ["compare", "check_function", "ExerciseNotDone"]


class ExerciseNotDone(AssertionError):
    """The student's function still raises NotImplementedError."""


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
        if not isinstance(got, (int, float)) or abs(got - want) > atol + rtol * abs(want):
            raise AssertionError(f"{where}: got {got!r}, expected {want!r}")
        return
    if got != want:
        raise AssertionError(f"{where}: got {got!r}, expected {want!r}")


def check_function(student: Callable, reference: Callable, cases: Sequence[tuple | dict],
                   atol: float = 1e-5, rtol: float = 1e-4, name: str | None = None, quiet: bool = False) -> int:
    """Call ``student`` and ``reference`` on every case (a tuple of args or a dict of kwargs) and compare.

    Returns the number of cases checked; raises ``AssertionError`` on the first difference.
    """
    name = name or getattr(student, "__name__", "function")
    for i, case in enumerate(cases):
        args, kwargs = ((), case) if isinstance(case, dict) else (tuple(case), {})
        want = reference(*args, **kwargs)
        try:
            got = student(*args, **kwargs)
        except NotImplementedError as e:
            raise ExerciseNotDone(f"{name} is not implemented yet: {e}") from None
        compare(got, want, atol, rtol, where=f"{name} case {i}")
    if not quiet:
        print(f"{name}: all {len(cases)} cases match the reference")
    return len(cases)
