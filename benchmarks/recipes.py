"""Time-to-quality of training recipes on this machine's CPU: Frechet ratio against CPU minutes.

    python benchmarks/recipes.py train base --minutes 40        # one recipe, snapshots of its EMA weights
    python benchmarks/recipes.py eval --n 500                    # score every snapshot not scored yet
    python benchmarks/recipes.py report                          # table + plot into BENCHMARKS.md's folder
    python benchmarks/recipes.py eval-shipped --cpu-minutes 95   # the shipped DDPM as one more point
    python benchmarks/recipes.py eval-shipped --model cfg --cpu-minutes 68   # the shipped cfg, at w = 1

Each recipe trains a model (unconditional unless its name starts with ``cond_``) on all 60,000
MNIST training images with one CPU thread and saves its EMA weights at fixed amounts of *process CPU time* (so a busy machine slows the wall
clock but not the measurement). A killed run resumes from its last resume state. ``eval`` samples
every snapshot with DDIM-50 from the same seeded noise and scores it with the course metric
(Frechet distance over the train-vs-test floor at the same n). Every score is also kept in
``benchmarks/recipes_scores.json`` (committed), which ``report`` reads: the snapshots themselves live
in ``outputs/`` and do not outlive the machine.

Recipes (what each one changes relative to ``base``, the recipe of notebook 04):

* ``base``     eps-prediction, L_simple (uniform weights), batch 128, lr 2e-3, the course UNet (width 32)
* ``minsnr``   min-SNR-5 loss weighting (Hang et al. 2023): weight min(SNR_t, 5) / SNR_t on the eps loss
* ``vpred``    v-prediction (Salimans & Ho 2022): target v = sqrt(ab) eps - sqrt(1 - ab) x0
* ``bs32``     batch 32, lr 1e-3: four times the updates per CPU minute
* ``vpred_bs32`` v-prediction and batch 32, lr 1e-3: do the two gains add up?
* ``vpred_w48``  v-prediction with a wider UNet (base width 48: about 2.2x the parameters and the cost per step)
* ``cond_vpred``, ``cond_vpred_bs32``: the class-conditional task of notebook 05 (labels dropped to the
               null label with p = 0.1) with the ``vpred`` and ``vpred_bs32`` recipes; scored at
               w = 1 (the conditional model alone, labels 0..9 in turn) with the class accuracy as well
* ``peer``     diffusers' UNet2DModel (32, 64, 64), attention in the two lower blocks, base recipe
* ``shipped``  not trained here: ``data/checkpoints/ddpm.pt`` (``eval-shipped``), v-prediction with
               ``train_diffusion``'s warm-up + cosine learning rate over its whole run
* ``shipped_cfg``  the same for ``data/checkpoints/cfg.pt`` (``eval-shipped --model cfg``), scored at w = 1

The experimental losses live here until one of them wins; the winner moves into ``course_utils``
(v-prediction did: ``train_diffusion(..., prediction="v")``, ``diffusion.l_simple_v``, ``EpsFromV``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from course_tools.benchmarks_md import replace_block
from course_utils.checkpoint import atomic_save, atomic_write_text
from course_utils.data import load_mnist
from course_utils.diffusion import EpsFromV, v_target
from course_utils.schedules import NoiseSchedule
from course_utils.training import EMA
from course_utils.unet import UNet


ROOT = Path(__file__).resolve().parent.parent
RUNS = Path(os.environ.get("RECIPE_RUNS") or ROOT / "outputs" / "recipes")
MARKS = (5, 10, 20, 30, 40, 60, 90, 120)        # CPU minutes at which the EMA weights are kept
BEGIN, END = "<!-- recipes: begin -->", "<!-- recipes: end -->"   # the block of BENCHMARKS.md this script owns
SCORES = ROOT / "benchmarks" / "recipes_scores.json"                # every score, committed: report reads it
BATCH = 50                                                           # samples per batch (reference_runs.BATCH)
EVAL_SEED = 1234                                                     # the same x_T and noise for every snapshot
SHIPPED = {"ddpm": "shipped", "cfg": "shipped_cfg"}                  # shipped model -> its recipe name in the scores


@dataclass(frozen=True)
class Recipe:
    name: str
    target: str = "eps"           # "eps" or "v"
    weighting: str = "uniform"    # "uniform" or "minsnr"
    batch_size: int = 128
    lr: float = 2e-3
    net: str = "course"           # "course" or "peer"
    width: int = 32
    conditional: bool = False     # the class-conditional task (notebook 05), p_uncond = P_UNCOND


RECIPES = {r.name: r for r in (
    Recipe("base"),
    Recipe("minsnr", weighting="minsnr"),
    Recipe("vpred", target="v"),
    Recipe("bs32", batch_size=32, lr=1e-3),
    Recipe("peer", net="peer"),
    Recipe("vpred_bs32", target="v", batch_size=32, lr=1e-3),
    Recipe("vpred_w48", target="v", width=48),
    Recipe("cond_vpred", target="v", conditional=True),
    Recipe("cond_vpred_bs32", target="v", batch_size=32, lr=1e-3, conditional=True),
)}
P_UNCOND = 0.1                                   # the label dropout of the shipped class-conditional model


class PeerUNet(nn.Module):
    """diffusers' UNet2DModel behind the course's ``model(x, t)`` interface."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers import UNet2DModel
        self.net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                               layers_per_block=2,
                               down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                               up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).sample


