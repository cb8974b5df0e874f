"""The `full` profile's GPU code path, exercised on the CPU (issue: no student should be the first to run it).

On a CUDA GPU the `full` profile trains with bfloat16 autocast and the channels-last layout at
batch 256, and samples and scores in batches of 1000. No GPU is lent to this project, so these
tests run exactly that code with CPU autocast: one training epoch of the full-profile UNet and one
sampling-and-scoring pass at the metric batch size.
"""
from __future__ import annotations

import pytest
import torch

from course_utils import metrics
from course_utils.data import TensorLoader, load_mnist
from course_utils.diffusion import diffusion_loss, make_unet, unet_config
from course_utils.profiles import get_profile
from course_utils.samplers import DDIMScheduler, sample_batches
from course_utils.schedules import NoiseSchedule
from course_utils.training import EMA, train

FULL = get_profile("full")


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = make_unet(unet_config(FULL))
    ema = EMA(model, 0.999)
    schedule = NoiseSchedule("linear", FULL.num_timesteps)
    images, _ = load_mnist("train", n=FULL.batch_size)
    g = torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train(model, lambda m, b: diffusion_loss(m, b[0], schedule, generator=g),
                    TensorLoader(images, None, batch_size=FULL.batch_size), 1, lr=2e-3, lr_schedule="cosine",
                    ema=ema, generator=g, mixed_precision=True)
    return model, ema, before, history


def test_a_bf16_channels_last_training_epoch_at_the_full_batch_size(trained):
    model, ema, before, history = trained
    assert FULL.batch_size == 256 and len(history["loss"]) == 1
    assert all(torch.isfinite(torch.tensor(history["loss"])))
    assert all(p.dtype == torch.float32 for p in model.parameters())           # autocast leaves the weights fp32
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] == 3)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert ema.num_updates == 1


def test_sampling_and_scoring_at_the_metric_batch_size(trained):
    _, ema, _, _ = trained
    scheduler = DDIMScheduler(NoiseSchedule("linear", FULL.num_timesteps)).set_timesteps(1)
    x = sample_batches(ema.module, scheduler, 1000, seed=0, batch_size=1000, progress=False)
    assert x.shape == (1000, 1, 28, 28) and x.abs().max() <= 1 and torch.isfinite(x).all()
    scores = metrics.evaluate_samples(x)
    assert scores["n"] == 1000 and scores["floor"] > 0 and scores["frechet"] > scores["floor"]
