"""The diffusion UNet and its time embedding (course_utils.unet, notebooks 04, 05, 07)."""
from __future__ import annotations

import math

import pytest
import torch

from course_utils.unet import UNet, count_parameters, timestep_embedding


def tiny(**kw) -> UNet:
    torch.manual_seed(0)
    return UNet(**{"base_channels": 8, "channel_mults": (1, 2), "attention": (False, True), **kw}).eval()


def test_timestep_embedding_formula():
    t = torch.tensor([0, 1, 7, 999])
    emb = timestep_embedding(t, 16)
    assert emb.shape == (4, 16) and emb.dtype == torch.float32
    i = 3
    w = 10000 ** (-i / 8)
    assert emb[2, i].item() == pytest.approx(math.sin(7 * w), abs=1e-5)
    assert emb[2, 8 + i].item() == pytest.approx(math.cos(7 * w), abs=1e-5)
    assert torch.allclose(emb[0], torch.cat([torch.zeros(8), torch.ones(8)]))     # t = 0
    assert torch.allclose(emb.square()[:, :8] + emb.square()[:, 8:], torch.ones(4, 8), atol=1e-5)


def test_timestep_embedding_odd_dim_raises():
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.tensor([1]), 7)


@pytest.mark.parametrize("size", [28, 27, 16])
def test_unet_output_shape_any_size_and_zero_init(size):
    m = tiny()
    x = torch.randn(2, 1, size, size)
    out = m(x, torch.tensor([3, 500]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0                # conv_out starts at zero: eps_theta = 0 before training


def test_unet_depends_on_t_and_on_label():
    m = tiny(num_classes=10)
    torch.nn.init.normal_(m.conv_out.weight, std=0.1)
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([10, 10])
    a, b = m(x, t, torch.tensor([1, 1])), m(x, t + 500, torch.tensor([1, 1]))
    c = m(x, t, torch.tensor([2, 2]))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    # no label = the null label 10
    assert torch.allclose(m(x, t), m(x, t, torch.tensor([10, 10])))
    # a scalar t / y is broadcast over the batch
    assert torch.allclose(m(x, 10, 1), a)


def test_cross_attention_conditioning_runs():
    m = tiny(num_classes=10, cond="cross_attention", attention=(False, True))
    out = m(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3]), torch.tensor([0, 5, 10]))
    assert out.shape == (3, 1, 28, 28)


def test_attention_adds_parameters():
    assert count_parameters(tiny()) > count_parameters(tiny(attention=(False, False)))


@pytest.mark.parametrize("y, match", [(torch.tensor([0, 11]), "labels must lie"),
                                      (torch.tensor([-1, 3]), "labels must lie"),
                                      (torch.tensor([1, 2, 3]), "shape")])
def test_bad_labels_raise(y, match):
    m = tiny(num_classes=10)
    with pytest.raises(ValueError, match=match):
        m(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), y)


def test_bad_inputs_raise():
    m = tiny()
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ValueError, match="unconditional"):
        m(x, torch.tensor([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(torch.randn(2, 3, 28, 28), torch.tensor([1, 2]))          # wrong number of channels
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(torch.randn(1, 28, 28), torch.tensor([1]))                 # missing batch dimension
    with pytest.raises(ValueError, match="float"):
        m(x.to(torch.uint8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="shape"):
        m(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="attention has"):
        UNet(channel_mults=(1, 2), attention=(False,))
    with pytest.raises(ValueError, match="unknown cond"):
        UNet(num_classes=10, cond="concat")


def test_timestep_embedding_asks_for_a_batch_of_timesteps():
    with pytest.raises(ValueError, match=r"shape \(B,\), got shape \(\)"):
        timestep_embedding(torch.tensor(5), 8)
    with pytest.raises(ValueError, match="got int"):
        timestep_embedding(5, 8)
