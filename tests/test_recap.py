"""Load-or-train of the VAE and the GAN of notebook 01 (course_utils.recap)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from course_utils import gan, recap, vae
from course_utils.profiles import get_profile

PROFILE = dataclasses.replace(get_profile("smoke"), batch_size=16, width=4, epoch_budget={"vae": 1, "gan": 1})


def _images(n: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_gan_trains_through_the_recipe_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    m1, h1, config = recap.train_dcgan(PROFILE, _images(), latent_dim=8, name="t_gan")
    assert config["model"] == "GAN" and config["arch"] == {"latent_dim": 8, "width": 4} and config["train"]["epochs"] == 1
    assert len(h1["d_loss"]) == 2 and not m1.training and (tmp_path / "checkpoints" / "t_gan.pt").exists()
    capsys.readouterr()
    m2, h2, _ = recap.train_dcgan(PROFILE, _images(), latent_dim=8, name="t_gan")
    assert "loaded t_gan" in capsys.readouterr().out and h2 == h1 and _same(m1, m2)
    recap.train_dcgan(PROFILE, _images(), latent_dim=8, lr=1e-4, name="t_gan")
    assert "train.lr: saved 0.001, wanted 0.0001" in capsys.readouterr().out        # another budget: retrained


def test_shipped_vae_of_another_budget_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "elsewhere"))
    shipped, hist, _ = recap.train_vae(PROFILE, _images(), latent_dim=2, epochs=2, name="t_vae")
    (tmp_path / "data" / "checkpoints").mkdir(parents=True)
    (tmp_path / "elsewhere" / "checkpoints" / "t_vae.pt").rename(tmp_path / "data" / "checkpoints" / "t_vae.pt")
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    cpu_like = dataclasses.replace(PROFILE, use_pretrained=True)
    model, history, _ = recap.train_vae(cpu_like, _images(), latent_dim=2, name="t_vae")
    assert history == hist and _same(model, shipped)                       # 2 shipped epochs, not 1 new one
    other, _, _ = recap.train_vae(cpu_like, _images(), latent_dim=3, name="t_vae")
    assert other.latent_dim == 3                                           # another architecture: trained


def test_bad_images():
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        recap.train_vae(PROFILE, torch.zeros(32, 1, 14, 14))
    with pytest.raises(ValueError, match="channel"):
        recap.train_dcgan(PROFILE, torch.zeros(32, 3, 28, 28))


# --- the student's losses (notebook 01 trains both models with them) ----------------------------------------

def _my_vae_loss(model, x, eps):
    _my_vae_loss.calls.append(tuple(eps.shape))
    return vae.vae_loss(model, x, eps)


def test_vae_trains_with_a_students_loss_and_the_same_eps(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    _my_vae_loss.calls = []
    m1, h1, config = recap.train_vae(PROFILE, _images(), latent_dim=3, name="t_vae_mine", loss=_my_vae_loss)
    assert config["train"]["loss"] == "_my_vae_loss" and _my_vae_loss.calls == [(16, 3), (16, 3)]
    m2, h2, config2 = recap.train_vae(PROFILE, _images(), latent_dim=3, name="t_vae_ref")
    assert "loss" not in config2["train"]
    assert h1["loss"] == h2["loss"] and h1["kl"] == h2["kl"] and _same(m1, m2)    # the eps are passed in: same run


def test_shipped_vae_is_not_used_for_a_students_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "elsewhere"))
    recap.train_vae(PROFILE, _images(), latent_dim=2, epochs=2, name="t_vae")
    (tmp_path / "data" / "checkpoints").mkdir(parents=True)
    (tmp_path / "elsewhere" / "checkpoints" / "t_vae.pt").rename(tmp_path / "data" / "checkpoints" / "t_vae.pt")
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    cpu_like = dataclasses.replace(PROFILE, use_pretrained=True)
    _my_vae_loss.calls = []
    _, history, config = recap.train_vae(cpu_like, _images(), latent_dim=2, name="t_vae", loss=_my_vae_loss)
    assert len(history["loss"]) == 2 and len(_my_vae_loss.calls) == 2 and config["train"]["loss"] == "_my_vae_loss"


def test_gan_trains_with_a_students_losses(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    calls = []

    def my_d_loss(real_logits, fake_logits):
        calls.append("d")
        return gan.discriminator_loss(real_logits, fake_logits)

    def my_g_loss(fake_logits):
        calls.append("g")
        return gan.generator_loss(fake_logits)

    m1, h1, config = recap.train_dcgan(PROFILE, _images(), latent_dim=8, name="t_gan_mine", d_loss=my_d_loss,
                                    g_loss=my_g_loss)
    assert calls == ["d", "g", "d", "g"]
    assert config["train"]["d_loss"] == "my_d_loss" and config["train"]["g_loss"] == "my_g_loss"
    assert gan.discriminator_loss.__module__ == "course_utils.gan" and gan.generator_loss.__name__ == "generator_loss"
    m2, h2, config2 = recap.train_dcgan(PROFILE, _images(), latent_dim=8, name="t_gan_ref")
    assert "d_loss" not in config2["train"] and calls == ["d", "g", "d", "g"]       # the package's losses again
    assert h1["d_loss"] == h2["d_loss"] and h1["g_loss"] == h2["g_loss"] and _same(m1, m2)


def test_bad_losses():
    with pytest.raises(ValueError, match="loss must be a function"):
        recap.train_vae(PROFILE, _images(), loss="vae_loss")
    with pytest.raises(ValueError, match="g_loss must be a function"):
        recap.train_dcgan(PROFILE, _images(), g_loss=1.0)
