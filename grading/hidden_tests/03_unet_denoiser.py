"""Hidden tests of notebooks/03_unet_denoiser.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). The
modules are built on both sides with the grader's weights (``Build``).
"""
import torch

from course_tools.grading.hidden import Build, Exercise
from course_utils import denoiser
from course_utils.denoiser import ConvBlock, DenoiserUNet


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_add_noise() -> Exercise:
    x, eps = _randn(3, 2, 5, 6, seed=1).clamp(-1, 1), _randn(3, 2, 5, 6, seed=2)
    return Exercise(denoiser.add_noise, cases=[(x, 0.25, eps), (x, 2.0, eps)])


def test_conv_block_forward() -> Exercise:
    block = Build(ConvBlock, 2, 4, seed=5)
    x = _randn(3, 2, 9, 11, seed=3)                                  # odd, non-square size
    return Exercise(denoiser.conv_block_forward, cases=[(x, block), (x[:1], block)], no_grad=True)


def test_up_and_concat() -> Exercise:
    h, skip = _randn(2, 3, 4, 5, seed=4), _randn(2, 1, 9, 11, seed=5)
    h2, skip2 = _randn(1, 2, 2, 2, seed=6), _randn(1, 5, 4, 4, seed=7)
    return Exercise(denoiser.up_and_concat, cases=[(h, skip), (h2, skip2)])


def test_denoising_loss() -> Exercise:
    model = Build(DenoiserUNet, width=8, seed=6)
    x, eps = _randn(3, 1, 28, 28, seed=8).clamp(-1, 1), _randn(3, 1, 28, 28, seed=9)
    return Exercise(denoiser.denoising_loss, cases=[(model, x, 0.3, eps), (model, x[:1], 0.0, eps[:1])], no_grad=True)
