"""Train on your own scenes, end to end: render pairs from part of an animation, fine-tune the
shipped model on them, score other frames of the same animation against the shipped model and
OIDN 2.5 (balanced and high, on the same raw passes).

    .venv/bin/python benchmarks/bench_finetune.py [--work data/walk] [--pairs 72] [--minutes 30]
        [--eval 4] [--stage all|pairs|eval|finetune|score]

The scene is ``benchmarks/scenes/interior_walkthrough.py`` (a furnished room lit through a
window, 960x540, 120 frames, an animated camera): not a scene the generator makes. Training
pairs are 128x128 crops from frames 1-90 (1, 4 and 16 spp; clean 256 spp, adaptive 0.01); the
scored crops are 192x192 from frames 96-120 (reference 2048 spp, adaptive 0.002), another
seed. Every stage is a repo command (printed before it runs), resumable: run the script again
after an interruption. Prints the table and writes WORK/result.json.
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

from blender_denoise_addon.core import load_model, metrics
from blender_denoise_addon.core.denoise import denoise, prepare_albedo, prepare_normal, sanitize_color
from blender_denoise_addon.core.imageio import read_image
from blender_denoise_addon.dataset import files as df

ROOT = Path(__file__).resolve().parent.parent

SHIPPED = ROOT / "training" / "base" / "denoiser-v13-color-albedo-normal.onnx"
TRAIN = ["--frames", "1-90", "--resolution", "128", "128", "--noisy-spp", "1", "4", "16", "--clean-spp", "256"]
TRAIN += ["--adaptive-threshold", "0.01", "--adaptive-min-samples", "32", "--seed", "1"]
EVAL = ["--frames", "96-120", "--resolution", "192", "192", "--noisy-spp", "1", "4", "16", "--clean-spp", "2048"]
EVAL += ["--adaptive-threshold", "0.002", "--adaptive-min-samples", "256", "--seed", "2"]


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


def score(eval_root: Path, models: dict[str, Path]) -> list[dict[str, Any]]:
    """Display PSNR and SSIM of every eval pair: noisy, each model (through the core), OIDN."""
    from training.dataset import find_pairs
    from training.evaluate import oidn_denoise, oidn_prefiltered

    loaded = {k: load_model(p) for k, p in models.items()}
    rows = []
    for pair in find_pairs(eval_root):
        frame = read_image(pair.noisy)
        clean = sanitize_color(read_image(pair.clean).color[..., :3])
        color = sanitize_color(frame.color[..., :3])
        results = {"noisy": color}
        for name, m in loaded.items():
            results[name] = denoise(m, color, frame.albedo, frame.normal, tiling="full").image[..., :3]
        albedo, normal = prepare_albedo(frame.albedo[..., :3]), prepare_normal(frame.normal[..., :3])
        for q in ("balanced", "high"):
            results[f"oidn_{q}"] = oidn_denoise(color, albedo, normal, hdr=True, quality=q)
        results["oidn_blender"] = oidn_prefiltered(color, albedo, normal)  # Blender's built-in, Accurate prefilter
        row: dict[str, Any] = {"sample": pair.scene, "spp": pair.spp}
        for name, img in results.items():
            rep = metrics.report(img, clean)
            row[name] = round(rep["psnr"], 3)
            row[f"{name}_ssim"] = round(rep["ssim"], 4)
            row[f"{name}_lf"] = round(rep["psnr_lf"], 3)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], names: list[str]) -> str:
    lines = ["| spp | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for spp in sorted({r["spp"] for r in rows}):
        sel = [r for r in rows if r["spp"] == spp]
        means = [float(np.mean([r[n] for r in sel if math.isfinite(r[n])])) for n in names]
        best = max(means[1:])
        cells = [f"**{m:.2f}**" if m == best else f"{m:.2f}" for m in means]
        lines.append(f"| {spp} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "data" / "walk", help="folder for the scene, data and model")
    p.add_argument("--pairs", type=int, default=72, help="training samples to render (default %(default)s)")
    p.add_argument("--minutes", type=float, default=30.0, help="fine-tuning budget (default %(default)s)")
    p.add_argument("--eval", type=int, default=4, help="scored crops from the held-out frames (default %(default)s)")
    p.add_argument("--stage", choices=("all", "pairs", "eval", "finetune", "score"), default="all")
    args = p.parse_args(argv)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    blend, pairs, evals, tuned = work / "walk.blend", work / "pairs", work / "eval", work / "walk_tuned.onnx"
    gen = [py, "-m", "blender_denoise_addon", "generate-dataset", "--scene", str(blend)]
    if not blend.is_file():
        run([py, "benchmarks/scenes/interior_walkthrough.py", str(blend)])
    if args.stage in ("all", "pairs"):
        run([*gen, "--out", str(pairs), "--count", str(args.pairs), *TRAIN])
    if args.stage in ("all", "eval"):
        run([*gen, "--out", str(evals), "--count", str(args.eval), *EVAL])
    if args.stage in ("all", "finetune"):
        run([py, "-m", "training", "finetune", "--data", str(pairs), "--minutes", str(args.minutes), "-o", str(tuned)])
    if args.stage not in ("all", "score"):
        return 0
    rows = score(evals, {"shipped": SHIPPED, "tuned": tuned})
    names = ["noisy", "shipped", "tuned", "oidn_balanced", "oidn_high", "oidn_blender"]
    card = json.loads(tuned.with_name(tuned.stem + ".card.json").read_text())
    result = {
        "render_minutes_pairs": round(render_minutes(pairs), 1),
        "render_minutes_eval": round(render_minutes(evals), 1),
        "finetune_minutes": card["minutes"],
        "finetune_steps": card["steps"],
        "kept": card["kept"],
        "holdout_psnr": {"before": card["psnr_before"], "tuned": card["psnr_tuned"]},
        "rows": rows,
    }
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows, names))
    at4 = [r for r in rows if r["spp"] == 4]
    gains = [f"{r['sample']} {r['tuned'] - r['shipped']:+.2f} / {r['tuned'] - r['oidn_balanced']:+.2f}" for r in at4]
    print("\n4 spp, tuned minus shipped / minus OIDN balanced, per crop (dB): " + "; ".join(gains))
    print(
        f"\nrendering: {result['render_minutes_pairs']} min of pairs ({len(list(df.iter_records(pairs)))} samples), "
        f"fine-tuning: {card['minutes']} min ({card['steps']} steps, {card['kept']} model kept)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
