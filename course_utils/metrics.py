"""Course metrics for generated digits (introduced in 00_setup, used from 01 on).

* A small MNIST classifier trained by the course (weights ship in ``data/classifier.pt``).
* ``class_accuracy``: how often the classifier reads the digit we asked for.
* ``frechet_distance``: the distance between Gaussian fits of the classifier's penultimate
  features (128-d) of two image sets, the MNIST analogue of FID.
* ``frechet_floor``: the same distance between ``n`` training and ``n`` test images, the value
  a perfect generator would get. Every score is reported next to it.

Reference images are drawn at random (fixed seed), never as the first ``n``: MNIST's test set is
ordered by writer group (its first 5,000 digits come from NIST SD-3, the cleaner hand of Census
employees, its last 5,000 from SD-1, students), so a prefix is a biased sample. The two halves
are 73 apart in this distance, two random halves 5; a prefix floor at n = 1,000 reads 73 instead
of 25 and would flatter every ratio about threefold.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, atomic_write_text, load_checkpoint, reference_run, save_checkpoint
from .data import TensorLoader, load_mnist
from .paths import data_dir, output_dir
from .training import train
from .validation import check_image_batch

__all__ = ["MNISTClassifier", "CLASSIFIER_CONFIG", "train_classifier", "get_classifier", "classifier_accuracy",
           "features", "predict", "class_accuracy", "class_histogram", "gaussian_stats", "frechet_distance",
           "frechet_floor", "evaluate_samples", "reference_images", "class_spread", "record_trilemma",
           "trilemma_table", "reference_trilemma_rows", "record_reference_trilemma", "REFERENCE_TRILEMMA", "TRILEMMA_FILE", "MIN_FRECHET_SAMPLES"]

CLASSIFIER_CONFIG = {"model": "MNISTClassifier", "channels": [32, 32, 64], "features": 128}


class MNISTClassifier(nn.Module):
    """conv-conv-pool-conv-pool CNN; ``features`` gives the 128-d penultimate layer."""

    def __init__(self, channels: tuple[int, int, int] = (32, 32, 64), n_features: int = 128):
        super().__init__()
        c1, c2, c3 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),   # (B, c2, 14, 14)
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(), nn.MaxPool2d(2),   # (B, c3, 7, 7)
            nn.Flatten(), nn.Linear(c3 * 49, n_features), nn.ReLU(),                           # (B, 128)
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(n_features, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d penultimate features (B, 128) of images (B, 1, 28, 28) in [-1, 1]: what the Frechet distance compares."""
        check_image_batch(x, "x", channels=1, size=(28, 28))
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (background -1): cheap augmentation."""
    b = x.shape[0]
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(28)[None]).to(x.device)        # (B, 28)
    cols = (dx[:, None] + torch.arange(28)[None]).to(x.device)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded[idx, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def train_classifier(epochs: int = 6, n_train: int | None = None, device: str | torch.device = "cpu",
                     seed: int = 0, batch_size: int = 128,
                     resume_path: str | Path | None = None) -> tuple[MNISTClassifier, dict]:
    """Train the metric classifier on MNIST (random shifts as augmentation); returns (model, history).

    ``resume_path``: the training state is saved there after every epoch, and a later call with the
    same arguments continues after the last finished epoch (:func:`~course_utils.training.train`).
    """
    torch.manual_seed(seed)
    x, y = load_mnist("train", n=n_train, device=device)
    model = MNISTClassifier().to(device)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, batch: tuple) -> torch.Tensor:
        xb, yb = batch
        return F.cross_entropy(m(_random_shift(xb, g)), yb)

    loader = TensorLoader(x, y, batch_size=batch_size, seed=seed)
    resume_config = {**CLASSIFIER_CONFIG, "n_train": n_train, "seed": seed, "batch_size": batch_size}
    history = train(model, loss_fn, loader, epochs, lr=2e-3, lr_schedule="cosine", desc="classifier",
                    resume_path=resume_path, resume_config=resume_config, generator=g)
    return model.eval(), history


@torch.no_grad()
def classifier_accuracy(model: MNISTClassifier, split: str = "test", n: int | None = None) -> float:
    """Accuracy of ``model`` on the real MNIST ``split``."""
    x, y = load_mnist(split, n=n)
    return (predict(x, model) == y).float().mean().item()


@lru_cache(maxsize=2)
def _cached_classifier(path: str, device: str) -> MNISTClassifier:
    model = MNISTClassifier()
    load_checkpoint(path, model, CLASSIFIER_CONFIG)
    return model.to(device).eval()


def get_classifier(device: str | torch.device = "cpu", path: str | Path | None = None,
                   retrain_epochs: int = 2) -> MNISTClassifier:
    """The shipped metric classifier (``data/classifier.pt``); retrained and saved if absent or corrupt.

    The retraining keeps a resume state in ``outputs/checkpoints/classifier.resume.pt`` after every
    epoch, so an interrupted one continues where it stopped; it is deleted once the classifier is saved.
    """
    path = Path(path or data_dir() / "classifier.pt")
    try:
        return _cached_classifier(str(path), str(device))
    except CheckpointError as e:
        print(f"metric classifier unavailable ({e}); retraining it for {retrain_epochs} epochs")
    resume = output_dir() / "checkpoints" / "classifier.resume.pt"
    resume.parent.mkdir(parents=True, exist_ok=True)
    model, history = train_classifier(epochs=retrain_epochs, device=device, resume_path=resume)
    acc = classifier_accuracy(model.cpu())
    save_checkpoint(path, model, CLASSIFIER_CONFIG, history, meta={"test_accuracy": acc, "epochs": retrain_epochs})
    resume.unlink(missing_ok=True)
    _cached_classifier.cache_clear()
    return _cached_classifier(str(path), str(device))


def _batched(fn, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else fn(x)


@torch.no_grad()
def features(images: torch.Tensor, classifier: MNISTClassifier | None = None) -> torch.Tensor:
    """128-d penultimate features of ``images`` (N, 1, 28, 28) in [-1, 1]; returned on the CPU as float64."""
    check_image_batch(images, "images", channels=1, size=(28, 28))
    clf = classifier or get_classifier()
    dev = next(clf.parameters()).device
    return _batched(lambda b: clf.features(b.to(dev).float()).double().cpu(), images)


@torch.no_grad()
def predict(images: torch.Tensor, classifier: MNISTClassifier | None = None) -> torch.Tensor:
    """Predicted digit (N,) for images (N, 1, 28, 28) in [-1, 1]."""
    check_image_batch(images, "images", channels=1, size=(28, 28))
    clf = classifier or get_classifier()
    dev = next(clf.parameters()).device
    return _batched(lambda b: clf(b.to(dev).float()).argmax(1).cpu(), images)


def class_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: MNISTClassifier | None = None) -> float:
    """Fraction of ``images`` the classifier reads as the requested ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return (predict(images, classifier) == labels.cpu()).float().mean().item()


