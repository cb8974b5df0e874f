"""Hidden tests of notebooks/05_class_conditioning_cfg.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). Tiny
probe models stand in for the course UNet and the noisy classifier, ``strided_scheduler`` builds the
sampling loops' schedulers, and a ``StepNoise`` gives their step noise. ``forbid`` lists course_utils's
own answer to each exercise: calling it scores "delegated".
"""
import torch

from course_tools.grading.hidden import Build, Exercise
from course_tools.grading.probes import ClassifierProbe, LabelProbe, TimeProbe, strided_scheduler
from course_utils import diffusion, guidance, samplers
from course_utils.schedules import NoiseSchedule


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _l_simple_cfg(model, x0, y, t, eps, drop, schedule):
    return diffusion.l_simple(model, x0, t, eps, schedule, y=y, drop=drop)


def _cfg_sample(model, scheduler, x_T, y, w, noise, return_trajectory=False):
    return samplers.sample(model, scheduler, tuple(x_T.shape), y=y, guidance=w, x_T=x_T, noise_fn=noise,
                           return_trajectory=return_trajectory, progress=False)


def _classifier_guided_sample(model, classifier, scheduler, x_T, y, scale, noise):
    eps_fn = guidance.classifier_guidance_fn(model, classifier, y, scale, scheduler.schedule.alpha_bar)
    return samplers.sample(model, scheduler, tuple(x_T.shape), x_T=x_T, eps_fn=eps_fn, noise_fn=noise,
                           progress=False)


_LOOP = (samplers.sample, samplers.sample_batches)


def test_l_simple_cfg() -> Exercise:
    model, schedule = Build(LabelProbe, seed=0), Build(NoiseSchedule, "cosine", 120)
    x0, y = _randn(8, 1, 6, 6, seed=1).clamp(-1, 1), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    t, eps = torch.tensor([0, 119, 5, 60, 60, 1, 100, 33]), _randn(8, 1, 6, 6, seed=2)
    drops = [torch.zeros(8, dtype=torch.bool), torch.tensor([1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.bool),
             torch.ones(8, dtype=torch.bool)]
    cases = [(model, x0, y, t, eps, d, schedule) for d in drops] + [(model, x0[:2], y[:2], t[:2], eps[:2] * 2,
                                                                     drops[1][:2], schedule)]
    return Exercise(_l_simple_cfg, cases=cases, no_grad=True, forbid=(diffusion.l_simple, diffusion.diffusion_loss))


def test_cfg_eps() -> Exercise:
    model = Build(LabelProbe, seed=0)
    x, t, y = _randn(4, 1, 6, 6, seed=2), torch.tensor([5, 0, 77, 999]), torch.tensor([9, 0, 3, 3])
    return Exercise(samplers.guided_eps, cases=[(model, x, t, y, w) for w in (0.5, 2.0, 12.0)], atol=1e-4,
                    no_grad=True, forbid=(samplers.guided_eps,))


def test_cfg_sample() -> Exercise:
    model = Build(LabelProbe, seed=3)
    ddpm = Build(strided_scheduler, "ddpm", "linear", 60, 6)
    ddim = Build(strided_scheduler, "ddim", "cosine", 80, 4, eta=0.5)
    x_T, y = _randn(3, 1, 6, 6, seed=6), torch.tensor([2, 7, 0])
    noise = Build(samplers.StepNoise, (3, 1, 6, 6), 11)
    cases = [(model, scheduler, x_T, y, w, noise) for scheduler in (ddpm, ddim) for w in (0.0, 1.0, 2.5)]
    cases.append((model, ddim, x_T, y, 4.0, noise, True))
    return Exercise(_cfg_sample, cases=cases, atol=1e-4, no_grad=True, forbid=_LOOP + (samplers.guided_eps,))


def test_classifier_log_prob_grad() -> Exercise:
    clf = Build(ClassifierProbe, seed=1)
    x, t, y = _randn(3, 1, 6, 6, seed=3), torch.tensor([10, 400, 900]), torch.tensor([7, 7, 0])
    return Exercise(guidance.classifier_log_prob_grad, cases=[(clf, x, t, y), (clf, x[:1] * 3, t[:1], y[:1])],
                    no_grad=True, forbid=(guidance.classifier_log_prob_grad,))


def test_apply_classifier_guidance() -> Exercise:
    ab = NoiseSchedule("cosine", 100).alpha_bar
    eps, grad = _randn(3, 2, 4, 4, seed=4), _randn(3, 2, 4, 4, seed=5)
    t = torch.tensor([99, 0, 42])
    return Exercise(guidance.apply_classifier_guidance, cases=[(eps, grad, t, s, ab) for s in (0.5, 4.0)],
                    forbid=(guidance.apply_classifier_guidance, guidance.classifier_guided_eps))


def test_classifier_guided_sample() -> Exercise:
    model, clf = Build(TimeProbe, seed=4), Build(ClassifierProbe, seed=5)
    ddpm = Build(strided_scheduler, "ddpm", "cosine", 70, 5, variance="beta_tilde")
    ddim = Build(strided_scheduler, "ddim", "linear", 90, 3)
    x_T, y = _randn(2, 1, 6, 6, seed=7), torch.tensor([4, 8])
    noise = Build(samplers.StepNoise, (2, 1, 6, 6), 13)
    cases = [(model, clf, scheduler, x_T, y, s, noise) for scheduler in (ddpm, ddim) for s in (0.0, 2.0, 25.0)]
    return Exercise(_classifier_guided_sample, cases=cases, atol=1e-4, no_grad=True,
                    forbid=_LOOP + (guidance.classifier_guidance_fn, guidance.classifier_guided_eps,
                                    guidance.classifier_log_prob_grad, guidance.apply_classifier_guidance))
