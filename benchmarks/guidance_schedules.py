"""Guidance schedules on the shipped class-conditional model: can a w that varies with t, or a rescaled
guided estimate, buy the best-w accuracy at a lower Frechet price than a constant w?

    python benchmarks/guidance_schedules.py measure          # every setting not scored yet (one thread)
    python benchmarks/guidance_schedules.py report           # the table, into BENCHMARKS.md's block

Issue 15 asks, at the best w, for accuracy >= 99.5 % with a Frechet ratio <= 1.5 (n = 2000, DDIM-50).
A constant w trades one for the other (05_ddim50: w = 1.25 99.15 % / 1.32, w = 1.5 99.55 % / 2.12).
Three published sampler-side levers might move that trade-off without more training:

* **guidance interval** (Kynkaenniemi et al. 2024, "Applying guidance in a limited interval"): guide
  only for t in [lo, hi) and use the plain conditional model (w = 1, one network pass) elsewhere.
  On ImageNet, guidance at high noise costs variety and guidance at low noise does little.
* **rescaled guidance** (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
  flawed", eq. 15-16): rescale the guided estimate to the per-image standard deviation of the
  conditional one and mix, eps = phi * rescaled + (1 - phi) * eps_cfg, against over-saturation.
* **autoguidance** (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"):
  extrapolate away from a weaker model with the *same* label, eps = eps_bad + w (eps - eps_bad), instead
  of away from the unconditional estimate; the weaker model here is the shipped ``cfg_lr_cosine`` (the
  same architecture with the eps target, trained 2 epochs on 15,000 images, against cfg's v target and 12
  epochs on 60,000), then ``cfg_guide``: cfg's own recipe (v target, all 60,000 images) stopped after 2
  of cfg's 12 epochs (``pretrain.py --direct cfg_guide=2``), a guide degraded only by shorter training,
  as Karras et al. recommend. On ImageNet it improves FID where CFG trades it away. Autoguidance
  sharpens samples without pulling them toward their class, so two settings add it to CFG:
  eps = eps_cfg(w) + (w_a - 1) (eps_c - eps_bad), CFG for the class, autoguidance for the Frechet price.

Every setting samples the same starting noises: the first n of reference run 05_ddim50's seed-40 half
(DDIM-50, eta = 0, labels 0..9 in turn), so settings compare with each other and with that run's
constant-w rows on the same x_T. One CPU thread, batches of 50, channels-last weights; a guided
setting of n = 1000 takes 3 to 7 CPU minutes (autoguidance, two separate networks per step, about 13). Scores are kept in ``benchmarks/guidance_schedules.json``
(committed), which ``report`` reads.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from course_tools.benchmarks_md import load_script, replace_block
from course_utils import metrics, samplers
from course_utils.checkpoint import atomic_write_text
from course_utils.device import cpu_generator, randn
from course_utils.schedules import NoiseSchedule

ROOT = Path(__file__).resolve().parent.parent
SCORES = ROOT / "benchmarks" / "guidance_schedules.json"          # every score, committed: report reads it
PLOT = ROOT / "benchmarks" / "guidance_schedules.png"
BEGIN, END = "<!-- guidance-schedules: begin -->", "<!-- guidance-schedules: end -->"
SEED, SEED_N = 40, 1000           # 05_ddim50's first half: its x_T are the first 1000 draws of cpu_generator(40)
STEPS, BATCH = 50, 50


@dataclass(frozen=True)
class Setting:
    """w(t) = the w of the first interval [lo, hi) that holds t, else 1 (the conditional model alone)."""

    name: str
    intervals: tuple[tuple[float, int, int], ...]      # (w, lo, hi)
    phi: float = 0.0                                   # rescaled guidance's mix; 0: plain CFG
    guide: str | None = None                           # autoguidance: the weaker shipped model to guide away from
    guide_w: float = 0.0                               # > 0: CFG with w(t), plus autoguidance with this weight

    def w_at(self, t: int) -> float:
        return next((w for w, lo, hi in self.intervals if lo <= t < hi), 1.0)


def _const(w: float) -> Setting:
    return Setting(f"w = {w:g}", ((w, 0, 1000),))


SETTINGS: tuple[Setting, ...] = (
    *(_const(w) for w in (1.0, 1.25, 1.375, 1.5)),                        # the constant-w curve
    Setting("w = 1.5 for t >= 500", ((1.5, 500, 1000),)),                  # high noise only
    Setting("w = 2 for t >= 500", ((2.0, 500, 1000),)),
    Setting("w = 3 for t >= 500", ((3.0, 500, 1000),)),
    Setting("w = 2 for t >= 700", ((2.0, 700, 1000),)),
    Setting("w = 3 for t >= 700", ((3.0, 700, 1000),)),
    Setting("w = 1.5 for 250 <= t < 750", ((1.5, 250, 750),)),            # the middle
    Setting("w = 2 for 300 <= t < 600", ((2.0, 300, 600),)),
    Setting("w = 1.5 for t < 500", ((1.5, 0, 500),)),                      # low noise only
    Setting("w = 2 for t < 400", ((2.0, 0, 400),)),
    Setting("w = 2 for t < 300", ((2.0, 0, 300),)),
    Setting("w = 1.5 for t < 700", ((1.5, 0, 700),)),
    Setting("w = 2 for t >= 700, 1.5 for t < 500", ((2.0, 700, 1000), (1.5, 0, 500))),
    Setting("w = 2 for t >= 700 and t < 400", ((2.0, 700, 1000), (2.0, 0, 400))),
    Setting("w = 1.5, rescaled phi = 0.7", ((1.5, 0, 1000),), phi=0.7),
    Setting("w = 2, rescaled phi = 0.7", ((2.0, 0, 1000),), phi=0.7),
    *(Setting(f"w = {w:g}, autoguidance by cfg_lr_cosine", ((w, 0, 1000),), guide="cfg_lr_cosine") for w in (1.5, 2.0)),
    *(Setting(f"w = {w:g}, autoguidance by cfg_guide", ((w, 0, 1000),), guide="cfg_guide") for w in (1.5, 2.0)),
    *(Setting(f"CFG w = {w:g} and autoguidance w = {a:g} by cfg_guide", ((w, 0, 1000),), guide="cfg_guide", guide_w=a)
      for w, a in ((1.25, 1.5), (1.375, 1.5))),
)


def guided(model: torch.nn.Module, setting: Setting, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
           guides: dict[str, torch.nn.Module] | None = None) -> torch.Tensor:
    """The noise estimate of ``setting`` at x (B, 1, 28, 28), t (B,) (all equal), labels y (B,).

    ``guides``: the weaker models of the autoguidance settings, by name (loaded by :func:`measure`).
    """
    w = setting.w_at(int(t[0]))
    if w == 1.0:
        return model(x, t, y)                                           # one pass: the conditional model
    if setting.guide is not None:                                       # Karras et al. 2024: D_1 + w (D_0 - D_1)
        if not guides or setting.guide not in guides:
            raise ValueError(f"setting {setting.name!r} guides with {setting.guide!r}: pass that model in guides "
                             "(measure() loads it from data/checkpoints)")
        eps_bad = guides[setting.guide](x, t, y)                        # the same label, a weaker model
        if setting.guide_w:                                             # both: CFG, then away from the weaker model
            return samplers.guided_eps(model, x, t, y, w) + (setting.guide_w - 1) * (model(x, t, y) - eps_bad)
        return eps_bad + w * (model(x, t, y) - eps_bad)
    eps = samplers.guided_eps(model, x, t, y, w)                        # eps_u + w (eps_c - eps_u)
    if setting.phi:                                                     # Lin et al. 2024, eq. 15-16
        eps_c = model(x, t, y)
        rescaled = eps * eps_c.std(dim=(1, 2, 3), keepdim=True) / eps.std(dim=(1, 2, 3), keepdim=True)
        eps = setting.phi * rescaled + (1 - setting.phi) * eps
    return eps


def sample(model: torch.nn.Module, schedule: NoiseSchedule, setting: Setting, n: int,
           guides: dict[str, torch.nn.Module] | None = None) -> torch.Tensor:
    """n samples of ``setting`` from 05_ddim50's seed-40 x_T, labels 0..9 in turn: uint8 images (n, 1, 28, 28)."""
    if not 1 <= n <= SEED_N:
        raise ValueError(f"n must be between 1 and {SEED_N} (05_ddim50's half), got {n}")
    x_T = randn((SEED_N, 1, 28, 28), generator=cpu_generator(SEED))[:n]            # (n, 1, 28, 28)
    labels = torch.arange(n) % 10
    out = []
    for i in range(0, n, BATCH):
        y = labels[i:i + BATCH]
        scheduler = samplers.DDIMScheduler(schedule, eta=0.0).set_timesteps(STEPS)
        out.append(samplers.sample(model, scheduler, tuple(x_T[i:i + BATCH].shape), x_T=x_T[i:i + BATCH],
                                   progress=False, eps_fn=lambda x, t, y=y: guided(model, setting, x, t, y, guides)))
    return ((torch.cat(out).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def score(images: torch.Tensor) -> dict:
    """Class accuracy (labels 0..9 in turn) and the Frechet ratio of uint8 ``images`` (n, 1, 28, 28)."""
    labels = torch.arange(len(images)) % 10
    r = metrics.evaluate_samples(images.float() / 127.5 - 1, labels)
    return {"accuracy": round(r["accuracy"], 4), "frechet": round(r["frechet"], 2), "floor": round(r["floor"], 2),
            "ratio": round(r["ratio"], 3)}


def measure(n: int = SEED_N, settings: tuple[Setting, ...] = SETTINGS, scores_path: Path = SCORES) -> dict:
    """Sample and score every setting not in ``scores_path`` at this n (written after each).

    Each score is merged into the file as it is on disk then, so two processes measuring different
    settings (``--only``, one thread each) keep each other's scores.
    """
    torch.set_num_threads(1)
    model, config, _, _ = load_script("reference_runs")._load("cfg")
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])
    scores = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    guides = {}
    for s in settings:
        key = f"{s.name} | n = {n}"
        if key in scores:
            continue
        if s.guide is not None and s.guide not in guides:
            guide, guide_config, _, _ = load_script("reference_runs")._load(s.guide)
            if guide_config["task"]["schedule"] != config["task"]["schedule"] or guide_config["task"]["T"] != config["task"]["T"]:
                raise SystemExit(f"{s.guide} was trained on another noise schedule than cfg: it cannot guide it")
            guides[s.guide] = guide
        t0 = time.process_time()
        images = sample(model, schedule, s, n, guides)
        scores[key] = {"setting": s.name, "n": n, **score(images), "cpu_s": round(time.process_time() - t0),
                       "date": datetime.date.today().isoformat()}
        print(key, scores[key], flush=True)
        on_disk = json.loads(scores_path.read_text()) if scores_path.exists() else {}
        scores = {**on_disk, **{k: v for k, v in scores.items() if k not in on_disk}, key: scores[key]}
        atomic_write_text(scores_path, json.dumps(scores, indent=1) + "\n")
    return scores


