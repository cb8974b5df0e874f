"""The notebooks' prose quotes the reference runs that are shipped, not those of an earlier model.

Notebooks 04 to 07 state results in words ("the rule picks w = 1.5 ... a ratio of 1.83 against 1.09").
Those numbers come from ``references`` in ``data/checkpoints/manifest.json`` (and 06's class-to-class
SDEdit from the table ``benchmarks/sdedit_3_to_8.py`` writes into BENCHMARKS.md); re-exporting a model
re-measures them, and a sentence that still quotes the old values would state a result nobody measured.
Each claim below is rendered from the manifest and must appear, word for word (whitespace aside), in the
notebook's markdown. When one fails, update the sentence to the text the message shows.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "data" / "checkpoints" / "manifest.json").read_text())


def _markdown(stem: str) -> str:
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    text = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return re.sub(r"\s+", " ", text)


def pct(accuracy: float) -> str:
    """0.967 -> '96.7', 1.0 -> '100' (one decimal, a trailing .0 dropped)."""
    s = f"{100 * accuracy:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _claims(refs: dict) -> Iterator[tuple[str, str]]:
    sweep = refs["05_w_sweep"]["rows"]
    w1, w15 = sweep["w = 1"], sweep["w = 1.5"]
    yield "05_class_conditioning_cfg", (f"to {pct(w1['accuracy'])} % at $w = 1$, {pct(w15['accuracy'])} % at "
                                        "$w = 1.5$")
    yield "05_class_conditioning_cfg", (f"lowest at $w = 1$ ({w1['ratio']:.2f}) and grows from {w15['ratio']:.2f} "
                                        f"at $w = 1.5$ and {sweep['w = 2']['ratio']:.2f} at $w = 2$ to "
                                        f"{sweep['w = 7']['ratio']:.2f} at $w = 7$")
    h1, h15 = w1["ratio_per_seed"], w15["ratio_per_seed"]
    yield "05_class_conditioning_cfg", (f"{h1[0]:.2f} / {h1[1]:.2f} at $w = 1$, {h15[0]:.2f} / {h15[1]:.2f} "
                                        "at $w = 1.5$")
    d50 = refs["05_ddim50"]["rows"]
    d1, d125, d1375, d15 = (d50[f"DDIM eta=0 50{k}"] for k in (" w=1", " w=1.25", " w=1.375", ""))
    yield "05_class_conditioning_cfg", (f"$w = 1.25$ reads {100 * d125['accuracy']:.2f} % of the digits right at a "
                                        f"ratio of {d125['ratio']:.2f}, no worse than $w = 1$ ({d1['ratio']:.2f}; "
                                        f"halves {d125['ratio_per_seed'][0]:.2f} / {d125['ratio_per_seed'][1]:.2f} "
                                        f"against {d1['ratio_per_seed'][0]:.2f} / {d1['ratio_per_seed'][1]:.2f}), "
                                        f"while $w = 1.375$ pays {d1375['ratio']:.2f} for {100 * d1375['accuracy']:.2f} % "
                                        f"and $w = 1.5$ {d15['ratio']:.2f} for {100 * d15['accuracy']:.2f} %")

    steps = refs["06_steps"]["rows"]
    cell = lambda name: f"{steps[name]['ratio']:.2f}, {pct(steps[name]['accuracy'])} %"     # noqa: E731
    yield "06_ddim", ("| $\\eta = 0$ | " + " | ".join(cell(f"DDIM eta=0 {s}") for s in (10, 20, 50, 100)) + " |")
    yield "06_ddim", f"| $\\eta = 1$ | {cell('DDIM eta=1 10')} | | {cell('DDIM eta=1 50')} | |"
    r = {s: steps[f"DDIM eta=0 {s}"]["ratio"] for s in (10, 50, 100)}
    yield "06_ddim", f"from {r[10]:.2f} times its floor at 10 steps to {r[50]:.2f} at 50 and {r[100]:.2f} at 100"
    eta1 = steps["DDIM eta=1 50"]
    yield "06_ddim", (f"score the same {eta1['ratio']:.2f} (halves {eta1['ratio_per_seed'][0]:.2f} and "
                      f"{eta1['ratio_per_seed'][1]:.2f})")

    chain = refs["06_ddpm_1000"]["rows"]
    full, ddim = chain["DDPM-1000 beta_tilde"], chain["DDIM eta=0 50"]
    yield "06_ddim", (f"scores **{full['ratio']:.2f}** (Fréchet {full['frechet']:.1f}, halves "
                      f"{full['ratio_per_seed'][0]:.2f} and {full['ratio_per_seed'][1]:.2f}), DDIM-50 "
                      f"{ddim['ratio']:.2f} (Fréchet {ddim['frechet']:.1f}): {ddim['frechet'] / full['frechet']:.2f} "
                      "times the distance")

    cfg_chain = refs["06_cfg_1000"]["rows"]
    cf, cd = cfg_chain["DDPM-1000 beta_tilde w=1"], cfg_chain["DDIM eta=0 50 w=1"]
    yield "06_ddim", (f"the full chain scores {cf['ratio']:.2f} (halves {cf['ratio_per_seed'][0]:.2f} and "
                      f"{cf['ratio_per_seed'][1]:.2f}), DDIM-50 {cd['ratio']:.2f} (halves {cd['ratio_per_seed'][0]:.2f} "
                      f"and {cd['ratio_per_seed'][1]:.2f}), {cd['frechet'] / cf['frechet']:.2f} times the distance")
    ddpm50 = refs["04_ddpm"]["rows"]["DDPM-50 beta_tilde"]
    yield "06_ddim", (f"**{ddim['ratio']:.2f}** for DDIM ($\\eta = 0$) against **{ddpm50['ratio']:.2f}** for the "
                      "respaced DDPM")
    yield "06_ddim", f"the respaced DDPM-50 comes within {ddpm50['frechet'] / full['frechet']:.2f} times"
    models = MANIFEST["models"]
    yield "04_time_conditioning", (f"the DDPM of section 3 saw {models['ddpm']['images_seen']:,} images")
    yield "04_time_conditioning", (f"scores {ddpm50['ratio']:.2f} (halves {ddpm50['ratio_per_seed'][0]:.2f} and "
                                   f"{ddpm50['ratio_per_seed'][1]:.2f}) against")
    abl = {k: models[f"ddpm_ablation_{k}"]["metrics"] for k in ("linear_attn", "linear_noattn", "cosine_attn",
                                                                 "cosine_noattn")}
    yield "04_time_conditioning", (f"{abl['linear_attn']['ratio']:.2f} against {abl['linear_noattn']['ratio']:.2f} "
                                   "with the linear schedule")
    ca, cn = abl["cosine_attn"], abl["cosine_noattn"]
    yield "04_time_conditioning", (f"{ca['ratio']:.2f} against {cn['ratio']:.2f} with the cosine one (they touch: "
                                   f"{ca['ratio_per_seed'][0]:.2f}-{ca['ratio_per_seed'][1]:.2f} against "
                                   f"{cn['ratio_per_seed'][0]:.2f}-{cn['ratio_per_seed'][1]:.2f})")

    latent = refs["07_latent"]["rows"]
    best, w1l, w2l = latent["latent DDIM eta=0 50"], latent["latent DDIM eta=0 50 w=1"], latent["latent DDIM eta=0 50 w=2"]
    yield "07_latent_diffusion", (f"{100 * w1l['accuracy']:.0f} % class-accurate (ratio {w1l['ratio']:.2f}), at "
                                  f"$w = 2$ they are {100 * w2l['accuracy']:.2f} % accurate but less diverse "
                                  f"({w2l['ratio']:.2f})")
    yield "07_latent_diffusion", f"{pct(best['accuracy'])} % accurate at {best['ratio']:.2f} times the floor"
    speedup = steps["DDIM eta=0 50"]["cpu_ms_per_sample"] / best["cpu_ms_per_sample"]
    yield "07_latent_diffusion", f"about {speedup:.0f}x per sample in the reference run"


def _sdedit_claim() -> tuple[str, str]:
    """06's class-to-class SDEdit paragraph, from the table ``benchmarks/sdedit_3_to_8.py`` wrote into BENCHMARKS.md."""
    block = (ROOT / "BENCHMARKS.md").read_text().split("<!-- sdedit: begin -->")[1].split("<!-- sdedit: end -->")[0]
    rows = {int(m[1]): (int(m[2]), float(m[3]), float(m[4]))
            for m in re.finditer(r"^\| (\d+) \| (\d+) \| ([\d.]+)% \| ([\d.]+)% \|", block, re.M)}
    n = re.search(r"the first (\d+) real 3s", block)[1]
    early = min(as8 for i, (_, as8, _) in rows.items() if i <= 10)
    t10, (t20, as8_20, as3_20) = rows[10][0], rows[20]
    return "06_ddim", (f"the first {n} real 3s of the test set): at least {early:g} % of the edits read as an 8 from "
                       f"every start up to $i_\\text{{start}} = 10$ ($t = {t10}$), and from $i_\\text{{start}} = 20$ "
                       f"($t = {t20}$) {as3_20:g} % read as a 3 and " + ("none" if as8_20 == 0 else f"{as8_20:g} %")
                       + " as an 8")


