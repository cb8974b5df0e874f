"""Reference runs: the notebook numbers too costly to recompute in `cpu`, measured once on the shipped checkpoints.

    python benchmarks/reference_runs.py run 05_w_sweep      # sample and keep every row not sampled yet (resumable)
    python benchmarks/reference_runs.py run 05_w_sweep --seed 41   # only that half: two processes, one per seed
    python benchmarks/reference_runs.py export              # score them into data/checkpoints/manifest.json
    python benchmarks/reference_runs.py report              # the table, into BENCHMARKS.md's references block
    python benchmarks/reference_runs.py targets             # issue 15's targets against them, into BENCHMARKS.md

A notebook in `cpu` runs a small live version of each (its student's own code) and prints the
reference beside it, read with ``course_utils.checkpoint.reference_run(name)``:

* ``04_ddpm``      notebook 04's metric row: the shipped DDPM, respaced DDPM-50 with beta-tilde.
* ``04_ddim50``    issue 15's target for the unconditional DDPM: DDIM-50 (eta = 0), n = 2000 (the
                   first 500 samples of each half are 06_ddpm_1000's DDIM row: the same seeds, the same x_T);
                   also the full 1000-step chain at that n, so DDIM-50's gap to it is measured at n = 2000 too.
* ``05_w_sweep``   notebook 05's guidance sweep: the shipped class-conditional model at each w of
                   the notebook's sweep, respaced DDPM-50 with beta-tilde, labels 0..9 in turn.
* ``06_steps``     notebook 06's steps-vs-quality curve: the same model at the manifest's guidance
                   weight, DDIM at eta = 0 and eta = 1 for each step count.
* ``07_latent``    notebook 07's pixel-against-latent quality: the shipped latent model, DDIM-50 (no
                   clipping) at the same w and labels, decoded; the pixel side is 06_steps' DDIM-50 row.
                   Also w = 1 and 1.5, and n = 2000 per row (latent samples are cheap): issue 15's target.
* ``05_ddim50``    issue 15's targets for the class-conditional model: DDIM-50 (eta = 0) at w = 1 (no
                   guidance) and at the best w, n = 2000 per row; also w = 1.25 and 1.375, to see whether a weight
                   between the two meets both halves of the best-w target.
* ``06_ddpm_1000`` issue 15's DDIM-50 against DDPM-1000: the shipped (unconditional) DDPM with the full
                   1000-step ancestral chain (beta-tilde) and with DDIM-50 at eta = 0, on the same seeds.
* ``06_cfg_1000``  the same comparison on the class-conditional model at w = 1 (one network pass per
                   step, labels 0..9 in turn): does DDIM-50's gap to the full chain depend on the model?

Every row draws n samples as two independent halves (seeds 40 and 41, one CPU thread, batches of
``BATCH`` with the network in channels-last memory format, about twice as fast on a CPU as batches
of 250 in the default format, which the older 04_ddpm run used): the Frechet distance is over all
n against the floor at the same n, and the two halves,
scored on their own, give the spread. Each half is kept in outputs/reference/<run>/ as soon as it
is sampled, so a killed run resumes with the halves it has not drawn. Each half records the sha256 of
the weights it was sampled from (the manifest's): once a model is re-exported, ``run`` samples its halves
again and ``export`` ignores the old ones, so a retrained model is never scored on its predecessor's samples.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from course_tools.benchmarks_md import replace_block
from course_utils import metrics, samplers
from course_utils.checkpoint import atomic_save, atomic_write_text, load_checkpoint
from course_utils.diffusion import as_eps_model, make_unet
from course_utils.paths import shipped_checkpoint_dir
from course_utils.schedules import NoiseSchedule


ROOT = Path(__file__).resolve().parent.parent
RUNS = Path(os.environ.get("REFERENCE_RUNS") or ROOT / "outputs" / "reference")
BEGIN, END = "<!-- references: begin -->", "<!-- references: end -->"   # the block of BENCHMARKS.md this script owns
SEEDS = (40, 41)                  # the two halves of every row
N_PER_SEED = 500                  # n = 1000 per row
N_PER_SEED_OF = {"07_latent": 1000, "05_ddim50": 1000, "04_ddim50": 1000}   # n = 2000 per row: issue 15's targets
W_SWEEP = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0)     # notebook 05's sweep
W_06 = 1.5                        # the manifest's best_w: what 05_w_sweep's n = 1000 sweep picks (export checks)
BATCH = 50                        # samples per batch (guided rows: 100 network inputs); small batches stay in cache


@dataclass(frozen=True)
class Row:
    name: str
    sampler: str                  # "ddpm" (respaced, beta_tilde), "ddim", or "latent" (DDIM on the ldm's latents)
    steps: int
    eta: float | None = None      # DDIM only
    w: float | None = None        # guidance weight; None: unconditional model


RUNS_SPEC: dict[str, tuple[str, tuple[Row, ...]]] = {      # run -> (shipped model, rows)
    "04_ddpm": ("ddpm", (Row("DDPM-50 beta_tilde", "ddpm", 50),)),
    "05_w_sweep": ("cfg", tuple(Row(f"w = {w:g}", "ddpm", 50, w=w) for w in W_SWEEP)),
    "06_steps": ("cfg", tuple(Row(f"DDIM eta={eta:g} {s}", "ddim", s, eta=eta, w=W_06)
                              for eta, steps in ((0.0, (10, 20, 50, 100)), (1.0, (10, 50))) for s in steps)),
    "07_latent": ("ldm", tuple(Row("latent DDIM eta=0 50" + ("" if w == W_06 else f" w={w:g}"), "latent", 50, eta=0.0, w=w)
                               for w in dict.fromkeys((W_06, 1.0, 1.5, 2.0)))),     # W_06 first, no repeats
    "05_ddim50": ("cfg", (Row("DDIM eta=0 50 w=1", "ddim", 50, eta=0.0, w=1.0),
                          Row("DDIM eta=0 50", "ddim", 50, eta=0.0, w=W_06),
                          Row("DDIM eta=0 50 w=1.25", "ddim", 50, eta=0.0, w=1.25),     # between the two: both targets?
                          Row("DDIM eta=0 50 w=1.375", "ddim", 50, eta=0.0, w=1.375))),
    "04_ddim50": ("ddpm", (Row("DDIM eta=0 50", "ddim", 50, eta=0.0),           # the unconditional DDPM's target
                           Row("DDPM-1000 beta_tilde", "ddpm", 1000))),           # the full chain at the same n
    "06_ddpm_1000": ("ddpm", (Row("DDPM-1000 beta_tilde", "ddpm", 1000), Row("DDIM eta=0 50", "ddim", 50, eta=0.0))),
    "06_cfg_1000": ("cfg", (Row("DDPM-1000 beta_tilde w=1", "ddpm", 1000, w=1.0),
                            Row("DDIM eta=0 50 w=1", "ddim", 50, eta=0.0, w=1.0))),
}


def _load(name: str) -> tuple[torch.nn.Module, dict, Callable | None, tuple[int, ...]]:
    """The shipped model ``name`` as an eps-predictor, its config, its decoder (latent model) and its sample shape."""
    if name == "ldm":
        from course_utils import latent
        unet, decode, shape, config = latent.load_trained_ldm()
        unet = unet.to(memory_format=torch.channels_last)
        if any(latent.find_checkpoint(m).parent != shipped_checkpoint_dir() for m in ("ldm", "autoencoder")):
            raise SystemExit("outputs/checkpoints holds a trained ldm or autoencoder: reference runs measure the "
                             "shipped ones (set COURSE_OUTPUT to an empty folder)")
        return unet, config, decode, shape
    path = shipped_checkpoint_dir() / f"{name}.pt"
    config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    net = make_unet(config["arch"])
    load_checkpoint(path, net)
    net = net.to(memory_format=torch.channels_last)         # same numbers (to float rounding), faster convolutions
    return as_eps_model(net, config["task"]).eval(), config, None, (1, 28, 28)


def _scheduler(row: Row, schedule: NoiseSchedule) -> samplers._Scheduler:
    if row.sampler == "latent":                     # unit-variance latents have no range to clip to (07)
        return samplers.DDIMScheduler(schedule, eta=row.eta, clip_sample=False).set_timesteps(row.steps)
    if row.sampler == "ddim":
        return samplers.DDIMScheduler(schedule, eta=row.eta).set_timesteps(row.steps)
    return samplers.DDPMScheduler(schedule, variance="beta_tilde").set_timesteps(row.steps)


def _sampler_name(row: Row) -> str:
    if row.sampler == "latent":
        return f"latent DDIM-{row.steps}, eta {row.eta:g}, decoded"
    if row.sampler == "ddim":
        return f"DDIM-{row.steps}, eta {row.eta:g}"
    return f"DDPM-{row.steps} respaced (beta_tilde)"


class _OnePass(torch.nn.Module):
    """w = 0 and w = 1 need one network pass, not guided_eps's two: the null label, or the asked one."""

    def __init__(self, model: torch.nn.Module, null: bool):
        super().__init__()
        self.model, self.null = model, null

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x, t, torch.full_like(y, self.model.num_classes) if self.null else y)


