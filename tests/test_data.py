"""Real MNIST loading, hash checks and batching (course_utils.data)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from course_utils.data import (MNIST_FILES, DataFileError, MNISTDataset, TensorLoader, load_mnist, to_uint8, to_unit,
                               verify_mnist)
from course_utils.paths import data_dir

MNIST = data_dir() / "mnist"


def _copy_mnist(dst: Path) -> Path:
    """A writable copy of data/mnist (the shipped files are read-only)."""
    dst.mkdir()
    for f in MNIST.iterdir():
        shutil.copyfile(f, dst / f.name)
    return dst


def _expected_hash(name: str) -> str:
    for line in (MNIST / "SHA256SUMS").read_text().splitlines():
        if line.strip() and line.split()[1].lstrip("*") == name:
            return line.split()[0]
    raise LookupError(name)


def test_first_train_labels():
    _, y = load_mnist("train", n=5)
    assert y.tolist() == [5, 0, 4, 1, 9]


@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_dtype_range(split):
    x, y = load_mnist(split, n=300)
    assert x.shape == (300, 1, 28, 28)
    assert x.dtype == torch.float32
    assert y.shape == (300,) and y.dtype == torch.int64
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert set(y.unique().tolist()) <= set(range(10))


def test_full_split_sizes():
    x, y = load_mnist("test")
    assert len(x) == len(y) == 10000


def test_bad_split_and_n():
    with pytest.raises(ValueError, match="unknown split"):
        load_mnist("validation")
    with pytest.raises(ValueError, match="positive"):
        load_mnist("test", n=0)


def test_unit_uint8_round_trip():
    raw = torch.tensor([[[0, 255], [128, 1]]], dtype=torch.uint8)
    x = to_unit(raw)
    assert x.shape == (1, 1, 2, 2)
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0
    assert torch.equal(to_uint8(x), raw)
    with pytest.raises(ValueError, match="shape"):
        to_uint8(torch.zeros(2, 28, 28))


def test_verify_shipped_files():
    verify_mnist()  # raises if the shipped files do not match SHA256SUMS


def test_corrupt_file_names_file_hash_and_fix(tmp_path):
    root = _copy_mnist(tmp_path / "mnist")
    name = MNIST_FILES[("train", "labels")]
    data = bytearray((root / name).read_bytes())
    data[100] ^= 0xFF
    (root / name).write_bytes(bytes(data))
    for call in (lambda: verify_mnist(root), lambda: load_mnist("train", n=10, root=root)):
        with pytest.raises(DataFileError) as info:
            call()
        msg = str(info.value)
        assert name in msg
        assert _expected_hash(name) in msg
        assert "corrupt" in msg and "Restore" in msg


def test_missing_file(tmp_path):
    root = _copy_mnist(tmp_path / "mnist")
    name = MNIST_FILES[("test", "labels")]
    (root / name).unlink()
    with pytest.raises(DataFileError, match="missing") as info:
        load_mnist("test", root=root)
    assert name in str(info.value) and _expected_hash(name) in str(info.value)


def test_missing_sums_file(tmp_path):
    root = _copy_mnist(tmp_path / "mnist")
    (root / "SHA256SUMS").unlink()
    with pytest.raises(DataFileError, match="SHA256SUMS"):
        verify_mnist(root)


def test_copy_loads_like_original(tmp_path):
    root = _copy_mnist(tmp_path / "mnist")
    x, y = load_mnist("test", n=50, root=root)
    x0, y0 = load_mnist("test", n=50)
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_tensor_loader_batching():
    x = torch.arange(10).float().view(10, 1)
    y = torch.arange(10)
    loader = TensorLoader(x, y, batch_size=4, shuffle=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 2          # drop_last
    assert [b[0].shape[0] for b in batches] == [4, 4]
    assert batches[0][1].tolist() == [0, 1, 2, 3]
    keep = TensorLoader(x, y, batch_size=4, shuffle=False, drop_last=False)
    assert len(keep) == 3 and [b[1].tolist() for b in keep][-1] == [8, 9]
    unlabeled = next(iter(TensorLoader(x, batch_size=3)))
    assert unlabeled[1] is None and unlabeled[0].shape == (3, 1)


def test_tensor_loader_shuffle_is_reproducible():
    x = torch.arange(64).float()
    y = torch.arange(64)

    def epochs(seed: int) -> list[list[int]]:
        loader = TensorLoader(x, y, batch_size=8, seed=seed)
        return [torch.cat([b[1] for b in loader]).tolist() for _ in range(2)]

    a, b = epochs(0), epochs(0)
    assert a == b                                     # same seed, same order
    assert a[0] != list(range(64))                    # actually shuffled
    assert a[0] != a[1]                               # a new order each epoch
    assert sorted(a[0]) == list(range(64))            # a permutation
    assert epochs(1)[0] != a[0]                       # the seed matters
    for xb, yb in TensorLoader(x, y, batch_size=8):   # images and labels stay paired
        assert torch.equal(xb.long(), yb)


def test_tensor_loader_errors():
    with pytest.raises(ValueError, match="differ in length"):
        TensorLoader(torch.zeros(5, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(torch.zeros(5, 1), batch_size=0)


def test_mnist_dataset():
    ds = MNISTDataset("train", n=20)
    assert len(ds) == 20
    img, label = ds[0]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32
    assert int(label) == 5
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch[0].shape == (8, 1, 28, 28) and batch[1].tolist()[:5] == [5, 0, 4, 1, 9]


def test_to_unit_names_what_it_takes():
    with pytest.raises(ValueError, match=r"raw uint8 pixels of shape \(N, H, W\), got torch.float32"):
        to_unit(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"shape \(2, 1, 28, 28\)"):
        to_unit(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
