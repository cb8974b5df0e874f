"""L_simple and the load-or-train path of the diffusion models (course_utils.diffusion, 04 and 05)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from course_utils.device import cpu_generator, randn
from course_utils.checkpoint import CheckpointError, save_checkpoint
from course_utils.diffusion import UNetArch, diffusion_loss, load_trained_unet, make_unet, train_diffusion, unet_config
from course_utils.profiles import PROFILES
from course_utils.schedules import NoiseSchedule

SCHEDULE = NoiseSchedule("linear", 1000)


class Recorder(torch.nn.Module):
    """Returns zeros and remembers what it was called with."""

    num_classes = 10

    def forward(self, x, t, y=None):
        self.seen = (x, t, y)
        return torch.zeros_like(x)


def test_l_simple_draws_t_then_eps_from_the_generator():
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    m = Recorder()
    loss = diffusion_loss(m, x0, SCHEDULE, generator=cpu_generator(0))
    g = cpu_generator(0)
    t = torch.randint(0, 1000, (4,), generator=g)
    eps = randn(x0.shape, generator=g)
    x_t, t_seen, y_seen = m.seen
    assert torch.equal(t_seen, t) and y_seen is None
    assert torch.allclose(x_t, SCHEDULE.q_sample(x0, t, eps))
    assert loss.item() == pytest.approx(F.mse_loss(torch.zeros_like(eps), eps).item(), rel=1e-6)


def test_label_dropping():
    x0 = torch.zeros(2000, 1, 2, 2)
    y = torch.arange(2000) % 10
    m = Recorder()
    diffusion_loss(m, x0, SCHEDULE, y=y, p_uncond=0.0, generator=cpu_generator(0))
    assert torch.equal(m.seen[2], y)
    diffusion_loss(m, x0, SCHEDULE, y=y, p_uncond=0.1, generator=cpu_generator(0))
    dropped = m.seen[2] == 10
    assert 0.07 < dropped.float().mean().item() < 0.13
    assert torch.equal(m.seen[2][~dropped], y[~dropped])
    diffusion_loss(m, x0, SCHEDULE, y=y, p_uncond=1.0, generator=cpu_generator(0))
    assert (m.seen[2] == 10).all()
    with pytest.raises(ValueError, match="p_uncond"):
        diffusion_loss(m, x0, SCHEDULE, y=y, p_uncond=1.5)


def test_unet_config_roundtrip():
    p = PROFILES["smoke"]
    config = unet_config(p, conditional=True, attention=False)
    assert config["base_channels"] == p.width and config["num_classes"] == 10 and config["attention"] == [False] * 3
    assert config == json.loads(json.dumps(config)) and set(config) == {f.name for f in dataclasses.fields(UNetArch)}
    m = make_unet(config)
    assert m(torch.zeros(1, 1, 28, 28), torch.tensor([5]), torch.tensor([10])).shape == (1, 1, 28, 28)
    with pytest.raises(TypeError, match="widht"):
        unet_config(p, widht=8)                                           # a typo is not silently ignored


def test_train_diffusion_trains_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    p = PROFILES["smoke"]
    arch = unet_config(p, base_channels=8, channel_mults=(1, 2))
    x = torch.rand(p.batch_size, 1, 12, 12) * 2 - 1                       # one batch per epoch
    y = torch.arange(p.batch_size) % 10
    seen = []
    m, hist, config = train_diffusion("tiny_cfg", p, x, y, arch={**arch, "num_classes": 10}, p_uncond=0.1, epochs=2,
                                   on_epoch_end=lambda e, model: seen.append(e))
    assert seen == [0, 1] and not m.training
    assert len(hist["loss"]) == len(hist["lr"]) == 2 and len(hist["epoch_loss"]) == 2
    assert (tmp_path / "checkpoints" / "tiny_cfg.pt").exists()
    assert config["model"] == "UNet" and config["arch"]["num_classes"] == 10
    assert config["task"] == {"schedule": "linear", "T": p.num_timesteps, "p_uncond": 0.1} and config["train"]["epochs"] == 2
    seen.clear()
    m2, hist2, _ = train_diffusion("tiny_cfg", p, x, y, arch={**arch, "num_classes": 10}, p_uncond=0.1, epochs=2,
                                   on_epoch_end=lambda e, model: seen.append(e))
    assert seen == []                                                    # loaded, not retrained
    assert hist2["loss"] == pytest.approx(hist["loss"])
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)

    loaded, config2 = load_trained_unet("tiny_cfg")
    assert config2 == config and all(torch.equal(a, b) for a, b in zip(m.parameters(), loaded.parameters()))


def test_load_trained_unet_refuses_another_model(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    save_checkpoint(tmp_path / "checkpoints" / "ddpm.pt", torch.nn.Linear(2, 2),
                    {"model": "NoisyClassifier", "arch": {}})
    with pytest.raises(CheckpointError, match="does not hold a diffusion UNet.*'NoisyClassifier'"):
        load_trained_unet("ddpm")


def test_keep_raw_saves_the_raw_weights_next_to_the_ema(tmp_path, monkeypatch):
    from course_utils.diffusion import load_raw_unet, raw_weights_path
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    p = PROFILES["smoke"]
    arch = unet_config(p, base_channels=8, channel_mults=(1, 2))
    x = torch.rand(p.batch_size, 1, 12, 12) * 2 - 1
    assert load_raw_unet("tiny_raw", {"arch": arch}) is None                # nothing saved yet
    ema, _, config = train_diffusion("tiny_raw", p, x, arch=arch, epochs=2, keep_raw=True)
    assert raw_weights_path("tiny_raw").exists()
    raw = load_raw_unet("tiny_raw", config)
    assert raw is not None and not raw.training
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))   # EMA lags the raw weights
    other = {**config, "train": {**config["train"], "epochs": 3}}
    assert load_raw_unet("tiny_raw", other) is None                        # saved for another run: refused
    ema2, _, _ = train_diffusion("tiny_raw", p, x, arch=arch, epochs=2, keep_raw=True)   # loaded: raw file kept
    assert load_raw_unet("tiny_raw", config) is not None


def test_shipped_raw_weights_follow_the_shipped_ema(tmp_path, monkeypatch):
    import shutil

    from course_utils.diffusion import load_raw_unet, raw_weights_path
    from course_utils.paths import checkpoint_dir
    p = PROFILES["smoke"]                                                  # use_pretrained: loads data/checkpoints
    arch = unet_config(p, base_channels=8, channel_mults=(1, 2))
    x = torch.rand(p.batch_size, 1, 12, 12) * 2 - 1
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "maker"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    train_diffusion("tiny_ship", p, x, arch=arch, epochs=2, keep_raw=True, batch_size=32)
    shipped = tmp_path / "data" / "checkpoints"
    shipped.mkdir(parents=True)
    shutil.copy(checkpoint_dir() / "tiny_ship.pt", shipped)
    shutil.copy(raw_weights_path("tiny_ship"), shipped)
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "student"))         # a fresh machine: nothing trained here
    ema, _, config = train_diffusion("tiny_ship", p, x[:64], arch=arch, epochs=1, keep_raw=True)   # another budget
    assert config["train"]["n_images"] == 64 and not (checkpoint_dir() / "tiny_ship.pt").exists()      # loaded, not trained
    raw = load_raw_unet("tiny_ship", config)
    assert raw is not None and any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))
    other_task = {**config, "task": {**config["task"], "schedule": "cosine"}}
    assert load_raw_unet("tiny_ship", other_task) is None                    # another model: refused
    from dataclasses import replace
    _, _, config_here = train_diffusion("tiny_ship", replace(p, use_pretrained=False), x[:64], arch=arch, epochs=1,
                                        batch_size=32)                                     # trained here, no raw
    assert load_raw_unet("tiny_ship", config_here) is None                    # the shipped raw is not this run's


def test_train_diffusion_records_its_batch_size(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    p = PROFILES["smoke"]
    arch = unet_config(p, base_channels=8, channel_mults=(1, 2))
    x = torch.rand(64, 1, 12, 12) * 2 - 1
    _, hist, config = train_diffusion("tiny_bs", p, x, arch=arch, epochs=1, batch_size=16)
    assert config["train"]["batch_size"] == 16 and len(hist["loss"]) == 4      # 64 images in batches of 16


def test_a_student_loss_term_trains_through_the_same_draws(tmp_path, monkeypatch):
    from course_utils.diffusion import l_simple
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    y = torch.arange(6) % 10
    calls = []

    def my_loss(model, x0, t, eps, schedule, y=None, drop=None):         # another way to write L_simple
        calls.append((t, eps, drop))
        ab = schedule.alpha_bar[t][:, None, None, None]
        x_t = (1 - ab).sqrt() * eps + ab.sqrt() * x0
        labels = y.masked_fill(drop, model.num_classes) if drop is not None else y
        return (model(x_t, t, labels) - eps).pow(2).mean()

    net = make_unet(unet_config(PROFILES["smoke"], base_channels=8, channel_mults=(1, 2), num_classes=10))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    want = diffusion_loss(net, x0, SCHEDULE, y=y, p_uncond=0.5, generator=cpu_generator(3))
    got = diffusion_loss(net, x0, SCHEDULE, y=y, p_uncond=0.5, generator=cpu_generator(3), loss=my_loss)
    assert torch.allclose(got, want, atol=1e-6) and calls[0][2].dtype == torch.bool
    t, eps, drop = calls[0]
    assert torch.allclose(l_simple(net, x0, t, eps, SCHEDULE, y=y, drop=drop), want, atol=1e-6)

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    p = dataclasses.replace(PROFILES["smoke"], use_pretrained=True)
    arch = unet_config(p, base_channels=8, channel_mults=(1, 2))
    _, _, config = train_diffusion("tiny_student", p, torch.rand(p.batch_size, 1, 12, 12) * 2 - 1, arch=arch,
                                   epochs=1, loss=my_loss)
    assert config["train"]["loss"] == "my_loss" and len(calls) == 2   # trained here with the student's loss


def test_v_prediction_trains_loads_and_samples_as_a_noise_predictor(tmp_path, monkeypatch):
    from course_utils.diffusion import EpsFromV, l_simple_v, v_target
    x0 = torch.rand(5, 1, 6, 6) * 2 - 1
    g = cpu_generator(1)
    t, eps = torch.randint(0, 1000, (5,), generator=g), randn(x0.shape, generator=g)
    ab = SCHEDULE.alpha_bar[t].view(-1, 1, 1, 1)
    x_t = SCHEDULE.q_sample(x0, t, eps)
    v = v_target(x0, eps, ab)
    oracle = lambda x, tt: v                                                  # noqa: E731 - a perfect v-network
    assert torch.allclose(EpsFromV(oracle_module(oracle), SCHEDULE.alpha_bar)(x_t, t), eps, atol=1e-5)
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 999\]"):      # not a raw IndexError
        EpsFromV(oracle_module(oracle), SCHEDULE.alpha_bar)(x_t, t + 1000)
    assert l_simple_v(oracle_module(oracle), x0, t, eps, SCHEDULE).item() < 1e-10
    # in eps terms the v-loss is L_simple weighted by 1 / (1 - alpha_bar_t)
    zero = oracle_module(lambda x, tt: torch.zeros_like(x))
    want = ((v.square()).mean(dim=(1, 2, 3))).mean()
    assert torch.allclose(l_simple_v(zero, x0, t, eps, SCHEDULE), want)

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    p = PROFILES["smoke"]
    arch = unet_config(p, base_channels=8, channel_mults=(1, 2))
    x = torch.rand(p.batch_size, 1, 12, 12) * 2 - 1
    model, _, config = train_diffusion("tiny_v", p, x, arch=arch, epochs=1, prediction="v")
    assert isinstance(model, EpsFromV) and config["task"]["prediction"] == "v"
    loaded, config2 = load_trained_unet("tiny_v")
    assert isinstance(loaded, EpsFromV) and config2 == config
    probe_x, probe_t = torch.randn(2, 1, 12, 12), torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.allclose(loaded(probe_x, probe_t), model(probe_x, probe_t), atol=1e-6)
    _, _, eps_config = train_diffusion("tiny_eps", p, x, arch=arch, epochs=1)
    assert "prediction" not in eps_config["task"], "eps checkpoints keep the identity the shipped ones have"
    with pytest.raises(ValueError, match="prediction"):
        train_diffusion("tiny_x", p, x, arch=arch, epochs=1, prediction="x0")


def oracle_module(fn):
    class Wrapped(torch.nn.Module):
        def forward(self, x, t, y=None):
            return fn(x, t)
    return Wrapped()