def _half_path(run: str, row: Row, seed: int) -> Path:
    return RUNS / run / f"{row.name.replace(' ', '_').replace('=', '')}.s{seed}.pt"


def _weights_sha(model_name: str) -> str:
    """The manifest's sha256 of the shipped weights behind ``model_name`` (the latent model: ldm and autoencoder)."""
    models = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())["models"]
    parts = ("ldm", "autoencoder") if model_name == "ldm" else (model_name,)
    return "+".join(models[m]["sha256"] for m in parts)


def _current(path: Path, sha: str) -> dict | None:
    """The half at ``path`` if it was sampled from the weights ``sha``; None if missing or from other weights."""
    if not path.exists():
        return None
    half = torch.load(path, map_location="cpu", weights_only=True)
    return half if half.get("weights_sha256") == sha else None


def run(name: str, reverse: bool = False, seed: int | None = None) -> None:
    """Sample every half of every row of run ``name`` not sampled yet (one thread).

    ``reverse`` takes the rows last to first, so a second process can share a long run; ``seed`` samples
    only that half of every row, so two processes (one per seed in ``SEEDS``) split a run evenly.
    """
    if seed is not None and seed not in SEEDS:
        raise SystemExit(f"--seed must be one of the halves' seeds {SEEDS}, got {seed}")
    torch.set_num_threads(1)
    model_name, rows = RUNS_SPEC[name]
    rows = rows[::-1] if reverse else rows
    model, config, decode, shape = _load(model_name)
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])
    conditional = config["arch"].get("num_classes") is not None
    halves = SEEDS if seed is None else (seed,)
    sha = _weights_sha(model_name)
    for row in rows:
        for half in halves:
            out = _half_path(name, row, half)
            if _current(out, sha) is not None:
                continue
            if out.exists():
                print(f"{out.name} was sampled from other weights than the shipped {model_name}: sampling it again")
            n = N_PER_SEED_OF.get(name, N_PER_SEED)
            labels = torch.arange(n) % 10 if conditional else None
            net, w = model, row.w
            if conditional and w in (0.0, 1.0):
                net, w = _OnePass(model, null=w == 0.0), None
            t0 = time.process_time()
            x = samplers.sample_batches(net, _scheduler(row, schedule), n, shape, labels=labels, guidance=w,
                                        seed=half, batch_size=BATCH, decode=decode, progress=False)
            seconds = time.process_time() - t0
            images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)       # (n, 1, 28, 28)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_save({"images": images, "labels": labels, "cpu_seconds": seconds, "weights_sha256": sha,
                         "date": datetime.date.today().isoformat()}, out)
            print(f"{name} {row.name} seed {half}: {seconds:.0f} CPU s", flush=True)


