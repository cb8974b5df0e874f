"""The graded files a notebook hands in besides its figures (notebooks 04-07, read by the grader).

**Samples**, ``outputs/deliverables/<NN>_samples.pt`` (04, 05, 06, 07): the grader scores them
with the course metrics. :func:`save_samples` writes a plain dict with ``torch.save``::

    {"images": float32 (N, 1, 28, 28) in [-1, 1]   # the model's samples, not uint8
     "labels": int64 (N,) digits 0-9, or None      # the classes asked for (None: unconditional)
     "meta":   {...}}                               # plain values: how the samples were made

A bare tensor ``(N, 1, 28, 28)`` (``torch.save(samples, path)``) reads as images without labels.
:func:`load_samples` reads either form; both sides run the same :func:`check_samples`.

**Best guidance weight**, ``outputs/05_best_w.json`` (05): :func:`record_best_w` writes the
weight chosen by the guidance sweep, with the sweep's scores; :func:`best_w` reads it back
(else the ``best_w`` of the shipped ``data/checkpoints/manifest.json``, else a default). It is
the default guidance of ``./course.sh generate``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch

from .checkpoint import atomic_save, atomic_write_text
from .paths import deliverables_dir, output_dir, shipped_checkpoint_dir
from .validation import check_image_batch, check_labels

__all__ = ["SAMPLE_SHAPE", "BEST_W_FILE", "check_samples", "save_samples", "load_samples", "record_best_w", "best_w"]

SAMPLE_SHAPE = (1, 28, 28)
RANGE_TOLERANCE = 0.01             # samples may overshoot [-1, 1] by this much (float round-off of the samplers)
BEST_W_FILE = "05_best_w.json"
_PLAIN = (str, int, float, bool, type(None))


def check_samples(images: torch.Tensor, labels: torch.Tensor | None = None,
                  min_samples: int = 1) -> dict[str, torch.Tensor | None]:
    """Validate samples; return ``{"images": float32 CPU, "labels": int64 CPU or None}``.

    Raises ``ValueError`` naming the problem: not a float tensor ``(N, 1, 28, 28)``, fewer than
    ``min_samples`` images, NaN or inf, values outside [-1, 1], labels that are not one digit
    0-9 per image.
    """
    check_image_batch(images, "images", channels=SAMPLE_SHAPE[0], size=SAMPLE_SHAPE[1:])
    if len(images) < min_samples:
        raise ValueError(f"need at least {min_samples} samples, got {len(images)}")
    x = images.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf; the sampler diverged (check the model and the guidance weight)")
    if len(x) and (x.min() < -1 - RANGE_TOLERANCE or x.max() > 1 + RANGE_TOLERANCE):
        raise ValueError(f"images must lie in [-1, 1] (the model's output), found [{x.min():.3g}, {x.max():.3g}]; "
                         "do not save images scaled to [0, 1] or [0, 255], and clamp(-1, 1) unclipped samples")
    y = None if labels is None else check_labels(labels, len(x), num_classes=10).cpu()
    return {"images": x, "labels": y}


def _check_meta(meta: Any, where: str = "meta") -> None:
    if isinstance(meta, _PLAIN):
        return
    if isinstance(meta, (list, tuple)):
        for i, v in enumerate(meta):
            _check_meta(v, f"{where}[{i}]")
    elif isinstance(meta, Mapping):
        for k, v in meta.items():
            if not isinstance(k, (str, int, float)):
                raise ValueError(f"{where} has a key of type {type(k).__name__}; use str, int or float keys")
            _check_meta(v, f"{where}[{k!r}]")
    else:
        raise ValueError(f"{where} is a {type(meta).__name__}; meta values must be plain (str, int, float, bool, "
                         "None, lists or dicts of them): convert tensors with .item() or .tolist()")


def _samples_file(name: str) -> Path:
    stem = name[:-3] if name.endswith(".pt") else name
    if not stem.endswith("_samples") or "/" in stem or "\\" in stem or stem == "_samples":
        raise ValueError(f"samples name must look like '04_samples' (the notebook number, then _samples: the "
                         f"grader scores <NN>_samples.pt), got {name!r}")
    return deliverables_dir() / f"{stem}.pt"


def save_samples(name: str, images: torch.Tensor, labels: torch.Tensor | None = None, **meta: Any) -> Path:
    """Save graded samples as ``outputs/deliverables/<name>.pt`` atomically; returns the path.

    ``name``: ``"<NN>_samples"`` (e.g. ``"04_samples"``); ``images``: (N, 1, 28, 28) in [-1, 1];
    ``labels``: the digits asked for, or None; ``meta``: plain values such as ``sampler="DDIM 50"``.
    Raises ``ValueError`` (see :func:`check_samples`) before writing anything.
    """
    path = _samples_file(name)
    data = check_samples(images, labels)
    _check_meta(meta)
    return atomic_save({**data, "meta": dict(meta)}, path)


def load_samples(path: str | Path, min_samples: int = 1) -> dict[str, Any]:
    """Read a samples file (the dict of :func:`save_samples` or a bare tensor); ``ValueError`` naming the problem.

    Returns ``{"images", "labels", "meta"}``, checked by :func:`check_samples`. The grader calls
    it with ``min_samples=2`` (a Frechet distance needs two images).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no samples file at {path}; run the notebook cell that calls save_samples")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, a pickle of other objects, not a torch file at all
        raise ValueError(f"{path.name} is not a samples file torch can read ({type(e).__name__}: {e}); "
                         "write it with course_utils.deliverables.save_samples") from None
    if isinstance(obj, torch.Tensor):
        obj = {"images": obj}
    if not isinstance(obj, dict) or "images" not in obj:
        raise ValueError(f"{path.name} holds a {type(obj).__name__} without 'images'; expected the dict of "
                         "save_samples or a tensor (N, 1, 28, 28)")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{path.name}: 'meta' must be a dict, got {type(meta).__name__}")
    try:
        data = check_samples(obj["images"], obj.get("labels"), min_samples)
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from None
    return {**data, "meta": meta}