def class_histogram(images: torch.Tensor, classifier: MNISTClassifier | None = None) -> torch.Tensor:
    """Fraction of ``images`` read as each digit 0-9 (a uniform 0.1 means no mode dropped)."""
    return torch.bincount(predict(images, classifier), minlength=10).double() / max(1, len(images))


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {tuple(feats.shape)}")
    f = feats.double()
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) between two feature sets."""
    mu_a, s_a = gaussian_stats(feats_a)
    mu_b, s_b = gaussian_stats(feats_b)
    ra = _sqrtm_psd(s_a)
    cross = torch.linalg.eigvalsh(ra @ s_b @ ra).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross)


REFERENCE_SEED = 0
# Below this many samples a Frechet distance on 128-d features is mostly its small-sample bias: notebooks
# print no live Frechet score under it (CONTRIBUTING.md, "A number too costly to recompute").
MIN_FRECHET_SAMPLES = 500


def reference_images(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images and labels of ``split`` drawn without replacement by a fixed seed (the metrics' references)."""
    x, y = load_mnist(split)
    n = len(x) if n is None else min(n, len(x))
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(REFERENCE_SEED))[:n]
    return x[idx], y[idx]


@lru_cache(maxsize=8)
def _reference_features(split: str, n: int) -> torch.Tensor:
    return features(reference_images(split, n)[0])


def frechet_floor(n: int) -> float:
    """Frechet distance between ``n`` random training and ``n`` random test images: about what fresh real digits score."""
    n = min(n, 10000)
    return frechet_distance(_reference_features("train", n), _reference_features("test", n))


