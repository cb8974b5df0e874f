"""benchmarks/reference_runs.py: rows are sampled in two resumable halves and scored over both."""
from __future__ import annotations


import pytest
import torch

from course_tools.benchmarks_md import load_script


def _module():
    return load_script("reference_runs")


def test_every_notebook_run_is_specified_with_the_notebooks_sweeps():
    ref = _module()
    assert set(ref.RUNS_SPEC) == {"04_ddpm", "04_ddim50", "05_w_sweep", "06_steps", "07_latent", "05_ddim50",
                                  "06_ddpm_1000", "06_cfg_1000"}
    for run in ("04_ddim50", "05_ddim50", "07_latent"):                # issue 15's targets: n >= 2000
        assert ref.N_PER_SEED_OF[run] * len(ref.SEEDS) >= 2000
    steps = {row.name: row.steps for row in ref.RUNS_SPEC["06_ddpm_1000"][1]}     # issue 15: DDIM-50 vs DDPM-1000
    assert sorted(steps.values()) == [50, 1000]
    assert [row.w for row in ref.RUNS_SPEC["05_w_sweep"][1]] == list(ref.W_SWEEP)
    assert {row.eta for row in ref.RUNS_SPEC["06_steps"][1]} == {0.0, 1.0}
    assert ref.N_PER_SEED * len(ref.SEEDS) >= 1000                   # issue 15: n = 1000 for the small differences


def test_the_reference_network_runs_channels_last_with_the_same_output():
    ref = _module()
    from course_utils.diffusion import make_unet
    model, config, _, shape = ref._load("ddpm")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = make_unet(config["arch"])
    plain.load_state_dict({k: v.contiguous() for k, v in (model.net if hasattr(model, "net") else model).state_dict().items()})
    x, t = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 900])
    with torch.no_grad():
        expected = ref.as_eps_model(plain, config["task"]).eval()(x, t)
        torch.testing.assert_close(model(x, t), expected, atol=1e-4, rtol=1e-4)


def test_one_pass_rows_match_guided_eps():
    ref = _module()
    from course_utils.samplers import guided_eps
    from course_utils.unet import UNet
    torch.manual_seed(0)
    model = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False), num_classes=10).eval()
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([1, 500, 999]), torch.tensor([3, 1, 4])
    with torch.no_grad():
        for w, null in ((0.0, True), (1.0, False)):
            torch.testing.assert_close(ref._OnePass(model, null)(x, t, y), guided_eps(model, x, t, y, w), atol=1e-5, rtol=0)


def test_run_resumes_by_half_and_scores_both(tmp_path, monkeypatch):
    ref = _module()
    monkeypatch.setattr(ref, "RUNS", tmp_path)
    monkeypatch.setattr(ref, "N_PER_SEED", 6)
    row = ref.Row("DDIM eta=0 2", "ddim", 2, eta=0.0, w=2.0)
    monkeypatch.setitem(ref.RUNS_SPEC, "06_steps", ("cfg", (row, ref.Row("DDIM eta=0 1", "ddim", 1, eta=0.0, w=2.0))))
    from course_utils.unet import UNet
    model = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False), num_classes=10).eval()
    monkeypatch.setattr(ref, "_load", lambda name: (model, {"task": {"schedule": "linear", "T": 1000},
                                                           "arch": {"num_classes": 10}}, None, (1, 28, 28)))
    monkeypatch.setattr(ref.metrics, "class_histogram", lambda x: torch.full((10,), 0.1))
    monkeypatch.setattr(ref.metrics, "evaluate_samples",
                        lambda x, y=None: {"frechet": float(len(x)), "floor": 1.0, "ratio": float(len(x)), "accuracy": 0.5})
    ref.run("06_steps", seed=41)                                          # one lane: only its half
    assert sorted(p.name for p in (tmp_path / "06_steps").iterdir()) == ["DDIM_eta0_1.s41.pt", "DDIM_eta0_2.s41.pt"]
    with pytest.raises(SystemExit, match=r"--seed must be one of the halves' seeds \(40, 41\), got 7"):
        ref.run("06_steps", seed=7)
    ref.run("06_steps")
    halves = sorted(p.name for p in (tmp_path / "06_steps").iterdir())           # every half of every row
    assert halves == ["DDIM_eta0_1.s40.pt", "DDIM_eta0_1.s41.pt", "DDIM_eta0_2.s40.pt", "DDIM_eta0_2.s41.pt"]
    first = (tmp_path / "06_steps" / halves[0]).stat().st_mtime_ns
    ref.run("06_steps")                                                   # nothing left: nothing redrawn
    assert (tmp_path / "06_steps" / halves[0]).stat().st_mtime_ns == first
    entry = ref.score("06_steps")
    r = entry["rows"]["DDIM eta=0 2"]
    assert entry["n"] == 12 and r["ratio"] == 12 and r["ratio_per_seed"] == [6, 6] and r["w"] == 2.0
    assert "accuracy" in r and r["sampler"] == "DDIM-2, eta 0" and len(r["hist"]) == 10
    import datetime
    assert entry["date"] == datetime.date.today().isoformat()            # the day its halves were sampled
    for p in (tmp_path / "06_steps").iterdir():                           # sampled on earlier days, exported today
        half = torch.load(p, weights_only=True)
        torch.save({**half, "date": "2026-12-01" if "eta0_1" in p.name else "2026-12-02"}, p)
    assert ref.score("06_steps")["date"] == "2026-12-02"                # the newest half, not the export's day
    (tmp_path / "06_steps" / "DDIM_eta0_2.s41.pt").unlink()
    entry = ref.score("06_steps")
    assert list(entry["rows"]) == ["DDIM eta=0 1"] and entry["date"] == "2026-12-01"   # a row needs both halves


