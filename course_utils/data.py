"""Real MNIST, offline (taught in 00_setup).

The four original IDX files ship in ``data/mnist/`` with their SHA-256 sums; nothing is
downloaded. Images come back as float tensors in [-1, 1] of shape (N, 1, 28, 28), labels as
int64 of shape (N,).
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .paths import data_dir

__all__ = ["MNIST_FILES", "DataFileError", "verify_mnist", "load_mnist", "MNISTDataset", "TensorLoader",
           "to_unit", "to_uint8"]

MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
_RESTORE = ("Restore it from the repository with `git checkout -- data/mnist/` "
            "(or copy the original file from ../shared/data/mnist/).")


class DataFileError(RuntimeError):
    """A data file is missing or corrupt."""


def _mnist_dir(root: str | Path | None) -> Path:
    return Path(root) if root is not None else data_dir() / "mnist"


def _expected_sums(folder: Path) -> dict[str, str]:
    sums_file = folder / "SHA256SUMS"
    if not sums_file.exists():
        raise DataFileError(f"missing {sums_file}: the list of SHA-256 sums of the MNIST files. {_RESTORE}")
    sums = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_mnist(root: str | Path | None = None) -> None:
    """Check that the four files exist and match their SHA-256 sums; raise :class:`DataFileError` if not."""
    folder = _mnist_dir(root)
    sums = _expected_sums(folder)
    for name in MNIST_FILES.values():
        path = folder / name
        if name not in sums:
            raise DataFileError(f"{sums_path(folder)} lists no hash for {name}. {_RESTORE}")
        if not path.exists():
            raise DataFileError(f"missing MNIST file {path} (expected SHA-256 {sums[name]}). {_RESTORE}")
        got = _sha256(path)
        if got != sums[name]:
            raise DataFileError(
                f"corrupt MNIST file {path}: SHA-256 is {got}, expected {sums[name]}. {_RESTORE}")


def sums_path(folder: Path) -> Path:
    """The ``SHA256SUMS`` file that lists the checksums of the MNIST files in ``folder`` (00)."""
    return folder / "SHA256SUMS"


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DataFileError(f"{path} is not an IDX file of the expected kind (magic {got}, expected {magic}). {_RESTORE}")
    if magic == 2051:
        n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h, w)
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).reshape(n)


@lru_cache(maxsize=4)
def _load_uint8(split: str, folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(folder)
    verify_mnist(root)
    images = _read_idx(root / MNIST_FILES[(split, "images")], 2051)
    labels = _read_idx(root / MNIST_FILES[(split, "labels")], 2049)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) in [0, 255] -> float (N, 1, 28, 28) in [-1, 1] (taught in 00, exercise 1)."""
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8 or images_uint8.dim() != 3:
        what = (f"{images_uint8.dtype} of shape {tuple(images_uint8.shape)}" if isinstance(images_uint8, torch.Tensor)
                else type(images_uint8).__name__)
        raise ValueError(f"to_unit takes the raw uint8 pixels of shape (N, H, W), got {what}; images already in "
                         "[-1, 1] need no conversion")
    return (images_uint8.float().unsqueeze(1) / 127.5 - 1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] (N, 1, H, W) -> uint8 (N, H, W) in [0, 255] (0 = black background)."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(images.shape)}")
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).squeeze(1).cpu()


def load_mnist(split: str = "train", n: int | None = None, root: str | Path | None = None,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ("train" or "test") as ``(images, labels)``.

    images: float32 (N, 1, 28, 28) in [-1, 1]; labels: int64 (N,). ``n`` keeps the first ``n``
    (``None``: all). Files are verified against ``SHA256SUMS`` before they are read.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    images, labels = _load_uint8(split, str(_mnist_dir(root).resolve()))
    if n is not None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        images, labels = images[:n], labels[:n]
    return to_unit(images).to(device), labels.to(device)


class MNISTDataset(torch.utils.data.Dataset):
    """A ``torch.utils.data.Dataset`` over :func:`load_mnist` (for DataLoader-based code)."""

    def __init__(self, split: str = "train", n: int | None = None, root: str | Path | None = None):
        self.images, self.labels = load_mnist(split, n=n, root=root)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


@dataclass
class TensorLoader:
    """Batches straight from tensors that already sit on the training device.

    The fast path: no worker processes, no per-sample Python. Shuffles with a seeded CPU
    generator each epoch so runs are reproducible on any device.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    batch_size: int = 128
    shuffle: bool = True
    drop_last: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"images ({len(self.images)}) and labels ({len(self.labels)}) differ in length")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        self._epoch = 0

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = len(self.images)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self._epoch)
            order = torch.randperm(n, generator=g).to(self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        self._epoch += 1
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.images[idx], (self.labels[idx] if self.labels is not None else None)
