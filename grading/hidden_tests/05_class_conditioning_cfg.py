"""Hidden tests of notebooks/05_class_conditioning_cfg.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). Tiny
probe models stand in for the course UNet and the noisy classifier.
"""
import torch

from course_tools.grading.hidden import Build, Exercise, Generator
from course_tools.grading.probes import ClassifierProbe, LabelProbe
from course_utils import diffusion, guidance, samplers
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _l_simple_cfg(model, x0, y, schedule, p_uncond, generator):
    return diffusion.diffusion_loss(model, x0, schedule, y=y, p_uncond=p_uncond, generator=generator)


def test_l_simple_cfg() -> Exercise:
    model, schedule = Build(LabelProbe, seed=0), Build(NoiseSchedule, "cosine", 120)
    x0, y = _randn(8, 1, 6, 6, seed=1).clamp(-1, 1), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    cases = [(model, x0, y, schedule, p, Generator(seed)) for p, seed in [(0.0, 5), (0.3, 6), (1.0, 7)]]
    return Exercise(_l_simple_cfg, cases=cases, no_grad=True)


def test_cfg_eps() -> Exercise:
    model = Build(LabelProbe, seed=0)
    x, t, y = _randn(4, 1, 6, 6, seed=2), torch.tensor([5, 0, 77, 999]), torch.tensor([9, 0, 3, 3])
    return Exercise(samplers.guided_eps, cases=[(model, x, t, y, w) for w in (0.5, 2.0, 12.0)], atol=1e-4,
                    no_grad=True)


def test_classifier_log_prob_grad() -> Exercise:
    clf = Build(ClassifierProbe, seed=1)
    x, t, y = _randn(3, 1, 6, 6, seed=3), torch.tensor([10, 400, 900]), torch.tensor([7, 7, 0])
    return Exercise(guidance.classifier_log_prob_grad, cases=[(clf, x, t, y), (clf, x[:1] * 3, t[:1], y[:1])],
                    no_grad=True)


def test_apply_classifier_guidance() -> Exercise:
    ab = NoiseSchedule("cosine", 100).alpha_bar
    eps, grad = _randn(3, 2, 4, 4, seed=4), _randn(3, 2, 4, 4, seed=5)
    t = torch.tensor([99, 0, 42])
    return Exercise(guidance.apply_classifier_guidance, cases=[(eps, grad, t, s, ab) for s in (0.5, 4.0)])
