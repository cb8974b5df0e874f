"""The generate command (course_tools.generate): output format, determinism, usage errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from course_tools.__main__ import main
from course_tools.generate import generate
from course_utils.checkpoint import RunConfig, save_checkpoint, weights_digest
from course_utils.diffusion import make_unet, unet_config
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
        task = {"schedule": "linear", "T": 1000, "p_uncond": 0.1 if cond else 0.0}
        save_checkpoint(tmp_path / "checkpoints" / f"{name}.pt", model, RunConfig("UNet", arch, task).as_dict())
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
    env = dict(os.environ)
    if env_dir:
        env["COURSE_OUTPUT"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", "course_tools", "generate", *args], capture_output=True, text=True,
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
    save_checkpoint(tiny_models / "checkpoints" / "autoencoder.pt", ae,
                    RunConfig("KLAutoencoder", {"latent_channels": 4, "width": 8}).as_dict())
    config = RunConfig("UNet", ldm_config(prof), {"schedule": "linear", "T": 1000, "p_uncond": 0.1},
                       train={"n_images": 64}, depends={"autoencoder": weights_digest(ae)})
    save_checkpoint(tiny_models / "checkpoints" / "ldm.pt", make_unet(config.arch), config.as_dict())
    images, labels = generate("ldm", num=4, steps=2, label=5, progress=False)
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [5, 5, 5, 5]


def test_default_guidance_is_the_recorded_best_w(tiny_models, monkeypatch):
    """Without --guidance, generate samples at deliverables.best_w(): a recorded w changes the images."""
    from course_utils.deliverables import record_best_w

    monkeypatch.setenv("COURSE_DATA", str(tiny_models / "no-data"))           # no shipped manifest
    scores = {0.0: {"accuracy": 0.1}, 1.0: {"accuracy": 0.5}, 7.0: {"accuracy": 0.9}}
    record_best_w(7.0, scores)
    at_7, _ = generate("cfg", num=4, steps=2, seed=3, progress=False)
    assert np.array_equal(at_7, generate("cfg", num=4, steps=2, seed=3, guidance=7.0, progress=False)[0])
    record_best_w(0.0, scores)
    assert not np.array_equal(at_7, generate("cfg", num=4, steps=2, seed=3, progress=False)[0])