def make_net(r: Recipe) -> nn.Module:
    if r.net == "peer":
        return PeerUNet()
    return UNet(in_channels=1, base_channels=r.width, channel_mults=(1, 2, 2), num_res_blocks=1,
                attention=(False, False, True), num_classes=10 if r.conditional else None)


def loss_fn(r: Recipe, net: nn.Module, x0: torch.Tensor, schedule: NoiseSchedule, g: torch.Generator,
            y: torch.Tensor | None = None) -> torch.Tensor:
    b = x0.shape[0]
    t = torch.randint(0, schedule.T, (b,), generator=g)                     # (B,)
    eps = torch.randn(x0.shape, generator=g)                                # (B, 1, 28, 28)
    ab = schedule.alpha_bar[t].view(-1, 1, 1, 1)                            # (B, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    if r.conditional:
        drop = torch.rand(b, generator=g) < P_UNCOND                        # (B,) bool: train the null label too
        out = net(x_t, t, torch.where(drop, torch.full_like(y, 10), y))
    else:
        out = net(x_t, t)
    target = eps if r.target == "eps" else v_target(x0, eps, ab)
    per_item = (out - target).square().flatten(1).mean(1)                  # (B,)
    if r.weighting == "minsnr":
        snr = (ab / (1 - ab)).flatten()
        # eps-loss weight min(SNR, 5) / SNR; for v the equivalent weight is min(SNR, 5) / (SNR + 1)
        per_item = per_item * (snr.clamp(max=5.0) / (snr if r.target == "eps" else snr + 1))
    return per_item.mean()