def record_best_w(w: float, scores: Mapping[float, Mapping[str, float]], **meta: Any) -> Path:
    """Record the best guidance weight of notebook 05's sweep in ``outputs/05_best_w.json``; returns the path.

    ``scores``: ``{w: {"accuracy", "frechet", "floor", "ratio", ...}}`` of the sweep, with ``w`` one
    of its weights; ``meta``: plain values such as ``profile="cpu", n_per_w=500, sampler="DDIM 50"``.
    The file holds ``{"best_w": w, **meta, "sweep": {"2.0": {name: score}, ...}}`` (scores to 4 decimals).
    """
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
        raise ValueError(f"the guidance weight must be a finite number, got {w!r}")
    if float(w) not in {float(k) for k in scores}:
        raise ValueError(f"w = {w:g} is not one of the swept weights {sorted(float(k) for k in scores)}; "
                         "pass the weight chosen from scores")
    reserved = {"best_w", "sweep"} & set(meta)
    if reserved:
        raise ValueError(f"meta may not use the names {sorted(reserved)}: they hold the weight and the scores")
    _check_meta(meta)
    sweep = {str(float(k)): {name: round(float(v), 4) for name, v in s.items()} for k, s in scores.items()}
    record = {"best_w": float(w), **meta, "sweep": sweep}
    return atomic_write_text(output_dir() / BEST_W_FILE, json.dumps(record, indent=1) + "\n")


def best_w(default: float = 3.0) -> float:
    """The guidance weight to use outside notebook 05 (``./course.sh generate``'s default).

    The one recorded by the last run of notebook 05 (:func:`record_best_w`), else the ``best_w``
    of the shipped checkpoints' ``manifest.json`` (the sweep that chose them), else ``default``.
    A missing or unreadable file is skipped.
    """
    for path in (output_dir() / BEST_W_FILE, shipped_checkpoint_dir() / "manifest.json"):
        try:
            value = float(json.loads(path.read_text(encoding="utf-8"))["best_w"])
        except (OSError, KeyError, ValueError, TypeError):
            continue
        if math.isfinite(value):
            return value
    return default
