"""Checkpoints: atomic saves, safe loads, and load-or-train (taught in 00_setup).

A checkpoint is a plain dict (weights, config, loss history, metadata) saved with
``torch.save`` to a temporary file and renamed into place, so a killed run never leaves a
half-written file. Loading uses ``torch.load(..., weights_only=True)``: no pickled code runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .paths import checkpoint_dir

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_or_train", "config_diff", "weights_digest",
           "atomic_save"]

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or saved for another config or architecture."""


def _jsonable(config: dict) -> dict:
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except TypeError as e:
        raise TypeError(f"checkpoint config must hold only JSON values (numbers, strings, lists, dicts): {e}") from e


def weights_digest(model: nn.Module) -> str:
    """A short fingerprint of ``model``'s weights (SHA-256 of them rounded to float16).

    Rounding first makes the fingerprint survive the float16 export of shipped checkpoints, so
    a model that depends on another (the latent model on its autoencoder, notebook 07) can
    record which one it was trained with.
    """
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        v = v.detach().cpu()
        h.update(k.encode())
        h.update((v.half() if v.is_floating_point() else v).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def config_diff(saved: dict, wanted: dict) -> list[str]:
    """Human-readable differences between two configs (empty when equal)."""
    out = []
    for k in sorted(set(saved) | set(wanted)):
        if saved.get(k, "<absent>") != wanted.get(k, "<absent>"):
            out.append(f"{k}: saved {saved.get(k, '<absent>')!r}, wanted {wanted.get(k, '<absent>')!r}")
    return out


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, history: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Save ``model``'s weights with ``config`` and ``history`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": _jsonable(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": _jsonable(history or {}),
        "meta": _jsonable({"saved_at": time.strftime("%Y-%m-%d %H:%M:%S"), **(meta or {})}),
    }
    atomic_save(payload, path)
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)                     # mkstemp makes it private; checkpoints are shareable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | Path, model: nn.Module, config: dict | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load weights from ``path`` into ``model`` and return the checkpoint dict.

    Raises :class:`CheckpointError` naming the problem when the file is missing, corrupt,
    saved for another ``config``, or holds weights of another architecture.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train the model first (load_or_train does it for you)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code...
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}). "
            "Delete it and train again (load_or_train retrains automatically).") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a course checkpoint (format {FORMAT}); delete it and train again")
    if config is not None:
        saved = ckpt.get("config", {})
        diff = config_diff({k: saved.get(k, "<absent>") for k in config}, _jsonable(config))
        if diff:
            raise CheckpointError(f"checkpoint {path} was saved for another config: " + "; ".join(diff))
    own = model.state_dict()
    theirs = ckpt["state_dict"]
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    shapes = [f"{k}: saved {tuple(theirs[k].shape)}, model {tuple(own[k].shape)}"
              for k in own if k in theirs and own[k].shape != theirs[k].shape]
    if missing or extra or shapes:
        detail = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {extra[:3]}" if extra else "") + \
                 (f" shape mismatch {shapes[:3]}" if shapes else "")
        raise CheckpointError(f"checkpoint {path} holds weights of another architecture:{detail}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in theirs.items()})
    return ckpt


def load_or_train(name: str, model: nn.Module, config: dict, train_fn: Callable[[], dict | None], *,
                  directory: str | Path | None = None, extra_paths: list[str | Path] = (),
                  pretrained_keys: list[str] | None = None, verbose: bool = True) -> dict:
    """Load ``name`` if a valid checkpoint for ``config`` exists, else run ``train_fn()`` and save.

    ``train_fn`` trains ``model`` in place and returns its loss history (a dict of lists).
    Candidates are ``extra_paths`` (e.g. shipped pretrained weights) then
    ``<directory>/<name>.pt``. A candidate that is corrupt or saved for another config is
    refused with a message and the model is retrained. Returns the history.

    ``pretrained_keys``: for the ``extra_paths`` (shipped weights trained with another budget),
    only these config keys must match (e.g. the architecture, not the epoch count).
    """
    path = Path(directory or checkpoint_dir()) / f"{name}.pt"
    for cand in [*map(Path, extra_paths), path]:
        if not cand.exists():
            continue
        wanted = config
        if pretrained_keys is not None and cand != path:
            wanted = {k: config[k] for k in pretrained_keys if k in config}
        try:
            ckpt = load_checkpoint(cand, model, wanted)
        except CheckpointError as e:
            if verbose:
                print(f"refusing checkpoint: {e}")
            continue
        if verbose:
            print(f"loaded {name} from {cand}")
        return ckpt.get("history", {})
    if verbose:
        print(f"training {name} (no valid checkpoint at {path})")
    history = train_fn() or {}
    save_checkpoint(path, model, config, history)
    return history
