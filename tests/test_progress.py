"""Progress bars (course_utils.progress) and the image slider (plotting.image_slider)."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from course_utils.plotting import image_slider
from course_utils.progress import DELAY, progress_bar

matplotlib.use("Agg")


def test_bars_are_hidden_in_smoke_and_shown_after_a_delay_elsewhere(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert progress_bar(range(3)).disable
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    bar = progress_bar(range(3), desc="sampling")
    assert not bar.disable and bar.delay == DELAY > 0 and list(bar) == [0, 1, 2]
    assert progress_bar(range(3), enabled=False).disable


def test_image_slider_draws_a_static_fallback_and_checks_its_labels():
    frames = [torch.full((4, 1, 28, 28), v) for v in torch.linspace(-1, 1, 9).tolist()]
    fig = image_slider(frames, [f"{i}" for i in range(9)], "t", nrow=4, max_static=3)
    labels = [tick.get_text() for tick in fig.axes[0].get_yticklabels()]
    assert labels == ["t 0", "t 4", "t 8"], labels           # three frames, evenly spaced, first and last kept
    with pytest.raises(ValueError, match="one label per frame"):
        image_slider(frames, ["0"], "t")
