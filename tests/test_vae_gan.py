"""Fast tests of course_utils.vae and course_utils.gan (01_vae_recap)."""
import pytest
import torch

from course_utils import cpu_generator, randn
from course_utils import gan as gan_mod
from course_utils import vae as vae_mod


@pytest.fixture
def images():
    g = cpu_generator(0)
    return (torch.rand(8, 1, 28, 28, generator=g) > 0.7).float() * 2 - 1  # (8, 1, 28, 28) in {-1, 1}


def test_vae_shapes(images):
    torch.manual_seed(0)
    model = vae_mod.ConvVAE(latent_dim=5, width=4)
    mu, logvar = model.encode(images)
    assert mu.shape == logvar.shape == (8, 5)
    assert model.decode(mu).shape == (8, 1, 28, 28)
    x = model.decode(randn(3, 5, generator=cpu_generator(1)))
    assert x.min() >= -1 and x.max() <= 1
    logits, mu2, _ = model(images)
    assert logits.shape == images.shape
    torch.testing.assert_close(mu2, mu)
    assert vae_mod.sample_prior(model, 4, generator=cpu_generator(2)).shape == (4, 1, 28, 28)


def test_reparameterise():
    g = cpu_generator(3)
    mu, logvar = randn(4, 6, generator=g), randn(4, 6, generator=g)
    torch.testing.assert_close(vae_mod.reparameterise(mu, logvar, torch.zeros_like(mu)), mu)
    ones = torch.ones_like(mu)
    torch.testing.assert_close(vae_mod.reparameterise(mu, logvar, ones), mu + torch.exp(0.5 * logvar))
    # sigma = exp(logvar / 2): logvar = log 4 gives sigma = 2
    z = vae_mod.reparameterise(torch.zeros(1, 1), torch.full((1, 1), 4.0).log(), torch.ones(1, 1))
    assert z.item() == pytest.approx(2.0)


def test_kl_zero_for_prior_positive_otherwise():
    zeros = torch.zeros(3, 7)
    torch.testing.assert_close(vae_mod.kl_divergence(zeros, zeros), torch.zeros(3))
    g = cpu_generator(4)
    mu, logvar = randn(5, 7, generator=g), randn(5, 7, generator=g)
    kl = vae_mod.kl_divergence(mu, logvar)
    assert kl.shape == (5,) and (kl > 0).all()
    # closed form in 1-D: KL(N(1, 1) || N(0, 1)) = 1/2
    assert vae_mod.kl_divergence(torch.ones(1, 1), torch.zeros(1, 1)).item() == pytest.approx(0.5)


def test_training_steps_lower_vae_loss(images):
    torch.manual_seed(0)
    model = vae_mod.ConvVAE(latent_dim=4, width=4)
    eps = randn(8, 4, generator=cpu_generator(5))
    first, logs = vae_mod.vae_loss(model, images, eps=eps)
    assert set(logs) == {"recon", "kl"}
    assert first.item() == pytest.approx(logs["recon"] + logs["kl"], rel=1e-5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = cpu_generator(6)
    for _ in range(20):
        loss, _ = vae_mod.vae_loss(model, images, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, _ = vae_mod.vae_loss(model, images, eps=eps)
    assert last.item() < 0.9 * first.item()


def test_gan_shapes_and_losses_finite(images):
    torch.manual_seed(0)
    gan = gan_mod.GAN(latent_dim=8, width=4)
    fake = gan.sample(5, generator=cpu_generator(7))
    assert fake.shape == (5, 1, 28, 28) and fake.min() >= -1 and fake.max() <= 1
    logits = gan.D(images)
    assert logits.shape == (8,)
    d = gan_mod.discriminator_loss(logits, gan.D(fake))
    for loss in (d, gan_mod.generator_loss(logits), gan_mod.generator_loss(logits, non_saturating=False)):
        assert loss.dim() == 0 and torch.isfinite(loss)
    # a perfect discriminator has a loss near 0, a confused one (D = 1/2 everywhere) 2 log 2
    big = torch.full((4,), 20.0)
    assert gan_mod.discriminator_loss(big, -big).item() < 1e-6
    assert gan_mod.discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())


def test_gan_step_updates_both_players(images):
    torch.manual_seed(0)
    gan = gan_mod.GAN(latent_dim=8, width=4)
    before_g = [p.detach().clone() for p in gan.G.parameters()]
    before_d = [p.detach().clone() for p in gan.D.parameters()]
    opt_d = torch.optim.Adam(gan.D.parameters(), lr=1e-3)
    opt_g = torch.optim.Adam(gan.G.parameters(), lr=1e-3)
    logs = gan_mod.gan_step(gan, images, opt_d, opt_g, generator=cpu_generator(8))
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert 0 <= logs["d_real"] <= 1 and 0 <= logs["d_fake"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before_g, gan.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, gan.D.parameters()))


def test_train_gan_history(images):
    torch.manual_seed(0)
    gan = gan_mod.GAN(latent_dim=8, width=4)
    loader = [(images[:4], None), (images[4:], None)]
    hist = gan_mod.train_gan(gan, loader, epochs=2, seed=0)
    assert len(hist["d_loss"]) == len(hist["g_loss"]) == 4
    assert len(hist["epoch_d_loss"]) == 2
    assert not gan.training


def test_non_saturating_gradient_larger_when_discriminator_wins():
    # D(G(z)) = sigmoid(l) small (about 0.007 at l = -5): the fake is easily spotted
    for l0 in (-5.0, -3.0):
        grads = {}
        for ns in (True, False):
            l = torch.tensor([l0], requires_grad=True)
            gan_mod.generator_loss(l, non_saturating=ns).backward()
            grads[ns] = l.grad.abs().item()
        assert grads[True] > 10 * grads[False] if l0 == -5.0 else grads[True] > grads[False]
    # both push the logit up (the generator wants D(G(z)) larger)
    l = torch.tensor([0.3], requires_grad=True)
    gan_mod.generator_loss(l, non_saturating=False).backward()
    assert l.grad.item() < 0


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 28, 28), r"\(B, 1, 28, 28\)"),
    (torch.zeros(2, 3, 28, 28), r"\(B, 1, 28, 28\)"),
    (torch.zeros(2, 1, 32, 32), r"\(B, 1, 28, 28\)"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), r"to_unit"),
])
def test_bad_images_raise(bad, match):
    model = vae_mod.ConvVAE(latent_dim=4, width=4)
    gan = gan_mod.GAN(latent_dim=4, width=4)
    with pytest.raises(ValueError, match=match):
        model.encode(bad)
    with pytest.raises(ValueError, match=match):
        gan.D(bad)
    with pytest.raises(ValueError, match=match):
        vae_mod.vae_loss(model, bad)


def test_bad_latents_and_pairs_raise():
    model = vae_mod.ConvVAE(latent_dim=4, width=4)
    with pytest.raises(ValueError, match=r"z must have shape \(B, 4\)"):
        model.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="float"):
        model.decode(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 8\)"):
        gan_mod.GAN(latent_dim=8, width=4).G(torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="same shape"):
        vae_mod.kl_divergence(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="eps"):
        vae_mod.reparameterise(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="logits"):
        gan_mod.generator_loss(torch.zeros(3, dtype=torch.int64))
