"""Benchmarks of speed and quality: prints each figure and writes its block of BENCHMARKS.md.

    python benchmarks/run.py                       # machine default profile
    python benchmarks/run.py --profile cpu --n 500 # fewer samples for the quality figures

Measured in one run, on one machine:
  * training throughput of the course UNet vs the diffusers UNet2DModel seed configuration
    (same parameter count), as a ratio (needs the optional extra: pip install -e .[bench]);
  * sampling: DDPM-1000 vs DDIM-50 wall time and quality (Frechet distance, class accuracy);
  * quality: CFG class accuracy per guidance weight, unconditional Frechet distance, each
    next to the train-vs-test floor;
  * wall time of every notebook per profile (from `./course.sh run` summaries in outputs/);
  * peak memory (GPU and CPU).
Speed and quality targets live here, not in unit tests. Run it with the course's Python (the
``.venv`` of ``./course.sh``, where ``course_utils`` is installed).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from course_tools.benchmarks_md import replace_block
from course_utils import guidance, metrics
from course_utils.device import cpu_generator, get_device, synchronize
from course_utils.diffusion import diffusion_loss, load_trained_unet, make_unet, unet_config
from course_utils.profiles import get_profile
from course_utils.samplers import DDIMScheduler, DDPMScheduler, sample_batches
from course_utils.schedules import NoiseSchedule
from course_utils.unet import count_parameters

ROOT = Path(__file__).resolve().parent.parent

BEGIN, END = "<!-- run: begin -->", "<!-- run: end -->"     # this script's block of BENCHMARKS.md
TARGETS = {      # this benchmark's own targets; issue 15's, on the shipped models, are in reference_runs.py's block
    "throughput ratio (course / peer)": ">= 2x (replaced by time to quality: the recipes block)",
    "DDIM-50 Frechet / DDPM-1000 Frechet": "<= 1.5",
    "CFG class accuracy at best w": ">= 99.5%",
    "unconditional Frechet / floor": "<= 3 at n = 10,000 (issue 15: <= 1.5 at n >= 2000)",
    "whole series in full on one H100": "<= 15 min (not measured: no GPU lent; benchmarks/device_full.sh)",
}


def peer_unet():
    """diffusers' UNet2DModel in the seed configuration of the issue, or None if diffusers is absent."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        return None
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                       layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


def course_unet_matching(n_params: int | None, profile) -> torch.nn.Module:
    """The course UNet at the width whose parameter count is closest to ``n_params``."""
    if n_params is None:
        return make_unet(unet_config(profile))
    best = min(range(8, 129, 4), key=lambda w: abs(count_parameters(make_unet(unet_config(profile, base_channels=w))) - n_params))
    return make_unet(unet_config(profile, base_channels=best))


class _PeerWrapper(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, t, y=None):
        return self.m(x, t).sample


def _train_step(model: torch.nn.Module, dev: torch.device, batch: int, fast: bool):
    """One L_simple optimizer step of ``model`` on resident random data, as a closure."""
    schedule = NoiseSchedule("linear", 1000)
    model = model.to(dev).train()
    if fast and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if (fast and dev.type == "cuda") else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, 28, 28, generator=cpu_generator(0)).to(dev)
    g = cpu_generator(1)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=fast and dev.type == "cuda"):
            loss = diffusion_loss(step_model, x, schedule, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def throughputs(models: list[torch.nn.Module], dev: torch.device, batch: int, seconds: float, fast: bool,
                rounds: int = 4) -> list[float]:
    """Training images/s of each model, timed in alternating windows (``seconds`` each in all).

    Alternating (A B A B ...) rather than A then B makes the ratio fair when the machine's load
    changes during the run: both models see the same conditions.
    """
    steps = [_train_step(m, dev, batch, fast) for m in models]
    for step in steps:                                   # warm-up (and compilation) excluded
        for _ in range(3):
            step()
    synchronize(dev)
    done, spent = [0] * len(steps), [0.0] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                step()
                done[i] += 1
            synchronize(dev)
            spent[i] += time.perf_counter() - t0
    return [n * batch / t for n, t in zip(done, spent)]


def sample_and_score(name: str, dev: torch.device, n: int, steps: int, sampler: str, w: float | None = None,
                     batch: int = 500) -> dict:
    """Sample ``n`` digits from checkpoint ``name`` and score them; returns a dict with seconds."""
    model, config = load_trained_unet(name, dev)
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])          # what the model was trained to invert
    scheduler = (DDIMScheduler(schedule, eta=0.0) if sampler == "ddim" else DDPMScheduler(schedule)).set_timesteps(steps)
    labels = torch.arange(n) % 10 if w is not None else None
    synchronize(dev)
    t0 = time.perf_counter()
    x = sample_batches(model, scheduler, n, labels=labels, guidance=w, seed=0, batch_size=batch, device=dev,
                       progress=False)
    synchronize(dev)
    secs = time.perf_counter() - t0
    scores = metrics.evaluate_samples(x, labels)
    return {"seconds": secs, **scores}


