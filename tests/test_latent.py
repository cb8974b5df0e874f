"""The KL autoencoder (course_utils.autoencoder) and latent diffusion glue (course_utils.latent), notebook 07."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from course_utils import get_profile
from course_utils.autoencoder import KLAutoencoder, check_latents, train_autoencoder
from course_utils.checkpoint import CheckpointError, RunConfig, save_checkpoint, weights_digest
from course_utils.device import cpu_generator, randn
from course_utils.diffusion import make_unet
from course_utils.samplers import StepNoise, sample_batches
from course_utils.latent import (LATENT_SHAPE, compute_scale_factor, decode_latents, encode_images,
                                 latent_scheduler, ldm_config, load_trained_ldm, sample_images, train_ldm,
                                 training_throughput)
from course_utils.vae import kl_divergence, vae_loss

PROFILE = dataclasses.replace(get_profile("smoke"), use_pretrained=False)   # trains here, never the shipped weights


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return randn((n, 1, 28, 28), generator=cpu_generator(seed)).clamp(-1, 1)


@pytest.fixture(scope="module")
def ae():
    torch.manual_seed(0)
    return KLAutoencoder(width=8).eval()


def test_autoencoder_shapes(ae):
    x = _images()
    mu, logvar = ae.encode(x)
    assert mu.shape == logvar.shape == (4, *LATENT_SHAPE)
    img = ae.decode(mu)
    assert img.shape == x.shape and img.min() >= -1 and img.max() <= 1
    logits, mu2, _ = ae(x, eps=torch.zeros_like(mu))
    assert torch.allclose(logits, ae.decode_logits(mu)) and torch.equal(mu, mu2)


def test_the_kl_of_spatial_latents_is_the_vae_kl_of_the_flattened_latents():
    mu, logvar = randn((3, 4, 7, 7), generator=cpu_generator(1)), randn((3, 4, 7, 7), generator=cpu_generator(2))
    assert torch.allclose(kl_divergence(mu, logvar), kl_divergence(mu.flatten(1), logvar.flatten(1)))
    assert torch.equal(kl_divergence(torch.zeros(2, 4, 7, 7), torch.zeros(2, 4, 7, 7)), torch.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(mu, logvar[:, :2])


def test_the_autoencoder_loss_is_the_vae_loss_with_a_light_kl_weight(ae):
    loss, logs = vae_loss(ae, _images(), kl_weight=0.01, generator=cpu_generator(0))
    assert set(logs) == {"recon", "kl"}
    assert loss.item() == pytest.approx(logs["recon"] + 0.01 * logs["kl"], rel=1e-4)
    with pytest.raises(ValueError, match="kl_weight"):
        vae_loss(ae, _images(), kl_weight=-1.0)


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (2, 3, 7, 7), (4, 7, 7), (2, 196)])
def test_wrong_latent_shape(ae, shape):
    z = torch.zeros(shape)
    with pytest.raises(ValueError, match=r"\(B, 4, 7, 7\)"):
        ae.decode(z)
    with pytest.raises(ValueError, match=r"^latents .*\(B, 4, 7, 7\)"):
        check_latents(z)
    with pytest.raises(ValueError, match=r"\(B, 4, 7, 7\)"):
        decode_latents(ae, z, 1.0)


def test_wrong_image_shape(ae):
    with pytest.raises(ValueError, match="28, 28"):
        ae.encode(torch.zeros(2, 28, 28))


def test_scale_factor_gives_unit_variance(ae):
    z = 3.0 * randn((50, *LATENT_SHAPE), generator=cpu_generator(0)) + 0.5
    s = compute_scale_factor(z)
    assert isinstance(s, float)
    assert (z * s).std().item() == pytest.approx(1.0, rel=1e-5)
    lat = encode_images(ae, _images(6), batch_size=4)
    assert lat.shape == (6, *LATENT_SHAPE)
    assert decode_latents(ae, lat * 2.0, 2.0, batch_size=4).shape == (6, 1, 28, 28)
    with pytest.raises(ValueError, match="scale_factor"):
        decode_latents(ae, lat, 0.0)


def test_train_ldm_refuses_bad_latents(ae):
    y = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(B, 4, 7, 7\)"):
        train_ldm(PROFILE, torch.zeros(8, 1, 28, 28), y, autoencoder=ae)
    with pytest.raises(ValueError, match="unit variance"):
        train_ldm(PROFILE, 10 * randn((8, *LATENT_SHAPE), generator=cpu_generator(0)), y, autoencoder=ae)
    with pytest.raises(ValueError, match="one label per latent"):
        train_ldm(PROFILE, randn((8, *LATENT_SHAPE), generator=cpu_generator(0)), y[:3], autoencoder=ae)
    with pytest.raises(TypeError, match="KLAutoencoder"):
        train_ldm(PROFILE, randn((8, *LATENT_SHAPE), generator=cpu_generator(0)), y, autoencoder="ae.pt")


def test_ldm_records_its_autoencoder_and_refuses_another(tmp_path, monkeypatch, capsys):
    """A shipped ldm trained on another autoencoder's latents must not be loaded (it would decode garbage)."""
    import dataclasses

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    prof = dataclasses.replace(PROFILE, use_pretrained=True, width=8)
    z = randn((16, *LATENT_SHAPE), generator=cpu_generator(0))
    y = torch.arange(16) % 10
    torch.manual_seed(1)
    other = KLAutoencoder(width=8)
    assert weights_digest(other) != weights_digest(ae_fixture := KLAutoencoder(width=8))
    _, _, config = train_ldm(prof, z, y, autoencoder=ae_fixture, epochs=1, batch_size=8)
    assert config["depends"] == {"autoencoder": weights_digest(ae_fixture)}
    shipped = tmp_path / "data" / "checkpoints"
    shipped.mkdir(parents=True)
    (tmp_path / "out" / "checkpoints" / "ldm.pt").rename(shipped / "ldm.pt")
    # the same autoencoder: the shipped ldm loads (no training: zero epochs would be an empty history)
    _, hist, _ = train_ldm(prof, z, y, autoencoder=ae_fixture, epochs=3, batch_size=8)
    assert len(hist["epoch_loss"]) == 1                       # the shipped 1-epoch run, not a new 3-epoch one
    (tmp_path / "out" / "checkpoints" / "ldm.pt").unlink(missing_ok=True)
    capsys.readouterr()
    _, hist, _ = train_ldm(prof, z, y, autoencoder=other, epochs=2, batch_size=8)
    assert len(hist["epoch_loss"]) == 2                       # refused and retrained
    assert "refusing shipped checkpoint" in capsys.readouterr().out
    assert not (tmp_path / "out" / "checkpoints" / "ldm.resume.pt").exists()   # finished: no resume state left


