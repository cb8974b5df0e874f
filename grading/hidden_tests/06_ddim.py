"""Hidden tests of notebooks/06_ddim.ipynb: one ``test_<exercise>()`` per exercise.

Each returns the reference in course_utils and inputs the notebook's check cells do not use; the
grader computes the answers and compares the student's (see course_tools/grading/hidden.py). Tiny
probe models stand in for the course UNet, ``strided_scheduler`` builds the scheduler and
``StepNoise`` the step noise on both sides. ``forbid`` lists course_utils's own answer to each
exercise: an answer that calls it scores "delegated".
"""
import torch

from course_tools.grading.hidden import Build, Exercise
from course_tools.grading.probes import LabelProbe, TimeProbe, strided_scheduler
from course_utils import editing, samplers
from course_utils.schedules import NoiseSchedule

_SCHED = NoiseSchedule("cosine", 200)
_LOOPS = (samplers.sample, samplers.sample_batches, samplers.DDIMScheduler.step, samplers.DDPMScheduler.step,
          editing.denoise_from)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _invert_step(x, eps, ab_s, ab_t):
    return samplers.ddim_step(x, eps, ab_s, ab_t, eta=0.0)


def _ddim_sample(model, scheduler, x, noise, y=None, guidance=None, start=0):
    if start == 0:
        return samplers.sample(model, scheduler, tuple(x.shape), x_T=x, y=y, guidance=guidance, noise_fn=noise,
                               progress=False)
    return editing.denoise_from(scheduler, x, start, lambda x, t: samplers.guided_eps(model, x, t, y, guidance),
                                noise_fn=noise)


def _sdedit(model, x0, scheduler, i_start, eps, noise, y=None, guidance=None):
    return editing.sdedit(model, x0, scheduler, i_start, y=y, guidance=guidance, eps=eps, noise_fn=noise)


def _inpaint(model, x_known, mask, scheduler, x_T, noise, known_noise, y=None, guidance=None):
    return editing.inpaint(model, x_known, mask, scheduler, y=y, guidance=guidance, x_T=x_T, noise_fn=noise,
                           known_noise_fn=known_noise)


def test_ddim_sigma() -> Exercise:
    ab, ab_prev = _SCHED.alpha_bar, _SCHED.alpha_bar_prev
    kept = torch.tensor([180, 120, 60, 0])
    return Exercise(samplers.ddim_sigma, cases=[(ab[1:150], ab_prev[1:150], 0.7), (ab[kept[:-1]], ab[kept[1:]], 1.0),
                                                (ab[kept[:-1]], ab[kept[1:]], 0.0)],
                    forbid=(samplers.ddim_sigma,))


def test_ddim_step() -> Exercise:
    ab = _SCHED.alpha_bar
    x_t, eps, z = _randn(2, 1, 5, 5, seed=1), _randn(2, 1, 5, 5, seed=2), _randn(2, 1, 5, 5, seed=3)
    return Exercise(samplers.ddim_step, cases=[(x_t, eps, ab[150], ab[120], 0.0), (x_t, eps, ab[90], ab[10], 0.8, z),
                                               (x_t, eps, ab[60], ab[59], 1.0),
                                               (x_t, eps, ab[170], ab[100], 0.0, None, True),      # clip_sample
                                               (x_t, eps, ab[40], torch.tensor(1.0), 0.6, z, True)], atol=1e-4,
                    forbid=(samplers.ddim_step, samplers.DDIMScheduler.step))