def _halves(name: str, row: Row) -> list[dict] | None:
    """Both halves of ``row``, if both were sampled from the shipped weights (a retrained model's halves are stale)."""
    sha = _weights_sha(RUNS_SPEC[name][0])
    halves = [_current(_half_path(name, row, s), sha) for s in SEEDS]
    return None if any(h is None for h in halves) else halves


def score(name: str) -> dict:
    """The manifest entry of run ``name``: the rows whose two halves are both sampled, dated by the newest
    half (today for halves saved before they recorded their date), not by the day of the export."""
    model_name, rows = RUNS_SPEC[name]
    n_per_seed = N_PER_SEED_OF.get(name, N_PER_SEED)
    today = datetime.date.today().isoformat()
    entry: dict = {"model": model_name, "n": n_per_seed * len(SEEDS), "seeds": list(SEEDS),
                   "n_per_seed": n_per_seed, "date": None,
                   "conditions": f"benchmarks/reference_runs.py, one CPU thread ({platform.machine()}), "
                                 f"batches of {BATCH}, channels-last", "rows": {}}
    for row in rows:
        halves = _halves(name, row)
        if halves is None:
            continue
        xs = [h["images"].float() / 127.5 - 1 for h in halves]
        ys = [h["labels"] for h in halves]
        conditional = ys[0] is not None
        whole = metrics.evaluate_samples(torch.cat(xs), torch.cat(ys) if conditional else None)
        parts = [metrics.evaluate_samples(x, y) for x, y in zip(xs, ys)]
        r = {"sampler": _sampler_name(row), "steps": row.steps, "eta": row.eta, "w": row.w,
             "frechet": round(whole["frechet"], 3), "floor": round(whole["floor"], 3), "ratio": round(whole["ratio"], 4),
             "ratio_per_seed": [round(p["ratio"], 4) for p in parts],
             "hist": [round(v, 4) for v in metrics.class_histogram(torch.cat(xs)).tolist()],
             "cpu_ms_per_sample": round(1000 * sum(h["cpu_seconds"] for h in halves) / (n_per_seed * len(SEEDS)), 1)}
        if conditional:
            r["accuracy"] = round(whole["accuracy"], 4)
            r["accuracy_per_seed"] = [round(p["accuracy"], 4) for p in parts]
        entry["rows"][row.name] = r
        entry["date"] = max(entry["date"] or "", *(h.get("date", today) for h in halves))
    return entry


