"""Hidden tests of notebooks/03_unet_denoiser.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). The
modules are built on both sides with the grader's weights (``Build``). ``forbid`` lists what in
course_utils *is* the exercise's answer; other exercises' references (the training step may call
``denoiser.denoising_loss``, the UNet's forward ``denoiser.conv_block_forward``) stay allowed.
"""
import torch

from course_tools.grading import probes
from course_tools.grading.hidden import Build, Exercise
from course_utils import denoiser
from course_utils.denoiser import ConvBlock, DenoiserUNet, Down, Up


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_add_noise() -> Exercise:
    x, eps = _randn(3, 2, 5, 6, seed=1).clamp(-1, 1), _randn(3, 2, 5, 6, seed=2)
    return Exercise(denoiser.add_noise, cases=[(x, 0.25, eps), (x, 2.0, eps)], forbid=(denoiser.add_noise,))


def test_conv_block_forward() -> Exercise:
    block = Build(ConvBlock, 2, 4, seed=5)
    x = _randn(3, 2, 9, 11, seed=3)                                  # odd, non-square size
    return Exercise(denoiser.conv_block_forward, cases=[(x, block), (x[:1], block)], no_grad=True,
                    forbid=(denoiser.conv_block_forward, ConvBlock.forward))


def test_up_and_concat() -> Exercise:
    h, skip = _randn(2, 3, 4, 5, seed=4), _randn(2, 1, 9, 11, seed=5)
    h2, skip2 = _randn(1, 2, 2, 2, seed=6), _randn(1, 5, 4, 4, seed=7)
    return Exercise(denoiser.up_and_concat, cases=[(h, skip), (h2, skip2)], forbid=(denoiser.up_and_concat,))


def test_unet_forward() -> Exercise:
    """The whole U: Down's and Up's own forward are the answer too (the student calls their ``.block``)."""
    unet, unet_wide = Build(DenoiserUNet, width=4, seed=11), Build(DenoiserUNet, width=8, seed=12)
    x = _randn(2, 1, 28, 28, seed=13).clamp(-1, 1)
    x_odd = _randn(1, 1, 13, 9, seed=14)                             # 13 -> 6 -> 3 and back to 6, 13
    return Exercise(denoiser.unet_forward, cases=[(x, unet_wide), (x_odd, unet)], no_grad=True, atol=1e-4,
                    forbid=(denoiser.unet_forward, DenoiserUNet.forward, Down.forward, Up.forward))


def test_denoising_loss() -> Exercise:
    model = Build(DenoiserUNet, width=8, seed=6)
    x, eps = _randn(3, 1, 28, 28, seed=8).clamp(-1, 1), _randn(3, 1, 28, 28, seed=9)
    return Exercise(denoiser.denoising_loss, cases=[(model, x, 0.3, eps), (model, x[:1], 0.0, eps[:1])], no_grad=True,
                    forbid=(denoiser.denoising_loss,))


def test_train_step() -> Exercise:
    """A probe and an optimizer over its weights (built right after it, with a stale gradient to clear).

    The loss checks the forward pass, ``grad_norm`` the cleared gradient and the backward pass, and with SGD
    ``update_norm`` is lr times the *clipped* gradient's norm: the clipping and the step."""
    x, eps = _randn(4, 1, 6, 6, seed=15).clamp(-1, 1), _randn(4, 1, 6, 6, seed=16)
    opt = probes.optimizer_for_last_denoiser_probe
    cases = [(Build(probes.DenoiserProbe, seed=17), Build(opt, "sgd", 0.5), x, 0.7, eps, 0.01),        # clips
             (Build(probes.DenoiserProbe, seed=18), Build(opt, "sgd", 0.5), x[:2], 1.5, eps[:2], None),
             (Build(probes.DenoiserProbe, seed=19), Build(opt, "adamw", 0.05), x, 0.3, eps)]
    return Exercise(denoiser.train_step, cases=cases, atol=1e-5, rtol=1e-3, forbid=(denoiser.train_step,))
