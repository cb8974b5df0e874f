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
    "07_latent_diffusion": ["autoencoder", "ldm", "cfg", "autoencoder_kl0.001", "autoencoder_kl0.01", "autoencoder_kl0.1"],
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
        assert re.search(rf"loaded {re.escape(name)} from \S*data/checkpoints/{re.escape(name)}\.pt", text), \
            f"{stem}: its figures do not come from the shipped {name!r} (no 'loaded {name} from data/checkpoints')"
        assert f"training {name} (" not in text, f"{stem} trained {name!r} instead of loading the shipped weights"


CPU_COMMITTED = ["01_vae_recap"]    # the student's own trainings are the result: committed executed in `cpu`


@pytest.mark.parametrize("stem", CPU_COMMITTED)
def test_student_trained_notebooks_are_committed_from_a_cpu_run(stem):
    text = _outputs(stem)
    assert "Profile 'cpu'" in text, \
        f"{stem} must be committed executed with COURSE_PROFILE=cpu (its figures are the student's trainings; CONTRIBUTING.md)"
    rows = re.findall(r"^(VAE|GAN)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s", text, flags=re.M)   # model, Frechet ratio
    assert {m for m, _ in rows} == {"VAE", "GAN"}, f"{stem}: no metric table of the VAE and the GAN in its outputs"
    for model, ratio in rows:          # a `smoke` run scores ratios above 100; the committed `cpu` run about 12
        assert float(ratio) < 30, f"{stem}: the committed {model} scores {ratio}x the floor: its figures come from an untrained model"


def _markdown(stem: str) -> str:
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    return " ".join(" ".join("".join(c["source"]).split()) for c in nb["cells"] if c["cell_type"] == "markdown")


def _claims() -> list[tuple[str, str]]:
    """(notebook, sentence its markdown must contain), each rendered from the committed outputs it quotes."""
    claims = []
    table = dict((m, (r, h)) for m, r, h in re.findall(
        r"^(VAE|GAN)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+ / [\d.]+)", _outputs("01_vae_recap"), flags=re.M))
    if table:
        claims.append(("01_vae_recap", f"ratios {table['VAE'][0]} and {table['GAN'][0]} in the committed run"))
        gan, vae = (table[m][1].replace(" / ", ", ") for m in ("GAN", "VAE"))
        claims.append(("01_vae_recap", f"both GAN halves ({gan}) score above both VAE halves ({vae})"))
    both = dict(re.findall(r"^(anagram \d/\d|plain \d)\s.*both:\s+(\d+)%", _outputs("06_ddim"), flags=re.M))
    if len(both) == 2:
        ana, plain = (both[k] for k in sorted(both))
        claims.append(("06_ddim", f"{ana}% of the anagrams read as a 4 upright *and* a 7 upside down, against "
                                  f"{plain}% of the plain 4s"))
    inp = re.findall(r"^\s+(\d)\s+(\d+)%\s+(\d)$", _outputs("06_ddim"), flags=re.M)   # asked, read as asked, most often
    if len(inp) == 10:
        def listed(xs):
            return ", ".join(xs[:-1]) + f" and {xs[-1]}" if len(xs) > 1 else "".join(xs)
        always = [a for a, pct, _ in inp if pct == "100"]
        never = [a for a, pct, _ in inp if pct == "0"]
        miss_as = sorted({m for a, pct, m in inp if pct == "0"})
        claims.append(("06_ddim", f"it reads {listed(always)} as asked in every fill and {listed(never)} in none, and "
                                  f"those misses read mostly as {' or '.join(miss_as)}"))
    inv = {(int(k), w): v for k, w, v in re.findall(r"^\s+(\d+)\s+(none|w = 3)\s+(\d\.\d{4})$", _outputs("06_ddim"), flags=re.M)}
    base = re.findall(r"^MSE between two different test digits: (\d\.\d{4})$", _outputs("06_ddim"), flags=re.M)
    if len(inv) == 4 and base:
        claims.append(("06_ddim", f"the reconstruction error is {inv[10, 'none']} at 10 steps, {inv[20, 'none']} at 20 "
                                  f"and {inv[50, 'none']} at 50, and {inv[50, 'w = 3']} at 50 steps with $w = 3$, all far "
                                  f"below the {base[0]} between two different test digits"))
    kl = dict(re.findall(r"^\s+(0\.001|0\.1)\s+[\d.]+\s+[\d.]+%\s+([\d.]+)", _outputs("07_latent_diffusion"), flags=re.M))
    if len(kl) == 2:
        claims.append(("07_latent_diffusion", f"(from about {round(float(kl['0.001']), -1):.0f} to "
                                              f"{float(kl['0.1']):.0f} nats)"))
    branches = re.findall(r"^\s+(\d+)\s+\d\.\d{4}\s+(\d\.\d\d)$", _outputs("04_time_conditioning"), flags=re.M)
    if len(branches) == 3:                    # start t, share of the 6 branches on the majority digit
        (t_hi, hi), (t_lo, lo) = branches[0], branches[-1]
        six = {1: "one branch in six", 2: "two in six", 3: "three in six", 4: "four in six", 5: "five in six", 6: "all six"}
        claims.append(("04_time_conditioning", f"holds {six[round(6 * float(hi))]} at $t = {t_hi}$"))
        claims.append(("04_time_conditioning", f"and {six[round(6 * float(lo))]} at $t = {t_lo}$"))
    return claims


def test_sentences_quoting_the_committed_outputs_match_them():
    claims = _claims()
    assert len(claims) == 8, "a committed output that a sentence quotes is missing (re-run the notebook)"
    for stem, sentence in claims:
        assert sentence in _markdown(stem), f"{stem}: no sentence says {sentence!r} (the committed outputs changed?)"
