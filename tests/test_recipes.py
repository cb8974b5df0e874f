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
        assert r["recipe"] in {*rec.RECIPES, "shipped"}
        assert r["n"] >= 500 and r["sampler"] == "DDIM-50"
        assert r["ratio"] == pytest.approx(r["frechet"] / r["floor"], rel=0.01)
