"""Checkpoints: atomic saves, safe loads, and the load-or-train recipe of every model (taught in 00_setup).

A checkpoint is a plain dict (weights, config, loss history, metadata) saved with
``torch.save`` to a temporary file and renamed into place, so a killed run never leaves a
half-written file. Loading uses ``torch.load(..., weights_only=True)``: no pickled code runs.

Every model of the course is trained through :func:`load_or_train` with a :class:`RunConfig`,
and this module is the one place that decides which checkpoint may stand in for which run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .paths import checkpoint_dir, resume_path, shipped_checkpoint_dir

__all__ = ["CheckpointError", "RunConfig", "arch_dict", "save_checkpoint", "load_checkpoint", "load_or_train",
           "config_diff", "weights_digest", "atomic_save", "atomic_write_text"]

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or saved for another config or architecture."""


def _jsonable(config: dict) -> dict:
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except TypeError as e:
        raise TypeError(f"checkpoint config must hold only JSON values (numbers, strings, lists, dicts): {e}") from e


def arch_dict(arch: Any) -> dict:
    """An architecture dataclass (``UNetArch``, ``DenoiserArch``...) as the JSON dict stored in checkpoints."""
    return _jsonable(dataclasses.asdict(arch))


@dataclasses.dataclass
class RunConfig:
    """What a checkpoint was trained as: the one configuration schema of the course's models.

    * ``model``: the model family ("UNet", "DenoiserUNet", "NoisyClassifier", "KLAutoencoder",
      "ConvVAE", "GAN").
    * ``arch``: the constructor arguments, :func:`arch_dict` of the family's architecture
      dataclass (``diffusion.UNetArch``, ``denoiser.DenoiserArch``...).
    * ``task``: what the outputs mean, fixed when the weights were trained: the noise schedule
      and T a diffusion model inverts, ``p_uncond`` (whether it learned the unconditional branch
      that guidance needs), the denoiser's sigma, the autoencoder's KL weight. Weights trained
      for another task fit the architecture and are still wrong.
    * ``train``: how this run trained them: lr, epochs, batch size, images, seed, EMA decay...
    * ``depends``: fingerprints (:func:`weights_digest`) of the models it was trained with: the
      latent model of notebook 07 records its autoencoder.

    :meth:`identity` (everything but ``train``) is what shipped weights, trained with another
    budget, must match; a checkpoint trained on this machine must match the whole config, so
    changing the epochs retrains.
    """

    model: str
    arch: dict
    task: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)
    depends: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"RunConfig.model must name the model family (e.g. 'UNet'), got {self.model!r}")
        for section in ("arch", "task", "train", "depends"):
            value = getattr(self, section)
            if not isinstance(value, dict):
                raise TypeError(f"RunConfig.{section} must be a dict, got {type(value).__name__}")
            setattr(self, section, _jsonable(value))

    def as_dict(self) -> dict:
        """The whole config, as stored in the checkpoint (what a local checkpoint must match)."""
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What identifies the weights: model, arch, task and depends (what shipped weights must match)."""
        return {k: v for k, v in self.as_dict().items() if k != "train"}


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


_ABSENT = "<absent>"


def _flatten(config: Any, prefix: str = "") -> dict:
    if isinstance(config, dict) and (config or not prefix):
        out: dict = {}
        for k, v in config.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: config}


def config_diff(saved: dict, wanted: dict) -> list[str]:
    """Human-readable differences between two configs (empty when equal); nested keys as ``train.epochs``."""
    flat_saved, flat_wanted = _flatten(saved), _flatten(wanted)
    out = []
    for k in sorted(set(flat_saved) | set(flat_wanted)):
        if flat_saved.get(k, _ABSENT) != flat_wanted.get(k, _ABSENT):
            out.append(f"{k}: saved {flat_saved.get(k, _ABSENT)!r}, wanted {flat_wanted.get(k, _ABSENT)!r}")
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


def _atomic_write(path: str | Path, write: Callable[[Any], None], mode: str) -> Path:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        os.chmod(tmp, 0o644)                     # mkstemp makes it private; saved files are shareable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never leaves half a file.

    Saving through the open file (not its random temporary name) keeps the bytes reproducible:
    the same object always gives the same file and the same SHA-256.
    """
    return _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) the same way as :func:`atomic_save`: a kill leaves the old file or the new one.

    Every JSON record the course keeps (manifest, best w, trilemma table, benchmark results) is saved
    through this function.
    """
    return _atomic_write(path, lambda f: f.write(text), "w")


def load_checkpoint(path: str | Path, model: nn.Module, config: dict | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load weights from ``path`` into ``model`` and return the checkpoint dict.

    ``config``: what the saved config must hold: every key of it (a :class:`RunConfig`'s
    ``as_dict()`` or ``identity()``, or any dict of values), compared section by section.
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
        diff = config_diff({k: saved.get(k, _ABSENT) for k in config}, _jsonable(config))
        if diff:
            more = f"; and {len(diff) - 6} more" if len(diff) > 6 else ""
            raise CheckpointError(f"checkpoint {path} was saved for another config: " + "; ".join(diff[:6]) + more)
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


def load_or_train(name: str, model: nn.Module, config: RunConfig, train_fn: Callable[[Path], dict | None], *,
                  shipped: bool = False, verbose: bool = True) -> dict:
    """Load model ``name`` trained for ``config``, else train it and save it; returns the loss history.

    The recipe of every model of the course:

    1. ``outputs/checkpoints/<name>.pt``, trained on this machine, is loaded if it was saved for
       the whole ``config`` (another epoch count or learning rate retrains);
    2. with ``shipped`` (``profile.use_pretrained``), ``data/checkpoints/<name>.pt`` is loaded
       if it holds the same model: ``config.identity()`` (model, arch, task, depends), whatever
       budget it was trained with;
    3. otherwise ``train_fn(resume)`` trains ``model`` in place and returns its history. It keeps
       a resume state at ``resume`` after every epoch (``training.train(..., resume_path=resume,
       resume_config=config.as_dict())``), so a killed run continues where it stopped. The
       checkpoint is saved atomically with the history, then the resume state is deleted.

    A candidate that is corrupt, saved for another config or of another architecture is refused
    with a message saying why. ``model`` is the module whose weights the checkpoint holds: for a
    model trained with an EMA, the EMA's module (what we sample with).
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig(model=..., arch=..., task=..., train=..., depends=...), "
                        f"got {type(config).__name__}")
    path = checkpoint_dir() / f"{name}.pt"
    candidates = [(path, config.as_dict(), "")]
    if shipped:
        candidates.append((shipped_checkpoint_dir() / f"{name}.pt", config.identity(), "shipped "))
    for cand, wanted, kind in candidates:
        if not cand.exists():
            continue
        try:
            ckpt = load_checkpoint(cand, model, wanted)
        except CheckpointError as e:
            if verbose:
                print(f"refusing {kind}checkpoint: {e}")
            continue
        if verbose:
            print(f"loaded {name} from {cand}")
        return ckpt.get("history", {})
    if verbose:
        print(f"training {name} (no valid checkpoint at {path})")
    resume = resume_path(name)
    history = train_fn(resume) or {}
    save_checkpoint(path, model, config.as_dict(), history)
    resume.unlink(missing_ok=True)                 # the final checkpoint is saved: nothing left to resume
    return history