def train(r: Recipe, minutes: float) -> None:
    torch.set_num_threads(1)
    folder = RUNS / r.name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "recipe.json", json.dumps(asdict(r), indent=1))
    torch.manual_seed(0)
    net = make_net(r)
    ema = EMA(net, 0.999)
    opt = torch.optim.Adam(net.parameters(), lr=r.lr)
    schedule = NoiseSchedule("linear", 1000)
    x, y = load_mnist("train")
    g = torch.Generator().manual_seed(0)
    state = {"step": 0, "cpu": 0.0, "images": 0}
    resume = folder / "resume.pt"
    if resume.exists():
        saved = torch.load(resume, weights_only=True)
        net.load_state_dict(saved["net"])
        ema.module.load_state_dict(saved["ema"])
        ema.num_updates = saved["ema_updates"]
        opt.load_state_dict(saved["opt"])
        g.set_state(saved["rng"])
        state = saved["state"]
        print(f"[{r.name}] resuming at {state['cpu'] / 60:.1f} CPU minutes, step {state['step']}", flush=True)
    start_cpu = time.process_time() - state["cpu"]
    marks = [m for m in MARKS if m <= minutes and not (folder / f"cpu{m:03d}.pt").exists()]
    last_save = state["cpu"]
    net.train()
    while marks:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - r.batch_size + 1, r.batch_size):
            warm = min(1.0, (state["step"] + 1) / 200)
            for group in opt.param_groups:
                group["lr"] = r.lr * warm
            idx = perm[i:i + r.batch_size]
            loss = loss_fn(r, net, x[idx], schedule, g, y[idx] if r.conditional else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(net)
            state["step"] += 1
            state["images"] += r.batch_size
            state["cpu"] = time.process_time() - start_cpu
            if state["step"] % 200 == 0:
                print(f"[{r.name}] step {state['step']} cpu {state['cpu'] / 60:.1f} min loss {loss.item():.4f}",
                      flush=True)
            if marks and state["cpu"] >= marks[0] * 60:
                m = marks.pop(0)
                atomic_save({"ema": ema.module.state_dict(), "state": dict(state), "recipe": asdict(r)},
                            folder / f"cpu{m:03d}.pt")
                print(f"[{r.name}] snapshot at {m} CPU minutes ({state['images']:,} images)", flush=True)
            if state["cpu"] - last_save >= 300 or not marks:
                atomic_save({"net": net.state_dict(), "ema": ema.module.state_dict(), "ema_updates": ema.num_updates,
                             "opt": opt.state_dict(), "rng": g.get_state(), "state": dict(state)}, resume)
                last_save = state["cpu"]
            if not marks:
                break


@torch.no_grad()
def evaluate(n: int, steps: int = 50, recipes: list[str] | None = None) -> None:
    """Score every snapshot (of ``recipes``, default all) that has no score at ``n`` yet."""
    from course_utils.samplers import DDIMScheduler

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    schedule = NoiseSchedule("linear", 1000)
    scheduler = DDIMScheduler(schedule).set_timesteps(steps)
    for snap in sorted(RUNS.glob("*/cpu*.pt")):
        out = snap.with_suffix(f".n{n}.json")
        if out.exists() or (recipes and snap.parent.name not in recipes):
            continue
        saved = torch.load(snap, weights_only=True)
        r = Recipe(**saved["recipe"])
        net = make_net(r)
        net.load_state_dict(saved["ema"])
        net.eval()
        model = EpsFromV(net, schedule.alpha_bar) if r.target == "v" else net
        score = _score(model, scheduler, n, conditional=r.conditional)
        score.update(cpu_minutes=saved["state"]["cpu"] / 60, images=saved["state"]["images"],
                     steps=saved["state"]["step"], recipe=r.name, sampler=f"DDIM-{steps}")
        atomic_write_text(out, json.dumps(score, indent=1))
        _keep(score)
        print(f"{snap.parent.name}/{snap.name}: ratio {score['ratio']:.2f} (Frechet {score['frechet']:.1f}, "
              f"floor {score['floor']:.1f}, n = {n})"
              + (f", accuracy {score['accuracy']:.3f} at w = 1" if "accuracy" in score else ""), flush=True)


def _score(model: nn.Module, scheduler, n: int, conditional: bool = False) -> dict:
    """Course metrics of ``n`` samples of ``model`` (eps-prediction interface), from seed EVAL_SEED.

    ``conditional``: ask for labels 0, 1, ..., 9, 0, ... at w = 1 (no guidance) and score the class accuracy too.
    """
    import datetime

    from course_utils import metrics
    from course_utils.samplers import sample

    g = torch.Generator().manual_seed(EVAL_SEED)
    t0 = time.time()
    labels = torch.arange(n) % 10
    model = model.to(memory_format=torch.channels_last)       # faster convolutions on a CPU, the same numbers
    # DDIM with eta = 0 draws only x_T, in order from g: batches of BATCH give the same samples as any other size
    x = torch.cat([sample(model, scheduler, (min(BATCH, n - i), 1, 28, 28), generator=g, progress=False,
                          y=labels[i:i + BATCH] if conditional else None)
                   for i in range(0, n, BATCH)])
    score = metrics.evaluate_samples(x.clamp(-1, 1), labels if conditional else None)
    score.update(sample_seconds=time.time() - t0, date=datetime.date.today().isoformat())
    return score


def _load_scores() -> list[dict]:
    return json.loads(SCORES.read_text()) if SCORES.exists() else []


def _keep(score: dict) -> None:
    """Add ``score`` to SCORES, replacing an earlier score of the same recipe, CPU minutes and n."""
    key = (score["recipe"], round(score["cpu_minutes"]), int(score["n"]))
    rows = [r for r in _load_scores() if (r["recipe"], round(r["cpu_minutes"]), int(r["n"])) != key]
    rows.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in score.items()})
    rows.sort(key=lambda r: (r["recipe"], r["cpu_minutes"], r["n"]))
    atomic_write_text(SCORES, json.dumps(rows, indent=1) + "\n")


