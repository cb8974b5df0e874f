"""The committed notebooks show trained models: their figures come from the shipped checkpoints.

The notebooks are committed executed in the `smoke` profile, which loads ``data/checkpoints/`` for every
model whose training is not the exercise itself (CONTRIBUTING.md, "Committed figures come from trained
models"). Each such load prints ``loaded NAME from .../data/checkpoints/NAME.pt``; a notebook executed with a
profile that trained them instead (or with a checkpoint that no longer matches) prints ``training NAME``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

SHIPPED = {                         # notebook -> the shipped models its figures come from
    "04_time_conditioning": ["ddpm", "ddpm_ablation_linear_attn", "ddpm_ablation_cosine_attn",
                             "ddpm_ablation_linear_noattn", "ddpm_ablation_cosine_noattn"],
    "05_class_conditioning_cfg": ["cfg", "noisy_classifier", "cfg_lr_cosine", "cfg_lr_constant"],
    "06_ddim": ["cfg"],
    "07_latent_diffusion": ["autoencoder", "ldm", "cfg"],
}



def _outputs(stem: str) -> str:
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                     for o in c.get("outputs", []))


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_committed_figures_come_from_the_shipped_models(stem):
    text = _outputs(stem)
    assert re.search(r"use_pretrained\s+True", text), f"{stem} was not executed with a profile that loads shipped weights"
    for name in SHIPPED[stem]:
        assert re.search(rf"loaded {name} from \S*data/checkpoints/{name}\.pt", text), \
            f"{stem}: its figures do not come from the shipped {name!r} (no 'loaded {name} from data/checkpoints')"
        assert f"training {name} (" not in text, f"{stem} trained {name!r} instead of loading the shipped weights"
