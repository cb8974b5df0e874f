"""Hidden tests of notebooks/05_class_conditioning_cfg.ipynb: one ``test_<exercise>(fn)`` per exercise.

Each compares the student's function ``fn`` with the reference in course_utils on inputs the
notebook's check cells do not use, and raises AssertionError on a difference. Tiny probe models
stand in for the course UNet and the noisy classifier.
"""
import torch
from torch import nn

from course_utils import diffusion, guidance, samplers
from course_utils.checks import check_function
from course_utils.device import cpu_generator
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class _ProbeUNet(nn.Module):
    """eps(x_t, t, y) for 10 classes plus the null label 10; every input changes the output."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.label = nn.Embedding(self.num_classes + 1, 1)

    def forward(self, x, t, y):
        return self.conv(x) + self.label(y).view(-1, 1, 1, 1) + (t.float() / 500).view(-1, 1, 1, 1)


class _ProbeClassifier(nn.Module):
    """logits(x_t, t) of shape (B, 10)."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(36, self.num_classes)

    def forward(self, x, t):
        return self.linear(torch.tanh(x.flatten(1))) * (1 + t.float().view(-1, 1) / 1000)


def test_l_simple_cfg(fn):
    model, schedule = _ProbeUNet(), NoiseSchedule("cosine", 120)
    x0, y = _randn(8, 1, 6, 6, seed=1).clamp(-1, 1), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    ours = lambda m, x, y_, s, p, seed: fn(m, x, y_, s, p, cpu_generator(seed))  # noqa: E731
    ref = lambda m, x, y_, s, p, seed: diffusion.diffusion_loss(m, x, s, y=y_, p_uncond=p,  # noqa: E731
                                                               generator=cpu_generator(seed))
    with torch.no_grad():
        check_function(ours, ref, cases=[(model, x0, y, schedule, p, seed) for p, seed in [(0.0, 5), (0.3, 6), (1.0, 7)]],
                       name="l_simple_cfg", quiet=True)


def test_cfg_eps(fn):
    model = _ProbeUNet()
    x, t, y = _randn(4, 1, 6, 6, seed=2), torch.tensor([5, 0, 77, 999]), torch.tensor([9, 0, 3, 3])
    with torch.no_grad():
        check_function(fn, samplers.guided_eps, cases=[(model, x, t, y, w) for w in (0.5, 2.0, 12.0)], atol=1e-4,
                       quiet=True)


def test_classifier_log_prob_grad(fn):
    clf = _ProbeClassifier()
    x, t, y = _randn(3, 1, 6, 6, seed=3), torch.tensor([10, 400, 900]), torch.tensor([7, 7, 0])
    with torch.no_grad():
        check_function(fn, guidance.classifier_log_prob_grad, cases=[(clf, x, t, y), (clf, x[:1] * 3, t[:1], y[:1])],
                       quiet=True)


def test_apply_classifier_guidance(fn):
    ab = NoiseSchedule("cosine", 100).alpha_bar
    eps, grad = _randn(3, 2, 4, 4, seed=4), _randn(3, 2, 4, 4, seed=5)
    t = torch.tensor([99, 0, 42])
    check_function(fn, guidance.apply_classifier_guidance, cases=[(eps, grad, t, s, ab) for s in (0.5, 4.0)],
                   quiet=True)
