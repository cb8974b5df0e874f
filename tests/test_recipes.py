"""benchmarks/recipes.py: every score is kept in a committed file, one row per recipe, CPU minutes and n."""
from __future__ import annotations

import json

import pytest

from course_tools.benchmarks_md import load_script


def _module():
    return load_script("recipes")


def _row(recipe: str, minutes: float, ratio: float, n: int = 500) -> dict:
    return {"recipe": recipe, "cpu_minutes": minutes, "n": float(n), "ratio": ratio, "frechet": 48.1 * ratio,
            "floor": 48.1, "images": 1000, "steps": 10}


def test_a_new_score_replaces_the_same_point_and_keeps_the_others(tmp_path, monkeypatch):
    rec = _module()
    monkeypatch.setattr(rec, "SCORES", tmp_path / "scores.json")
    rec._keep(_row("vpred", 20.02, 7.0))
    rec._keep(_row("vpred", 40.0, 4.0))
    rec._keep(_row("vpred", 19.98, 6.5))             # the same snapshot (20 CPU minutes) scored again
    rec._keep(_row("vpred", 20.0, 5.0, n=1000))      # another n is another point
    rows = json.loads((tmp_path / "scores.json").read_text())
    assert [(r["cpu_minutes"], r["n"], r["ratio"]) for r in rows] == [(19.98, 500, 6.5), (20.0, 1000, 5.0),
                                                                       (40.0, 500, 4.0)]


def test_report_without_scores_at_that_n_names_the_commands(tmp_path, monkeypatch):
    rec = _module()
    monkeypatch.setattr(rec, "SCORES", tmp_path / "scores.json")
    rec._keep(_row("base", 5, 100.0))
    with pytest.raises(SystemExit, match="eval --n 2000"):
        rec.report(2000)


def test_the_committed_scores_are_complete_rows_of_known_recipes():
    rec = _module()
    rows = json.loads(rec.SCORES.read_text())
    assert rows, "benchmarks/recipes_scores.json holds no score"
    for r in rows:
        assert r["recipe"] in {*rec.RECIPES, *rec.SHIPPED.values()}
        assert r["n"] >= 500 and r["sampler"] == "DDIM-50"
        assert r["ratio"] == pytest.approx(r["frechet"] / r["floor"], rel=0.01)


def test_conditional_recipes_train_the_null_label_and_unconditional_ones_draw_as_before():
    import torch

    from course_utils.schedules import NoiseSchedule

    rec = _module()
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, t, y=None):
            seen.append(y)
            return torch.zeros_like(x, requires_grad=True)

    schedule = NoiseSchedule("linear", 1000)
    x0 = torch.zeros(2000, 1, 4, 4)
    y = torch.arange(2000) % 10
    rec.loss_fn(rec.RECIPES["cond_vpred"], Spy(), x0, schedule, torch.Generator().manual_seed(0), y)
    kept = seen[-1] == y
    assert ((seen[-1] == 10) | kept).all()                          # a label is either kept or the null label
    assert 0.07 < (seen[-1] == 10).float().mean() < 0.13            # dropped with p = P_UNCOND = 0.1
    g = torch.Generator().manual_seed(0)
    rec.loss_fn(rec.RECIPES["vpred"], Spy(), x0, schedule, g)
    assert seen[-1] is None
    ref = torch.Generator().manual_seed(0)                          # t then eps, nothing else drawn
    torch.randint(0, 1000, (2000,), generator=ref), torch.randn(x0.shape, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())
