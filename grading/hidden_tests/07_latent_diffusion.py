"""Hidden tests of notebooks/07_latent_diffusion.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch

from course_utils import autoencoder, latent
from course_utils.checks import check_function
from course_utils.unet import CrossAttention


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_kl_term(fn):
    mu, logvar = _randn(2, 3, 5, 4, seed=1), _randn(2, 3, 5, 4, seed=2)
    check_function(fn, autoencoder.kl_term, cases=[(mu, logvar), (mu * 0, logvar - 1),
                                                   (torch.zeros(1, 4, 7, 7), torch.zeros(1, 4, 7, 7))], quiet=True)


def test_latent_scale_factor(fn):
    shifted = 0.5 * _randn(7, 4, 7, 7, seed=3) - 2.0                     # a mean far from 0
    wide = torch.cat([_randn(2, 4, 7, 7, seed=4) * 4, _randn(2, 4, 7, 7, seed=5) * 0.1], dim=1)[:, :4]
    check_function(fn, latent.compute_scale_factor, cases=[(shifted,), (wide,)], quiet=True)


def test_cross_attention(fn):
    torch.manual_seed(7)
    four_heads, one_head = CrossAttention(8, 6), CrossAttention(6, 5)    # 6 channels: falls back to 1 head
    x8, ctx8 = _randn(2, 8, 3, 5, seed=6), _randn(2, 3, 6, seed=7)
    x6, ctx6 = _randn(1, 6, 4, 4, seed=8), _randn(1, 2, 5, seed=9)
    with torch.no_grad():
        check_function(fn, lambda a, x, c: a(x, c), cases=[(four_heads, x8, ctx8), (one_head, x6, ctx6)],
                       atol=1e-4, name="cross_attention", quiet=True)
