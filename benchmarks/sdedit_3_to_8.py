"""Notebook 06's class-to-class SDEdit on the shipped class-conditional model, with enough real 3s to quote.

    python benchmarks/sdedit_3_to_8.py --n 200     # the table, into BENCHMARKS.md's sdedit block

Notebook 06 starts from real test-set 3s, noises them to the start level i_start (counted from the
noisy end of 25 DDIM steps, eta = 0) and denoises them with the label 8, guided at the manifest's best w.
Its live cell edits 16 3s; this script edits the first n 3s of the test set with the same levels, the
same seeds per level (80 + i_start) and course_utils.editing.sdedit, and reads every edit with the course
classifier. One CPU thread; a run of n = 200 takes about 3 CPU minutes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from course_tools.benchmarks_md import load_script, replace_block
from course_utils import metrics
from course_utils.data import load_mnist
from course_utils.device import cpu_generator, randn
from course_utils.editing import sdedit
from course_utils.paths import shipped_checkpoint_dir
from course_utils.samplers import DDIMScheduler, StepNoise
from course_utils.schedules import NoiseSchedule

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- sdedit: begin -->", "<!-- sdedit: end -->"   # the block of BENCHMARKS.md this script owns
LEVELS = (1, 3, 5, 7, 10, 20)        # notebook 06's i_start values
STEPS = 25                           # notebook 06's SDEdit scheduler: DDIM, eta = 0
SOURCE, TARGET = 3, 8


def measure(n: int, w: float, levels: tuple[int, ...] = LEVELS) -> list[dict]:
    """One row per start level: the fraction of the n edits read as the target class and as the source class."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    torch.set_num_threads(1)
    model, config, _, _ = load_script("reference_runs")._load("cfg")
    scheduler = DDIMScheduler(NoiseSchedule(config["task"]["schedule"], config["task"]["T"]), eta=0.0)
    scheduler.set_timesteps(STEPS)
    x, y = load_mnist("test")
    source = x[y == SOURCE][:n]                                                    # (n, 1, 28, 28)
    target = torch.full((len(source),), TARGET)
    rows = []
    for i in levels:
        t0 = time.process_time()
        with torch.no_grad():
            out = sdedit(model, source, scheduler, i, eps=randn(source.shape, generator=cpu_generator(80 + i)),
                         noise_fn=StepNoise(source.shape, 80 + i, "cpu"), y=target, guidance=w)
        pred = metrics.predict(out)
        rows.append({"i_start": i, "t": int(scheduler.timesteps[i]),
                     "as_target": (pred == TARGET).float().mean().item(),
                     "as_source": (pred == SOURCE).float().mean().item(),
                     "cpu_s": time.process_time() - t0})
    return rows


def table(rows: list[dict], n: int, w: float) -> str:
    """The BENCHMARKS.md block for ``rows``."""
    lines = [BEGIN, f"## Class-to-class SDEdit ({SOURCE} to {TARGET}) on the shipped cfg model", "",
             f"`python benchmarks/sdedit_3_to_8.py --n {n}` ({datetime.date.today().isoformat()}): the first "
             f"{n} real {SOURCE}s of the test set, noised to the start level and denoised with the label {TARGET} "
             f"at w = {w:g} (the manifest's best w), DDIM with {STEPS} steps, eta = 0, one CPU thread; each edit read "
             "by the course classifier (notebook 06, section on class-to-class SDEdit).", "",
             f"| i_start | t | read as {TARGET} | read as {SOURCE} | CPU s |", "|---|---|---|---|---|"]
    lines += [f"| {r['i_start']} | {r['t']} | {r['as_target']:.1%} | {r['as_source']:.1%} | {r['cpu_s']:.0f} |"
              for r in rows]
    return "\n".join(lines + [END])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="real 3s to edit (the test set holds 1,010)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    w = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())["best_w"]
    block = table(measure(args.n, w), args.n, w)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, block)
    print(block)


if __name__ == "__main__":
    main()
