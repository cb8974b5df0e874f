"""Hidden tests of notebooks/01_vae_recap.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference.
"""
import torch

from course_utils import gan, vae
from course_utils.checks import check_function


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_reparameterise(fn):
    mu, logvar, eps = _randn(5, 3, seed=1), _randn(5, 3, seed=2) * 2, _randn(5, 3, seed=3)
    one_dim = (_randn(7, 1, seed=4), _randn(7, 1, seed=5), _randn(7, 1, seed=6))
    check_function(fn, vae.reparameterise, cases=[(mu, logvar, eps), (mu, logvar + 3, eps), one_dim], quiet=True)


def test_kl_divergence(fn):
    mu, logvar = _randn(6, 4, seed=10), _randn(6, 4, seed=11)
    check_function(fn, vae.kl_divergence, cases=[(mu, logvar), (mu * 0, logvar), (_randn(3, 1, seed=12),
                                                                                  _randn(3, 1, seed=13))], quiet=True)
    zero = fn(torch.zeros(2, 5), torch.zeros(2, 5))
    assert torch.allclose(zero, torch.zeros(2)), "KL must be 0 when mu = 0 and sigma = 1"


def test_discriminator_loss(fn):
    real, fake = _randn(9, seed=20) * 2.5, _randn(4, seed=21) * 2.5      # different batch sizes
    check_function(fn, gan.discriminator_loss, cases=[(real, fake), (real - 2, fake + 2), (fake, real)], quiet=True)


def test_generator_loss(fn):
    fake = _randn(11, seed=30) * 2.5
    check_function(fn, gan.generator_loss, cases=[(fake,), (fake + 3,), (fake[:1],)], quiet=True)
