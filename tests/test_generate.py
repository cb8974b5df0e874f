"""The generate command: output format, determinism, usage errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from course_utils.checkpoint import save_checkpoint
from course_utils.diffusion import make_unet, unet_config
from course_utils.generate import generate
from course_utils.profiles import get_profile


@pytest.fixture()
def tiny_models(tmp_path, monkeypatch):
    """Untrained but valid ddpm and cfg checkpoints in a temporary output folder."""
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    prof = get_profile("smoke")
    for name, cond in (("ddpm", False), ("cfg", True)):
        arch = unet_config(prof, conditional=cond, base_channels=8)
        torch.manual_seed(0)
        model = make_unet(arch)
        for p in model.conv_out.parameters():   # non-zero output so samples depend on the model
            torch.nn.init.normal_(p, std=0.1)
        save_checkpoint(tmp_path / "checkpoints" / f"{name}.pt", model, {"arch": arch, "schedule": "linear", "T": 1000})
    return tmp_path


def test_generate_format_and_determinism(tiny_models):
    images, labels = generate("cfg", num=12, steps=3, seed=1, progress=False)
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(12)]
    again, _ = generate("cfg", num=12, steps=3, seed=1, progress=False)
    other, _ = generate("cfg", num=12, steps=3, seed=2, progress=False)
    assert np.array_equal(images, again)
    assert not np.array_equal(images, other)


def test_generate_unconditional_labels_are_minus_one(tiny_models):
    _, labels = generate("ddpm", num=3, steps=2, progress=False)
    assert labels.tolist() == [-1, -1, -1]
    _, labels = generate("cfg", num=3, steps=2, label=7, progress=False)
    assert labels.tolist() == [7, 7, 7]


def test_generate_bad_arguments_raise():
    with pytest.raises(ValueError, match="unconditional"):
        generate("ddpm", num=2, label=3)
    with pytest.raises(ValueError, match="digit"):
        generate("cfg", num=2, label=10)


def _cli(*args, env_dir=None):
    import os
    env = dict(os.environ)
    if env_dir:
        env["COURSE_OUTPUT"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", "course_utils", "generate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--num", "0"], "--num"),
    (["--label", "11"], "--label"),
    (["--model", "ddpm", "--label", "3"], "conditional"),
    (["--eta", "1.5"], "--eta"),
    (["--steps", "5000"], "--steps"),
    (["--model", "nope"], "invalid choice"),
])
def test_cli_usage_errors_are_not_tracebacks(args, message, capsys):
    from course_utils.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_writes_npz(tiny_models, tmp_path):
    out = tmp_path / "s.npz"
    r = _cli("--model", "cfg", "--num", "4", "--steps", "2", "--label", "3", "--out", str(out), env_dir=tiny_models)
    assert r.returncode == 0, r.stderr
    data = np.load(out)
    assert data["images"].shape == (4, 28, 28) and data["labels"].tolist() == [3, 3, 3, 3]


def test_cli_missing_checkpoint_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from course_utils.__main__ import main
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "empty"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "no-data"))
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--model", "cfg", "--num", "2"])
    assert exit_info.value.code == 1
    assert "no checkpoint for model 'cfg'" in capsys.readouterr().err


def test_generate_ldm_decodes_to_images(tiny_models):
    from course_utils.autoencoder import KLAutoencoder
    from course_utils.latent import ldm_config
    prof = get_profile("smoke")
    torch.manual_seed(0)
    ae = KLAutoencoder(4, 8)
    save_checkpoint(tiny_models / "checkpoints" / "autoencoder.pt", ae, {"arch": {"latent_channels": 4, "width": 8}})
    arch = ldm_config(prof)
    save_checkpoint(tiny_models / "checkpoints" / "ldm.pt", make_unet(arch),
                    {"arch": arch, "schedule": "linear", "T": 1000, "n_images": 64})
    images, labels = generate("ldm", num=4, steps=2, label=5, progress=False)
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [5, 5, 5, 5]


def test_default_guidance_reads_notebook_05_then_the_manifest(tmp_path, monkeypatch):
    import json

    from course_utils import generate as gen
    run, shipped = tmp_path / "run", tmp_path / "shipped"
    run.mkdir()
    shipped.mkdir()
    monkeypatch.setattr(gen, "output_dir", lambda: run)
    monkeypatch.setattr(gen, "shipped_checkpoint_dir", lambda: shipped)
    assert gen.default_guidance() == gen.FALLBACK_GUIDANCE                 # nothing recorded yet
    (shipped / "manifest.json").write_text(json.dumps({"best_w": 5.0}))
    assert gen.default_guidance() == 5.0                                   # the shipped models' sweep
    (run / "05_best_w.json").write_text("{not json")
    assert gen.default_guidance() == 5.0                                   # a broken record is skipped
    (run / "05_best_w.json").write_text(json.dumps({"best_w": 2.0}))
    assert gen.default_guidance() == 2.0                                   # this student's own run wins