def test_load_trained_ldm_refuses_another_autoencoder(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "no-data"))
    arch = {**ldm_config(PROFILE), "base_channels": 8}
    torch.manual_seed(0)
    ae, other = KLAutoencoder(width=8), KLAutoencoder(width=8)
    save_checkpoint(tmp_path / "checkpoints" / "autoencoder.pt", ae,
                    RunConfig(model="KLAutoencoder", arch={"latent_channels": 4, "width": 8}).as_dict())
    ldm = RunConfig(model="UNet", arch=arch, task={"schedule": "linear", "T": 1000, "p_uncond": 0.1},
                    train={"n_images": 64}, depends={"autoencoder": weights_digest(other)})
    save_checkpoint(tmp_path / "checkpoints" / "ldm.pt", make_unet(arch), ldm.as_dict())
    with pytest.raises(CheckpointError, match="another autoencoder"):
        load_trained_ldm()


def test_weights_digest_survives_float16_export():
    torch.manual_seed(0)
    a = KLAutoencoder(width=8)
    b = KLAutoencoder(width=8)
    b.load_state_dict({k: v.half().float() for k, v in a.state_dict().items()})
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        next(b.parameters()).add_(0.01)
    assert weights_digest(a) != weights_digest(b)


def test_ldm_unet_samples_in_batches_and_throughput():
    config = ldm_config(PROFILE)
    assert config["in_channels"] == 4 and config["cond"] == "cross_attention" and config["num_classes"] == 10
    torch.manual_seed(0)
    model = make_unet({**config, "base_channels": 8}).eval()
    scheduler = latent_scheduler(PROFILE, steps=3)
    assert not scheduler.clip_sample and scheduler.num_inference_steps == 3
    labels = torch.arange(5)
    z = sample_batches(model, scheduler, 5, LATENT_SHAPE, labels=labels, guidance=3.0, seed=1, batch_size=2, progress=False)
    z2 = sample_batches(model, scheduler, 5, LATENT_SHAPE, labels=labels, guidance=3.0, seed=1, batch_size=5,
                        progress=False)
    assert z.shape == (5, *LATENT_SHAPE)
    assert torch.allclose(z, z2, atol=1e-5)            # batching does not change the samples
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rate = training_throughput(model, randn((16, *LATENT_SHAPE), generator=cpu_generator(0)), torch.arange(16) % 10,
                               batch_size=8, steps=1, warmup=0)
    assert rate > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_train_autoencoder_saves_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    x = _images(128, seed=3)
    m1, h1, config = train_autoencoder(PROFILE, x, epochs=1)
    assert (tmp_path / "checkpoints" / "autoencoder.pt").exists()
    assert len(h1["loss"]) == 1 and "kl" in h1
    assert config["model"] == "KLAutoencoder" and config["arch"] == {"latent_channels": 4, "width": PROFILE.width}
    assert config["task"] == {"kl_weight": 0.01}
    m2, h2, _ = train_autoencoder(PROFILE, x, epochs=1)
    assert "loaded autoencoder" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h2["loss"] == h1["loss"]