def _shipped_manifest() -> tuple[Path, dict]:
    path = shipped_checkpoint_dir() / "manifest.json"
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} ({type(e).__name__}: {e}); restore data/checkpoints/ "
                              "from the repository (git checkout -- data/checkpoints)") from e


def shipped_record(name: str) -> dict:
    """The manifest entry of shipped model ``name`` (``data/checkpoints/manifest.json``).

    Holds ``config``, ``profile`` (what it was trained with), ``images_seen`` and ``metrics``: the
    reference run's scores, measured by ``benchmarks/pretrain.py`` with their ``n`` (and, where
    recorded, ``sampler``, ``seeds`` and ``date``). Notebooks print these next to their live scores
    when a number costs too much to recompute (04's ablation). Raises :class:`CheckpointError`
    naming the fix when the manifest or the model is missing.
    """
    path, manifest = _shipped_manifest()
    models = manifest.get("models", {})
    if name not in models:
        raise CheckpointError(f"no shipped model {name!r} in {path}; shipped: {', '.join(sorted(models)) or 'none'}. "
                              "Export it with benchmarks/pretrain.py")
    return models[name]


def reference_run(name: str) -> dict:
    """The shipped reference run ``name`` from the manifest: ``"04_ddpm"``, ``"05_w_sweep"``, ``"06_steps"``, ``"07_latent"``.

    ``benchmarks/reference_runs.py`` measured it on the shipped checkpoints: ``n`` samples per row (two
    seeded halves), ``date``, ``model`` and ``rows``, each row with its ``sampler``, ``ratio`` (Frechet over
    the floor at n), ``ratio_per_seed`` (the halves: the spread) and, for class-conditional rows,
    ``accuracy``. Notebooks 04-07 print it beside their small live runs in `cpu`. Raises
    :class:`CheckpointError` naming the fix when it is missing.
    """
    path, manifest = _shipped_manifest()
    refs = manifest.get("references", {})
    if name not in refs:
        raise CheckpointError(f"no reference run {name!r} in {path}; recorded: {', '.join(sorted(refs)) or 'none'}. "
                              f"Measure it with `python benchmarks/reference_runs.py run {name}`, then `export`")
    return refs[name]
