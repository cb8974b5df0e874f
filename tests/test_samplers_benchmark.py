"""benchmarks/samplers.py: the spacings its extra DDIM rows use."""
from __future__ import annotations

import pytest
import torch

from course_tools.benchmarks_md import load_script


def test_trailing_and_quadratic_spacings_are_descending_valid_timesteps():
    sm = load_script("samplers")
    trailing = sm.spaced_timesteps("trailing", 50, 1000)
    assert trailing[0] == 999 and trailing[-1] == 19 and len(trailing) == 50
    quadratic = sm.spaced_timesteps("quadratic", 50, 1000)
    assert quadratic[-1] == 0 and quadratic[0] <= 800 and 40 <= len(quadratic) <= 50
    for ts in (trailing, quadratic):
        assert (ts[:-1] > ts[1:]).all() and ts.dtype == torch.long
    with pytest.raises(ValueError, match="unknown spacing 'cosine'"):
        sm.spaced_timesteps("cosine", 50, 1000)


def test_a_row_is_two_seeded_halves_scored_each_against_its_floor(tmp_path, monkeypatch):
    """The halves are the reference runs' (seeds 40 and 41): their spread says whether two rows differ."""
    sm = load_script("samplers")
    monkeypatch.setattr(sm, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(sm, "ROOT", tmp_path)                              # report() writes BENCHMARKS.md there
    monkeypatch.setattr(sm, "ROWS", {"DDIM-10": ("ddim", None, 10)})
    seen = []
    real = sm.samplers.sample_batches

    def spy(model, scheduler, n, **kw):
        seen.append((n, kw["seed"]))
        return real(model, scheduler, n, **kw)

    monkeypatch.setattr(sm.samplers, "sample_batches", spy)
    with pytest.raises(SystemExit, match="even number"):
        sm.run(5)
    sm.run(4)
    assert seen == [(2, 40), (2, 41)]
    import json
    r = json.loads(sm._result_path("DDIM-10", 4).read_text())
    assert r["n"] == 4 and len(r["ratio_per_seed"]) == 2 and r["cpu_ms_per_sample"] > 0 and r["ratio"] > 0
    sm.report(4)
    block = (tmp_path / "BENCHMARKS.md").read_text()
    halves = " / ".join(f"{v:.2f}" for v in r["ratio_per_seed"])
    assert "| CPU ms/sample |" in block and f"| {r['ratio']:.2f} | {halves} |" in block
    assert "x DDPM-1000" not in block                                     # no full-chain run at n = 4
    sm.run(4)
    assert len(seen) == 2                                                  # scored on these weights: kept


def test_rows_are_set_against_the_full_chain_at_the_same_n_only(tmp_path, monkeypatch):
    """The x DDPM-1000 column divides by 06_ddpm_1000's Frechet distance, and only where that run has the row's n."""
    sm = load_script("samplers")
    full = sm._full_chain(1000)
    assert full is not None and full["steps"] == 1000 and full["frechet"] > 0      # the shipped manifest's run
    assert sm._full_chain(4) is None
    monkeypatch.setattr(sm, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(sm, "ROOT", tmp_path)
    monkeypatch.setattr(sm, "ROWS", {"DDIM-2": ("ddim", None, 2)})
    monkeypatch.setattr(sm, "_full_chain", lambda n: {"frechet": 8.0} if n == 4 else None)
    sm.run(4)
    import json
    r = json.loads(sm._result_path("DDIM-2", 4).read_text())
    sm.report(4)
    block = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| x DDPM-1000 |" in block and f"| {r['frechet'] / 8.0:.2f} |" in block.splitlines()[-2]


def test_a_re_exported_ddpm_is_scored_again_and_reverse_takes_rows_last_to_first(tmp_path, monkeypatch):
    """A row records the weights it sampled, so a retrained DDPM never reports its predecessor's scores."""
    sm = load_script("samplers")
    monkeypatch.setattr(sm, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(sm, "ROOT", tmp_path)
    monkeypatch.setattr(sm, "ROWS", {"DDIM-2": ("ddim", None, 2), "DDPM-2 beta": ("ddpm", "beta", 2)})
    order = []
    real = sm._scheduler
    monkeypatch.setattr(sm, "_scheduler", lambda row, schedule: order.append(row) or real(row, schedule))
    sm.run(4, reverse=True)
    assert order == ["DDPM-2 beta", "DDPM-2 beta", "DDIM-2", "DDIM-2"]       # two halves per row
    monkeypatch.setattr(sm, "_weights_sha", lambda: "0" * 64)               # the DDPM was re-exported
    with pytest.raises(SystemExit, match="no rows scored on the shipped DDPM"):
        sm.report(4)
    sm.run(4)
    assert order[4:] == ["DDIM-2", "DDIM-2", "DDPM-2 beta", "DDPM-2 beta"]
    sm.report(4)
    assert "Not measured yet" not in (tmp_path / "BENCHMARKS.md").read_text()
