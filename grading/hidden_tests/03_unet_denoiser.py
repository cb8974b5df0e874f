"""Hidden tests of notebooks/03_unet_denoiser.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch

from course_utils import denoiser
from course_utils.checks import check_function
from course_utils.denoiser import ConvBlock, DenoiserUNet


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_add_noise(fn):
    x, eps = _randn(3, 2, 5, 6, seed=1).clamp(-1, 1), _randn(3, 2, 5, 6, seed=2)
    check_function(fn, denoiser.add_noise, cases=[(x, 0.25, eps), (x, 2.0, eps)], quiet=True)


def test_conv_block_forward(fn):
    torch.manual_seed(5)
    block = ConvBlock(2, 4)
    x = _randn(3, 2, 9, 11, seed=3)                                  # odd, non-square size
    with torch.no_grad():
        check_function(fn, denoiser.conv_block_forward, cases=[(x, block), (x[:1], block)], quiet=True)


def test_up_and_concat(fn):
    h, skip = _randn(2, 3, 4, 5, seed=4), _randn(2, 1, 9, 11, seed=5)
    h2, skip2 = _randn(1, 2, 2, 2, seed=6), _randn(1, 5, 4, 4, seed=7)
    check_function(fn, denoiser.up_and_concat, cases=[(h, skip), (h2, skip2)], quiet=True)


def test_denoising_loss(fn):
    torch.manual_seed(6)
    model = DenoiserUNet(width=8)
    x, eps = _randn(3, 1, 28, 28, seed=8).clamp(-1, 1), _randn(3, 1, 28, 28, seed=9)
    with torch.no_grad():
        check_function(fn, denoiser.denoising_loss, cases=[(model, x, 0.3, eps), (model, x[:1], 0.0, eps[:1])],
                       quiet=True)
