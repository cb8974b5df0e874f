"""benchmarks/pretrain.py's export: one group of models is exported without dropping the others."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from course_tools.benchmarks_md import load_script
from course_utils.checkpoint import RunConfig, save_checkpoint, weights_digest


def _pretrain():
    return load_script("pretrain")


def _save(path, seed: int) -> None:
    torch.manual_seed(seed)
    config = RunConfig(model="Linear", arch={"n": 4}, task={}, train={"epochs": 2, "n_images": 10}, depends={})
    save_checkpoint(path, nn.Linear(4, 4), config.as_dict(), {"loss": [1.0, 0.5]})


def test_export_merges_into_the_manifest_and_carries_raw_weights(tmp_path, monkeypatch):
    pretrain = _pretrain()
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(pretrain, "_git_commit", lambda: "test")
    dest = tmp_path / "data" / "checkpoints"
    _save(dest / "ddpm.pt", 0)                                              # shipped earlier, scored earlier
    (dest / "manifest.json").write_text(json.dumps({"metrics_version": pretrain.METRICS_VERSION, "models": {
        "ddpm": {"file": "ddpm.pt", "size_mb": 0.01, "sha256": "x", "metrics": {"n": 500.0, "ratio": 5.9}}}}))
    src = tmp_path / "run"
    _save(src / "checkpoints" / "noisy_classifier.pt", 1)                   # the group exported now
    _save(src / "checkpoints" / "noisy_classifier.raw.pt", 2)
    manifest = pretrain.export(src, "test label", metric_samples=0)

    assert set(manifest["models"]) == {"ddpm", "noisy_classifier"}
    assert manifest["models"]["ddpm"]["metrics"] == {"n": 500.0, "ratio": 5.9}          # kept, not rescored
    entry = manifest["models"]["noisy_classifier"]
    assert entry["raw_file"] == "noisy_classifier.raw.pt" and (dest / "noisy_classifier.raw.pt").exists()
    saved = torch.load(dest / "noisy_classifier.raw.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values())
    assert entry["images_seen"] == 20 and entry["profile"] == "test label"
    assert entry["metrics"] == {}                            # scored now (a classifier has no sample scores)
    assert json.loads((dest / "manifest.json").read_text()) == manifest


def test_export_keeps_the_reference_runs_of_models_it_did_not_change(tmp_path, monkeypatch):
    pretrain = _pretrain()
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(pretrain, "_git_commit", lambda: "test")
    dest = tmp_path / "data" / "checkpoints"
    for name, seed in (("ddpm", 0), ("cfg", 1)):
        _save(dest / f"{name}.pt", seed)
    models = {name: {"file": f"{name}.pt", "size_mb": 0.01, "sha256": pretrain._sha256(dest / f"{name}.pt"),
                     "metrics": {}} for name in ("ddpm", "cfg")}
    refs = {"04_ddpm": {"model": "ddpm", "rows": {}}, "05_w_sweep": {"model": "cfg", "rows": {}}}
    (dest / "manifest.json").write_text(json.dumps({"metrics_version": pretrain.METRICS_VERSION, "models": models,
                                                    "references": refs}))
    src = tmp_path / "run"
    _save(src / "checkpoints" / "cfg.pt", 2)                 # new cfg weights: its reference run is stale
    monkeypatch.setattr(pretrain, "_score", lambda name, n: {})
    manifest = pretrain.export(src, "test label", metric_samples=0)
    assert manifest["references"] == {"04_ddpm": refs["04_ddpm"]}


def test_the_latent_model_alone_trains_on_the_shipped_autoencoders_latents(tmp_path, monkeypatch):
    pretrain = _pretrain()
    assert pretrain._plan(["ldm=3"]) == {"ldm": 3}
    ae = pretrain._shipped_autoencoder(torch.device("cpu"))
    manifest = json.loads((pretrain.shipped_checkpoint_dir() / "manifest.json").read_text())
    assert manifest["models"]["ldm"]["config"]["depends"]["autoencoder"] == weights_digest(ae)   # what 07 checks
    monkeypatch.setattr(pretrain, "shipped_checkpoint_dir", lambda: tmp_path)     # nothing shipped
    with pytest.raises(SystemExit, match="autoencoder=M"):
        pretrain._plan(["ldm=3"])


def test_the_default_path_runs_the_notebooks_through_the_course_runner(monkeypatch):
    """`python benchmarks/pretrain.py --profile P` executes the notebooks with `python -m course_tools run`, then exports."""
    import subprocess
    import sys
    pretrain = _pretrain()
    calls, exported = [], []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    monkeypatch.setattr(pretrain, "export", lambda src, label, n, best_w: exported.append((src.name, label, n)))
    monkeypatch.setattr(sys, "argv", ["pretrain.py", "--profile", "cpu", "--metric-samples", "7"])
    assert pretrain.main() == 0
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "course_tools", "run"] and cmd[cmd.index("--profile") + 1] == "cpu"
    import importlib.util
    assert importlib.util.find_spec(cmd[2] + ".__main__") is not None          # a module that `python -m` can run
    assert exported == [("run-cpu", "cpu", 7)]


def test_an_export_time_score_records_its_sampler_w_seed_and_date(monkeypatch, tmp_path):
    """The shipped table shows at which w a conditional model was scored: the best w may move after the export."""
    import numpy as np

    from course_tools import generate as gen
    from course_utils import deliverables, metrics

    pretrain = _pretrain()
    calls = []

    def fake_generate(kind, num, steps, seed, progress, batch_size):
        calls.append((kind, num, steps, seed))
        return np.zeros((num, 28, 28), np.uint8), np.arange(num) % 10

    monkeypatch.setattr(gen, "generate", fake_generate)
    monkeypatch.setattr(metrics, "evaluate_samples", lambda x, y: {"frechet": 3.0, "floor": 2.0, "ratio": 1.5})
    monkeypatch.setattr(deliverables, "best_w", lambda: 1.25)
    cfg = pretrain._score("cfg", 20)
    assert calls == [("cfg", 20, 50, 0)]
    assert cfg["w"] == 1.25 and cfg["seed"] == 0 and cfg["sampler"] == "DDIM-50, eta 0" and cfg["ratio"] == 1.5
    assert len(cfg["date"]) == 10 and cfg["date"].startswith("20")
    assert pretrain._score("ddpm", 20)["w"] is None                        # unconditional: no guidance
    assert pretrain._score("autoencoder", 20) == {} and pretrain._score("ddpm", 0) == {}
    monkeypatch.setattr(pretrain, "ROOT", tmp_path)                         # report() writes BENCHMARKS.md there
    block = pretrain.report()                                               # the shipped table has the w column
    assert "| w |" in block and "| ldm |" in block and (tmp_path / "BENCHMARKS.md").read_text().strip() == block
