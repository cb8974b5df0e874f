"""Which few-step sampler to use before notebook 06: respaced DDPM (two variances) against DDIM, on the shipped DDPM.

    python benchmarks/samplers.py run --n 500            # score every sampler not scored yet at this n
    python benchmarks/samplers.py report --n 500         # the table, into BENCHMARKS.md's samplers block

Notebooks 04 and 05 sample with few steps before notebook 06 derives DDIM, so they use the strided
(respaced) DDPM of notebook 04, section 4. Its variance matters: on a strided chain the posterior
variance beta-tilde_{t->s} is much smaller than beta_{t->s} = 1 - alpha_bar_t / alpha_bar_s, the
variance of the forward jump. Every row samples the shipped unconditional DDPM (data/checkpoints/ddpm.pt)
from the same seeded x_T, n / 2 from seed 40 and n / 2 from seed 41 (the halves of the reference runs, so
a row that is also a reference run's gives the same samples), one CPU thread, and scores the n samples with
the course metric (Frechet distance over the train-vs-test floor at the same n) and each half against
its floor at n / 2, the spread that says whether two rows differ. Results are kept in
outputs/samplers/<row>.n<N>.json, so a killed run resumes with the rows it has not scored. Each result
records the sha256 of the weights it sampled (the manifest's): once the DDPM is re-exported, ``run``
scores every row again and ``report`` leaves out the old ones. Two processes share a run with
``run --n N`` and ``run --n N --reverse`` (rows last to first).
Two more DDIM-50 rows change only the spacing of the 50 steps (diffusers' "trailing", the DDIM
paper's "quadratic"), to see whether the spacing explains DDIM-50's gap to the stochastic samplers, and
DDIM-100 and DDIM-200 say how many deterministic steps it takes to come within 1.5x of DDPM-1000's
Frechet distance (06_ddpm_1000 in the manifest, the same x_T).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

from course_tools.benchmarks_md import replace_block
from course_utils import metrics, samplers
from course_utils.checkpoint import atomic_write_text, load_checkpoint
from course_utils.diffusion import as_eps_model, make_unet
from course_utils.paths import shipped_checkpoint_dir
from course_utils.schedules import NoiseSchedule


ROOT = Path(__file__).resolve().parent.parent
RUNS = Path(os.environ.get("SAMPLER_RUNS") or ROOT / "outputs" / "samplers")
BEGIN, END = "<!-- samplers: begin -->", "<!-- samplers: end -->"   # the block of BENCHMARKS.md this script owns
BATCH = 50                                # samples per batch: small batches stay in cache (reference_runs.BATCH)
SEEDS = (40, 41)                          # the two halves of every row (reference_runs.SEEDS)
ROWS = {                                  # row name -> (sampler, variance or None, steps[, spacing])
    "DDPM-50 beta_tilde": ("ddpm", "beta_tilde", 50),
    "DDPM-50 beta": ("ddpm", "beta", 50),
    "DDPM-25 beta_tilde": ("ddpm", "beta_tilde", 25),
    "DDPM-10 beta_tilde": ("ddpm", "beta_tilde", 10),
    "DDPM-10 beta": ("ddpm", "beta", 10),
    "DDIM-50": ("ddim", None, 50),
    "DDIM-10": ("ddim", None, 10),
    "DDIM-50 trailing": ("ddim", None, 50, "trailing"),
    "DDIM-50 quadratic": ("ddim", None, 50, "quadratic"),
    "DDIM-100": ("ddim", None, 100),
    "DDIM-200": ("ddim", None, 200),
}


def spaced_timesteps(spacing: str, steps: int, T: int) -> torch.Tensor:
    """Kept timesteps (descending) other than the course's ``linspace``: diffusers' ``"trailing"``
    (T-1, T-1-T/S, ..., T/S - 1), or the DDIM paper's ``"quadratic"`` (appendix D.2: t_i = floor(c i^2)
    up to 0.8 T, the spacing it used on CIFAR-10; repeated small t are kept once, so a few fewer steps)."""
    if spacing == "trailing":
        return (torch.arange(T, 0, -T // steps) - 1).long()
    if spacing == "quadratic":
        c = 0.8 * T / steps ** 2
        return torch.tensor(sorted({int(c * i * i) for i in range(steps)}, reverse=True), dtype=torch.long)
    raise ValueError(f"unknown spacing {spacing!r}; expected 'trailing' or 'quadratic'")


def _shipped_ddpm() -> tuple[torch.nn.Module, dict]:
    path = shipped_checkpoint_dir() / "ddpm.pt"
    config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    net = make_unet(config["arch"])
    load_checkpoint(path, net)
    net = net.to(memory_format=torch.channels_last)          # faster convolutions on a CPU, the same numbers
    return as_eps_model(net, config["task"]).eval(), config


def _scheduler(row: str, schedule: NoiseSchedule):
    kind, variance, steps, *spacing = ROWS[row]
    if kind == "ddim":
        scheduler = samplers.DDIMScheduler(schedule).set_timesteps(steps)
        if spacing:                       # the step reads its previous timestep from this list
            scheduler.timesteps = spaced_timesteps(spacing[0], steps, schedule.T)
        return scheduler
    return samplers.DDPMScheduler(schedule, variance=variance).set_timesteps(steps)


def _result_path(row: str, n: int) -> Path:
    return RUNS / f"{row.replace(' ', '_')}.n{n}.json"


def _describe(config: dict) -> str:
    """The shipped DDPM in words, from its checkpoint config: what it predicts and how many images it saw."""
    train = config["train"]
    return (f"{config['task'].get('prediction', 'eps')}-prediction, "
            f"{train['epochs'] * train['n_images']:,} training images")


def _weights_sha() -> str:
    """The manifest's sha256 of the shipped DDPM (reference_runs.py keys its halves the same way)."""
    return json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())["models"]["ddpm"]["sha256"]


