"""The shipped checkpoints (data/checkpoints/): intact, and loaded by the `cpu` profile's notebooks.

The `cpu` profile shows full-quality samples only if the notebooks' trainers accept these files:
same model, architecture, task and dependencies (the latent model: the shipped autoencoder) as
the profile builds. Each trainer is called here as its notebook calls it, with training
disabled, so a mismatch fails with the refusal message instead of quietly training.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from course_tools.benchmarks_md import load_script
from course_utils import autoencoder, diffusion, get_profile, guidance, latent, training
from course_utils.checkpoint import RunConfig, weights_digest
from course_utils.paths import shipped_checkpoint_dir

FOLDER = shipped_checkpoint_dir()
MANIFEST = FOLDER / "manifest.json"
CPU = get_profile("cpu")

pytestmark = pytest.mark.skipif(not MANIFEST.exists(), reason="no shipped checkpoints (data/checkpoints/manifest.json)")


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def test_manifest_lists_intact_files_within_budget():
    m = _manifest()
    assert m["models"], "the manifest lists no model"
    for name, entry in m["models"].items():
        path = FOLDER / entry["file"]
        assert path.exists(), f"{name}: {path} is missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], f"{name}: SHA-256 differs"
        assert entry["images_seen"] > 0 and {"config", "profile"} <= set(entry)
    total = sum(p.stat().st_size for p in FOLDER.glob("*.pt")) / 2**20
    assert total <= 60, f"shipped checkpoints take {total:.1f} MB, over the 60 MB budget (issue 15)"
    files = {e["file"] for e in m["models"].values()} | {e["raw_file"] for e in m["models"].values() if "raw_file" in e}
    assert files == {p.name for p in FOLDER.glob("*.pt")}, "a .pt file in data/checkpoints is not in the manifest"


def _images(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1, torch.arange(n) % 10


def _shipped_autoencoder() -> autoencoder.KLAutoencoder:
    return autoencoder.train_autoencoder(CPU, _images()[0])[0]


def _unit_latents(n: int = 128) -> torch.Tensor:
    return torch.randn(n, *latent.LATENT_SHAPE, generator=torch.Generator().manual_seed(1))


def _ablation_call(schedule_name: str, attention: bool):
    # notebook 04, section 6
    name = f"ddpm_ablation_{schedule_name}_{'attn' if attention else 'noattn'}"
    return lambda: diffusion.train_diffusion(name, CPU, _images()[0], None,
                                             arch=diffusion.unet_config(CPU, attention=attention),
                                             schedule_name=schedule_name, lr=1e-3, batch_size=32, keep_raw=True)


ABLATIONS = {f"ddpm_ablation_{s}_{'attn' if a else 'noattn'}": _ablation_call(s, a)
             for s in ("linear", "cosine") for a in (True, False)}

# name -> the call of its notebook (04, 05, 07), on stand-in images: shipped weights ignore the training data
NOTEBOOK_CALLS = {
    **ABLATIONS,
    "cfg_lr_cosine": lambda: diffusion.train_diffusion("cfg_lr_cosine", CPU, *_images(), p_uncond=0.1,
                                                       lr_schedule="cosine", epoch_key="cfg"),
    "cfg_lr_constant": lambda: diffusion.train_diffusion("cfg_lr_constant", CPU, *_images(), p_uncond=0.1,
                                                         lr_schedule=None, epoch_key="cfg"),
    "ddpm": lambda: diffusion.train_diffusion("ddpm", CPU, _images()[0], None, prediction="v"),   # 04 trains v
    "cfg": lambda: diffusion.train_diffusion("cfg", CPU, *_images(), p_uncond=0.1, epoch_key="cfg",
                                             prediction="v"),                                   # 05-07 ask for v
    "noisy_classifier": lambda: guidance.train_noisy_classifier(CPU, *_images()),
    "autoencoder": lambda: autoencoder.train_autoencoder(CPU, _images()[0]),
    **{f"autoencoder_kl{w:g}": (lambda w=w: autoencoder.train_autoencoder(CPU, _images()[0], kl_weight=w,
                                                                        name=f"autoencoder_kl{w:g}"))
       for w in (1e-3, 1e-2, 1e-1)},                                                       # 07's KL-weight table
    "ldm": lambda: latent.train_ldm(CPU, _unit_latents(), _images()[1], autoencoder=_shipped_autoencoder(),
                                    p_uncond=0.1),
    # not a notebook's: benchmarks/guidance_schedules.py's autoguidance guide, cfg's recipe stopped early
    "cfg_guide": lambda: diffusion.train_diffusion("cfg_guide", CPU, *_images(), p_uncond=0.1, epoch_key="cfg",
                                                   prediction="v"),
}


def test_every_shipped_model_is_checked_here():
    assert set(_manifest()["models"]) <= set(NOTEBOOK_CALLS), "add the new model's notebook call to NOTEBOOK_CALLS"


@pytest.mark.parametrize("name", NOTEBOOK_CALLS)
def test_the_cpu_profile_loads_the_shipped_model(name, tmp_path, monkeypatch):
    entry = _manifest()["models"].get(name)
    if entry is None:
        pytest.skip(f"{name} is not shipped")
    ckpt = torch.load(FOLDER / entry["file"], map_location="cpu", weights_only=True)
    assert ckpt["config"] == entry["config"] == RunConfig(**entry["config"]).as_dict()   # the RunConfig schema
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert entry["images_seen"] == entry["config"]["train"]["epochs"] * entry["config"]["train"]["n_images"]

    def no_training(*args, **kwargs):
        raise AssertionError(f"the cpu profile would train {name} instead of loading data/checkpoints/{entry['file']}")

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    monkeypatch.setattr(training, "train", no_training)
    for module in (diffusion, guidance, autoencoder):
        monkeypatch.setattr(module, "train", no_training)
    model, history, config = NOTEBOOK_CALLS[name]()
    assert RunConfig(**config).identity() == RunConfig(**entry["config"]).identity()
    assert history == ckpt["history"]
    if name == "ldm":
        assert entry["config"]["depends"] == {"autoencoder": weights_digest(_shipped_autoencoder())}


@pytest.mark.parametrize("name", ABLATIONS)
def test_the_ablation_ships_its_raw_weights_and_its_reference_scores(name, tmp_path, monkeypatch):
    entry = _manifest()["models"].get(name)
    if entry is None:
        pytest.skip(f"{name} is not shipped")
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    ema, _, config = ABLATIONS[name]()
    raw = diffusion.load_raw_unet(name, config)                 # notebook 04's EMA-against-raw comparison
    assert raw is not None, f"{name}: data/checkpoints/{entry.get('raw_file')} is not found or refused"
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))
    m = entry["metrics"]
    assert m["n"] >= 1000 and len(m["seeds"]) == len(m["ratio_per_seed"]) >= 2      # issue 15: n >= 1000, a spread
    assert m["n_per_seed"] * len(m["seeds"]) == m["n"] and m["ratio"] > 0
    assert {"sampler", "date", "floor"} <= set(m) and abs(sum(m["hist"]) - 1) < 1e-3

def _reference_runs():
    return load_script("reference_runs")


def test_every_reference_run_the_notebooks_print_is_shipped_and_complete():
    ref = _reference_runs()
    m = _manifest()
    refs = m.get("references", {})
    assert set(refs) == set(ref.RUNS_SPEC), "run benchmarks/reference_runs.py for the missing runs, then export"
    for name, (model, rows) in ref.RUNS_SPEC.items():
        entry = refs[name]
        assert entry["model"] == model and entry["n"] >= 1000 and len(entry["seeds"]) >= 2, name   # issue 15
        assert list(entry["rows"]) == [row.name for row in rows], f"{name}: rows missing or out of order"
        for row in entry["rows"].values():
            assert len(row["ratio_per_seed"]) == len(entry["seeds"]) and row["ratio"] > 0 and row["floor"] > 0
            assert abs(sum(row["hist"]) - 1) < 1e-3
            assert ("accuracy" in row) == (model in ("cfg", "ldm"))          # the class-conditional models
        assert entry["date"][:2] == "20", f"{name}: a date, not a placeholder"