def _schedules_claim(scores: dict) -> tuple[str, str]:
    """05's sentence on guidance intervals and rescaled guidance (not autoguidance: its own sentence), from ``benchmarks/guidance_schedules.json``."""
    rows = {r["setting"]: r for r in scores.values() if r["n"] == 1000}
    low, w125 = rows["w = 1.5 for t < 500"], rows["w = 1.25"]
    others = [r for name, r in rows.items() if not re.fullmatch(r"w = [\d.]+", name) and "autoguidance" not in name]
    cheapest = min(r["ratio"] for r in others if r["accuracy"] >= 0.996)
    return "05_class_conditioning_cfg", (
        f"$w = 1.5$ for $t < 500$ only scores {pct(low['accuracy'])} % / {low['ratio']:.2f}, where $w = 1.25$ "
        f"throughout lands ({pct(w125['accuracy'])} % / {w125['ratio']:.2f}), and none of the {len(others)} such "
        f"settings measured reads 99.6 % or more of the digits right at a ratio below {math.floor(cheapest * 100) / 100:.2f}")


def _autoguidance_claim(scores: dict) -> tuple[str, str]:
    """05's sentence on autoguidance, from the same file."""
    r = next(r for r in scores.values() if r["n"] == 1000 and r["setting"] == "w = 1.5, autoguidance by cfg_lr_cosine")
    return "05_class_conditioning_cfg", f"does worse still on the same noises: {pct(r['accuracy'])} % / {r['ratio']:.2f} at $w = 1.5$"


