"""Atomic saves, safe loads and load-or-train (course_utils.checkpoint)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import checkpoint
from course_utils.checkpoint import CheckpointError, config_diff, load_checkpoint, load_or_train, save_checkpoint

CONFIG = {"model": "tiny", "width": 3, "lr": 0.01, "layers": [4, 3]}


def _model(seed: int = 0, out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, out), nn.BatchNorm1d(out))


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip(tmp_path):
    a, b = _model(0), _model(1)
    a[1].running_mean.fill_(0.5)  # buffers travel too
    assert not _same_weights(a, b)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", a, CONFIG, history={"loss": [1.0, 0.5]}, meta={"epochs": 2})
    assert path.exists()
    ckpt = load_checkpoint(path, b, CONFIG)
    assert _same_weights(a, b)
    assert ckpt["history"] == {"loss": [1.0, 0.5]}
    assert ckpt["config"] == CONFIG and ckpt["meta"]["epochs"] == 2


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt", _model())


def test_corrupt_and_truncated(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _model(), CONFIG)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all" * 10)
    (tmp_path / "other.pt").write_bytes(b"")
    torch.save({"just": torch.zeros(2)}, tmp_path / "foreign.pt")
    for name in ("trunc.pt", "junk.pt", "other.pt", "foreign.pt"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name, _model(), CONFIG)
        assert name in str(info.value)


def test_wrong_config_names_key(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), CONFIG)
    with pytest.raises(CheckpointError, match="another config") as info:
        load_checkpoint(path, _model(), {**CONFIG, "lr": 0.02})
    assert "lr: saved 0.01, wanted 0.02" in str(info.value)
    with pytest.raises(CheckpointError, match="extra"):
        load_checkpoint(path, _model(), {**CONFIG, "extra": 1})
    load_checkpoint(path, _model(), None)  # no config: no check


def test_config_diff():
    assert config_diff(CONFIG, dict(CONFIG)) == []
    diff = config_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    assert diff == ["b: saved 2, wanted 3", "c: saved '<absent>', wanted 4"]


def test_wrong_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(out=3), CONFIG)
    with pytest.raises(CheckpointError, match="shape mismatch") as info:
        load_checkpoint(path, _model(out=5), CONFIG)
    assert "0.weight" in str(info.value)
    with pytest.raises(CheckpointError, match="another architecture.*missing"):
        load_checkpoint(path, nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 3)), CONFIG)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_checkpoint(path, nn.Sequential(nn.Linear(4, 3)), CONFIG)


def test_config_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "m.pt", _model(), {"t": torch.zeros(1)})


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", _model(0), CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    before = path.read_bytes()

    def dying_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoi")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(checkpoint.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _model(1), CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]   # no temp file left behind
    assert path.read_bytes() == before                              # the old checkpoint is intact


def _counting_train(model: nn.Module, calls: list) -> callable:
    def train_fn():
        calls.append(1)
        with torch.no_grad():
            model[0].weight.fill_(0.25)
        return {"loss": [3.0, 2.0]}
    return train_fn


def test_load_or_train_trains_once(tmp_path, capsys):
    calls: list = []
    m1 = _model(0)
    h1 = load_or_train("tiny", m1, CONFIG, _counting_train(m1, calls), directory=tmp_path)
    assert len(calls) == 1 and h1 == {"loss": [3.0, 2.0]}
    assert (tmp_path / "tiny.pt").exists()
    assert "training tiny" in capsys.readouterr().out
    m2 = _model(1)
    h2 = load_or_train("tiny", m2, CONFIG, _counting_train(m2, calls), directory=tmp_path)
    assert len(calls) == 1                      # loaded, not retrained
    assert h2 == h1 and _same_weights(m1, m2)
    assert "loaded tiny" in capsys.readouterr().out
    m3 = _model(2)                              # another config: trains again
    load_or_train("tiny", m3, {**CONFIG, "width": 4}, _counting_train(m3, calls), directory=tmp_path)
    assert len(calls) == 2


def test_load_or_train_retrains_corrupt(tmp_path, capsys):
    (tmp_path / "tiny.pt").write_bytes(b"\x00garbage")
    calls: list = []
    m = _model(0)
    load_or_train("tiny", m, CONFIG, _counting_train(m, calls), directory=tmp_path)
    assert len(calls) == 1
    assert "refusing checkpoint" in capsys.readouterr().out
    load_checkpoint(tmp_path / "tiny.pt", _model(3), CONFIG)   # replaced by a valid one


def test_load_or_train_prefers_extra_paths(tmp_path):
    shipped = _model(5)
    save_checkpoint(tmp_path / "shipped" / "tiny.pt", shipped, CONFIG, {"loss": [9.0]})
    calls: list = []
    m = _model(0)
    h = load_or_train("tiny", m, CONFIG, _counting_train(m, calls), directory=tmp_path / "local",
                      extra_paths=[tmp_path / "shipped" / "tiny.pt"], verbose=False)
    assert calls == [] and h == {"loss": [9.0]} and _same_weights(m, shipped)


def test_default_directory_is_under_course_output(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    m = _model(0)
    load_or_train("tiny", m, CONFIG, lambda: None, verbose=False)
    assert (tmp_path / "checkpoints" / "tiny.pt").exists()


def test_pretrained_keys_relax_the_config_for_shipped_weights(tmp_path):
    shipped = _model(5)
    save_checkpoint(tmp_path / "shipped" / "tiny.pt", shipped, {**CONFIG, "epochs": 40})
    wanted = {**CONFIG, "epochs": 1}
    calls: list = []
    m = _model(0)
    load_or_train("tiny", m, wanted, _counting_train(m, calls), directory=tmp_path / "a",
                  extra_paths=[tmp_path / "shipped" / "tiny.pt"], verbose=False)
    assert calls == [1]                                  # epochs differ: refused without pretrained_keys
    m2 = _model(0)
    load_or_train("tiny", m2, wanted, _counting_train(m2, calls), directory=tmp_path / "b",
                  extra_paths=[tmp_path / "shipped" / "tiny.pt"], pretrained_keys=["model", "width"], verbose=False)
    assert calls == [1] and _same_weights(m2, shipped)   # architecture keys match: loaded
    m3 = _model(0)
    load_or_train("tiny", m3, {**wanted, "width": 4}, _counting_train(m3, calls), directory=tmp_path / "c",
                  extra_paths=[tmp_path / "shipped" / "tiny.pt"], pretrained_keys=["model", "width"], verbose=False)
    assert calls == [1, 1]                               # another architecture key: refused
