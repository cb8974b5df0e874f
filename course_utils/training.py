"""A small training loop with progress bars, loss history and EMA (taught in 01 and 04)."""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["EMA", "train", "cosine_warmup_lr"]


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
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.module.parameters(), model.parameters()):
            s.lerp_(p.detach(), 1.0 - d)
        for s, b in zip(self.module.buffers(), model.buffers()):
            s.copy_(b)


def cosine_warmup_lr(step: int, total: int, warmup: int = 100) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


LossFn = Callable[[nn.Module, tuple], "torch.Tensor | tuple[torch.Tensor, dict]"]


def train(model: nn.Module, loss_fn: LossFn, loader: Iterable, epochs: int, *,
          optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
          lr_schedule: str | None = None, warmup: int = 100, ema: EMA | None = None,
          grad_clip: float | None = 1.0, desc: str = "train",
          on_epoch_end: Callable[[int, nn.Module], None] | None = None) -> dict[str, list[float]]:
    """Train ``model`` for ``epochs`` passes over ``loader`` and return the loss history.

    ``loss_fn(model, batch)`` returns the loss, or ``(loss, {"name": value, ...})`` to log
    extra terms (the VAE logs reconstruction and KL). ``lr_schedule``: ``None`` (constant) or
    ``"cosine"`` (warm-up then cosine decay). History: ``loss`` and every logged term per step,
    ``epoch_loss`` per epoch, ``lr`` per step.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if lr_schedule not in (None, "cosine"):
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; use None or 'cosine'")
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)
    total = epochs * len(loader)  # type: ignore[arg-type]
    scheduler = None
    if lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_warmup_lr(s, total, warmup))
    history: dict[str, list[float]] = {"loss": [], "epoch_loss": [], "lr": []}
    model.train()
    bar = tqdm(total=total, desc=desc, leave=False, mininterval=1.0)
    for epoch in range(epochs):
        running, count = 0.0, 0
        for batch in loader:
            out = loss_fn(model, batch)
            loss, logs = (out if isinstance(out, tuple) else (out, {}))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            value = loss.item()
            history["loss"].append(value)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))
            running, count = running + value, count + 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}")
        history["epoch_loss"].append(running / max(1, count))
        if on_epoch_end is not None:
            model.eval()
            on_epoch_end(epoch, model)
            model.train()
    bar.close()
    model.eval()
    return history
