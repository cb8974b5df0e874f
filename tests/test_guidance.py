"""Classifier guidance: the noise-aware classifier and the guided eps (course_utils.guidance, notebook 05)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_utils import guidance
from course_utils.device import cpu_generator, randn
from course_utils.guidance import (NoisyClassifier, apply_classifier_guidance, classifier_guidance_fn,
                                   classifier_guided_eps, classifier_log_prob_grad, noisy_classifier_config,
                                   noisy_classifier_loss, train_noisy_classifier)
from course_utils.profiles import PROFILES
from course_utils.samplers import DDIMScheduler, sample
from course_utils.schedules import NoiseSchedule
from course_utils.unet import UNet

SCHEDULE = NoiseSchedule("linear", 1000)


def clf() -> NoisyClassifier:
    torch.manual_seed(0)
    return NoisyClassifier(base_channels=8).eval()


def test_classifier_shapes_and_time_dependence():
    c = clf()
    x = torch.randn(3, 1, 28, 28)
    logits = c(x, torch.tensor([0, 500, 999]))
    assert logits.shape == (3, 10)
    assert not torch.allclose(c(x, torch.tensor([0, 0, 0])), c(x, torch.tensor([900, 900, 900])))


@pytest.mark.parametrize("x, t, match", [
    (torch.randn(2, 1, 32, 32), torch.tensor([1, 2]), r"\(B, 1, 28, 28\)"),       # wrong image size
    (torch.randn(2, 3, 28, 28), torch.tensor([1, 2]), r"\(B, 1, 28, 28\)"),       # wrong channels
    (torch.randn(1, 28, 28), torch.tensor([1]), r"\(B, 1, 28, 28\)"),             # no batch dimension
    (torch.randn(2, 1, 28, 28), torch.tensor([1, 1000]), "timesteps must lie"),   # t out of range
    (torch.randn(2, 1, 28, 28), torch.tensor([-1, 5]), "timesteps must lie"),
    (torch.randn(2, 1, 28, 28), torch.tensor([0.5, 5.0]), "integers"),
])
def test_classifier_bad_input_raises(x, t, match):
    with pytest.raises(ValueError, match=match):
        clf()(x, t)


def test_log_prob_grad_matches_autograd_per_image_and_works_under_no_grad():
    c = clf()
    x = torch.randn(3, 1, 28, 28)
    t, y = torch.tensor([10, 400, 800]), torch.tensor([1, 7, 3])
    with torch.no_grad():
        g = classifier_log_prob_grad(c, x, t, y)
    assert g.shape == x.shape
    for i in range(3):
        xi = x[i:i + 1].clone().requires_grad_(True)
        lp = F.log_softmax(c(xi, t[i:i + 1]), 1)[0, y[i]]
        (want,) = torch.autograd.grad(lp, xi)
        assert torch.allclose(g[i:i + 1], want, atol=1e-5)


def test_guided_eps_formula_and_scale_zero():
    g = cpu_generator(0)
    eps, grad = randn(2, 1, 28, 28, generator=g), randn(2, 1, 28, 28, generator=g)
    t = torch.tensor([100, 900])
    got = apply_classifier_guidance(eps, grad, t, 2.5, SCHEDULE.alpha_bar)
    ab = SCHEDULE.alpha_bar[t].view(-1, 1, 1, 1)
    assert torch.allclose(got, eps - 2.5 * (1 - ab).sqrt() * grad)
    assert torch.allclose(apply_classifier_guidance(eps, grad, t, 0.0, SCHEDULE.alpha_bar), eps)
    torch.manual_seed(0)
    unet = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False), num_classes=10).eval()
    x = randn(2, 1, 28, 28, generator=g)
    y = torch.tensor([4, 5])
    with torch.no_grad():
        eps_u = unet(x, t)                                                   # null label
    assert torch.allclose(classifier_guided_eps(unet, clf(), x, t, y, 0.0, SCHEDULE.alpha_bar), eps_u)
    want = eps_u - 3.0 * (1 - ab).sqrt() * classifier_log_prob_grad(clf(), x, t, y)
    assert torch.allclose(classifier_guided_eps(unet, clf(), x, t, y, 3.0, SCHEDULE.alpha_bar), want, atol=1e-6)


def test_guidance_raises_on_bad_labels_and_scale():
    c = clf()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="labels must lie"):
        classifier_log_prob_grad(c, x, t, torch.tensor([3, 10]))             # 10 is no digit
    with pytest.raises(ValueError, match="labels must lie"):
        classifier_guidance_fn(c, c, torch.tensor([-1]), 1.0, SCHEDULE.alpha_bar)
    with pytest.raises(ValueError, match="shape"):
        classifier_log_prob_grad(c, x, t, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="finite"):
        apply_classifier_guidance(x, x, t, float("nan"), SCHEDULE.alpha_bar)
    with pytest.raises(ValueError, match="grad_log_p has shape"):
        apply_classifier_guidance(x, x[:1], t, 1.0, SCHEDULE.alpha_bar)


def test_guidance_pushes_the_classifier_toward_the_label():
    """A few DDIM steps guided by a classifier: the guided samples score higher log p(y | x) than unguided."""
    c = clf()
    torch.manual_seed(0)
    unet = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False)).eval()
    s = DDIMScheduler(SCHEDULE).set_timesteps(4)
    y = torch.full((4,), 3)
    shape = (4, 1, 28, 28)

    def score(x):
        with torch.no_grad():
            return F.log_softmax(c(x, torch.zeros(4, dtype=torch.long)), 1)[:, 3].mean().item()

    plain = sample(unet, s, shape, generator=cpu_generator(0), progress=False)
    guided = sample(unet, s, shape, generator=cpu_generator(0), progress=False,
                    eps_fn=classifier_guidance_fn(unet, c, y, 50.0, SCHEDULE.alpha_bar))
    assert score(guided) > score(plain)


def test_loss_and_train_then_load(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    p = PROFILES["smoke"]
    x = torch.rand(p.batch_size, 1, 28, 28) * 2 - 1
    y = torch.arange(p.batch_size) % 10
    c = clf()
    loss = noisy_classifier_loss(c, x, y, SCHEDULE, generator=cpu_generator(0))
    assert loss.dim() == 0 and 1.0 < loss.item() < 4.0                       # about log(10) at init
    with pytest.raises(ValueError, match="labels must lie"):
        noisy_classifier_loss(c, x, y + 1, SCHEDULE)
    arch = noisy_classifier_config(p, base_channels=4)
    m, hist, config = train_noisy_classifier(p, x, y, arch=arch, epochs=1)
    assert len(hist["loss"]) == 1 and config["train"]["epochs"] == 1 and not m.training
    assert config["model"] == "NoisyClassifier" and config["arch"] == arch
    assert config["task"] == {"schedule": "linear", "T": p.num_timesteps}
    assert (tmp_path / "checkpoints" / "noisy_classifier.pt").exists()
    m2, hist2, _ = train_noisy_classifier(p, x, y, arch=arch, epochs=1)
    assert hist2["loss"] == pytest.approx(hist["loss"])
    with pytest.raises(ValueError, match="one label per image"):
        train_noisy_classifier(p, x, y[:3], arch=arch, epochs=1)
    assert guidance.__all__


def test_best_guidance_weight_prefers_fidelity_among_the_most_accurate():
    s = lambda acc, fd: {"accuracy": acc, "frechet": fd}        # noqa: E731
    sweep = {0.0: s(0.10, 90.0), 1.0: s(0.90, 40.0), 3.0: s(0.998, 60.0), 5.0: s(1.0, 80.0), 7.0: s(1.0, 95.0)}
    assert guidance.best_guidance_weight(sweep) == 3.0           # within half a point of 100%, lowest Frechet
    assert guidance.best_guidance_weight(sweep, tol=0.0) == 5.0  # only the exact best accuracy counts
    assert guidance.best_guidance_weight(sweep, tol=0.2) == 1.0  # a loose tolerance trades accuracy for fidelity
    with pytest.raises(ValueError, match="empty"):
        guidance.best_guidance_weight({})
    with pytest.raises(ValueError, match="accuracy"):
        guidance.best_guidance_weight({1.0: {"frechet": 3.0}})


def test_hand_written_guided_loop_matches_sample_with_step_noise():
    """Notebook 05's exercise 6: a loop over scheduler.step with the guided eps and StepNoise is samplers.sample."""
    from course_utils.samplers import DDPMScheduler, StepNoise

    c = clf()
    torch.manual_seed(0)
    unet = UNet(base_channels=8, channel_mults=(1, 2), attention=(False, False), num_classes=10).eval()
    s = DDPMScheduler(SCHEDULE).set_timesteps(3)
    y, shape = torch.tensor([1, 6]), (2, 1, 28, 28)
    x_T, noise = randn(shape, generator=cpu_generator(1)), StepNoise(shape, seed=2)
    want = sample(unet, s, shape, x_T=x_T, noise_fn=noise, progress=False,
                  eps_fn=classifier_guidance_fn(unet, c, y, 4.0, SCHEDULE.alpha_bar))
    x = x_T
    for t in s.timesteps.tolist():
        tb = torch.full((2,), t)
        eps = classifier_guided_eps(unet, c, x, tb, y, 4.0, SCHEDULE.alpha_bar)
        with torch.no_grad():
            x = s.step(eps, t, x, noise=noise(t)).prev_sample
    assert torch.allclose(x, want, atol=1e-5)
