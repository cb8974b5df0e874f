"""Train every model of the series and ship the checkpoints in ``data/checkpoints/`` with a manifest.

    python benchmarks/pretrain.py --profile full            # on a GPU: runs all notebooks, then exports
    python benchmarks/pretrain.py --export-only outputs/run-full --profile full

1. ``./course.sh run --profile P`` trains each model through its notebook's load-or-train path
   (so the shipped weights are exactly what the notebooks produce), into ``outputs/run-P``.
2. Every checkpoint found there is re-saved to ``data/checkpoints/`` in float16 (weights
   only; the loss history is thinned), and ``manifest.json`` records per model: config,
   profile, training images seen, git commit, metrics and SHA-256. The ``cpu`` profile then
   loads these through the same load-or-train path (architecture keys must match).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_utils.paths import shipped_checkpoint_dir  # noqa: E402

BUDGET_MB = 40.0
SKIP = {"classifier"}            # the metric classifier ships as data/classifier.pt


def _thin(values: list, keep: int = 500) -> list:
    step = max(1, len(values) // keep)
    return values[::step]


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _score(name: str, n: int) -> dict:
    """Course metrics of ``n`` DDIM-50 samples from the exported model (diffusion models only)."""
    from course_utils import metrics
    from course_utils.generate import generate

    kind = {"ddpm": "ddpm", "cfg": "cfg", "ldm": "ldm"}.get(name)
    if kind is None or n <= 0:
        return {}
    images, labels = generate(kind, num=n, steps=50, progress=False)
    x = torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1
    y = None if kind == "ddpm" else torch.from_numpy(labels)
    return {k: round(v, 5) for k, v in metrics.evaluate_samples(x, y).items()}


def export(src: Path, profile: str, metric_samples: int) -> dict:
    """Re-save the checkpoints of run folder ``src`` into data/checkpoints/ (fp16) with a manifest."""
    dest = shipped_checkpoint_dir()
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"profile": profile, "git_commit": _git_commit(), "models": {}}
    best_w = src / "05_best_w.json"
    if best_w.exists():
        manifest["best_w"] = json.loads(best_w.read_text())["best_w"]
    for path in sorted((src / "checkpoints").glob("*.pt")):
        name = path.stem
        if name in SKIP:
            continue
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        ckpt["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
        ckpt["history"] = {k: _thin(v) for k, v in ckpt.get("history", {}).items() if isinstance(v, list)}
        cfg = ckpt.get("config", {})
        images_seen = int(cfg.get("epochs", 0)) * int(cfg.get("n_images", 0))
        ckpt["meta"] = {**ckpt.get("meta", {}), "profile": profile, "images_seen": images_seen}
        out = dest / f"{name}.pt"
        tmp = out.with_suffix(".pt.tmp")
        torch.save(ckpt, tmp)
        tmp.replace(out)
        manifest["models"][name] = {"file": out.name, "config": cfg, "profile": profile, "images_seen": images_seen,
                                    "size_mb": round(out.stat().st_size / 2**20, 2), "sha256": _sha256(out)}
        print(f"exported {name}: {manifest['models'][name]['size_mb']} MB, {images_seen:,} images seen")
    total = sum(m["size_mb"] for m in manifest["models"].values())
    manifest["total_mb"] = round(total, 2)
    if total > BUDGET_MB:
        raise SystemExit(f"checkpoints take {total:.1f} MB, over the {BUDGET_MB} MB budget")
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in manifest["models"]:
        manifest["models"][name]["metrics"] = _score(name, metric_samples)
        if manifest["models"][name]["metrics"]:
            print(f"  {name}: {manifest['models'][name]['metrics']}")
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {dest / 'manifest.json'} ({total:.1f} MB in all)")
    return manifest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--export-only", type=Path, default=None, help="export an existing run folder, train nothing")
    ap.add_argument("--metric-samples", type=int, default=1000)
    args = ap.parse_args()
    src = args.export_only or ROOT / "outputs" / f"run-{args.profile}"
    if args.export_only is None:
        r = subprocess.run([sys.executable, "-m", "course_utils", "run", "--profile", args.profile, "--out", str(src)],
                           cwd=ROOT)
        if r.returncode != 0:
            print("some notebooks failed; exporting the checkpoints that exist")
    export(src, args.profile, args.metric_samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
