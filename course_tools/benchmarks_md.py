"""The blocks of BENCHMARKS.md that each benchmark script owns, between its begin and end markers; loading a script."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from course_utils.checkpoint import atomic_write_text


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
    atomic_write_text(path, text)


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the scripts are not a package); tests import them this way."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