def plot(scores: dict, n: int = SEED_N, path: Path = PLOT) -> Path:
    """Accuracy against Frechet ratio: the constant-w curve as a line, every other setting as a labelled point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in scores.values() if r["n"] == n]
    const = sorted((r for r in rows if r["setting"].startswith("w = ") and " " not in r["setting"][4:]),
                   key=lambda r: float(r["setting"][4:]))                 # in order of w
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot([r["ratio"] for r in const], [100 * r["accuracy"] for r in const], "k-o", label="constant w")
    for r in const:
        ax.annotate(r["setting"], (r["ratio"], 100 * r["accuracy"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=8)
    others = [r for r in rows if r not in const]
    kinds = {"rescaled guidance": ("s", lambda name: "rescaled" in name),
             "autoguidance": ("D", lambda name: "autoguidance" in name),
             "guidance interval": ("^", lambda name: "rescaled" not in name and "autoguidance" not in name)}
    for label, (marker, member) in kinds.items():
        group = [r for r in others if member(r["setting"])]
        if group:
            ax.scatter([r["ratio"] for r in group], [100 * r["accuracy"] for r in group], marker=marker, label=label)
    for r in others:
        ax.annotate(r["setting"][4:], (r["ratio"], 100 * r["accuracy"]), textcoords="offset points", xytext=(4, 3),
                    fontsize=6, color="0.35")
    ax.axhline(99.5, color="tab:red", lw=0.8, ls="--", label="99.5 % (the best-w accuracy target)")
    ax.set_xlabel(f"Frechet ratio (n = {n}; the target 1.5 is at n = 2000)")
    ax.set_ylabel("class accuracy (%)")
    ax.set_title("Guidance schedules, shipped cfg model, DDIM-50, same x_T")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(scores: dict, n: int = SEED_N) -> str:
    """The BENCHMARKS.md block: every setting at n, the constant-w rows first."""
    rows = [r for r in scores.values() if r["n"] == n]
    lines = [BEGIN, "## Guidance schedules on the shipped cfg model (issue 15, best-w target)", "",
             f"`python benchmarks/guidance_schedules.py measure` then `report`: the shipped class-conditional "
             f"model, DDIM-{STEPS} (eta = 0), the first {n} starting noises of 05_ddim50's seed-{SEED} half "
             "(labels 0..9 in turn) for every setting, one CPU thread. w(t) is 1 (the conditional model "
             "alone) outside the stated interval; 'rescaled' is Lin et al. 2024's rescaled guidance; 'autoguidance by G' "
             "guides away from the shipped model G with the same label (Karras et al. 2024): cfg_lr_cosine (eps "
             "target, 2 epochs on 15,000 images) or cfg_guide (cfg's own recipe stopped after 2 of its 12 epochs "
             "on 60,000 images). Ratio: "
             f"Frechet distance over the train-vs-test floor at n = {n}; on the same x_T two settings' ratios "
             "differ by less than the spread of independent halves. An accuracy near 99.5 % carries a binomial "
             f"standard error of {100 * (0.995 * 0.005 / n) ** 0.5:.1f} points at this n.", "",
             "![accuracy against Frechet ratio](benchmarks/guidance_schedules.png)", "",
             "| setting | accuracy | Frechet | ratio | CPU s |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {100 * r['accuracy']:.1f}% | {r['frechet']:.2f} | {r['ratio']:.3f} | {r['cpu_s']} |"
              for r in rows]
    return "\n".join(lines + [END])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cmd", choices=("measure", "report"))
    parser.add_argument("--n", type=int, default=SEED_N, help=f"samples per setting (at most {SEED_N})")
    parser.add_argument("--only", default=None, help="measure only the settings whose name contains this text")
    args = parser.parse_args(argv)
    chosen = tuple(s for s in SETTINGS if args.only is None or args.only in s.name)
    if not chosen:
        raise SystemExit(f"--only {args.only!r} matches no setting; the settings are: "
                         + "; ".join(s.name for s in SETTINGS))
    scores = measure(args.n, chosen) if args.cmd == "measure" else json.loads(SCORES.read_text())
    block = table(scores, args.n)
    if args.cmd == "report":
        plot(scores, args.n)
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, block)
    print(block)


if __name__ == "__main__":
    main()
