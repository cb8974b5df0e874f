"""The shipped checkpoints (data/checkpoints/): intact, and loadable by the `cpu` profile's notebooks.

The `cpu` profile shows full-quality samples only if the notebooks' load-or-train path accepts
these files: same architecture as the profile builds, and (for the latent model) trained on the
latents of the shipped autoencoder.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from course_utils import get_profile
from course_utils.autoencoder import KLAutoencoder, autoencoder_config
from course_utils.checkpoint import load_checkpoint, weights_digest
from course_utils.diffusion import make_unet, unet_config
from course_utils.guidance import make_noisy_classifier, noisy_classifier_config
from course_utils.latent import ldm_config
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


def _expected_arch(name: str) -> dict | None:
    return {"ddpm": unet_config(CPU), "cfg": unet_config(CPU, conditional=True), "ldm": ldm_config(CPU),
            "autoencoder": autoencoder_config(CPU), "noisy_classifier": noisy_classifier_config(CPU)}.get(name)


SHIPPABLE = ["ddpm", "cfg", "autoencoder", "ldm", "noisy_classifier"]


def test_every_shipped_model_is_checked_here():
    assert set(_manifest()["models"]) <= set(SHIPPABLE), "add the new model to SHIPPABLE and _expected_arch"


@pytest.mark.parametrize("name", SHIPPABLE)
def test_shipped_model_matches_what_the_cpu_profile_builds(name):
    entry = _manifest()["models"].get(name)
    if entry is None:
        pytest.skip(f"{name} is not shipped")
    assert entry["config"]["arch"] == _expected_arch(name)
    if name == "autoencoder":
        model = KLAutoencoder(entry["config"]["arch"]["latent_channels"], entry["config"]["arch"]["width"])
    elif name == "noisy_classifier":
        model = make_noisy_classifier(entry["config"]["arch"])
    else:
        model = make_unet(entry["config"]["arch"])
    load_checkpoint(FOLDER / entry["file"], model)          # raises on a corrupt file or other architecture
    if name == "ldm":
        ae_entry = _manifest()["models"].get("autoencoder")
        assert ae_entry is not None, "the latent model is shipped without its autoencoder"
        arch = ae_entry["config"]["arch"]
        ae = KLAutoencoder(arch["latent_channels"], arch["width"])
        load_checkpoint(FOLDER / ae_entry["file"], ae)
        assert entry["config"]["autoencoder"] == weights_digest(ae), "ldm was trained on another autoencoder's latents"
