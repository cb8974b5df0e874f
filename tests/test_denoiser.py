"""The plain UNet denoiser of notebook 03 (course_utils.denoiser)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from course_utils import denoiser as D
from course_utils.profiles import get_profile


def _x(n: int = 2, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_unet_shapes_and_walk():
    torch.manual_seed(0)
    m = D.DenoiserUNet(width=8)
    x = _x()
    assert m(x).shape == x.shape
    stages = D.shape_walk(m, x)
    assert [n for n, _ in stages] == ["input", "inc", "down1", "down2", "up1", "up2", "out"]
    assert dict(stages)["down2"] == (2, 32, 7, 7) and dict(stages)["up1"] == (2, 16, 14, 14)
    assert m(_x(1, 13)).shape == (1, 1, 13, 13)                           # odd sizes work too
    assert D.count_parameters(m) == sum(p.numel() for p in m.parameters())


def test_conv_block_and_skip():
    torch.manual_seed(0)
    block = D.ConvBlock(3, 8)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(block(x), D.conv_block_forward(x, block))
    assert block(x).shape == (2, 8, 6, 6)
    h, skip = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 6, 6)
    out = D.up_and_concat(h, skip)
    assert out.shape == (2, 9, 6, 6)
    assert torch.equal(out[:, 4:], skip) and torch.equal(out[:, :4, ::2, ::2], h)


def test_noise_and_loss():
    x = _x()
    eps = torch.randn_like(x)
    assert torch.equal(D.add_noise(x, 0.0, eps), x)
    assert torch.allclose(D.add_noise(x, 0.5, eps), x + 0.5 * eps)
    ident = torch.nn.Identity()
    assert D.denoising_loss(ident, x, 0.5, eps).item() == pytest.approx((0.25 * eps ** 2).mean().item(), rel=1e-5)
    m = D.DenoiserUNet(width=4).train()
    out = D.denoise(m, x, batch_size=1)
    assert out.shape == x.shape and m.training                           # restores the mode
    assert torch.allclose(out, D.denoise(m, x), atol=1e-5)


def test_train_denoiser_loss_decreases_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    prof = dataclasses.replace(get_profile("smoke"), batch_size=16, width=4, epoch_budget={"denoiser": 2})
    x = _x(64, 12)
    probe = x[:3] + 0.5 * torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    m, hist, config = D.train_denoiser(prof, x, probe=probe, lr=5e-3, name="t_denoiser", verbose=False)
    assert len(hist["loss"]) == 8 and len(hist["epoch_loss"]) == 2
    assert hist["epoch_loss"][-1] < hist["epoch_loss"][0]
    assert torch.tensor(hist["probe_first_epoch"]).shape == (3, 1, 12, 12)
    assert torch.allclose(torch.tensor(hist["probe_last_epoch"]), D.denoise(m, probe), atol=1e-5)
    assert config["model"] == "DenoiserUNet" and config["arch"] == {"in_channels": 1, "width": 4}
    assert config["task"] == {"sigma": D.TRAIN_SIGMA} and config["train"]["epochs"] == 2
    m2, hist2, _ = D.train_denoiser(prof, x, probe=probe, lr=5e-3, name="t_denoiser", verbose=False)   # reload
    assert hist2["probe_first_epoch"] == hist["probe_first_epoch"]
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


def test_unet_forward_is_the_forward_pass():
    torch.manual_seed(0)
    m = D.DenoiserUNet(width=4)
    x = _x(2, 13)
    assert torch.equal(D.unet_forward(x, m), m(x))
    h1 = m.inc(x)                                                            # the U, written out
    h2 = m.down1.block(torch.nn.functional.max_pool2d(h1, 2))
    h3 = m.down2.block(torch.nn.functional.max_pool2d(h2, 2))
    h = m.up2.block(D.up_and_concat(m.up1.block(D.up_and_concat(h3, h2)), h1))
    assert torch.allclose(m.out(h), m(x), atol=1e-6)


def test_train_step_updates_and_returns_the_loss_before_and_its_stats():
    torch.manual_seed(0)
    m = D.DenoiserUNet(width=4)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x, eps = _x(4, 12), torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    before = D.denoising_loss(m, x, 0.5, eps).detach()
    w0 = [p.detach().clone() for p in m.parameters()]
    loss, stats = D.train_step(m, opt, x, 0.5, eps)
    assert loss.shape == () and not loss.requires_grad and torch.allclose(loss, before)
    assert all(not torch.equal(a, p) for a, p in zip(w0, m.parameters()))
    assert D.denoising_loss(m, x, 0.5, eps).item() < before.item()
    moved = torch.cat([(p.detach() - a).flatten() for a, p in zip(w0, m.parameters())]).norm().item()
    assert set(stats) == {"grad_norm", "update_norm"} and all(type(v) is float for v in stats.values())
    assert stats["update_norm"] == pytest.approx(moved, rel=1e-4)
    m.eval()
    D.train_step(m, opt, x, 0.5, eps, grad_clip=None)
    assert m.training                                                        # the step trains in training mode


def test_train_step_clips_and_reports_the_norm_before_clipping():
    """With plain SGD the update is lr times the clipped gradient: its norm is lr * min(grad_norm, grad_clip)."""
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        m = D.DenoiserUNet(width=4)
        x, eps = _x(4, 12), torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(3))
        D.denoising_loss(m, x, 0.5, eps).backward()
        norm = torch.cat([p.grad.flatten() for p in m.parameters()]).norm().item()
        m.zero_grad()
        for p in m.parameters():                                             # stale gradients must not count
            p.grad = torch.ones_like(p)
        _, stats = D.train_step(m, torch.optim.SGD(m.parameters(), lr=0.1), x, 0.5, eps, grad_clip=clip)
        assert stats["grad_norm"] == pytest.approx(norm, rel=1e-4)
        assert stats["update_norm"] == pytest.approx(0.1 * min(norm, clip or norm), rel=1e-3)
        assert clip is None or norm > 10 * clip                              # the clipped case really clipped


def _prof():
    return dataclasses.replace(get_profile("smoke"), batch_size=16, width=4, epoch_budget={"denoiser": 2})


def test_train_denoiser_with_the_reference_step_and_unet_matches_the_recipe(tmp_path, monkeypatch):
    """The hooks change who computes, not what: the reference step and a subclass give the recipe's weights."""
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    x = _x(64, 12)

    class MyUNet(D.DenoiserUNet):
        def forward(self, x):
            return D.unet_forward(x, self)

    m0, h0, c0 = D.train_denoiser(_prof(), x, lr=5e-3, name="t_recipe", verbose=False)
    m1, h1, c1 = D.train_denoiser(_prof(), x, lr=5e-3, name="t_hooks", verbose=False, step=D.train_step, unet=MyUNet)
    assert type(m1) is MyUNet
    assert c1["train"]["step"] == "train_step" and c1["train"]["unet"] == "MyUNet" and "step" not in c0["train"]
    assert {k: v for k, v in c1["train"].items() if k not in ("step", "unet")} == c0["train"]
    assert h1["loss"] == pytest.approx(h0["loss"], rel=1e-5)
    assert len(h1["grad_norm"]) == len(h1["update_norm"]) == len(h1["loss"]) and "grad_norm" not in h0
    for a, b in zip(m0.state_dict().values(), m1.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_denoiser_with_a_student_step_never_takes_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    calls = []

    def my_step(model, optimizer, x, sigma, eps):
        calls.append(sigma)
        return D.train_step(model, optimizer, x, sigma, eps)[0]            # the loss alone is fine too

    prof = dataclasses.replace(_prof(), use_pretrained=True, epoch_budget={"denoiser": 1})
    _, hist, config = D.train_denoiser(prof, _x(32, 8), sigma=0.3, name="t_student", verbose=False, step=my_step)
    assert calls == [0.3, 0.3] and len(hist["loss"]) == 2 and config["train"]["step"] == "my_step"
    assert "grad_norm" not in hist


def test_a_student_step_resumes_a_killed_run(tmp_path, monkeypatch, capsys):
    """The optimizer the step updates is the one train() saves: a killed run ends where an uninterrupted one does."""
    from course_utils import training
    x = _x(32, 10)

    def run():
        return D.train_denoiser(_prof(), x, probe=x[:2], lr=5e-3, name="t_resume", step=D.train_step, verbose=False)

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "ref"))
    ref_model, ref_hist, _ = run()
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "killed"))
    real_save = training.atomic_save

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt("the kernel died")

    monkeypatch.setattr(training, "atomic_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(training, "atomic_save", real_save)
    capsys.readouterr()
    model, hist, _ = run()
    assert "after epoch 1 of 2" in capsys.readouterr().out
    assert hist == ref_hist
    assert all(torch.equal(v, ref_model.state_dict()[k]) for k, v in model.state_dict().items())


# --- bad input ---------------------------------------------------------------------------------------------

def test_bad_input():
    m = D.DenoiserUNet(width=4)
    x = _x()
    with pytest.raises(ValueError, match=r"shape \(B, 1, H, W\)"):
        m(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="float tensor"):
        m(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="has 3 channels, expected 1"):
        m(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="at least 4x4"):
        m(torch.zeros(1, 1, 3, 28))
    with pytest.raises(ValueError, match="width must be a positive int"):
        D.DenoiserUNet(width=0)
    with pytest.raises(ValueError, match="in_ch must be a positive int"):
        D.ConvBlock(0, 4)
    with pytest.raises(ValueError, match="has 2 channels, expected 3"):
        D.conv_block_forward(torch.zeros(1, 2, 4, 4), D.ConvBlock(3, 4))
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        D.add_noise(x, -0.1, torch.zeros_like(x))
    with pytest.raises(ValueError, match="eps has shape"):
        D.add_noise(x, 0.5, torch.zeros(2, 1, 28, 27))
    with pytest.raises(ValueError, match="must be smaller than skip"):
        D.up_and_concat(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="batch"):
        D.up_and_concat(torch.zeros(2, 2, 2, 2), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        D.denoise(m, x, batch_size=0)
    prof = get_profile("smoke")
    with pytest.raises(ValueError, match="at least one batch of 128"):
        D.train_denoiser(prof, _x(4), verbose=False)
    with pytest.raises(ValueError, match="has 3 channels"):
        D.train_denoiser(prof, torch.zeros(200, 3, 28, 28), verbose=False)
    with pytest.raises(TypeError, match="step must be a function"):
        D.train_denoiser(prof, _x(200), step="train_step", verbose=False)
    with pytest.raises(TypeError, match="unet must be an nn.Module class"):
        D.train_denoiser(prof, _x(200), unet=D.DenoiserUNet(width=4), verbose=False)


def test_bad_student_pieces(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))

    class Wrong(torch.nn.Module):
        def __init__(self, in_channels=1, width=4):
            super().__init__()
            self.conv = torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)

    with pytest.raises(ValueError, match="must have the layers of DenoiserUNet"):
        D.train_denoiser(_prof(), _x(32, 8), unet=Wrong, name="t_wrong", verbose=False)
    with pytest.raises(TypeError, match="must return the loss as a scalar tensor"):
        D.train_denoiser(_prof(), _x(32, 8), step=lambda m, o, x, s, e: 0.5, name="t_float", verbose=False)
    with pytest.raises(TypeError, match=r"or \(loss, dict of numbers\)"):
        D.train_denoiser(_prof(), _x(32, 8), step=lambda m, o, x, s, e: (torch.zeros(()), 1.0), name="t_pair",
                         verbose=False)
