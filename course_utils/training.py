"""A small training loop with progress bars, loss history, EMA and resume (taught in 00 and 04)."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from .checkpoint import atomic_save
from .progress import progress_bar

__all__ = ["EMA", "train", "cosine_warmup_lr", "load_resume_state", "RESUME_FORMAT"]

RESUME_FORMAT = 1


class EMA:
    """Exponential moving average of a model's weights: ``shadow = d * shadow + (1 - d) * weights``.

    The average (``ema.module``) samples better than the raw weights late in training
    (04_time_conditioning). The decay warms up as ``min(decay, (1 + n) / (10 + n))``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s weights; call after every optimizer step (taught in 04)."""
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.module.parameters(), model.parameters()):
            s.lerp_(p.detach(), 1.0 - d)
        for s, b in zip(self.module.buffers(), model.buffers()):
            s.copy_(b)


def cosine_warmup_lr(step: int, total: int, warmup: int = 100) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to 0.

    The warm-up lasts ``warmup`` steps but never more than a tenth of the run, so a short run
    (the smoke profile trains for a few dozen steps) spends most of it at a useful rate.
    """
    warmup = max(1, min(warmup, total // 10))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def load_resume_state(path: Path, config: dict | None, epochs: int) -> dict | None:
    """The resume state at ``path`` if it is readable and belongs to this run, else None (with the reason)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated by a kill during an old save, random bytes, ...
        print(f"ignoring resume state {path}: unreadable ({type(e).__name__}); training from the start")
        return None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        print(f"ignoring resume state {path}: not a course resume file; training from the start")
        return None
    if state.get("config") != config or state.get("epochs") != epochs or not 0 < state.get("epoch", 0) < epochs:
        print(f"ignoring resume state {path}: saved for another run (config or epoch count differ); "
              "training from the start")
        return None
    return state


LossFn = Callable[[nn.Module, tuple], "torch.Tensor | tuple[torch.Tensor, dict]"]


def train(model: nn.Module, loss_fn: LossFn, loader: Iterable, epochs: int, *,
          optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
          lr_schedule: str | None = None, warmup: int = 100, ema: EMA | None = None,
          grad_clip: float | None = 1.0, desc: str = "train",
          on_epoch_end: Callable[[int, nn.Module], dict | None] | None = None,
          resume_path: str | Path | None = None, resume_config: dict | None = None,
          generator: torch.Generator | None = None, mixed_precision: bool | None = None) -> dict[str, list]:
    """Train ``model`` for ``epochs`` passes over ``loader`` and return the loss history.

    ``loss_fn(model, batch)`` returns the loss, or ``(loss, {"name": value, ...})`` to log
    extra terms (the VAE logs reconstruction and KL). ``lr_schedule``: ``None`` (constant) or
    ``"cosine"`` (warm-up then cosine decay). History: ``loss`` and every logged term per step,
    ``epoch_loss`` per epoch, ``lr`` per step.

    ``on_epoch_end(epoch, model)`` runs after every epoch, in eval mode; the entries of the dict
    it may return are stored in the history (and so survive a resume), e.g. the denoised probe
    images of notebook 03.

    ``resume_path``: after every epoch the whole training state (weights, optimizer, LR
    schedule, EMA, history, the states of ``generator`` and of torch's global CPU random stream
    (dropout), and the loader's epoch) is saved there atomically; a later call with the same
    ``resume_config`` and ``epochs`` continues after the last finished epoch instead of starting
    over, and ends where an uninterrupted run would.
    Deleting the file is always safe; :func:`~course_utils.checkpoint.load_or_train` deletes it once
    the final checkpoint is saved.

    ``mixed_precision``: run the forward pass under bfloat16 autocast (weights, optimizer and
    EMA stay float32). ``None`` turns it on for a CUDA GPU that supports bfloat16, where it is
    roughly twice as fast, together with the channels-last memory layout for the convolutions.
    The loss is read back from the GPU every few steps, not every step, so the GPU never waits.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if lr_schedule not in (None, "cosine"):
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; use None or 'cosine'")
    if epochs and len(loader) == 0:  # type: ignore[arg-type]
        raise ValueError("the loader yields no batch: fewer images than batch_size, and the last partial batch is "
                         "dropped; lower batch_size or pass more images")
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)
    total = epochs * len(loader)  # type: ignore[arg-type]
    lr_scheduler = None
    if lr_schedule == "cosine":
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_warmup_lr(s, total, warmup))
    history: dict[str, list] = {"loss": [], "epoch_loss": [], "lr": []}
    start = 0
    state = load_resume_state(Path(resume_path), resume_config, epochs) if resume_path and Path(resume_path).exists() else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if lr_scheduler is not None and state.get("lr_scheduler") is not None:
            lr_scheduler.load_state_dict(state["lr_scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
            ema.num_updates = int(state["ema_updates"])
        if generator is not None and state.get("generator") is not None:
            generator.set_state(state["generator"])
        if hasattr(loader, "_epoch"):
            loader._epoch = int(state["loader_epoch"])  # type: ignore[attr-defined]
        if state.get("torch_rng") is not None:          # the global CPU stream (dropout), absent from older states
            torch.set_rng_state(state["torch_rng"])
        history = state["history"]
        start = int(state["epoch"])
        print(f"resuming {desc} after epoch {start} of {epochs} (from {resume_path})")
    dev = next(model.parameters()).device
    if mixed_precision is None:
        mixed_precision = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    if mixed_precision:                        # the GPU path; on the CPU only when asked for (its test runs there)
        model.to(memory_format=torch.channels_last)
    model.train()
    bar = progress_bar(total=total, initial=start * len(loader), desc=desc)  # type: ignore[arg-type]
    pending: list[torch.Tensor] = []          # losses still on the device, read back in one go

    def flush(epoch: int) -> None:
        if not pending:
            return
        values = torch.stack(pending).float().cpu().tolist()
        pending.clear()
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"loss became {bad[0]} at epoch {epoch}; lower the learning rate")
        history["loss"].extend(values)
        bar.set_postfix(epoch=epoch + 1, loss=f"{values[-1]:.4f}")

    for epoch in range(start, epochs):
        n_before = len(history["loss"])
        for batch in loader:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mixed_precision):
                out = loss_fn(model, batch)
            loss, logs = (out if isinstance(out, tuple) else (out, {}))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            history["lr"].append(optimizer.param_groups[0]["lr"])                 # the rate this step used
            if lr_scheduler is not None:
                lr_scheduler.step()
            if ema is not None:
                ema.update(model)
            pending.append(loss.detach())
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))
            bar.update(1)
            if len(pending) >= 25 or dev.type == "cpu":
                flush(epoch)
        flush(epoch)
        epoch_losses = history["loss"][n_before:]
        history["epoch_loss"].append(sum(epoch_losses) / max(1, len(epoch_losses)))
        if on_epoch_end is not None:
            model.eval()
            history.update(on_epoch_end(epoch, model) or {})
            model.train()
        if resume_path is not None and epoch + 1 < epochs:
            atomic_save({
                "format": RESUME_FORMAT, "config": resume_config, "epochs": epochs, "epoch": epoch + 1,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
                "ema": ema.module.state_dict() if ema is not None else None,
                "ema_updates": ema.num_updates if ema is not None else 0,
                "generator": generator.get_state() if generator is not None else None,
                "torch_rng": torch.get_rng_state(),
                "loader_epoch": getattr(loader, "_epoch", epoch + 1), "history": history}, resume_path)
    bar.close()
    model.eval()
    return history
