"""Hidden tests of notebooks/07_latent_diffusion.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). The
attention modules are built on both sides with the grader's weights (``Build``).
"""
import torch

from course_tools.grading.hidden import Build, Exercise
from course_utils import latent, vae
from course_utils.unet import CrossAttention


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _attend(attention, x, context):
    return attention(x, context)


def test_kl_term() -> Exercise:
    mu, logvar = _randn(2, 3, 5, 4, seed=1), _randn(2, 3, 5, 4, seed=2)
    return Exercise(vae.kl_divergence, cases=[(mu, logvar), (mu * 0, logvar - 1),
                                              (torch.zeros(1, 4, 7, 7), torch.zeros(1, 4, 7, 7))])


def test_latent_scale_factor() -> Exercise:
    shifted = 0.5 * _randn(7, 4, 7, 7, seed=3) - 2.0                     # a mean far from 0
    wide = torch.cat([_randn(2, 4, 7, 7, seed=4) * 4, _randn(2, 4, 7, 7, seed=5) * 0.1], dim=1)[:, :4]
    return Exercise(latent.compute_scale_factor, cases=[(shifted,), (wide,)])


def test_cross_attention() -> Exercise:
    four_heads, one_head = Build(CrossAttention, 8, 6, seed=7), Build(CrossAttention, 6, 5, seed=8)  # 6: 1 head
    x8, ctx8 = _randn(2, 8, 3, 5, seed=6), _randn(2, 3, 6, seed=7)
    x6, ctx6 = _randn(1, 6, 4, 4, seed=8), _randn(1, 2, 5, seed=9)
    return Exercise(_attend, cases=[(four_heads, x8, ctx8), (one_head, x6, ctx6)], atol=1e-4, no_grad=True)
