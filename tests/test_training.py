"""Training loop, EMA and learning-rate schedule (course_utils.training)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.data import TensorLoader
from course_utils.training import EMA, cosine_warmup_lr, train


def _regression(n: int = 256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    w = torch.tensor([[1.5], [-2.0], [0.5]])
    y = x @ w + 0.3 + 0.01 * torch.randn(n, 1, generator=g)
    return x, y


def _mse(model, batch):
    xb, yb = batch
    return nn.functional.mse_loss(model(xb), yb)


def test_loss_decreases():
    torch.manual_seed(0)
    x, y = _regression()
    model = nn.Linear(3, 1)
    loader = TensorLoader(x, y, batch_size=32)
    history = train(model, _mse, loader, epochs=15, lr=0.05)
    assert len(history["epoch_loss"]) == 15
    assert len(history["loss"]) == len(history["lr"]) == 15 * len(loader)
    assert history["epoch_loss"][-1] < 0.05 * history["epoch_loss"][0]
    assert not model.training                      # returned in eval mode
    assert torch.allclose(model.weight.detach(), torch.tensor([[1.5, -2.0, 0.5]]), atol=0.1)


def test_logged_terms_and_epoch_callback():
    x, y = _regression(64)
    seen = []

    def loss_fn(model, batch):
        loss = _mse(model, batch)
        return loss, {"half": loss.item() / 2}

    h = train(nn.Linear(3, 1), loss_fn, TensorLoader(x, y, batch_size=16), epochs=2,
              on_epoch_end=lambda e, m: seen.append((e, m.training)))
    assert len(h["half"]) == len(h["loss"]) == 8
    assert h["half"][0] == pytest.approx(h["loss"][0] / 2)
    assert seen == [(0, False), (1, False)]        # called in eval mode


def test_cosine_schedule():
    x, y = _regression(64)
    h = train(nn.Linear(3, 1), _mse, TensorLoader(x, y, batch_size=16), epochs=10, lr=0.1,
              lr_schedule="cosine", warmup=4)
    lrs = h["lr"]
    assert lrs[3] == pytest.approx(0.1)            # the 4th step is the first at the full rate
    assert lrs[0] < lrs[1] < lrs[2]
    assert lrs[-1] < 0.01                          # decays towards 0
    assert cosine_warmup_lr(0, 100, warmup=10) == pytest.approx(0.1)
    assert cosine_warmup_lr(100, 100, warmup=10) == pytest.approx(0.0)


def test_warmup_is_at_most_a_tenth_of_a_short_run():
    # 20 steps with a nominal 100-step warm-up: the warm-up shrinks to 2 steps
    assert cosine_warmup_lr(0, 20, warmup=100) == pytest.approx(0.5)
    assert cosine_warmup_lr(2, 20, warmup=100) == pytest.approx(1.0)
    assert cosine_warmup_lr(0, 5, warmup=100) == pytest.approx(1.0)    # never below one step
    assert cosine_warmup_lr(50, 10_000, warmup=100) == pytest.approx(0.51)   # long runs keep 100 steps


def test_unknown_lr_schedule_and_bad_epochs():
    x, y = _regression(32)
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        train(nn.Linear(3, 1), _mse, TensorLoader(x, y, batch_size=16), 1, lr_schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        train(nn.Linear(3, 1), _mse, TensorLoader(x, y, batch_size=16), -1)


def test_nonfinite_loss_raises():
    x, y = _regression(32)
    with pytest.raises(FloatingPointError, match="learning rate"):
        train(nn.Linear(3, 1), lambda m, b: _mse(m, b) * float("nan"), TensorLoader(x, y, batch_size=16), 1)


def test_ema_moves_toward_weights():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    ema = EMA(model, decay=0.9)
    start = ema.module.weight.detach().clone()
    assert all(not p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        model.weight.add_(1.0)
    target = model.weight.detach().clone()
    dist = [(start - target).abs().max().item()]
    for _ in range(8):
        ema.update(model)
        dist.append((ema.module.weight - target).abs().max().item())
    assert all(b < a for a, b in zip(dist, dist[1:]))   # strictly closer each step
    assert dist[1] == pytest.approx(2 / 11 * dist[0], rel=1e-4)   # warm-up decay min(0.9, 2/11)
    assert dist[-1] < 1e-3 * dist[0]
    # first step: warm-up decay min(0.9, 2 / 11)
    ema2 = EMA(nn.Linear(4, 2), decay=0.9)
    ref = ema2.module.weight.detach().clone()
    m2 = nn.Linear(4, 2)
    ema2.update(m2)
    d = 2 / 11
    assert torch.allclose(ema2.module.weight, d * ref + (1 - d) * m2.weight.detach(), atol=1e-6)


def test_ema_bad_decay():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="decay"):
            EMA(nn.Linear(2, 2), decay=bad)


def test_ema_inside_train():
    x, y = _regression(64)
    model = nn.Linear(3, 1)
    ema = EMA(model, decay=0.5)
    train(model, _mse, TensorLoader(x, y, batch_size=16), epochs=1, ema=ema)
    assert ema.num_updates == 4


def _resumable_run(tmp_path, epochs, kill_after=None):
    """Train a small model with EMA and a noisy loss; optionally 'kill' it after an epoch."""
    x, y = _regression(64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    ema = EMA(model, 0.9)
    g = torch.Generator().manual_seed(1)

    def loss_fn(m, batch):
        xb, yb = batch
        noise = torch.randn(xb.shape, generator=g) * 0.1        # uses the generator, like diffusion_loss
        return ((m(xb + noise).squeeze(1) - yb) ** 2).mean()

    def on_epoch_end(epoch, m):
        if kill_after is not None and epoch == kill_after:
            raise KeyboardInterrupt                              # the student's kernel dies during epoch kill_after + 1
        return {"first_weight": m[0].weight[0, 0].item()} if epoch == 0 else {}

    h = train(model, loss_fn, TensorLoader(x, y, batch_size=16, seed=3), epochs, lr=0.05, lr_schedule="cosine",
              warmup=2, ema=ema, on_epoch_end=on_epoch_end, resume_path=tmp_path / "m.resume.pt",
              resume_config={"run": 1}, generator=g)
    return model, ema, h


def test_killed_training_resumes_where_it_stopped(tmp_path, capsys):
    ref_model, ref_ema, ref_h = _resumable_run(tmp_path / "ref", 4)
    with pytest.raises(KeyboardInterrupt):
        _resumable_run(tmp_path / "killed", 4, kill_after=2)
    assert (tmp_path / "killed" / "m.resume.pt").exists()
    model, ema, h = _resumable_run(tmp_path / "killed", 4)
    assert "resuming train after epoch 2 of 4" in capsys.readouterr().out
    # the resumed run ends exactly where the uninterrupted one did, with what on_epoch_end kept in epoch 1
    assert h["loss"] == ref_h["loss"] and h["lr"] == ref_h["lr"] and len(h["epoch_loss"]) == 4
    assert h["first_weight"] == ref_h["first_weight"]
    for a, b in zip([*model.parameters(), *ema.module.parameters()], [*ref_model.parameters(), *ref_ema.module.parameters()]):
        assert torch.equal(a, b)


def test_resume_state_of_another_run_or_corrupt_is_ignored(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        _resumable_run(tmp_path, 4, kill_after=1)
    _, _, h = _resumable_run(tmp_path, 6)                     # other epoch count: start over
    assert "saved for another run" in capsys.readouterr().out and len(h["epoch_loss"]) == 6
    (tmp_path / "m.resume.pt").write_bytes(b"half a file")
    _, _, h = _resumable_run(tmp_path, 3)
    assert "unreadable" in capsys.readouterr().out and len(h["epoch_loss"]) == 3


def test_mixed_precision_keeps_float32_weights_and_learns():
    """bf16 autocast (on by default on a CUDA GPU) can be forced on the CPU to test the same code path."""
    x, y = _regression(256)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    seen = []

    def loss_fn(m, batch):
        xb, yb = batch
        pred = m(xb)                                         # (B, 1)
        seen.append(pred.dtype)
        return ((pred.float() - yb) ** 2).mean()

    h = train(model, loss_fn, TensorLoader(x, y, batch_size=32), 8, lr=0.02, mixed_precision=True)
    assert seen[0] == torch.bfloat16                     # the forward pass ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert h["epoch_loss"][-1] < 0.5 * h["epoch_loss"][0]
    assert len(h["loss"]) == 8 * len(TensorLoader(x, y, batch_size=32))


# --- every trainer of the course resumes a killed run ------------------------------------------------------

def _tiny_profile(**budget):
    import dataclasses

    from course_utils.profiles import get_profile
    return dataclasses.replace(get_profile("smoke"), batch_size=16, width=4, use_pretrained=False, epoch_budget=budget)


def _digits(n: int = 32, size: int = 28):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.arange(n) % 10


def _diffusion(p):
    from course_utils.diffusion import train_diffusion, unet_config
    x, y = _digits(32, 12)
    return train_diffusion("t_cfg", p, x, y, arch=unet_config(p, conditional=True, channel_mults=(1, 2)),
                           p_uncond=0.1, epochs=2)


def _denoiser(p):
    from course_utils.denoiser import train_denoiser
    x, _ = _digits(32, 12)
    return train_denoiser(p, x, probe=x[:2], epochs=2, name="t_denoiser")


def _classifier(p):
    from course_utils.guidance import train_noisy_classifier
    x, y = _digits()
    return train_noisy_classifier(p, x, y, epochs=2, name="t_noisy_classifier")


def _autoencoder(p):
    from course_utils.autoencoder import train_autoencoder
    return train_autoencoder(p, _digits()[0], epochs=2)


def _vae(p):
    from course_utils.recap import train_vae
    return train_vae(p, _digits()[0], latent_dim=2, epochs=2, name="t_vae")


def _gan(p):
    from course_utils.recap import train_dcgan
    return train_dcgan(p, _digits()[0], latent_dim=4, epochs=2, name="t_gan")


TRAINERS = {"diffusion": (_diffusion, "t_cfg"), "denoiser": (_denoiser, "t_denoiser"),
            "noisy_classifier": (_classifier, "t_noisy_classifier"), "autoencoder": (_autoencoder, "autoencoder"),
            "vae": (_vae, "t_vae"), "gan": (_gan, "t_gan")}


@pytest.mark.parametrize("kind", TRAINERS)
def test_every_trainer_resumes_a_killed_run(kind, tmp_path, monkeypatch, capsys):
    """The kernel dies right after epoch 1 of 2; running the cell again finishes the run as if nothing happened."""
    from course_utils import gan, training
    trainer, name = TRAINERS[kind]
    saver = gan if kind == "gan" else training                   # the module whose loop writes the resume state
    p = _tiny_profile()
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "ref"))
    ref_model, ref_hist, _ = trainer(p)

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "killed"))
    real_save = saver.atomic_save

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt("the kernel died")

    monkeypatch.setattr(saver, "atomic_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer(p)
    folder = tmp_path / "killed" / "checkpoints"
    assert (folder / f"{name}.resume.pt").exists() and not (folder / f"{name}.pt").exists()
    monkeypatch.setattr(saver, "atomic_save", real_save)
    capsys.readouterr()
    model, hist, _ = trainer(p)
    assert "after epoch 1 of 2" in capsys.readouterr().out
    assert hist == ref_hist and len(hist["epoch_loss" if kind != "gan" else "epoch_d_loss"]) == 2
    ref_state = ref_model.state_dict()
    assert all(torch.equal(v, ref_state[k]) for k, v in model.state_dict().items())
    assert (folder / f"{name}.pt").exists() and not (folder / f"{name}.resume.pt").exists()


def test_the_lr_history_holds_the_rate_each_step_used_and_an_empty_loader_is_refused():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    loader = TensorLoader(torch.randn(40, 2), torch.randn(40, 1), batch_size=8)
    loss_fn = lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()                       # noqa: E731
    history = train(model, loss_fn, loader, 2, lr=0.1, lr_schedule="cosine", warmup=4)
    total = 2 * len(loader)
    assert history["lr"] == pytest.approx([0.1 * cosine_warmup_lr(s, total, 4) for s in range(total)])
    with pytest.raises(ValueError, match="no batch"):
        train(model, loss_fn, TensorLoader(torch.randn(4, 2), torch.randn(4, 1), batch_size=8), 1)