def _full_chain(n: int) -> dict | None:
    """The DDPM-1000 row of the manifest's reference run 06_ddpm_1000 if it scored ``n`` samples (the same
    seeded x_T as these rows), else None: the yardstick of issue 15's "DDIM-50 within 1.5x of DDPM-1000"."""
    run = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text()).get("references", {}).get("06_ddpm_1000")
    if not run or run.get("n") != n:
        return None
    return run["rows"].get("DDPM-1000 beta_tilde")


def _current(row: str, n: int, sha: str) -> dict | None:
    """The scored row at ``n`` if it sampled the weights ``sha``; None if missing or from other weights."""
    path = _result_path(row, n)
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("weights_sha256") == sha else None


def run(n: int, reverse: bool = False) -> None:
    """Score every row of :data:`ROWS` with ``n`` samples, two halves of n / 2 (one thread), skipping the rows
    already scored on the shipped weights; ``reverse`` takes the rows last to first (a second process)."""
    if n < 2 or n % 2:
        raise SystemExit(f"--n must be an even number of samples (two halves), got {n}")
    torch.set_num_threads(1)
    model, config = _shipped_ddpm()
    sha = _weights_sha()
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])
    RUNS.mkdir(parents=True, exist_ok=True)
    for row in (list(ROWS)[::-1] if reverse else ROWS):
        out = _result_path(row, n)
        if _current(row, n, sha) is not None:
            continue
        t0 = time.process_time()
        halves = [samplers.sample_batches(model, _scheduler(row, schedule), n // 2, seed=seed, batch_size=BATCH,
                                          progress=False) for seed in SEEDS]        # (n / 2, 1, 28, 28) each
        seconds = time.process_time() - t0
        result = {"row": row, "n": n, "seeds": list(SEEDS), "cpu_ms_per_sample": round(1000 * seconds / n, 1),
                  "model": _describe(config), "date": datetime.date.today().isoformat(), "weights_sha256": sha,
                  **metrics.evaluate_samples(torch.cat(halves)),
                  "ratio_per_seed": [round(metrics.evaluate_samples(h)["ratio"], 4) for h in halves]}
        atomic_write_text(out, json.dumps(result, indent=1))
        print(f"{row:<20} ratio {result['ratio']:.2f} ({seconds:.0f} CPU s)", flush=True)


def report(n: int) -> None:
    """The table of the scored rows, written into BENCHMARKS.md's samplers block."""
    sha = _weights_sha()
    rows = [r for r in (_current(row, n, sha) for row in ROWS) if r is not None]
    if not rows:
        raise SystemExit(f"no rows scored on the shipped DDPM in {RUNS} at n = {n}; "
                         f"run `python benchmarks/samplers.py run --n {n}`")
    lines = [BEGIN, "## Few-step samplers on the shipped DDPM", "",
             f"`python benchmarks/samplers.py` on {platform.machine()}, one thread, batches of {BATCH} in channels-last "
             "format: the shipped unconditional DDPM "
             f"(data/checkpoints/ddpm.pt: {rows[0]['model']}; measured "
             f"{rows[0]['date']}), n = {n} samples per row from the same seeded x_T "
             "(two halves, seeds 40 and 41), Frechet distance "
             f"over the train-vs-test floor at the same n ({rows[0]['floor']:.1f}); halves: each half's ratio at "
             "its own floor (n / 2), the spread between two draws. Notebooks 04 and 05 sample "
             "with the respaced DDPM and the beta-tilde variance (DDIM is derived in 06). Steps are the course's "
             "`linspace` spacing unless the row names another (`spaced_timesteps`)."]
    full = _full_chain(n)
    if full:
        lines[-1] += (f" x DDPM-1000: the row's Frechet distance over the full 1000-step chain's, {full['frechet']:.1f} "
                      f"(reference run 06_ddpm_1000, the same x_T, n = {n}; issue 15 asks DDIM-50 for <= 1.5).")
    lines += ["", "| sampler | variance | steps | CPU ms/sample | Frechet | ratio | halves |" + (" x DDPM-1000 |" if full else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if full else "")]
    for r in rows:
        kind, variance, steps, *spacing = ROWS[r["row"]]
        if spacing:                       # the quadratic spacing keeps repeated small t once: count what ran
            steps = len(spaced_timesteps(spacing[0], steps, 1000))
        name = "respaced DDPM" if kind == "ddpm" else f"DDIM (eta = 0){', ' + spacing[0] + ' spacing' if spacing else ''}"
        halves = " / ".join(f"{v:.2f}" for v in r.get("ratio_per_seed", [])) or "-"
        lines.append(f"| {name} | {variance or '-'} | {steps} | "
                     f"{r['cpu_ms_per_sample']:.0f} | {r['frechet']:.1f} | {r['ratio']:.2f} | {halves} |"
                     + (f" {r['frechet'] / full['frechet']:.2f} |" if full else ""))
    missing = [r for r in ROWS if _current(r, n, sha) is None]
    if missing:
        lines += ["", f"Not measured yet at n = {n}: {', '.join(missing)}."]
    lines.append(END)
    block = "\n".join(lines)
    replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, block)
    print(block)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report"):
        sub.add_parser(name).add_argument("--n", type=int, default=500)
    sub.choices["run"].add_argument("--reverse", action="store_true",
                                    help="rows last to first (a second process on the same n)")
    a = p.parse_args(argv)
    run(a.n, a.reverse) if a.cmd == "run" else report(a.n)


if __name__ == "__main__":
    main()