def export() -> dict:
    """Score every run with sampled rows into the manifest's ``references`` (other keys are kept)."""
    path = shipped_checkpoint_dir() / "manifest.json"
    manifest = json.loads(path.read_text())
    refs = manifest.setdefault("references", {})
    for name in RUNS_SPEC:
        entry = score(name)
        if entry["rows"]:
            refs[name] = entry
            print(f"{name}: {len(entry['rows'])} rows", flush=True)
    sweep = refs.get("05_w_sweep", {}).get("rows", {})
    if len(sweep) == len(W_SWEEP):                   # the sweep behind generate's default guidance weight
        from course_utils.guidance import best_guidance_weight
        scores = {r["w"]: r for r in sweep.values()}
        w = best_guidance_weight(scores)
        if w == manifest.get("best_w"):
            manifest["best_w_from"] = {"profile": "reference run", "n_per_w": refs["05_w_sweep"]["n"],
                                       "sampler": next(iter(sweep.values()))["sampler"],
                                       "date": refs["05_w_sweep"]["date"],
                                       "sweep": {str(k): {m: r[m] for m in ("accuracy", "frechet", "ratio")}
                                                 for k, r in scores.items()}}
        else:
            print(f"the reference sweep picks w = {w:g} but the manifest's best_w is {manifest.get('best_w')}: "
                  "the shipped cfg scores were measured at the old w; re-export cfg with benchmarks/pretrain.py")
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return refs


def report() -> str:
    """The exported references as tables, into BENCHMARKS.md's references block."""
    refs = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text()).get("references", {})
    if not refs:
        raise SystemExit("no references in the manifest; run `python benchmarks/reference_runs.py export`")
    lines = [BEGIN, "## Reference runs behind the notebooks", "",
             "`python benchmarks/reference_runs.py`: what a notebook in `cpu` cannot afford to recompute, measured "
             "on the shipped checkpoints and stored in `data/checkpoints/manifest.json` (`references`). Each row: "
             "n samples as two halves of seeds 40 and 41, Frechet distance over the train-vs-test floor at the same "
             "n, the two halves' ratios (each at its own floor, n / 2) as the spread, one CPU thread.", ""]
    for name, entry in refs.items():
        floor = next(iter(entry["rows"].values()))["floor"]
        lines += [f"**{name}** (model `{entry['model']}`, n = {entry['n']} per row, floor {floor:.1f}, {entry['date']})", "",
                  "| row | sampler | w | ratio | halves | accuracy | CPU ms/sample |", "|---|---|---|---|---|---|---|"]
        for row, r in entry["rows"].items():
            acc = f"{r['accuracy']:.3f}" if "accuracy" in r else "-"
            w = "-" if r["w"] is None else f"{r['w']:g}"
            halves = " / ".join(f"{v:.2f}" for v in r["ratio_per_seed"])
            lines.append(f"| {row} | {r['sampler']} | {w} | {r['ratio']:.2f} | {halves} | {acc} | "
                         f"{r['cpu_ms_per_sample']:.0f} |")
        lines.append("")
    lines[-1:] = [END]
    block = "\n".join(lines)
    replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, block)
    print(block)
    return block


