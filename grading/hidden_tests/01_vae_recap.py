"""Hidden tests of notebooks/01_vae_recap.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py).
``forbid`` lists course_utils's own implementation of each exercise: calling it scores "delegated".
"""
import torch

from course_tools.grading.hidden import Build, Case, Exercise
from course_utils import gan, vae


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _digits(n, seed):
    """n images (n, 1, 28, 28) in [-1, 1]: mostly background with a bright random stroke."""
    x = -torch.ones(n, 1, 28, 28)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        r, c = torch.randint(4, 20, (2,), generator=g).tolist()
        x[i, 0, r:r + 6, c:c + 3] = torch.rand(6, 3, generator=g) * 2 - 1
    return x


def test_reparameterise() -> Exercise:
    mu, logvar, eps = _randn(5, 3, seed=1), _randn(5, 3, seed=2) * 2, _randn(5, 3, seed=3)
    one_dim = (_randn(7, 1, seed=4), _randn(7, 1, seed=5), _randn(7, 1, seed=6))
    return Exercise(vae.reparameterise, cases=[(mu, logvar, eps), (mu, logvar + 3, eps), one_dim],
                    forbid=(vae.reparameterise, vae.GaussianLatentModel.forward))


def test_kl_divergence() -> Exercise:
    mu, logvar = _randn(6, 4, seed=10), _randn(6, 4, seed=11)
    zero = Case((torch.zeros(2, 5), torch.zeros(2, 5)), hint="KL must be 0 when mu = 0 and sigma = 1")
    return Exercise(vae.kl_divergence, cases=[(mu, logvar), (mu * 0, logvar),
                                              (_randn(3, 1, seed=12), _randn(3, 1, seed=13)), zero],
                    forbid=(vae.kl_divergence,))


def test_vae_loss() -> Exercise:
    model = Build(vae.ConvVAE, latent_dim=3, width=2, seed=40)
    x, eps = _digits(5, seed=41), _randn(5, 3, seed=42)
    wide = Build(vae.ConvVAE, latent_dim=1, width=3, seed=43)
    return Exercise(vae.vae_loss, cases=[(model, x, eps), (model, x[:2], eps[:2] * 3),
                                         (wide, x, _randn(5, 1, seed=44))],
                    forbid=(vae.vae_loss, vae.GaussianLatentModel.forward))


def test_discriminator_loss() -> Exercise:
    real, fake = _randn(9, seed=20) * 2.5, _randn(4, seed=21) * 2.5      # different batch sizes
    return Exercise(gan.discriminator_loss, cases=[(real, fake), (real - 2, fake + 2), (fake, real)],
                    forbid=(gan.discriminator_loss,))


def test_generator_loss() -> Exercise:
    fake = _randn(11, seed=30) * 2.5
    return Exercise(gan.generator_loss, cases=[(fake,), (fake + 3,), (fake[:1],)], forbid=(gan.generator_loss,))