@torch.no_grad()
def evaluate_shipped(n: int, cpu_minutes: float, steps: int = 50, model_name: str = "ddpm") -> None:
    """Score a shipped model like a snapshot: one more point on the time-to-quality plot.

    ``model_name``: ``"ddpm"`` (recipe ``shipped``) or ``"cfg"`` (recipe ``shipped_cfg``, scored like the
    conditional recipes, at w = 1). ``cpu_minutes``: the process CPU time its training took
    (``pretrain.py --direct`` prints the wall time of a one-thread run; pass what ``ps`` or ``time`` said).
    It is not in the checkpoint.
    """
    from course_utils.diffusion import load_trained_unet
    from course_utils.samplers import DDIMScheduler

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, config = load_trained_unet(model_name)
    schedule = NoiseSchedule(config["task"]["schedule"], config["task"]["T"])
    score = _score(model, DDIMScheduler(schedule).set_timesteps(steps), n, conditional=model_name == "cfg")
    train = config["train"]
    score.update(cpu_minutes=cpu_minutes, images=train["epochs"] * train["n_images"],
                 steps=train["epochs"] * (train["n_images"] // train["batch_size"]), recipe=SHIPPED[model_name],
                 sampler=f"DDIM-{steps}")
    _keep(score)
    print(f"shipped {model_name}: ratio {score['ratio']:.2f} (Frechet {score['frechet']:.1f}, floor {score['floor']:.1f}, "
          f"n = {n})", flush=True)


def report(n: int) -> None:
    """The time-to-quality plot (benchmarks/recipes.png) and table, written into BENCHMARKS.md's recipes block."""
    import platform

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _load_scores() if int(r["n"]) == n]
    if not rows:
        raise SystemExit(f"no scores at n = {n} in {SCORES}; run `train` then `eval --n {n}` first")
    cond = {name for name, r in RECIPES.items() if r.conditional} | {"shipped_cfg"}
    fig, (ax, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    def older(r: dict) -> bool:
        return str(r.get("date", "")).startswith("<=")

    series = {}                  # (recipe, measured in an earlier session than its newer rows) -> points
    for r in rows:
        earlier = older(r) and any(o["recipe"] == r["recipe"] and not older(o) for o in rows)
        series.setdefault((r["recipe"], earlier), []).append((r["cpu_minutes"], r["ratio"], r.get("accuracy")))
    order = [*RECIPES, *SHIPPED.values()]
    for (name, earlier), pts in sorted(series.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        pts = sorted(pts)
        style = dict(color=f"C{order.index(name) % 10}" if order.index(name) < 10 else "k",
                     marker="*" if name.startswith("shipped") else "o", ms=12 if name.startswith("shipped") else 6,
                     ls="none" if len(pts) == 1 else (":" if earlier else "--" if name in cond else "-"),
                     label=f"{name} (earlier session, slower CPU)" if earlier else name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
        if name in cond:
            ax_acc.plot([p[0] for p in pts], [100 * p[2] for p in pts], **style)
    ax.set_xlabel("CPU minutes of training (one thread)")
    ax.set_ylabel(f"Frechet / floor (n = {n}, DDIM-50)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("dashed: class-conditional, at w = 1", fontsize=9)
    ax_acc.set_xlabel("CPU minutes of training (one thread)")
    ax_acc.set_ylabel("class accuracy at w = 1 (%)")
    ax_acc.grid(alpha=0.3)
    if ax_acc.lines:
        ax_acc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "recipes.png", dpi=100)
    floor = rows[0]["floor"]
    lines = [BEGIN, "## Training recipes: time to quality on this CPU", "",
             f"`python benchmarks/recipes.py` on {platform.machine()}, one thread per training, unconditional "
             f"model on all 60,000 training images, EMA weights scored with DDIM-50 on n = {n} samples "
             f"(floor {floor:.1f} at that n). CPU minutes are process CPU time, so other load on the machine "
             "does not count. Recipes are described in the script's docstring.", "",
             "![Frechet ratio against CPU minutes](benchmarks/recipes.png)", "",
             "The class-conditional recipes (`cond_*`, and the shipped `cfg` as `shipped_cfg`) sample labels "
             "0..9 in turn at w = 1 (no guidance); their accuracy is the course classifier's (99.5% on real "
             "test digits), their ratio is not comparable with the unconditional rows.", "",
             "The speed of this machine's CPU varies between sessions (images per CPU second, a column below): "
             "compare recipes measured at the same speed, or at the same images seen.", "",
             "| recipe | CPU min | images seen | images / CPU s | optimizer steps | Frechet | ratio | accuracy (w = 1) "
             "| measured |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["recipe"], r["cpu_minutes"])):
        acc = f"{100 * r['accuracy']:.1f}%" if "accuracy" in r else "-"
        lines.append(f"| {r['recipe']} | {r['cpu_minutes']:.0f} | {r['images']:,} | "
                     f"{r['images'] / (60 * r['cpu_minutes']):.0f} | {r['steps']:,} | "
                     f"{r['frechet']:.1f} | {r['ratio']:.2f} | {acc} | {r.get('date', '-')} |")
    missing = [name for name in RECIPES if not any(r["recipe"] == name for r in rows)]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)}."]
    lines.append(END)
    block = "\n".join(lines)
    replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, block)
    print(block)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("recipe", choices=sorted(RECIPES))
    t.add_argument("--minutes", type=float, default=40)
    e = sub.add_parser("eval")
    e.add_argument("--n", type=int, default=500)
    e.add_argument("--recipes", nargs="*", choices=sorted(RECIPES), help="only these recipes' snapshots")
    rp = sub.add_parser("report")
    rp.add_argument("--n", type=int, default=500)
    es = sub.add_parser("eval-shipped")
    es.add_argument("--n", type=int, default=500)
    es.add_argument("--cpu-minutes", type=float, required=True, help="the CPU time its training took")
    es.add_argument("--model", choices=sorted(SHIPPED), default="ddpm", help="which shipped model (default ddpm)")
    a = p.parse_args(argv)
    if a.cmd == "train":
        train(RECIPES[a.recipe], a.minutes)
    elif a.cmd == "eval":
        evaluate(a.n, recipes=a.recipes)
    elif a.cmd == "eval-shipped":
        evaluate_shipped(a.n, a.cpu_minutes, model_name=a.model)
    else:
        report(a.n)


if __name__ == "__main__":
    sys.exit(main())