SCHEDULES = json.loads((ROOT / "benchmarks" / "guidance_schedules.json").read_text())
CLAIMS = list(_claims(MANIFEST["references"])) + [_sdedit_claim(), _schedules_claim(SCHEDULES),
                                                  _autoguidance_claim(SCHEDULES)]


@pytest.mark.parametrize("stem,claim", CLAIMS, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CLAIMS)])
def test_the_prose_quotes_the_shipped_reference_runs(stem, claim):
    assert claim in _markdown(stem), (f"notebooks/{stem}.ipynb should say {claim!r} (rendered from the manifest's "
                                      "reference runs): update the sentence that quotes the old numbers")


def test_06s_equivalence_claim_still_holds():
    """06 says DDIM-50 with eta = 1 and 05's respaced DDPM-50 at the same w score the same (one sentence, two runs)."""
    refs = MANIFEST["references"]
    eta1, w15 = refs["06_steps"]["rows"]["DDIM eta=1 50"], refs["05_w_sweep"]["rows"]["w = 1.5"]
    assert f"{eta1['ratio']:.2f}" == f"{w15['ratio']:.2f}", "06 says DDIM-50 eta = 1 and 05's DDPM-50 score the same"


def test_a_re_measured_guidance_schedule_is_caught():
    scores = json.loads(json.dumps(SCHEDULES))
    scores["w = 1.5 for t < 500 | n = 1000"]["ratio"] += 0.05
    stem, claim = _schedules_claim(scores)
    assert claim not in _markdown(stem)


def test_a_stale_number_is_caught():
    refs = json.loads(json.dumps(MANIFEST["references"]))
    refs["06_steps"]["rows"]["DDIM eta=0 50"]["ratio"] += 0.1          # a re-measured model, prose not updated
    stale = [c for stem, c in _claims(refs) if c not in _markdown(stem)]
    assert len(stale) == 2 and stale[0].startswith("| $\\eta = 0$ |") and "times its floor" in stale[1]


def test_pct_drops_only_a_trailing_zero():
    assert (pct(0.967), pct(1.0), pct(0.9954), pct(0.99)) == ("96.7", "100", "99.5", "99")
