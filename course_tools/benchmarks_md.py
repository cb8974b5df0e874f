"""The blocks of BENCHMARKS.md that each benchmark script owns, between its begin and end markers."""
from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, begin: str, end: str, block: str) -> None:
    """Put ``block`` (which starts with ``begin`` and ends with ``end``) in place of that block of ``path``.

    A file without the block gets it appended; the rest of the file is kept as it is.
    """
    if not (block.startswith(begin) and block.endswith(end)):
        raise ValueError(f"the block must start with {begin!r} and end with {end!r}")
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