TARGETS_BEGIN, TARGETS_END = "<!-- targets: begin -->", "<!-- targets: end -->"   # issue 15, item 3
RATIO_TARGET, ACC_W1, ACC_BEST, ACC_LATENT, DDIM_VS_DDPM = 1.5, 0.97, 0.995, 0.99, 1.5


def _row(refs: dict, run: str, row: str) -> tuple[dict, int] | None:
    entry = refs.get(run, {})
    r = entry.get("rows", {}).get(row)
    return (r, entry["n"]) if r else None


def targets(manifest: dict) -> list[tuple[str, str, str, str]]:
    """Issue 15's quality targets against the stored measurements: (target, measured, n and sampler, met?).

    The unconditional DDPM's target is read off 04_ddim50 (else the export's one draw in the manifest);
    the class-conditional targets off 05_ddim50 (w = 1, and the best w of 05's sweep); the
    latent one off the 07_latent row that meets it with the lowest ratio (else the lowest ratio); a
    target whose run is missing says which run measures it.
    """
    refs, out = manifest.get("references", {}), []

    def fmt(r: dict) -> str:
        acc = f"accuracy {100 * r['accuracy']:.2f}%, " if "accuracy" in r else ""
        halves = " / ".join(f"{v:.2f}" for v in r["ratio_per_seed"])
        return f"{acc}ratio {r['ratio']:.2f} (halves {halves})"

    def missing(run: str) -> tuple[str, str]:
        return f"not measured: `reference_runs.py run {run}`", "-"

    ddpm, found = manifest.get("models", {}).get("ddpm", {}).get("metrics"), _row(refs, "04_ddim50", "DDIM eta=0 50")
    if found:
        r, n = found
        chain = _row(refs, "04_ddim50", "DDPM-1000 beta_tilde")       # the same model's full chain, for context
        also = f"; with the full 1000-step chain (DDPM-1000): {fmt(chain[0])}" if chain else ""
        out.append(("unconditional DDPM: ratio <= 1.5 (n >= 2000)", fmt(r) + also, f"{n}, {r['sampler']}",
                    "yes" if r["ratio"] <= RATIO_TARGET and n >= 2000 else "no"))
    elif ddpm:                                      # no reference run yet: the export's one draw
        when = f", {ddpm['date']}" if "date" in ddpm else ""
        out.append(("unconditional DDPM: ratio <= 1.5 (n >= 2000)",
                    f"ratio {ddpm['ratio']:.2f} (one seeded draw when the model was exported{when}; no halves)",
                    f"{int(ddpm['n'])}, {ddpm.get('sampler', 'DDIM-50')}",
                    "yes" if ddpm["ratio"] <= RATIO_TARGET and ddpm["n"] >= 2000 else "no"))
    for label, row, acc, ratio in (("class-conditional, w = 1: accuracy >= 97%", "DDIM eta=0 50 w=1", ACC_W1, None),
                                   ("class-conditional, best w: accuracy >= 99.5%, ratio <= 1.5", "DDIM eta=0 50",
                                    ACC_BEST, RATIO_TARGET)):
        found = _row(refs, "05_ddim50", row)
        if found is None:
            out.append((label, *missing("05_ddim50"), "open"))
            continue
        r, n = found
        ok = r["accuracy"] >= acc and (ratio is None or r["ratio"] <= ratio)
        measured, verdict = f"w = {r['w']:g}: " + fmt(r), "yes" if ok else "no"
        if ratio is not None:                        # the weights between, measured to see if one meets both
            others = [o for name, o in refs["05_ddim50"]["rows"].items() if name not in ("DDIM eta=0 50 w=1", row)]
            if others:
                measured += "; other w: " + ", ".join(f"{o['w']:g}: {100 * o['accuracy']:.2f}% / {o['ratio']:.2f}"
                                                      for o in others)
            meeting = [o["w"] for o in others if o["accuracy"] >= acc and o["ratio"] <= ratio]
            if meeting and not ok:
                verdict = f"no at the chosen w; yes at w = {', '.join(f'{w:g}' for w in meeting)}"
        out.append((label, measured, f"{n}, {r['sampler']}", verdict))
    latent = refs.get("07_latent", {}).get("rows", {})
    if latent:
        met = [r for r in latent.values() if r["accuracy"] >= ACC_LATENT and r["ratio"] <= RATIO_TARGET]
        best = min(met or latent.values(), key=lambda r: (r["ratio"], -r["accuracy"]))
        out.append(("latent: accuracy >= 99%, ratio <= 1.5", f"w = {best['w']:g}: " + fmt(best),
                    f"{refs['07_latent']['n']}, {best['sampler']}", f"yes, at w = {best['w']:g}" if met else "no"))
    else:
        out.append(("latent: accuracy >= 99%, ratio <= 1.5", *missing("07_latent"), "open"))
    for run, suffix, model in (("06_ddpm_1000", "", "unconditional DDPM"),
                               ("04_ddim50", "", "unconditional DDPM"),
                               ("06_cfg_1000", " w=1", "class-conditional, w = 1")):
        full, ddim = _row(refs, run, "DDPM-1000 beta_tilde" + suffix), _row(refs, run, "DDIM eta=0 50" + suffix)
        label = f"DDIM-50 within 1.5x of DDPM-1000 on Frechet (n >= 1000 each), {model}"
        if full and ddim:
            q = ddim[0]["frechet"] / full[0]["frechet"]
            out.append((label, f"DDIM-50 {ddim[0]['frechet']:.1f}, DDPM-1000 {full[0]['frechet']:.1f}: {q:.2f}x",
                        f"{full[1]}, {run}", "yes" if q <= DDIM_VS_DDPM and full[1] >= 1000 else "no"))
        elif run != "04_ddim50":                    # 04_ddim50's full chain is a second n, not a target of its own
            out.append((label, *missing(run), "open"))
    return out


