"""Figures and deliverables (course_utils.plotting)."""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from course_utils.plotting import deliverable_path, image_grid, plot_losses, save_gif, show_images

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _output(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    yield tmp_path
    plt.close("all")


def _images(b: int = 6) -> torch.Tensor:
    return torch.linspace(-1, 1, b * 28 * 28).view(b, 1, 28, 28)


def test_show_images_saves_deliverable(_output):
    fig = show_images(_images(), nrow=3, title="t", save_as="99_test_grid")
    path = _output / "deliverables" / "99_test_grid.png"
    assert path.exists() and path.stat().st_size > 0
    assert isinstance(fig, plt.Figure)
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_no_save_without_name(_output):
    show_images(_images())
    assert not (_output / "deliverables").exists() or not any((_output / "deliverables").iterdir())


def test_image_grid_layout():
    grid = image_grid(_images(6), nrow=4, pad=2)
    assert grid.shape == (2 * 30 + 2, 4 * 30 + 2)
    assert grid.min() >= 0 and grid.max() <= 1
    assert image_grid(torch.full((1, 1, 28, 28), -1.0)).max() == 1.0   # padding is white, digit black
    assert image_grid(torch.zeros(2, 3, 8, 8)).shape == (12, 22, 3)


def test_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        show_images(torch.zeros(2, 2, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        image_grid(torch.zeros(1, 2, 1, 28, 28))
    with pytest.raises(ValueError):
        save_gif([], "99_empty")


def test_save_gif_multi_frame(_output):
    frames = [_images(4) * s for s in (0.2, 0.6, 1.0)]
    path = save_gif(frames, "99_anim", nrow=2)
    assert path == _output / "deliverables" / "99_anim.gif"
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 3
        assert im.size == (2 * (2 * 30 + 2), 2 * (2 * 30 + 2))   # scale 2


def test_plot_losses(_output):
    fig = plot_losses({"a": [3, 2, 1, 0.5], "b": [2, 2, 1, 1]}, smooth=2, logy=True, save_as="99_losses")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    assert len(ax.lines[0].get_xdata()) == 3
    assert (_output / "deliverables" / "99_losses.png").exists()


def test_deliverable_names(_output):
    assert deliverable_path("01_x") == _output / "deliverables" / "01_x.png"
    assert deliverable_path("01_x.pdf") == _output / "deliverables" / "01_x.pdf"
    for bad in ("../escape", "/abs/path"):
        with pytest.raises(ValueError, match="plain relative"):
            deliverable_path(bad)


def test_show_images_labels_rows_and_columns_at_image_centres():
    fig = show_images(_images(6), nrow=3, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    # centres of 28-pixel images separated by 2-pixel pads: 2 + 14 - 0.5, then every 30 pixels
    assert list(ax.get_yticks()) == [15.5, 45.5]
    assert list(ax.get_xticks()) == [15.5, 45.5, 75.5]


def test_show_images_refuses_a_label_count_that_does_not_fit():
    with pytest.raises(ValueError, match="3 labels for 2 rows"):
        show_images(_images(6), nrow=3, row_labels=["a", "b", "c"])


def test_show_images_draws_into_a_given_axes():
    fig, axes = plt.subplots(2, 1)
    out = show_images(_images(4), nrow=4, ax=axes[1], col_labels=list("abcd"))
    assert out is fig and axes[1].images and not axes[0].images
