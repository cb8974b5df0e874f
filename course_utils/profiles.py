"""Run profiles: one object holds every budget of the course (taught in 00_setup).

Pick one with the environment variable ``COURSE_PROFILE``:

* ``smoke``: every notebook end to end in a few minutes on one CPU thread (the tests, and the
  outputs committed with the notebooks): tiny budgets for what a notebook trains, but the shipped
  checkpoints of ``data/checkpoints/`` for every model whose training is not itself the exercise,
  so the committed figures show trained models (hence the shipped models' width).
* ``cpu``:   a laptop: seconds to about five minutes per notebook on one thread (03, which trains
  two denoisers, is the longest; BENCHMARKS.md has the times). It loads the shipped checkpoints of ``data/checkpoints/``
  and prints the shipped reference runs beside its small live metric runs.
* ``full``:  the real course on one GPU.

Notebooks never hard-code an epoch count: they ask ``profile.epochs("ddpm")``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Mapping

import torch

__all__ = ["Profile", "PROFILES", "get_profile", "default_profile_name"]


@dataclass(frozen=True)
class Profile:
    """Every budget the notebooks use. Read it, never copy numbers out of it."""

    name: str
    train_images: int | None      # training images used (None: all 60,000)
    test_images: int | None       # test images used (None: all 10,000)
    batch_size: int
    epoch_budget: Mapping[str, int] = field(default_factory=dict)  # model name -> epochs
    width: int = 32               # base channel count of the UNets
    num_timesteps: int = 1000     # T of the diffusion chain
    ddpm_steps: int = 1000        # length of the ancestral (Algorithm 2) chain we can afford: T, or strided
    sample_steps: int = 50        # DDIM steps for quick looks
    n_samples: int = 64           # samples shown in grids
    n_metric_samples: int = 1000  # samples scored by the metrics (Frechet, accuracy)
    use_pretrained: bool = False  # load shipped checkpoints from data/checkpoints/
    progress: bool = True         # draw progress bars (course_utils.progress); off in smoke, whose outputs nbval compares

    def epochs(self, model: str) -> int:
        """Epochs to train ``model`` (e.g. "vae", "ddpm") in this profile."""
        if model not in self.epoch_budget:
            known = ", ".join(sorted(self.epoch_budget))
            raise KeyError(f"profile {self.name!r} has no epoch budget for model {model!r}; known: {known}")
        return self.epoch_budget[model]

    def as_dict(self) -> dict:
        """The profile as plain values (JSON-able); `print(profile)` lists them (notebook 00)."""
        d = asdict(self)
        d["epoch_budget"] = dict(self.epoch_budget)
        return d

    def __str__(self) -> str:
        lines = [f"Profile {self.name!r}"]
        for k, v in self.as_dict().items():
            if k != "name":
                lines.append(f"  {k:<17} {v}")
        return "\n".join(lines)


_MODELS = ("classifier", "vae", "gan", "denoiser", "ddpm", "cfg", "noisy_classifier", "autoencoder", "ldm")

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", train_images=2048, test_images=512, batch_size=128,
        epoch_budget={m: 1 for m in _MODELS},
        width=32, num_timesteps=1000, ddpm_steps=50, sample_steps=10, n_samples=16, n_metric_samples=256,
        use_pretrained=True, progress=False,
    ),
    "cpu": Profile(
        name="cpu", train_images=10000, test_images=10000, batch_size=128,
        epoch_budget={"classifier": 3, "vae": 5, "gan": 5, "denoiser": 1, "ddpm": 2, "cfg": 2,
                      "noisy_classifier": 2, "autoencoder": 3, "ldm": 10},
        width=32, num_timesteps=1000, sample_steps=50, n_samples=64, n_metric_samples=500,
        use_pretrained=True,
    ),
    "full": Profile(
        name="full", train_images=None, test_images=None, batch_size=256,
        epoch_budget={"classifier": 8, "vae": 30, "gan": 30, "denoiser": 10, "ddpm": 40, "cfg": 40,
                      "noisy_classifier": 10, "autoencoder": 30, "ldm": 60},
        width=32, num_timesteps=1000, sample_steps=50, n_samples=100, n_metric_samples=10000,
        use_pretrained=True,
    ),
}


def default_profile_name() -> str:
    """``full`` when a CUDA GPU is present, else ``cpu``."""
    return "full" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """The profile named ``name``, else ``$COURSE_PROFILE``, else the machine's default."""
    if name is None:
        name = os.environ.get("COURSE_PROFILE", "").strip() or default_profile_name()
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; valid profiles are: {', '.join(PROFILES)}. "
            "Set COURSE_PROFILE to one of them (or unset it for the machine's default)."
        )
    return PROFILES[key]