def targets_report() -> str:
    """The targets table, into BENCHMARKS.md's targets block."""
    manifest = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())
    lines = [TARGETS_BEGIN, "## Issue 15, item 3: the shipped models against their targets", "",
             "`python benchmarks/reference_runs.py targets`, from `data/checkpoints/manifest.json`: each target "
             "against the reference run that measures it (two seeded halves, one CPU thread; ratio = Frechet "
             "distance over the train-vs-test floor at the same n).", "",
             "| target | measured | n, sampler | met? |", "|---|---|---|---|"]
    lines += [f"| {t} | {m} | {n} | {ok} |" for t, m, n, ok in targets(manifest)]
    lines.append(TARGETS_END)
    block = "\n".join(lines)
    replace_block(ROOT / "BENCHMARKS.md", TARGETS_BEGIN, TARGETS_END, block)
    print(block)
    return block


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    run_p = sub.add_parser("run")
    run_p.add_argument("name", choices=sorted(RUNS_SPEC))
    run_p.add_argument("--reverse", action="store_true", help="rows last to first (a second process on the same run)")
    run_p.add_argument("--seed", type=int, default=None, help=f"only this half of every row (one of {SEEDS})")
    sub.add_parser("export")
    sub.add_parser("report")
    sub.add_parser("targets", help="issue 15's targets against the measurements, into BENCHMARKS.md")
    a = p.parse_args(argv)
    if a.cmd == "run":
        run(a.name, a.reverse, a.seed)
    elif a.cmd == "export":
        export()
    elif a.cmd == "targets":
        targets_report()
    else:
        report()


if __name__ == "__main__":
    main()
