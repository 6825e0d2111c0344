"""Tuning on your own scenes, end to end: render pairs from the early frames of a shot, fine-tune
the network behind a Quality preset on them, and score later frames of the same shot against the
untuned preset, OIDN 2.5 balanced and Blender's built-in (OIDN high after the Accurate prefilter),
on the same raw passes.

    .venv/bin/python benchmarks/bench_finetune.py [--scenes walk facade] [--quality high]
        [--pairs 16] [--minutes 15] [--eval 6] [--stage all|pairs|eval|finetune|score]

Scenes (not the generator's kind): ``walk``, a furnished room lit through a window with the
camera walking through it (``scenes/interior_walkthrough.py``), and ``facade``, a brick house
front in low sun with the camera walking past (``scenes/facade_walk.py``); both 960x540, 120
frames. Training pairs are 128x128 crops of frames 1-40 (1, 4 and 16 spp; clean 256 spp,
adaptive 0.01); the scored crops are 192x192 from frames 81-120 (reference 1024 spp, adaptive
0.002), another seed. Every stage is a repo command (printed before it runs) and resumes: run
the script again after an interruption. Prints a table per scene and writes WORK/result.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from blender_denoise_addon.core import catalog, load_model, metrics
from blender_denoise_addon.dataset import files as df

ROOT = Path(__file__).resolve().parent.parent

SCENES = {"walk": "benchmarks/scenes/interior_walkthrough.py", "facade": "benchmarks/scenes/facade_walk.py"}
TRAIN = ["--frames", "1-40", "--resolution", "128", "128", "--noisy-spp", "1", "4", "16", "--clean-spp", "256"]
TRAIN += ["--adaptive-threshold", "0.01", "--adaptive-min-samples", "32", "--seed", "1"]
EVAL = ["--frames", "81-120", "--resolution", "192", "192", "--noisy-spp", "1", "4", "16", "--clean-spp", "1024"]
EVAL += ["--adaptive-threshold", "0.002", "--adaptive-min-samples", "256", "--seed", "2"]
METHODS = ("noisy", "untuned", "tuned", "oidn_balanced", "oidn_blender")


def run(cmd: list[str]) -> float:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def render_minutes(root: Path) -> float:
    """Render time of a dataset from its records (every render of every sample), in minutes."""
    total = 0.0
    for rec in df.iter_records(root):
        # None: a render reused after an interruption (its time was not measured in this run)
        total += rec["build_seconds"] + (rec["clean"]["seconds"] or 0) + sum(n["seconds"] or 0 for n in rec["noisy"])
    return total / 60


def score(eval_root: Path, models: dict[str, Path], quality: str) -> list[dict[str, Any]]:
    """Display PSNR of every scored pair: noisy, each model through the core, OIDN balanced and the built-in."""
    from training.dataset import find_pairs
    from training.scoring import score_pair

    loaded = {k: load_model(p) for k, p in models.items()}
    rows = []
    for pair in find_pairs(eval_root):
        scored = score_pair(pair, loaded, oidn=True, quality=quality)
        row: dict[str, Any] = {"sample": pair.scene, "spp": pair.spp}
        for name in METHODS:
            row[name] = round(scored.psnr(name), 3)
            row[f"{name}_ssim"] = round(metrics.report(scored.results[name], scored.clean)["ssim"], 4)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| spp | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
    for spp in sorted({r["spp"] for r in rows}):
        sel = [r for r in rows if r["spp"] == spp]
        means = [float(np.mean([r[n] for r in sel if math.isfinite(r[n])])) for n in METHODS]
        best = max(means[1:])
        cells = [f"**{m:.2f}**" if m == best else f"{m:.2f}" for m in means]
        lines.append(f"| {spp} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_scene(scene: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable
    work.mkdir(parents=True, exist_ok=True)
    blend, pairs, evals = work / f"{scene}.blend", work / "pairs", work / "eval"
    tuned = work / "tuned" / f"{scene}_{args.quality}.onnx"
    gen = [py, "-m", "blender_denoise_addon", "generate-dataset", "--scene", str(blend), "--quiet"]
    if not blend.is_file():
        run([py, SCENES[scene], str(blend)])
    if args.stage in ("all", "pairs"):
        run([*gen, "--out", str(pairs), "--count", str(args.pairs), *TRAIN])
    if args.stage in ("all", "eval"):
        run([*gen, "--out", str(evals), "--count", str(args.eval), *EVAL])
    if args.stage in ("all", "finetune"):
        run([py, "-m", "training", "finetune", "--data", str(pairs), "--quality", args.quality,
             "--minutes", str(args.minutes), "-o", str(tuned), "--quiet"])  # fmt: skip
    if args.stage not in ("all", "score"):
        return {}
    untuned = catalog.pick_model({"color", "albedo", "normal"}, quality=args.quality).path
    rows = score(evals, {"untuned": untuned, "tuned": tuned}, args.quality)
    card = json.loads(catalog.card_path(tuned).read_text())
    at4 = [r for r in rows if r["spp"] == 4]
    return {
        "scene": scene,
        "base": untuned.name,
        "render_minutes_pairs": round(render_minutes(pairs), 1),
        "render_minutes_eval": round(render_minutes(evals), 1),
        "samples": len(list(df.iter_records(pairs))),
        "finetune_minutes": card["minutes"],
        "finetune_steps": card["steps"],
        "kept": card["kept"],
        "holdout_psnr": {"before": card["psnr_before"], "tuned": card["psnr_tuned"]},
        "mean_4spp": {n: round(float(np.mean([r[n] for r in at4])), 3) for n in METHODS},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "data", help="folder holding WORK/<scene>/ (default data)")
    p.add_argument("--scenes", nargs="+", choices=tuple(SCENES), default=list(SCENES))
    p.add_argument("--quality", choices=("fast", "balanced", "high"), default="high")
    p.add_argument("--pairs", type=int, default=16, help="training samples to render (default %(default)s)")
    p.add_argument("--minutes", type=float, default=15.0, help="fine-tuning budget (default %(default)s)")
    p.add_argument("--eval", type=int, default=6, help="scored crops from the later frames (default %(default)s)")
    p.add_argument("--stage", choices=("all", "pairs", "eval", "finetune", "score"), default="all")
    args = p.parse_args(argv)
    results = [bench_scene(s, args.work / s, args) for s in args.scenes]
    if args.stage not in ("all", "score"):
        return 0
    (args.work / f"bench_finetune_{args.quality}.json").write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        print(
            f"\n## {r['scene']}: {r['base']} tuned on {r['samples']} samples ({r['render_minutes_pairs']} min of "
            f"rendering), {r['finetune_minutes']} min of tuning ({r['finetune_steps']} steps, {r['kept']} kept)"
        )
        print(table(r["rows"]))
        m = r["mean_4spp"]
        gains = ", ".join(f"{m['tuned'] - m[n]:+.2f} dB vs {n}" for n in ("untuned", "oidn_balanced", "oidn_blender"))
        print(f"4 spp: tuned {gains}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