def test_halves_of_other_weights_are_sampled_again_and_never_scored(tmp_path, monkeypatch):
    ref = _module()
    monkeypatch.setattr(ref, "RUNS", tmp_path)
    monkeypatch.setattr(ref, "N_PER_SEED", 4)
    monkeypatch.setitem(ref.RUNS_SPEC, "06_steps", ("cfg", (ref.Row("DDIM eta=0 1", "ddim", 1, eta=0.0, w=2.0),)))
    from course_utils.unet import UNet
    model = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False), num_classes=10).eval()
    monkeypatch.setattr(ref, "_load", lambda name: (model, {"task": {"schedule": "linear", "T": 1000},
                                                           "arch": {"num_classes": 10}}, None, (1, 28, 28)))
    monkeypatch.setattr(ref.metrics, "class_histogram", lambda x: torch.full((10,), 0.1))
    monkeypatch.setattr(ref.metrics, "evaluate_samples",
                        lambda x, y=None: {"frechet": 2.0, "floor": 1.0, "ratio": 2.0, "accuracy": 0.5})
    monkeypatch.setattr(ref, "_weights_sha", lambda name: "sha-of-the-old-cfg")
    ref.run("06_steps")
    assert list(ref.score("06_steps")["rows"]) == ["DDIM eta=0 1"]
    monkeypatch.setattr(ref, "_weights_sha", lambda name: "sha-of-a-retrained-cfg")     # the model is re-exported
    assert ref.score("06_steps")["rows"] == {}                   # its predecessor's samples are not scored
    ref.run("06_steps")                                          # and are drawn again
    halves = sorted((tmp_path / "06_steps").iterdir())
    assert len(halves) == 2 and all(torch.load(p, weights_only=True)["weights_sha256"] == "sha-of-a-retrained-cfg"
                                    for p in halves)
    assert list(ref.score("06_steps")["rows"]) == ["DDIM eta=0 1"]


def test_the_weights_of_a_run_are_the_manifests():
    import json
    from course_utils.paths import shipped_checkpoint_dir
    ref, models = _module(), json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())["models"]
    assert ref._weights_sha("ddpm") == models["ddpm"]["sha256"]
    assert ref._weights_sha("ldm") == models["ldm"]["sha256"] + "+" + models["autoencoder"]["sha256"]


def _fake_entry(ref, name, acc):
    model, rows = ref.RUNS_SPEC[name]
    return {"model": model, "n": 1000, "date": "2026-12-02", "rows": {
        row.name: {"w": row.w, "sampler": "DDPM-50 respaced (beta_tilde)", "accuracy": acc(row.w),
                   "frechet": 100 + 10 * abs((row.w or 0) - 2), "ratio": 4.0} for row in rows}}


def test_export_writes_the_runs_and_where_best_w_comes_from(tmp_path, monkeypatch):
    import json
    ref = _module()
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    folder = tmp_path / "data" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"models": {}, "best_w": 2.0, "best_w_from": {"n_per_w": 125}}))
    monkeypatch.setattr(ref, "score", lambda name: _fake_entry(ref, name, lambda w: 1.0 if (w or 0) >= 2 else 0.5))
    ref.export()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["references"]) == set(ref.RUNS_SPEC)
    assert manifest["best_w"] == 2.0 and manifest["best_w_from"]["n_per_w"] == 1000      # the n = 1000 sweep
    assert manifest["best_w_from"]["sweep"]["2.0"]["accuracy"] == 1.0
    # a sweep that picks another w leaves best_w and its provenance alone (the cfg scores were measured at it)
    monkeypatch.setattr(ref, "score", lambda name: _fake_entry(ref, name, lambda w: 1.0 if (w or 0) >= 3 else 0.5))
    (folder / "manifest.json").write_text(json.dumps({"models": {}, "best_w": 2.0, "best_w_from": {"n_per_w": 125}}))
    ref.export()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["best_w"] == 2.0 and manifest["best_w_from"] == {"n_per_w": 125}


