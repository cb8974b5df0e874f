"""Where the course keeps its files: shipped data (``data/``) and run outputs (``outputs/``) (taught in 00).

``COURSE_DATA`` and ``COURSE_OUTPUT`` move the two folders (the tests and the grader use them)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "data_dir", "output_dir", "checkpoint_dir", "deliverables_dir", "shipped_checkpoint_dir",
           "resume_path"]


def project_root() -> Path:
    """The repository root (the folder holding ``course_utils/``)."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Shipped data: ``$COURSE_DATA`` or ``<root>/data``."""
    return Path(os.environ.get("COURSE_DATA") or project_root() / "data")


def output_dir() -> Path:
    """Everything a run writes: ``$COURSE_OUTPUT`` or ``<root>/outputs``."""
    p = Path(os.environ.get("COURSE_OUTPUT") or project_root() / "outputs")
    p.mkdir(parents=True, exist_ok=True)
    return p


def checkpoint_dir() -> Path:
    """Checkpoints trained on this machine (per run output folder)."""
    p = output_dir() / "checkpoints"
    p.mkdir(parents=True, exist_ok=True)
    return p


def shipped_checkpoint_dir() -> Path:
    """Pretrained checkpoints that ship with the course (``data/checkpoints``)."""
    return data_dir() / "checkpoints"


def deliverables_dir() -> Path:
    """Figures a student hands in, under stable names."""
    p = output_dir() / "deliverables"
    p.mkdir(parents=True, exist_ok=True)
    return p


def resume_path(name: str) -> Path:
    """Where the training of model ``name`` keeps its per-epoch resume state (deleted once it finishes)."""
    return checkpoint_dir() / f"{name}.resume.pt"
