"""benchmarks/guidance_schedules.py: guidance intervals, rescaled guidance and autoguidance on the shipped cfg model."""
from __future__ import annotations

import json

import pytest
import torch

from course_tools.benchmarks_md import load_script
from course_utils import samplers


@pytest.fixture(scope="module")
def gs():
    return load_script("guidance_schedules")


class _Linear(torch.nn.Module):
    """A stand-in conditional model: eps = x (1 + y / 10), so eps_u = 2 x (the null label, 10)."""

    num_classes = 10

    def forward(self, x, t, y):
        return x * (1 + y.float()[:, None, None, None] / 10)


def test_w_of_t_takes_the_first_interval_holding_t_and_one_elsewhere(gs):
    s = gs.Setting("two", ((2.0, 700, 1000), (1.5, 0, 500)))
    assert [s.w_at(t) for t in (999, 700, 699, 500, 499, 0)] == [2.0, 2.0, 1.0, 1.0, 1.5, 1.5]


def test_the_guided_estimate_is_cfg_inside_the_interval_and_the_conditional_model_outside(gs):
    model, x, y = _Linear(), torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3])
    s = gs.Setting("high", ((3.0, 500, 1000),))
    inside, outside = torch.full((3,), 800), torch.full((3,), 100)
    assert torch.allclose(gs.guided(model, s, x, inside, y), samplers.guided_eps(model, x, inside, y, 3.0))
    assert torch.allclose(gs.guided(model, s, x, outside, y), model(x, outside, y))
    # rescaled: phi = 1 gives the guided estimate with the conditional estimate's per-image std
    r = gs.guided(model, gs.Setting("r", ((3.0, 0, 1000),), phi=1.0), x, inside, y)
    assert torch.allclose(r.std(dim=(1, 2, 3)), model(x, inside, y).std(dim=(1, 2, 3)), rtol=1e-4)
    assert not torch.allclose(r, samplers.guided_eps(model, x, inside, y, 3.0))


class _Scaled(torch.nn.Module):
    """A stand-in weaker model: eps = c x, whatever the label."""

    num_classes = 10

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, t, y):
        return self.c * x


def test_autoguidance_extrapolates_from_the_weaker_model_with_the_same_label(gs):
    model, x, y, t = _Linear(), torch.randn(3, 1, 28, 28), torch.tensor([0, 5, 9]), torch.full((3,), 400)
    s = gs.Setting("ag", ((2.0, 0, 1000),), guide="bad")
    bad = _Scaled(0.5)
    expected = 0.5 * x + 2.0 * (model(x, t, y) - 0.5 * x)        # eps_bad + w (eps - eps_bad)
    assert torch.allclose(gs.guided(model, s, x, t, y, {"bad": bad}), expected)
    assert not torch.allclose(expected, samplers.guided_eps(model, x, t, y, 2.0))   # not the unconditional direction
    # a guide equal to the model itself changes nothing, whatever w
    assert torch.allclose(gs.guided(model, s, x, t, y, {"bad": model}), model(x, t, y))
    assert any(st.guide == "cfg_lr_cosine" for st in gs.SETTINGS)
    with pytest.raises(ValueError, match="pass that model in guides"):
        gs.guided(model, s, x, t, y)


def test_samples_start_from_05_ddim50s_seed_40_noise_and_the_table_lists_them(gs, tmp_path):
    model, config, _, _ = load_script("reference_runs")._load("cfg")
    from course_utils.schedules import NoiseSchedule
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])
    s = gs.Setting("w = 1.5 for t < 500", ((1.5, 0, 500),))
    images = gs.sample(model, schedule, s, 2)
    assert images.dtype == torch.uint8 and images.shape == (2, 1, 28, 28)
    # the same x_T as reference_runs' sample_batches(seed=40): a constant w = 1 row equals the conditional sampler
    one = gs.sample(model, schedule, gs._const(1.0), 2)
    ref = samplers.sample_batches(load_script("reference_runs")._OnePass(model, null=False),
                                  samplers.DDIMScheduler(schedule, eta=0.0).set_timesteps(50), 2,
                                  labels=torch.arange(2), seed=40, batch_size=50, progress=False)
    assert torch.equal(one, ((ref.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    scores = gs.measure(2, (s,), tmp_path / "scores.json")
    row = json.loads((tmp_path / "scores.json").read_text())[f"{s.name} | n = 2"]
    assert row == scores[f"{s.name} | n = 2"] and 0 <= row["accuracy"] <= 1 and row["ratio"] > 0
    block = gs.table(scores, 2)
    assert block.startswith(gs.BEGIN) and block.endswith(gs.END) and f"| {s.name} | {100 * row['accuracy']:.1f}% |" in block
    png = gs.plot({**scores, "w = 1 | n = 2": {**row, "setting": "w = 1"}}, 2, tmp_path / "plot.png")
    assert png.stat().st_size > 1000


def test_more_samples_than_the_half_holds_are_refused(gs):
    with pytest.raises(ValueError, match="n must be between 1 and 1000"):
        gs.sample(None, None, gs._const(1.0), 1001)


def test_two_processes_measuring_different_settings_keep_each_others_scores(gs, tmp_path, monkeypatch):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"old | n = 2": {"setting": "old", "n": 2}}))

    def sample_while_the_other_process_writes(model, schedule, setting, n, guides=None):
        on_disk = json.loads(path.read_text())                              # the other process finishes first
        path.write_text(json.dumps({**on_disk, "other | n = 2": {"setting": "other", "n": 2}}))
        return torch.zeros(n, 1, 28, 28, dtype=torch.uint8)

    monkeypatch.setattr(gs, "sample", sample_while_the_other_process_writes)
    monkeypatch.setattr(gs, "score", lambda images: {"accuracy": 1.0, "frechet": 2.0, "ratio": 1.0})
    gs.measure(2, (gs._const(1.25),), path)
    assert set(json.loads(path.read_text())) == {"old | n = 2", "other | n = 2", "w = 1.25 | n = 2"}
    with pytest.raises(SystemExit, match="matches no setting"):
        gs.main(["measure", "--only", "no such setting"])