def evaluate_samples(images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Course scores of generated ``images`` against the test set.

    Returns ``frechet`` (vs ``len(images)`` random test images), ``floor`` (train vs test at the same
    size), ``ratio`` = frechet / floor, ``n`` (the number of images scored, at most 10,000) and ``accuracy``
    when the requested ``labels`` are given.
    """
    n = min(len(images), 10000)
    if n < 2:
        raise ValueError("need at least 2 images to fit a Gaussian")
    out = {"n": float(n),
           "frechet": frechet_distance(features(images[:n]), _reference_features("test", n)),
           "floor": frechet_floor(n)}
    out["ratio"] = out["frechet"] / max(out["floor"], 1e-12)
    if labels is not None:
        out["accuracy"] = class_accuracy(images, labels)
    return out


# --- The generative trilemma on one table: filled by 01 (VAE, GAN), 04 (DDPM), 06 (DDIM), 07 (latent), shown in 07

TRILEMMA_FILE = "trilemma.json"


def class_spread(hist: torch.Tensor) -> float:
    """Largest minus smallest fraction of a class histogram (10,): 0 when every digit is drawn equally often.

    The coverage column of the trilemma table (01, 04, 06, 07): a model that drops a digit has a spread
    of at least its largest class fraction.
    """
    if hist.ndim != 1 or len(hist) < 2:
        raise ValueError(f"hist must be a 1-D histogram over the classes, got shape {tuple(hist.shape)}")
    return float(hist.max() - hist.min())


def record_trilemma(model_name: str, frechet_ratio: float, class_hist_spread: float, ms_per_sample: float,
                    n: int, **meta: str | int | float) -> Path:
    """Add (or replace) one row of the trilemma table in ``outputs/trilemma.json``; returns the path.

    The three corners of notebook 01's trilemma, measured: quality (``frechet_ratio``, Frechet
    distance over its floor; 1 is perfect), coverage (``class_hist_spread``, :func:`class_spread`
    of the samples' class histogram; 0 is perfect) and speed (``ms_per_sample`` on this machine),
    from ``n`` samples. Notebooks 01 (VAE, GAN), 04 (DDPM), 06 (DDIM) and 07 (latent diffusion) fill it;
    07 shows it whole with :func:`trilemma_table`. ``meta``: plain values (``profile``, ``sampler``).
    """
    values = {"frechet_ratio": frechet_ratio, "class_hist_spread": class_hist_spread, "ms_per_sample": ms_per_sample}
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {v!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (the number of samples scored), got {n!r}")
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError("model_name must be a non-empty string such as 'VAE' or 'DDPM'")
    for key, v in meta.items():
        if not isinstance(v, (str, int, float)):
            raise ValueError(f"meta value {key}={v!r} must be a string or a number")
    rows = trilemma_table()
    rows[model_name] = {**{k: round(float(v), 4) for k, v in values.items()}, "n": n, **meta}
    return atomic_write_text(output_dir() / TRILEMMA_FILE, json.dumps(rows, indent=1) + "\n")


def trilemma_table() -> dict[str, dict]:
    """The rows recorded by :func:`record_trilemma` in this output folder, in the order they were first
    written (``{}`` when none, or when the file is unreadable)."""
    try:
        rows = json.loads((output_dir() / TRILEMMA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return rows if isinstance(rows, dict) else {}


# trilemma row -> (shipped reference run, its row): the sampler each notebook scores on a CPU
REFERENCE_TRILEMMA = {
    "DDPM (04)": ("04_ddpm", "DDPM-50 beta_tilde"),
    "DDIM-50, CFG (06)": ("06_steps", "DDIM eta=0 50"),
    "latent diffusion (07)": ("07_latent", "latent DDIM eta=0 50"),
}


def reference_trilemma_rows() -> dict[str, dict]:
    """The trilemma rows of 04, 06 and 07 as the shipped reference runs measured them.

    One row per entry of :data:`REFERENCE_TRILEMMA`, in the form :func:`trilemma_table` returns:
    quality and coverage of the run's ``n`` samples, its one-thread CPU time per sample, ``profile``
    ``"reference run <date>"`` and the ``sampler``. Notebook 07 shows them for the notebooks that did
    not run in its output folder, so its table is never just its own row.
    """
    rows = {}
    for name, (run_name, key) in REFERENCE_TRILEMMA.items():
        run = reference_run(run_name)
        r = run["rows"][key]
        w = f", w = {r['w']:g}" if r.get("w") is not None else ""
        rows[name] = {"frechet_ratio": round(float(r["ratio"]), 4),
                      "class_hist_spread": round(class_spread(torch.tensor(r["hist"])), 4),
                      "ms_per_sample": round(float(r["cpu_ms_per_sample"]), 4), "n": int(run["n"]),
                      "profile": f"reference run {run['date']}", "sampler": f"{r['sampler']}{w}"}
    return rows


def record_reference_trilemma(model_name: str) -> Path:
    """Record the shipped reference run's trilemma row for ``model_name``; returns the path.

    What 04, 06 and 07 record where their live run scored fewer samples than the reference run (on a
    CPU): the reference run's quality, coverage and CPU time together, so the row's three numbers come
    from the one sampler it names. ``model_name`` is a key of :data:`REFERENCE_TRILEMMA`.
    """
    rows = reference_trilemma_rows()
    if model_name not in rows:
        raise ValueError(f"no reference trilemma row for {model_name!r}; the rows are {', '.join(map(repr, rows))} "
                         "(metrics.REFERENCE_TRILEMMA)")
    r = rows[model_name]
    return record_trilemma(model_name, r["frechet_ratio"], r["class_hist_spread"], r["ms_per_sample"], r["n"],
                           profile=r["profile"], sampler=r["sampler"])
