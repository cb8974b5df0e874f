"""Atomic saves, safe loads and load-or-train (course_utils.checkpoint)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import checkpoint
from course_utils.checkpoint import (CheckpointError, RunConfig, atomic_save, atomic_write_text, config_diff,
                                     load_checkpoint, load_or_train, save_checkpoint)

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
    nested = config_diff({"arch": {"w": 3}, "train": {"epochs": 1}},
                         {"arch": {"w": 3}, "train": {"epochs": 2, "lr": 0.1}})
    assert nested == ["train.epochs: saved 1, wanted 2", "train.lr: saved '<absent>', wanted 0.1"]
    assert config_diff({}, {}) == [] and config_diff({"d": {}}, {"d": {"a": 1}}) != []


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
        f.write(b"half a checkpoi")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(checkpoint.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _model(1), CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]   # no temp file left behind
    assert path.read_bytes() == before                              # the old checkpoint is intact


def test_atomic_save_is_reproducible(tmp_path):
    obj = {"w": torch.arange(6, dtype=torch.float16), "config": {"a": [1, 2]}}
    a, b = atomic_save(obj, tmp_path / "a.pt"), atomic_save(obj, tmp_path / "b.pt")
    assert a.read_bytes() == b.read_bytes()                # no random temporary name inside the file


def test_atomic_write_text_keeps_the_old_file_when_killed(tmp_path, monkeypatch):
    """The manifest, best w and benchmark records are written this way: a kill leaves old or new, never half."""
    path = atomic_write_text(tmp_path / "sub" / "m.json", '{"a": 1}\n')          # makes the folder
    assert path.read_text() == '{"a": 1}\n' and oct(path.stat().st_mode & 0o777) == "0o644"

    class Dying:
        def __str__(self):
            raise KeyboardInterrupt("killed mid-write")

    real_write = checkpoint._atomic_write

    def dying_write(p, write, mode):
        return real_write(p, lambda f: (f.write('{"a": '), str(Dying())), mode)

    monkeypatch.setattr(checkpoint, "_atomic_write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, '{"a": 2}\n')
    assert sorted(q.name for q in path.parent.iterdir()) == ["m.json"]    # no temp file left behind
    assert path.read_text() == '{"a": 1}\n'


# --- RunConfig and the load-or-train recipe ---------------------------------------------------------------

def _run(width: int = 3, epochs: int = 1, **changes) -> RunConfig:
    fields = {"model": "Tiny", "arch": {"width": width, "layers": (4, 3)}, "task": {"sigma": 0.5},
              "train": {"lr": 0.01, "epochs": epochs}, "depends": {}}
    return RunConfig(**{**fields, **changes})


def test_run_config_sections():
    config = _run()
    assert config.arch == {"width": 3, "layers": [4, 3]}              # JSON form: tuples become lists
    assert config.as_dict() == {"model": "Tiny", "arch": {"width": 3, "layers": [4, 3]}, "task": {"sigma": 0.5},
                             "train": {"lr": 0.01, "epochs": 1}, "depends": {}}
    assert config.identity() == {k: v for k, v in config.as_dict().items() if k != "train"}
    with pytest.raises(ValueError, match="model family"):
        RunConfig(model="", arch={})
    with pytest.raises(TypeError, match="RunConfig.train must be a dict"):
        RunConfig(model="Tiny", arch={}, train=[1])
    with pytest.raises(TypeError, match="JSON"):
        RunConfig(model="Tiny", arch={"t": torch.zeros(1)})


def _counting_train(model: nn.Module, calls: list) -> callable:
    def train_fn(resume):
        calls.append(resume)
        with torch.no_grad():
            model[0].weight.fill_(0.25)
        return {"loss": [3.0, 2.0]}
    return train_fn


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Empty outputs/ and data/ folders; returns (local checkpoint folder, shipped checkpoint folder)."""
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    return tmp_path / "outputs" / "checkpoints", tmp_path / "data" / "checkpoints"


def test_load_or_train_trains_once(folders, capsys):
    local, _ = folders
    calls: list = []
    m1 = _model(0)
    h1 = load_or_train("tiny", m1, _run(), _counting_train(m1, calls))
    assert calls == [local / "tiny.resume.pt"] and h1 == {"loss": [3.0, 2.0]}
    assert load_checkpoint(local / "tiny.pt", _model(1), _run().as_dict())["config"] == _run().as_dict()
    assert "training tiny" in capsys.readouterr().out
    m2 = _model(1)
    h2 = load_or_train("tiny", m2, _run(), _counting_train(m2, calls))
    assert len(calls) == 1                      # loaded, not retrained
    assert h2 == h1 and _same_weights(m1, m2)
    assert "loaded tiny" in capsys.readouterr().out