def notebook_times() -> dict[str, dict[str, float]]:
    """Per-profile notebook wall times from the summaries ``./course.sh run`` writes."""
    table: dict[str, dict[str, float]] = {}
    for summary in sorted((ROOT / "outputs").glob("run-*/run_summary.json")):
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        prof = data.get("profile", summary.parent.name.removeprefix("run-"))
        for row in data.get("notebooks", []):
            if row.get("status", "ok") != "ok":              # a failed run's time says nothing
                continue
            table.setdefault(row.get("notebook", "?"), {})[prof] = float(row.get("seconds", row.get("wall_s", 0.0)))
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default=None)
    ap.add_argument("--n", type=int, default=None, help="samples per quality figure (default: profile.n_metric_samples)")
    ap.add_argument("--n-ddpm", type=int, default=None, help="samples for DDPM-1000 (default: same as --n)")
    ap.add_argument("--seconds", type=float, default=20.0, help="timing window per throughput figure")
    ap.add_argument("--weights", default="0,1,2,3,5,7", help="CFG weights to score")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--note", default=None, help="conditions of this run, quoted under the heading (e.g. a loaded machine)")
    ap.add_argument("--time-pytest", action="store_true", help="also time the whole test suite (./course.sh test, smoke)")
    args = ap.parse_args()

    profile = get_profile(args.profile)
    dev = get_device()
    n = args.n or profile.n_metric_samples
    n_ddpm = args.n_ddpm or n
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    lines = [BEGIN, "## Whole-course benchmark (`benchmarks/run.py`)", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/run.py --profile {profile.name}"
             + (f" --n {args.n}" if args.n else "") + (f" --n-ddpm {args.n_ddpm}" if args.n_ddpm else "") + "`"
             f" on {platform.node() or 'this machine'}: {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} CPU threads, device **{dev}**"
             + (f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else "")
             + f", torch {torch.__version__}, Python {platform.python_version()}.", ""]
    if args.note:
        lines += ["> " + line for line in args.note.splitlines()] + [""]

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emit("### Training throughput (images/s, L_simple, batch %d)" % profile.batch_size)
    peer = peer_unet()
    peer_params = count_parameters(peer) if peer is not None else None
    course = course_unet_matching(peer_params, profile)
    fast = dev.type == "cuda"
    ips = throughputs([course] + ([_PeerWrapper(peer)] if peer is not None else []), dev, profile.batch_size,
                      args.seconds, fast)
    c_ips = ips[0]
    emit("")
    emit("| model | parameters | images/s |")
    emit("|---|---|---|")
    emit(f"| course UNet | {count_parameters(course):,} | {c_ips:,.0f} |")
    if peer is not None:
        p_ips = ips[1]
        emit(f"| diffusers UNet2DModel (32, 64, 64), 2 layers/block, attention in the two lower blocks | {peer_params:,} | {p_ips:,.0f} |")
        emit("")
        emit(f"Ratio course / peer: **{c_ips / p_ips:.2f}x** (target {TARGETS['throughput ratio (course / peer)']})."
             + (" GPU path: data resident, bf16 autocast, channels_last, torch.compile." if fast else
                " CPU path: float32, no compile.") + " Timed in alternating windows.")
    else:
        emit("")
        emit("diffusers is not installed (`pip install -e .[bench]`): no peer figure.")
    emit("")

    emit(f"### Sampling and quality ({n} samples; floor = train vs test at the same size)")
    emit("")
    floor = metrics.frechet_floor(n)
    emit("| sampler | samples | seconds | Frechet | floor | ratio | accuracy |")
    emit("|---|---|---|---|---|---|---|")
    try:
        ddim_u = sample_and_score("ddpm", dev, n, 50, "ddim")
        ddpm_u = sample_and_score("ddpm", dev, n_ddpm, 1000, "ddpm")
        for label, m, r in (("unconditional DDPM-1000", n_ddpm, ddpm_u), ("unconditional DDIM-50", n, ddim_u)):
            emit(f"| {label} | {m} | {r['seconds']:.1f} | {r['frechet']:.3f} | {r['floor']:.3f} | {r['ratio']:.2f} | - |")
    except FileNotFoundError as e:
        ddpm_u = ddim_u = None
        emit(f"| unconditional | - | - | - | {floor:.3f} | - | - |")
        print(f"no unconditional model: {e}")
    try:
        w_rows = []
        for w in [float(v) for v in args.weights.split(",")]:
            r = sample_and_score("cfg", dev, n, 50, "ddim", w=w)
            w_rows.append((w, r))
            emit(f"| CFG DDIM-50, w = {w:g} | {n} | {r['seconds']:.1f} | {r['frechet']:.3f} | {r['floor']:.3f} | {r['ratio']:.2f} | {100 * r['accuracy']:.2f}% |")
    except FileNotFoundError as e:
        w_rows = []
        print(f"no class-conditional model: {e}")
    emit("")
    if ddpm_u is not None:
        # Frechet distances are only comparable at equal sample counts; otherwise compare the ratios to each floor.
        same_n = n_ddpm == n
        rel = ddim_u["frechet"] / ddpm_u["frechet"] if same_n else ddim_u["ratio"] / ddpm_u["ratio"]
        emit(f"- DDIM-50 / DDPM-1000 Frechet{'' if same_n else f' (each over its floor: n = {n} vs {n_ddpm})'}: "
             f"**{rel:.2f}** (target <= 1.5); "
             f"DDPM-1000 / DDIM-50 time per sample: {ddpm_u['seconds'] / n_ddpm / (ddim_u['seconds'] / n):.1f}x")
        emit(f"- Unconditional Frechet / floor: DDPM-1000 **{ddpm_u['ratio']:.2f}** (n = {n_ddpm}), DDIM-50 "
             f"**{ddim_u['ratio']:.2f}** (n = {n}) (target <= 3 at n = 10,000; with few samples the floor's own "
             f"small-sample bias pulls every ratio toward 1, so only the larger n says much)")
    else:
        emit("- No trained unconditional `ddpm` checkpoint here: DDPM-1000 vs DDIM-50 not measured.")
    if w_rows:
        best_w = guidance.best_guidance_weight(dict(w_rows))
        best = dict(w_rows)[best_w]
        emit(f"- CFG class accuracy at the best w = {best_w:g} (`guidance.best_guidance_weight`): **{100 * best['accuracy']:.2f}%** (target >= 99.5%)")
    emit(f"- Frechet floor at n = {n}: {floor:.3f}")
    emit("")

    emit("### Notebook wall time (s) per profile")
    emit("")
    times = notebook_times()
    if times:
        profs = sorted({p for row in times.values() for p in row})
        emit("| notebook | " + " | ".join(profs) + " |")
        emit("|---|" + "---|" * len(profs))
        for nb, row in sorted(times.items()):
            emit(f"| {nb} | " + " | ".join(f"{row[p]:.0f}" if p in row else "-" for p in profs) + " |")
        for p in profs:
            emit(f"\nTotal in `{p}`: {sum(r.get(p, 0.0) for r in times.values()):.0f} s")
    else:
        emit("No run summaries in outputs/: run `./course.sh run --profile smoke` (and cpu / full) first.")
    emit("")
    if args.time_pytest:
        start = time.perf_counter()
        r = subprocess.run(["./course.sh", "test", "-q"], cwd=ROOT, capture_output=True, text=True)
        last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        emit(f"`./course.sh test -q` (smoke, unit tests + every notebook under strict nbval): "
             f"**{time.perf_counter() - start:.0f} s**, {last.strip('= ')}")
        emit("")
    emit("### Peak memory")
    emit("")
    emit(f"- CPU (max resident set of this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if dev.type == "cuda":
        emit(f"- GPU (max allocated): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    emit("")
    emit("### Targets")
    emit("")
    for k, v in TARGETS.items():
        emit(f"- {k}: {v}")
    replace_block(args.out, BEGIN, END, "\n".join(lines).rstrip("\n") + "\n" + END)   # the other blocks stay
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
