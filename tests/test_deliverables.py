"""Graded samples files and the best guidance weight (course_utils.deliverables)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from course_utils import deliverables
from course_utils.deliverables import best_w, check_samples, load_samples, record_best_w, save_samples


@pytest.fixture()
def out(tmp_path, monkeypatch):
    """A fresh output folder and a data folder without a shipped manifest."""
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    return tmp_path / "out"


def _samples(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_round_trip_with_labels_and_meta(out):
    x, y = _samples(), torch.arange(6) % 10
    path = save_samples("04_samples", x, y, sampler="DDIM 50", steps=50, sweep={"w": [1.0, 3.0]})
    assert path == out / "deliverables" / "04_samples.pt"
    data = load_samples(path)
    assert torch.equal(data["images"], x) and data["images"].dtype == torch.float32
    assert torch.equal(data["labels"], y) and data["labels"].dtype == torch.int64
    assert data["meta"] == {"sampler": "DDIM 50", "steps": 50, "sweep": {"w": [1.0, 3.0]}}
    raw = torch.load(path, weights_only=True)                  # the documented plain dict
    assert set(raw) == {"images", "labels", "meta"}


def test_unconditional_and_bare_tensor_files(out, tmp_path):
    data = load_samples(save_samples("07_samples.pt", _samples(3)))
    assert data["labels"] is None and data["meta"] == {} and len(data["images"]) == 3
    torch.save(_samples(4).double(), tmp_path / "bare.pt")    # what `torch.save(samples, path)` writes
    bare = load_samples(tmp_path / "bare.pt")
    assert bare["images"].dtype == torch.float32 and bare["labels"] is None and bare["meta"] == {}


def test_save_is_atomic_a_failed_write_keeps_the_old_file(out, monkeypatch):
    path = save_samples("05_samples", _samples(2))
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):                          # dies half-way through writing
        if hasattr(f, "write"):
            f.write(b"half a fi")
        else:
            Path(f).write_bytes(b"half a fi")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_samples("05_samples", _samples(8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["05_samples.pt"], "a temporary file was left behind"


@pytest.mark.parametrize("images, labels, problem", [
    (torch.zeros(4, 3, 28, 28), None, "3 channels"),
    (torch.zeros(4, 28, 28), None, "unsqueeze(1)"),
    (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), None, "to_unit"),
    (torch.full((4, 1, 28, 28), 255.0), None, "must lie in [-1, 1]"),
    (torch.full((4, 1, 28, 28), float("nan")), None, "NaN"),
    (torch.zeros(4, 1, 28, 28), torch.arange(3), "one per image"),
    (torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 10]), "[0, 9]"),
    (torch.zeros(4, 1, 28, 28), torch.zeros(4), "integers"),
])
def test_bad_samples_are_refused_before_writing(out, images, labels, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        save_samples("04_samples", images, labels)
    assert not (out / "deliverables" / "04_samples.pt").exists()


def test_bad_names_and_meta(out):
    with pytest.raises(ValueError, match="'04_samples'"):
        save_samples("04_grid", _samples())
    with pytest.raises(ValueError, match="'04_samples'"):
        save_samples("../04_samples", _samples())
    with pytest.raises(ValueError, match=r"meta\['scores'\] is a Tensor.*\.item\(\)"):
        save_samples("04_samples", _samples(), scores=torch.zeros(2))


def test_malformed_files_name_the_problem(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt is not a samples file torch can read"):
        load_samples(tmp_path / "junk.pt")
    torch.save({"pictures": _samples()}, tmp_path / "keys.pt")
    with pytest.raises(ValueError, match="keys.pt holds a dict without 'images'"):
        load_samples(tmp_path / "keys.pt")
    torch.save(torch.zeros(3, 1, 32, 32), tmp_path / "size.pt")
    with pytest.raises(ValueError, match=r"size.pt: images must have shape \(B, 1, 28, 28\)"):
        load_samples(tmp_path / "size.pt")
    torch.save(_samples(1), tmp_path / "one.pt")
    with pytest.raises(ValueError, match="one.pt: need at least 2 samples, got 1"):
        load_samples(tmp_path / "one.pt", min_samples=2)
    with pytest.raises(FileNotFoundError, match="save_samples"):
        load_samples(tmp_path / "absent.pt")


def test_check_samples_normalises():
    data = check_samples(_samples(2).double().requires_grad_(), torch.tensor([3, 4], dtype=torch.int32))
    assert data["images"].dtype == torch.float32 and not data["images"].requires_grad
    assert data["labels"].dtype == torch.int64 and data["labels"].tolist() == [3, 4]


SCORES = {0.0: {"accuracy": 0.1, "frechet": 400.123456}, 2.0: {"accuracy": 0.99, "frechet": 210.0},
          3.0: {"accuracy": 0.995, "frechet": 250.0}}


def test_record_best_w_writes_the_format_notebook_05_wrote(out):
    path = record_best_w(3.0, SCORES, profile="cpu", n_per_w=125, sampler="DDIM 50")
    assert path == out / deliverables.BEST_W_FILE
    record = json.loads(path.read_text())
    assert list(record) == ["best_w", "profile", "n_per_w", "sampler", "sweep"]
    assert record["best_w"] == 3.0 and record["n_per_w"] == 125
    assert record["sweep"]["0.0"] == {"accuracy": 0.1, "frechet": 400.1235}     # keys as str(w), 4 decimals
    assert not [p for p in out.iterdir() if p.name != deliverables.BEST_W_FILE], "a temporary file was left behind"


def test_record_best_w_refuses_bad_input(out):
    with pytest.raises(ValueError, match="not one of the swept weights"):
        record_best_w(5.0, SCORES)
    with pytest.raises(ValueError, match="finite number"):
        record_best_w(float("nan"), SCORES)
    with pytest.raises(ValueError, match="may not use the names"):
        record_best_w(2.0, SCORES, sweep="mine")
    assert not (out / deliverables.BEST_W_FILE).exists()


def test_best_w_reads_the_run_then_the_manifest_then_the_default(out, tmp_path):
    assert best_w() == 3.0 and best_w(default=1.5) == 1.5                      # nothing recorded yet
    manifest = tmp_path / "data" / "checkpoints" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"best_w": 5.0}))
    assert best_w() == 5.0                                                     # the shipped models' sweep
    (out / deliverables.BEST_W_FILE).write_text("{not json")
    assert best_w() == 5.0                                                     # a broken record is skipped
    record_best_w(2.0, SCORES)
    assert best_w() == 2.0                                                     # this student's own run wins
    os.remove(manifest)
    assert best_w() == 2.0