def _ref_row(ratio, acc=None, w=None, frechet=50.0):
    r = {"ratio": ratio, "ratio_per_seed": [ratio * 0.7, ratio * 0.7], "w": w, "sampler": "DDIM-50, eta 0",
         "frechet": frechet}
    return r if acc is None else {**r, "accuracy": acc}


def test_targets_read_each_issue_15_target_off_its_run():
    ref = _module()
    manifest = {"models": {"ddpm": {"metrics": {"n": 2000.0, "ratio": 1.4}}}, "references": {
        "05_ddim50": {"n": 2000, "rows": {"DDIM eta=0 50 w=1": _ref_row(1.1, 0.96, 1.0),
                                          "DDIM eta=0 50": _ref_row(1.6, 0.999, 2.0)}},
        "07_latent": {"n": 2000, "rows": {"a": _ref_row(2.4, 0.9995, 2.0), "b": _ref_row(1.4, 0.991, 1.5)}},
        "06_ddpm_1000": {"n": 1000, "rows": {"DDPM-1000 beta_tilde": _ref_row(2.0, frechet=40.0),
                                             "DDIM eta=0 50": _ref_row(2.5, frechet=59.0)}}}}
    met = [ok for _, _, _, ok in ref.targets(manifest)]
    assert met == ["yes", "no", "no", "yes, at w = 1.5", "yes", "open"]  # 96% < 97%; ratio 1.6 > 1.5; 59 / 40 < 1.5
    manifest["references"]["05_ddim50"]["rows"]["DDIM eta=0 50 w=1.25"] = _ref_row(1.45, 0.996, 1.25)
    best_w = ref.targets(manifest)[2]
    assert "other w: 1.25: 99.60% / 1.45" in best_w[1] and best_w[3] == "no at the chosen w; yes at w = 1.25"
    manifest["references"]["06_ddpm_1000"]["rows"]["DDIM eta=0 50"]["frechet"] = 61.0
    del manifest["references"]["05_ddim50"]
    met = [ok for _, _, _, ok in ref.targets(manifest)]
    assert met == ["yes", "open", "open", "yes, at w = 1.5", "no", "open"]
    manifest["references"]["06_cfg_1000"] = {"n": 1000, "rows": {"DDPM-1000 beta_tilde w=1": _ref_row(1.2, frechet=30.0),
                                                                 "DDIM eta=0 50 w=1": _ref_row(1.3, frechet=36.0)}}
    last = ref.targets(manifest)[-1]
    assert last[0].endswith("class-conditional, w = 1") and last[1].endswith("1.20x") and last[3] == "yes"
    # the DDPM's reference run (two halves at n = 2000) stands in for the export's one draw
    manifest["references"]["04_ddim50"] = {"n": 2000, "rows": {"DDIM eta=0 50": _ref_row(1.6)}}
    ddpm = ref.targets(manifest)[0]
    assert ddpm[1] == "ratio 1.60 (halves 1.12 / 1.12)" and ddpm[2] == "2000, DDIM-50, eta 0" and ddpm[3] == "no"
    assert len(ref.targets(manifest)) == 6                  # no full chain in 04_ddim50: no second DDIM-vs-DDPM row
    # with the full chain at n = 2000 too: context on the DDPM's row, and DDIM-50's gap measured at that n
    manifest["references"]["04_ddim50"]["rows"]["DDPM-1000 beta_tilde"] = _ref_row(0.9, frechet=15.0)
    manifest["references"]["04_ddim50"]["rows"]["DDIM eta=0 50"]["frechet"] = 24.0
    rows = ref.targets(manifest)
    assert rows[0][1] == "ratio 1.60 (halves 1.12 / 1.12); with the full 1000-step chain (DDPM-1000): ratio 0.90 (halves 0.63 / 0.63)"
    assert rows[0][3] == "no"                                 # the target names DDIM-50: the full chain is context
    gap = [r for r in rows if r[2] == "2000, 04_ddim50"]
    assert len(gap) == 1 and gap[0][1] == "DDIM-50 24.0, DDPM-1000 15.0: 1.60x" and gap[0][3] == "no"
