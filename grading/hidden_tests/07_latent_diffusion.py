"""Hidden tests of notebooks/07_latent_diffusion.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). Modules
(the autoencoder, a small latent UNet, the attention blocks) are built on both sides with the
grader's weights (``Build``); ``forbid`` lists course_utils's own answer to each exercise.
"""
import torch

from course_tools.grading import probes
from course_tools.grading.hidden import Build, Exercise
from course_utils import latent, samplers, vae
from course_utils.autoencoder import KLAutoencoder
from course_utils.samplers import StepNoise
from course_utils.unet import CrossAttention, UNet


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _attend(attention, x, context):
    return attention(x, context)


def _autoencoder(seed):
    return Build(KLAutoencoder, width=4, seed=seed)


def _latent_unet(seed):
    return Build(UNet, in_channels=4, base_channels=8, channel_mults=(1, 2), attention=(False, True), num_classes=10,
                 cond="cross_attention", seed=seed)


def _ddim(steps, eta):
    # DDIM on the linear schedule without clipping, as latent.latent_scheduler makes it, with few steps
    return Build(probes.strided_scheduler, "ddim", "linear", 1000, steps, eta=eta, clip_sample=False)


def test_kl_term() -> Exercise:
    mu, logvar = _randn(2, 3, 5, 4, seed=1), _randn(2, 3, 5, 4, seed=2)
    return Exercise(vae.kl_divergence, cases=[(mu, logvar), (mu * 0, logvar - 1),
                                              (torch.zeros(1, 4, 7, 7), torch.zeros(1, 4, 7, 7))],
                    forbid=(vae.kl_divergence,))


def test_latent_scale_factor() -> Exercise:
    shifted = 0.5 * _randn(7, 4, 7, 7, seed=3) - 2.0                     # a mean far from 0
    wide = torch.cat([_randn(2, 4, 7, 7, seed=4) * 4, _randn(2, 4, 7, 7, seed=5) * 0.1], dim=1)[:, :4]
    return Exercise(latent.compute_scale_factor, cases=[(shifted,), (wide,)], forbid=(latent.compute_scale_factor,))


def test_StudentCrossAttention() -> Exercise:
    """A module exercise: each case's first argument is the reference block; the student's class is built with
    the same arguments and the reference's weights, and its ``forward`` gets the other arguments."""
    four_heads, one_head = Build(CrossAttention, 8, 6, seed=7), Build(CrossAttention, 6, 5, seed=8)  # 6: 1 head
    x8, ctx8 = _randn(2, 8, 3, 5, seed=6), _randn(2, 3, 6, seed=7)
    x6, ctx6 = _randn(1, 6, 4, 4, seed=8), _randn(1, 2, 5, seed=9)
    return Exercise(_attend, cases=[(four_heads, x8, ctx8), (one_head, x6, ctx6)], atol=1e-4, no_grad=True,
                    forbid=(CrossAttention.forward,))


def test_decode() -> Exercise:
    z = _randn(3, 4, 7, 7, seed=10)
    return Exercise(latent.decode_latents, cases=[(_autoencoder(11), z, 0.37), (_autoencoder(12), 2 * z[:1], 2.5)],
                    atol=1e-5, no_grad=True, forbid=(latent.decode_latents,))


def test_latent_sample() -> Exercise:
    z3, z2 = _randn(3, 4, 7, 7, seed=13), _randn(2, 4, 7, 7, seed=14)
    return Exercise(latent.sample_images, cases=[
        (_latent_unet(15), _autoencoder(16), _ddim(12, 0.0), z3, torch.tensor([2, 8, 5]), 3.0, 0.6,
         Build(StepNoise, tuple(z3.shape), 17)),
        (_latent_unet(18), _autoencoder(19), _ddim(9, 0.8), z2, torch.tensor([0, 6]), 1.5, 1.7,
         Build(StepNoise, tuple(z2.shape), 20)),
    ], atol=1e-4, no_grad=True,
        forbid=(samplers.sample, samplers.sample_batches, latent.decode_latents, latent.sample_images))
