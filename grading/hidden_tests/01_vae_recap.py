"""Hidden tests of notebooks/01_vae_recap.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py).
"""
import torch

from course_tools.grading.hidden import Case, Exercise
from course_utils import gan, vae


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_reparameterise() -> Exercise:
    mu, logvar, eps = _randn(5, 3, seed=1), _randn(5, 3, seed=2) * 2, _randn(5, 3, seed=3)
    one_dim = (_randn(7, 1, seed=4), _randn(7, 1, seed=5), _randn(7, 1, seed=6))
    return Exercise(vae.reparameterise, cases=[(mu, logvar, eps), (mu, logvar + 3, eps), one_dim])


def test_kl_divergence() -> Exercise:
    mu, logvar = _randn(6, 4, seed=10), _randn(6, 4, seed=11)
    zero = Case((torch.zeros(2, 5), torch.zeros(2, 5)), hint="KL must be 0 when mu = 0 and sigma = 1")
    return Exercise(vae.kl_divergence, cases=[(mu, logvar), (mu * 0, logvar),
                                              (_randn(3, 1, seed=12), _randn(3, 1, seed=13)), zero])


def test_discriminator_loss() -> Exercise:
    real, fake = _randn(9, seed=20) * 2.5, _randn(4, seed=21) * 2.5      # different batch sizes
    return Exercise(gan.discriminator_loss, cases=[(real, fake), (real - 2, fake + 2), (fake, real)])


def test_generator_loss() -> Exercise:
    fake = _randn(11, seed=30) * 2.5
    return Exercise(gan.generator_loss, cases=[(fake,), (fake + 3,), (fake[:1],)])
