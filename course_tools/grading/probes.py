"""Tiny probe models the hidden tests pass to exercises in place of the course's UNet and classifier.

They live in the course, not in a hidden-test file, because the student process builds them too
(``wire.Build``: same class, the grader's weights); they hold no answer. Every input changes the output,
so an exercise that drops one is caught.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["TimeProbe", "LabelProbe", "ClassifierProbe"]


class TimeProbe(nn.Module):
    """A noise predictor ``eps(x_t, t)`` for (B, 1, H, W) images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + (t.float() / 100).view(-1, 1, 1, 1)


class LabelProbe(nn.Module):
    """A conditional noise predictor ``eps(x_t, t, y)``: 10 classes plus the null label 10."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.label = nn.Embedding(self.num_classes + 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.label(y).view(-1, 1, 1, 1) + (t.float() / 500).view(-1, 1, 1, 1)


class ClassifierProbe(nn.Module):
    """A noisy classifier ``logits(x_t, t)`` of shape (B, 10) for (B, 1, 6, 6) images."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(36, self.num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.tanh(x.flatten(1))) * (1 + t.float().view(-1, 1) / 1000)


def strided_scheduler(kind: str, schedule_name: str, T: int, steps: int, **kwargs):
    """A sampling loop's scheduler as a hidden-test input: ``Build(strided_scheduler, "ddim", "linear", 50, 4)``.

    A ``samplers.DDPMScheduler`` (``kind="ddpm"``) or ``DDIMScheduler`` (``"ddim"``) on
    ``NoiseSchedule(schedule_name, T)`` keeping ``steps`` timesteps; ``kwargs`` go to the scheduler
    (``eta``, ``variance``, ``clip_sample``).
    """
    from course_utils.samplers import DDIMScheduler, DDPMScheduler
    from course_utils.schedules import NoiseSchedule

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    return cls(NoiseSchedule(schedule_name, T), **kwargs).set_timesteps(steps)


_LAST_DENOISER_PROBE: list = []     # the DenoiserProbe built last (for optimizer_for_last_denoiser_probe)


class DenoiserProbe(nn.Module):
    """A tiny one-step denoiser ``f(z)`` for (B, 1, H, W) images (training-step exercises, notebook 03).

    A training step also needs the optimizer over the probe's own weights: a hidden test passes
    ``Build(DenoiserProbe, seed=...)`` and then ``Build(optimizer_for_last_denoiser_probe, "sgd", lr)``,
    which is built right after it (the arguments are decoded in order) on both sides.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.mix = nn.Conv2d(3, 1, 1)
        _LAST_DENOISER_PROBE[:] = [self]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.tanh(self.conv(z)))


def optimizer_for_last_denoiser_probe(kind: str = "sgd", lr: float = 0.01) -> torch.optim.Optimizer:
    """``"sgd"`` or ``"adamw"`` over the weights of the :class:`DenoiserProbe` built last.

    Its weights get a stale gradient (all ones), as after a step that did not clear it: a training step must
    clear it before its backward pass."""
    if not _LAST_DENOISER_PROBE:
        raise RuntimeError("build a DenoiserProbe first (the argument before the optimizer)")
    params = list(_LAST_DENOISER_PROBE[0].parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    return {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[kind](params, lr=lr)