def test_ddim_sample() -> Exercise:
    time_probe, label_probe = Build(TimeProbe, seed=0), Build(LabelProbe, seed=1)
    x = _randn(2, 1, 6, 6, seed=10)
    noise = Build(samplers.StepNoise, (2, 1, 6, 6), 11)
    y = torch.tensor([3, 9])
    return Exercise(_ddim_sample, cases=[
        (time_probe, Build(strided_scheduler, "ddim", "cosine", 100, 6, eta=0.0), x, noise),
        (time_probe, Build(strided_scheduler, "ddim", "linear", 120, 7, eta=0.7, clip_sample=False), x, noise),
        (label_probe, Build(strided_scheduler, "ddim", "cosine", 100, 5, eta=1.0), x, noise, y, 2.5),
        (label_probe, Build(strided_scheduler, "ddim", "linear", 80, 9, eta=0.3), x, noise, y, 1.5, 4),
    ], atol=1e-4, no_grad=True, forbid=_LOOPS + (samplers.ddim_step,))


def test_ddim_invert_step() -> Exercise:
    ab = _SCHED.alpha_bar
    x_s, eps = _randn(2, 1, 5, 5, seed=4), _randn(2, 1, 5, 5, seed=5)
    return Exercise(_invert_step, cases=[(x_s, eps, ab[5], ab[60]), (x_s, eps, torch.tensor(1.0), ab[10]),
                                         (x_s, eps, ab[100], ab[150])], atol=1e-4,
                    forbid=(samplers.ddim_step, editing.ddim_invert))


def test_slerp() -> Exercise:
    z0, z1 = _randn(2, 3, 4, 4, seed=6), _randn(2, 3, 4, 4, seed=7)          # 3 channels
    flat0, flat1 = _randn(4, 10, seed=8), _randn(4, 10, seed=9)              # (B, D)
    return Exercise(editing.slerp, cases=[(z0, z1, 0.25), (z0, z1, 1.0), (flat0, flat1, 0.6)], atol=1e-4,
                    forbid=(editing.slerp, editing.slerp_path))


def test_sdedit() -> Exercise:
    time_probe, label_probe = Build(TimeProbe, seed=2), Build(LabelProbe, seed=3)
    x0, eps = _randn(2, 1, 6, 6, seed=20).clamp(-1, 1), _randn(2, 1, 6, 6, seed=21)
    noise = Build(samplers.StepNoise, (2, 1, 6, 6), 22)
    return Exercise(_sdedit, cases=[
        (time_probe, x0, Build(strided_scheduler, "ddim", "cosine", 100, 8, eta=0.0), 2, eps, noise),
        (label_probe, x0, Build(strided_scheduler, "ddim", "linear", 150, 10, eta=1.0), 7, eps, noise,
         torch.tensor([0, 4]), 2.0),
        (time_probe, x0, Build(strided_scheduler, "ddim", "cosine", 100, 6, eta=0.5, clip_sample=False), 0, eps, noise),
    ], atol=1e-4, no_grad=True, forbid=(editing.sdedit,) + _LOOPS)


def test_inpaint() -> Exercise:
    time_probe, label_probe = Build(TimeProbe, seed=4), Build(LabelProbe, seed=5)
    x_known, x_T = _randn(2, 1, 6, 6, seed=30).clamp(-1, 1), _randn(2, 1, 6, 6, seed=31)
    noise, known = Build(samplers.StepNoise, (2, 1, 6, 6), 32), Build(samplers.StepNoise, (2, 1, 6, 6), 33)
    left = torch.zeros(6, 6)
    left[:, :2] = 1                                                            # (H, W): keep two columns
    ring = torch.ones(2, 1, 6, 6)
    ring[..., 2:4, 2:4] = 0                                                    # (B, 1, H, W): fill the centre
    return Exercise(_inpaint, cases=[
        (time_probe, x_known, left, Build(strided_scheduler, "ddim", "cosine", 100, 5, eta=1.0), x_T, noise, known),
        (label_probe, x_known, ring, Build(strided_scheduler, "ddim", "linear", 120, 7, eta=0.0), x_T, noise, known,
         torch.tensor([5, 2]), 3.0),
        (time_probe, x_known, ring, Build(strided_scheduler, "ddim", "cosine", 80, 4, eta=0.4, clip_sample=False), x_T,
         noise, known),
    ], atol=1e-4, no_grad=True, forbid=(editing.inpaint,) + _LOOPS)
