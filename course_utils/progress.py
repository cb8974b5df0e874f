"""Progress bars for every loop that can run longer than a few seconds (training, sampling, inversion).

One place decides how they look: a bar appears only after :data:`DELAY` seconds, so quick loops print
nothing, and never in the ``smoke`` profile (whose notebooks are compared output for output by nbval).
"""
from __future__ import annotations

from typing import Iterable

from tqdm.auto import tqdm

from .profiles import get_profile

__all__ = ["DELAY", "progress_bar"]

DELAY = 2.0         # seconds before a bar is drawn


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, initial: int = 0) -> tqdm:
    """A ``tqdm`` bar (a widget in Jupyter) that closes when done; ``enabled=False`` or ``smoke`` hides it."""
    try:
        show = get_profile().progress
    except ValueError:              # an unknown COURSE_PROFILE: its own error comes from get_profile elsewhere
        show = True
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False, mininterval=1.0,
                delay=DELAY, disable=not (enabled and show))