def test_train_autoencoder_variants_get_their_own_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    x = _images(128, seed=4)
    _, _, config = train_autoencoder(PROFILE, x, epochs=1, kl_weight=0.1, name="autoencoder_kl0.1")
    assert (tmp_path / "checkpoints" / "autoencoder_kl0.1.pt").exists()
    assert not (tmp_path / "checkpoints" / "autoencoder.pt").exists() and config["task"] == {"kl_weight": 0.1}


def test_sample_images_is_sample_batches_then_decode(ae):
    """The reference of notebook 07's latent_sample: sample_batches with decode, from the same z_T."""
    torch.manual_seed(0)
    model = make_unet({**ldm_config(PROFILE), "base_channels": 8}).eval()
    labels = torch.tensor([3, 1, 4])
    decode = lambda z: decode_latents(ae, z, 0.8)                                   # noqa: E731
    want = sample_batches(model, latent_scheduler(PROFILE, steps=3), 3, LATENT_SHAPE, labels=labels, guidance=2.0,
                          seed=5, decode=decode, progress=False)
    z_T = randn((3, *LATENT_SHAPE), generator=cpu_generator(5))
    got = sample_images(model, ae, latent_scheduler(PROFILE, steps=3), z_T, labels, 2.0, 0.8, StepNoise(z_T.shape, 1))
    assert got.shape == (3, 1, 28, 28) and torch.allclose(got, want, atol=1e-5)
    # a stochastic scheduler takes its step noise from noise_fn: the same StepNoise gives the same images
    eta1 = latent_scheduler(PROFILE, steps=3, eta=1.0)
    a = sample_images(model, ae, eta1, z_T, labels, 2.0, 0.8, StepNoise(z_T.shape, 1))
    assert torch.equal(a, sample_images(model, ae, eta1, z_T, labels, 2.0, 0.8, StepNoise(z_T.shape, 1)))
    assert not torch.allclose(a, sample_images(model, ae, eta1, z_T, labels, 2.0, 0.8, StepNoise(z_T.shape, 2)))
    with pytest.raises(ValueError, match=r"\(B, 4, 7, 7\)"):
        sample_images(model, ae, eta1, torch.zeros(3, 1, 28, 28), labels, 2.0, 0.8)
