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
