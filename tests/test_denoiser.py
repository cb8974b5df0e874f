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
    m, hist, cfg = D.train_denoiser(prof, x, probe=probe, lr=5e-3, name="t_denoiser", verbose=False)
    assert len(hist["loss"]) == 8 and len(hist["epoch_loss"]) == 2
    assert hist["epoch_loss"][-1] < hist["epoch_loss"][0]
    assert torch.tensor(hist["probe_first_epoch"]).shape == (3, 1, 12, 12)
    assert torch.allclose(torch.tensor(hist["probe_last_epoch"]), D.denoise(m, probe), atol=1e-5)
    assert cfg["model"] == "DenoiserUNet" and cfg["arch"] == {"in_channels": 1, "width": 4}
    assert cfg["task"] == {"sigma": D.TRAIN_SIGMA} and cfg["train"]["epochs"] == 2
    m2, hist2, _ = D.train_denoiser(prof, x, probe=probe, lr=5e-3, name="t_denoiser", verbose=False)   # reload
    assert hist2["probe_first_epoch"] == hist["probe_first_epoch"]
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


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
