"""Figures: image grids, loss curves, GIF animations (used by every notebook).

Each function returns the matplotlib figure (or the GIF path) and, given ``save_as``, writes
it under ``outputs/deliverables/`` with that stable name, so graders find it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .paths import deliverables_dir

_GRID_PAD = 2                                   # pixels between the images of a grid

__all__ = ["image_grid", "show_images", "image_slider", "plot_losses", "save_gif", "save_figure", "deliverable_path"]


def deliverable_path(name: str, suffix: str = ".png") -> Path:
    """``outputs/deliverables/<name><suffix>``; ``name`` may carry its own suffix."""
    p = Path(name)
    if not p.suffix:
        p = p.with_suffix(suffix)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"deliverable name must be a plain relative name, got {name!r}")
    out = deliverables_dir() / p
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig: plt.Figure, save_as: str | None) -> plt.Figure:
    """Save ``fig`` as deliverable ``save_as`` (no-op for ``None``)."""
    if save_as:
        fig.savefig(deliverable_path(save_as), dpi=100, bbox_inches="tight")
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = _GRID_PAD, value_range: tuple[float, float] = (-1, 1)) -> np.ndarray:
    """(B, C, H, W) tensor in ``value_range`` -> one array in [0, 1] of shape (rows*(H+pad)+pad, nrow*(W+pad)+pad), (.., .., 3) in colour."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    b, c, h, w = x.shape
    nrow = max(1, min(nrow, b))
    rows = -(-b // nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(b):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, save_as: str | None = None,
                scale: float = 0.6, value_range: tuple[float, float] = (-1, 1), *,
                row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                ax: plt.Axes | None = None) -> plt.Figure:
    """Show a grid of images in [-1, 1] (B, 1, H, W), ``nrow`` per row; returns the figure.

    ``row_labels`` / ``col_labels`` name each row / column of the grid (e.g. ``"w = 2"``,
    ``"t = 500"``) at the centre of its images. ``ax`` draws into an existing axes (one panel
    of a larger figure) instead of a new figure.
    """
    arr = image_grid(images, nrow=nrow, value_range=value_range)
    h, w = arr.shape[:2]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, scale * w / 30), max(1.5, scale * h / 30)))
    ax.imshow(arr, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    size_h, size_w = images.shape[-2:]
    n_rows, n_cols = -(-len(images) // max(1, min(nrow, len(images)))), max(1, min(nrow, len(images)))
    for labels, count, size, set_ticks, axis in ((row_labels, n_rows, size_h, ax.set_yticks, "rows"),
                                                 (col_labels, n_cols, size_w, ax.set_xticks, "columns")):
        if labels is None:
            continue
        if len(labels) != count:
            raise ValueError(f"{len(labels)} labels for {count} {axis} of images; pass one label per {axis[:-1]}")
        set_ticks([_GRID_PAD + i * (size + _GRID_PAD) + size / 2 - 0.5 for i in range(count)], list(labels))
    if title:
        ax.set_title(title)
    return save_figure(ax.figure, save_as)


def _png(arr: np.ndarray, zoom: int = 3) -> bytes:
    """PNG bytes of a grid from :func:`image_grid` (values in [0, 1]), each pixel ``zoom`` x ``zoom``."""
    import io

    from PIL import Image
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))
    img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_slider(frames: Sequence[torch.Tensor], labels: Sequence[str], description: str, *, nrow: int = 8,
                 title: str | None = None, save_as: str | None = None, max_static: int = 6) -> plt.Figure:
    """A slider over precomputed image batches (a live notebook), and a static figure of some of them (everywhere).

    ``frames[i]`` is a batch (B, C, H, W) in [-1, 1] shown when the slider is at ``labels[i]`` (a
    noise level, a timestep, a guidance weight...). The widget needs ipywidgets and a running
    kernel; the static figure (at most ``max_static`` frames, evenly spaced, one row each) is the
    fallback a repository browser, nbval and a PDF export show. Returns the static figure.
    A cell calling this starts with ``# NBVAL_IGNORE_OUTPUT`` (the widget's output is not reproducible).
    """
    if len(frames) != len(labels) or not frames:
        raise ValueError(f"image_slider needs one label per frame, got {len(frames)} frames and {len(labels)} labels")
    labels = [str(label) for label in labels]
    keep = sorted({round(i * (len(frames) - 1) / max(1, min(max_static, len(frames)) - 1))
                   for i in range(min(max_static, len(frames)))})
    rows = [frames[i][:nrow].detach().float().cpu() for i in keep]
    fig = show_images(torch.cat(rows), nrow=nrow, title=title, save_as=save_as,
                      row_labels=[f"{description} {labels[i]}" for i in keep] if all(len(r) == nrow for r in rows)
                      else None)
    try:
        import sys

        import ipywidgets as widgets
        from IPython.display import display
        if "ipykernel" not in sys.modules:
            return fig
    except ImportError:
        return fig
    pngs = [_png(image_grid(f[:nrow].detach().float().cpu(), nrow=nrow)) for f in frames]
    slider = widgets.SelectionSlider(options=labels, value=labels[0], description=description,
                                     continuous_update=True, layout=widgets.Layout(width="60%"))
    image = widgets.Image(value=pngs[0], format="png")
    slider.observe(lambda change: setattr(image, "value", pngs[labels.index(change["new"])]), names="value")
    display(widgets.VBox([slider, image]))
    return fig


def _smooth(y: Sequence[float], k: int) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if k <= 1 or len(y) < k:
        return y
    return np.convolve(y, np.ones(k) / k, mode="valid")


def plot_losses(curves: Mapping[str, Sequence[float]] | Sequence[float], title: str = "training loss",
                xlabel: str = "step", ylabel: str = "loss", smooth: int = 1, logy: bool = False,
                save_as: str | None = None) -> plt.Figure:
    """Plot one or several loss curves (a dict ``name -> values``); ``smooth`` is a moving-average width."""
    if not isinstance(curves, Mapping):
        curves = {"loss": curves}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, ys in curves.items():
        ys = _smooth(ys, smooth)
        ax.plot(np.arange(len(ys)), ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, save_as)


def save_gif(frames: Sequence[torch.Tensor], name: str, nrow: int = 8, duration_ms: int = 80,
             scale: int = 2, value_range: tuple[float, float] = (-1, 1)) -> Path:
    """Write ``frames`` (each a (B, 1, H, W) batch) as an animated GIF deliverable; returns its path."""
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame")
    pics = []
    for f in frames:
        arr = (image_grid(f, nrow=nrow, value_range=value_range) * 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
        if scale != 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        pics.append(img)
    path = deliverable_path(name, suffix=".gif")
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=duration_ms, loop=0)
    return path
