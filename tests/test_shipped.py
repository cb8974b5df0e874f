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
    assert total <= 40, f"shipped checkpoints take {total:.1f} MB, over the 40 MB budget"


def _images(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1, torch.arange(n) % 10


def _shipped_autoencoder() -> autoencoder.KLAutoencoder:
    return autoencoder.train_autoencoder(CPU, _images()[0])[0]


def _unit_latents(n: int = 128) -> torch.Tensor:
    return torch.randn(n, *latent.LATENT_SHAPE, generator=torch.Generator().manual_seed(1))


# name -> the call of its notebook (04, 05, 07), on stand-in images: shipped weights ignore the training data
NOTEBOOK_CALLS = {
    "ddpm": lambda: diffusion.train_diffusion("ddpm", CPU, _images()[0], None),
    "cfg": lambda: diffusion.train_diffusion("cfg", CPU, *_images(), p_uncond=0.1, epoch_key="cfg"),
    "noisy_classifier": lambda: guidance.train_noisy_classifier(CPU, *_images()),
    "autoencoder": lambda: autoencoder.train_autoencoder(CPU, _images()[0]),
    "ldm": lambda: latent.train_ldm(CPU, _unit_latents(), _images()[1], autoencoder=_shipped_autoencoder(),
                                    p_uncond=0.1),
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
