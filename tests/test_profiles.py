"""Run profiles (course_utils.profiles)."""
from __future__ import annotations

import dataclasses

import pytest

from course_utils import profiles
from course_utils.profiles import PROFILES, Profile, get_profile


def test_names():
    assert set(PROFILES) == {"smoke", "cpu", "full"}
    for name, p in PROFILES.items():
        assert isinstance(p, Profile) and p.name == name


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        get_profile("nope")
    msg = str(info.value)
    assert "'nope'" in msg
    for name in PROFILES:
        assert name in msg


def test_env_variable_respected(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert get_profile().name == "full"
    monkeypatch.setenv("COURSE_PROFILE", " CPU ")
    assert get_profile().name == "cpu"
    assert get_profile("smoke").name == "smoke"       # an explicit name wins
    monkeypatch.setenv("COURSE_PROFILE", "bogus")
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        get_profile()


def test_default_when_unset(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "default_profile_name", lambda: "full")
    assert get_profile().name == "full"
    monkeypatch.setattr(profiles, "default_profile_name", lambda: "cpu")
    assert get_profile().name == "cpu"


def test_epochs_unknown_model():
    p = get_profile("smoke")
    assert p.epochs("ddpm") >= 1
    with pytest.raises(KeyError) as info:
        p.epochs("transformer")
    assert "transformer" in str(info.value) and "ddpm" in str(info.value)


def test_every_profile_budgets_the_same_models():
    models = set(PROFILES["full"].epoch_budget)
    for p in PROFILES.values():
        assert set(p.epoch_budget) == models
        assert all(isinstance(v, int) and v >= 1 for v in p.epoch_budget.values())


def test_smoke_is_smaller_than_full():
    smoke, full = PROFILES["smoke"], PROFILES["full"]
    for m in full.epoch_budget:
        assert smoke.epochs(m) <= full.epochs(m)
    assert sum(smoke.epoch_budget.values()) < sum(full.epoch_budget.values())
    assert full.train_images is None and smoke.train_images < 60000
    assert full.test_images is None and smoke.test_images < 10000
    assert smoke.n_metric_samples < full.n_metric_samples
    assert smoke.sample_steps <= full.sample_steps
    assert smoke.width <= full.width
    # smoke loads the shipped weights (the committed notebooks show trained models), so it has their width
    assert smoke.use_pretrained and smoke.width == PROFILES["cpu"].width


def test_str_and_dict():
    p = get_profile("smoke")
    text = str(p)
    assert text.startswith("Profile 'smoke'") and "epoch_budget" in text
    d = p.as_dict()
    assert d["name"] == "smoke" and isinstance(d["epoch_budget"], dict)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.width = 1  # frozen: budgets are read, never changed