def test_local_checkpoint_must_match_the_whole_config(folders, capsys):
    calls: list = []
    m = _model(0)
    load_or_train("tiny", m, _run(epochs=1), _counting_train(m, calls))
    load_or_train("tiny", _model(0), _run(epochs=2), _counting_train(m, calls))
    assert len(calls) == 2                      # another epoch count: retrained
    assert "train.epochs: saved 1, wanted 2" in capsys.readouterr().out
    load_or_train("tiny", _model(0), _run(epochs=2), _counting_train(m, calls))
    assert len(calls) == 2                      # the new checkpoint replaced the old one


def test_load_or_train_refuses_a_config_that_is_not_a_run_config(folders):
    with pytest.raises(TypeError, match="RunConfig"):
        load_or_train("tiny", _model(), {"model": "Tiny"}, lambda resume: None)


def test_load_or_train_retrains_corrupt(folders, capsys):
    local, _ = folders
    local.mkdir(parents=True)
    (local / "tiny.pt").write_bytes(b"\x00garbage")
    calls: list = []
    m = _model(0)
    load_or_train("tiny", m, _run(), _counting_train(m, calls))
    assert len(calls) == 1
    assert "refusing checkpoint" in capsys.readouterr().out
    load_checkpoint(local / "tiny.pt", _model(3), _run().as_dict())   # replaced by a valid one


def test_the_resume_state_is_deleted_once_the_checkpoint_is_saved(folders):
    local, _ = folders
    m = _model(0)

    def train_fn(resume):
        resume.parent.mkdir(parents=True, exist_ok=True)
        resume.write_bytes(b"state after epoch 1")
        assert not (local / "tiny.pt").exists()
        return {"loss": [1.0]}

    load_or_train("tiny", m, _run(), train_fn, verbose=False)
    assert (local / "tiny.pt").exists() and not (local / "tiny.resume.pt").exists()


def test_shipped_weights_match_on_model_arch_task_and_depends(folders, capsys):
    local, shipped_dir = folders
    shipped = _model(5)
    save_checkpoint(shipped_dir / "tiny.pt", shipped, _run(train={"lr": 0.5, "epochs": 40}).as_dict(),
                    {"loss": [9.0]})
    calls: list = []
    m = _model(0)
    load_or_train("tiny", m, _run(), _counting_train(m, calls), shipped=False, verbose=False)
    assert len(calls) == 1                      # the profile does not use shipped weights: trained
    (local / "tiny.pt").unlink()
    m = _model(0)
    h = load_or_train("tiny", m, _run(), _counting_train(m, calls), shipped=True)
    assert len(calls) == 1 and h == {"loss": [9.0]} and _same_weights(m, shipped)   # other budget: loaded
    assert f"loaded tiny from {shipped_dir / 'tiny.pt'}" in capsys.readouterr().out
    others = {"model: saved 'Tiny', wanted 'Other'": _run(model="Other"),
              "arch.width: saved 3, wanted 4": _run(width=4),
              "task.sigma: saved 0.5, wanted 1.0": _run(task={"sigma": 1.0}),
              "depends.autoencoder: saved '<absent>', wanted 'abc'": _run(depends={"autoencoder": "abc"})}
    for reason, config in others.items():
        m = _model(0)
        load_or_train("tiny", m, config, _counting_train(m, calls), shipped=True)
        out = capsys.readouterr().out
        assert "refusing shipped checkpoint" in out and reason in out, out
        assert not _same_weights(m, shipped)
        (local / "tiny.pt").unlink()
    assert len(calls) == 5                      # each of the four was refused and trained


def test_a_local_checkpoint_comes_before_the_shipped_one(folders):
    local, shipped_dir = folders
    save_checkpoint(shipped_dir / "tiny.pt", _model(5), _run().as_dict(), {"loss": [9.0]})
    mine = _model(6)
    save_checkpoint(local / "tiny.pt", mine, _run().as_dict(), {"loss": [1.0]})
    m = _model(0)
    assert load_or_train("tiny", m, _run(), lambda resume: None, shipped=True, verbose=False) == {"loss": [1.0]}
    assert _same_weights(m, mine)


def test_shipped_record_reads_the_manifest_and_names_the_fix(tmp_path, monkeypatch):
    import json

    from course_utils.checkpoint import CheckpointError, shipped_record
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    with pytest.raises(CheckpointError, match="git checkout -- data/checkpoints"):
        shipped_record("ddpm")
    folder = tmp_path / "data" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"models": {"ddpm": {"metrics": {"n": 1000.0}}}}))
    assert shipped_record("ddpm")["metrics"]["n"] == 1000
    with pytest.raises(CheckpointError, match=r"no shipped model 'vae'.*shipped: ddpm.*pretrain\.py"):
        shipped_record("vae")


def test_reference_run_reads_the_manifest_and_names_the_fix(tmp_path, monkeypatch):
    import json

    from course_utils.checkpoint import CheckpointError, reference_run
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    folder = tmp_path / "data" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"models": {}, "references": {"04_ddpm": {"n": 1000}}}))
    assert reference_run("04_ddpm")["n"] == 1000
    with pytest.raises(CheckpointError, match=r"no reference run '06_steps'.*recorded: 04_ddpm.*reference_runs\.py run 06_steps"):
        reference_run("06_steps")
