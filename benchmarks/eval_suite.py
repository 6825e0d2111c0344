"""The production-like evaluation suite: build the twelve hand-made scenes, render them, score models.

    .venv/bin/python benchmarks/eval_suite.py [--work data/suite] [--stage all|scenes|render|score|figure]
        [--shard I/N] [--passes 1|2] [--models models/oidn-rt-hdr-alb-nrm.onnx ...]
        [--quality fast|balanced|high] [--coarse] [--flips N] [--no-oidn]

- scenes: ``benchmarks/scenes/suite.py`` writes WORK/scenes/NAME.blend (interiors through windows,
  a Cornell box, night, fog, glass and caustics, depth of field, motion blur, fine geometry,
  textured architecture, HDRI product studios);
- render: ``generate-dataset --scene`` renders each whole 512x512 frame at 1, 4 and 16 spp and a
  REF_SPP (256) spp reference as 2 independent chunks (``--clean-chunks``: resumable after each,
  about 2 to 4 minutes on 2 cores) into WORK/pairs256, then (unless ``--passes 1``) a second pass
  with another seed into WORK/pairs256-topup. Rerun to continue; ``--shard I/N`` splits the scenes
  over machines (copy the shard folders together afterwards);
- score: WORK/scored holds every finished scene with the mean of both passes as its reference
  (512 spp; 256 where the second pass has not reached it: references.json says which), and
  ``python -m training evaluate`` scores each model on every frame: display PSNR, SSIM, FLIP,
  relMSE, low-frequency PSNR, against OIDN 2.5 balanced and high on the same raw passes, and OIDN
  with prefiltered albedo and normal the way Blender runs it; a per-scene table at 4 spp.
  Writes WORK/eval/<model>/{table.md,metrics.json,comparison.png} and prints the summary;
- figure: WORK/eval/dim_wall.png, a dim wall of the sunlit room at 4 spp at full resolution:
  noisy, each model, OIDN balanced, OIDN as Blender runs it, reference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from blender_denoise_addon.core.defaults import DEFAULT_QUALITY, QUALITY
from blender_denoise_addon.core.denoise import FLIP_SETS

ROOT = Path(__file__).resolve().parent.parent

# Most telling first: a partial render (an interrupted session) already covers the dim interiors.
SCENES = (
    "sunlit_room",
    "overcast_room",
    "night_room",
    "cornell_box",
    "foggy_hall",
    "glass_sunset",
    "studio_bottle",
    "depth_of_field",
    "brick_facade",
    "fine_geometry",
    "motion_blur",
    "studio_watch",
)
# References: two passes of REF_SPP spp (2 chunks each) with their own seeds, averaged where the
# second exists. 1024 spp (2 x 512) was the plan of issue 26; on 2 cores a 512x512 reference takes
# 20 to 40 min at that count and the suite shares the session with training data and training, so
# since issue 36 a pass is 256 spp (about a quarter of that): a 4 spp input's noise is then 18 dB
# above the reference's (24 dB with both passes). Every method is scored against the same
# reference in one run, so the comparisons hold; absolute numbers are not those of 1024 spp.
REF_SPP = 256
RENDER = ["--resolution", "512", "512", "--noisy-spp", "1", "4", "16", "--clean-spp", str(REF_SPP)]
RENDER += ["--adaptive-threshold", "0", "--clean-chunks", "2"]
PASSES = ((f"pairs{REF_SPP}", 26), (f"pairs{REF_SPP}-topup", 27))
# The presets' networks (High, Balanced, Fast with every pass), then color alone (Balanced/High, Fast).
MODELS = (
    "oidn-rt-hdr-calb-cnrm-large.onnx",
    "oidn-rt-hdr-alb-nrm.onnx",
    "oidn-rt-hdr-alb-nrm-small.onnx",
    "oidn-rt-hdr.onnx",
    "oidn-rt-hdr-small.onnx",
)
# The figure: the sunlit room's back wall and ceiling, lit only by bounce light (x, y, w, h).
FIGURE_SCENE, FIGURE_BOX, FIGURE_SPP = "sunlit_room", (128, 40, 256, 256), 4


def scored_set(work: Path) -> Path:
    """WORK/scored: the first pass's noisy renders with each finished scene's reference, the mean
    of both passes where the second has it, else the first pass's (references.json says which)."""
    import shutil

    from blender_denoise_addon.blender.generator.render import average_exrs
    from blender_denoise_addon.dataset import files as df

    first, second, out = work / PASSES[0][0], work / PASSES[1][0], work / "scored"
    shutil.rmtree(out, ignore_errors=True)
    refs = {}
    topped_up = df.complete_indices(second)
    for index in sorted(df.complete_indices(first)):
        dst = df.sample_dir(out, index)
        dst.mkdir(parents=True)
        for src in df.sample_dir(first, index).glob("noisy_*.exr"):
            (dst / src.name).symlink_to(src.resolve())
        both = [df.clean_exr(first, index)]
        if index in topped_up:
            both.append(df.clean_exr(second, index))
        average_exrs(both, df.clean_exr(out, index))
        refs[SCENES[index]] = REF_SPP * len(both)
    (out / "references.json").write_text(json.dumps(refs, indent=1))
    return out


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def summary(work: Path, models: list[Path]) -> str:
    """Mean display PSNR per spp: each model against the OIDN variants on its own inputs."""
    lines = ["| model | spp | noisy | ours | OIDN balanced | OIDN high | OIDN, Blender's prefilter | ours low-freq |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    # Each model's default run first, then its variants (qualities, ablations) in name order.
    folders = sorted((work / "eval").glob("*/metrics.json")) if (work / "eval").is_dir() else []
    names = [f.parent.name for f in folders]
    for name in (n for m in models for n in [m.stem] + [x for x in names if x.startswith(m.stem + "-")]):
        path = work / "eval" / name / "metrics.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())["metrics"]
        for spp in sorted((k for k in metrics if k.isdigit()), key=int):
            v = metrics[spp]
            cells = [f"{v[k]['psnr']:.2f}" if k in v else "-" for k in ("noisy", "ours", "oidn_balanced", "oidn_high")]
            cells.append(f"{v['oidn_blender']['psnr']:.2f}" if "oidn_blender" in v else "-")
            cells.append(f"{v['ours']['psnr_lf']:.2f}")
            lines.append(f"| {name} | {spp} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(work: Path, models: list[Path], out: Path, threads: int = 0) -> Path:
    """A dim wall at 4 spp, full resolution: noisy | each model | OIDN balanced | OIDN as Blender
    runs it | reference, each titled with display PSNR and low-frequency PSNR on the crop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blender_denoise_addon.core import metrics
    from blender_denoise_addon.core.model import load_model
    from blender_denoise_addon.dataset import files as df
    from training.dataset import Pair
    from training.scoring import score_pair

    root, index = work / "scored", SCENES.index(FIGURE_SCENE)
    pair = Pair(FIGURE_SCENE, FIGURE_SPP, df.noisy_exr(root, index, FIGURE_SPP), df.clean_exr(root, index), "exr")
    models_by_name = {m.stem.removeprefix("denoiser-"): load_model(m, threads or None) for m in models}
    scored = score_pair(pair, models_by_name, oidn=True)
    clean = scored.clean
    names = ["noisy", *models_by_name, "oidn_balanced", "oidn_blender"]
    titles = {"oidn_balanced": "OIDN balanced", "oidn_blender": "OIDN, Blender's prefilter"}
    panels = [(titles.get(n, n), scored.results[n]) for n in names]
    x, y, w, h = FIGURE_BOX
    ref = metrics.to_display(clean)[y : y + h, x : x + w]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.6), squeeze=False)
    for ax, (name, img) in zip(axes[0], panels, strict=False):
        shown = metrics.to_display(img)[y : y + h, x : x + w]
        ax.imshow(shown)
        ax.set_title(
            f"{name}\n{metrics.psnr(shown, ref):.2f} dB, low-freq {metrics.lowfreq_psnr(shown, ref):.2f}", fontsize=9
        )
    axes[0, -1].imshow(ref)
    spp = json.loads((root / "references.json").read_text())[FIGURE_SCENE]
    axes[0, -1].set_title(f"reference\n({spp} spp)", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{FIGURE_SCENE}, {FIGURE_SPP} spp: a wall and ceiling lit by bounce light (crop {w}x{h})", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "data" / "suite")
    p.add_argument("--stage", choices=("all", "scenes", "render", "score", "figure"), default="all")
    p.add_argument("--shard", default="0/1", help="render only the scenes of shard I/N (default %(default)s)")
    p.add_argument("--models", type=Path, nargs="+", default=[ROOT / "models" / m for m in MODELS])
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for scoring (0: all)")
    p.add_argument("--coarse", action="store_true", help="ablation: ours with the coarse pass, into eval/*-coarse")
    p.add_argument("--quality", choices=tuple(QUALITY), default=DEFAULT_QUALITY,
                   help="ours at this Quality setting, into eval/*-QUALITY unless %(default)s")  # fmt: skip
    p.add_argument(
        "--flips",
        type=int,
        choices=tuple(FLIP_SETS),
        help="ablation: test-time flips instead of the quality's (eval/*-fN)",
    )
    p.add_argument("--no-oidn", action="store_true", help="score ours alone (the OIDN rows come from a default run)")
    p.add_argument("--passes", type=int, choices=(1, 2), default=2,
                   help="render: reference passes (1: REF_SPP references only)")  # fmt: skip
    args = p.parse_args(argv)
    work: Path = args.work
    py = sys.executable
    scenes = work / "scenes"
    if args.stage in ("all", "scenes") or not all((scenes / f"{n}.blend").is_file() for n in SCENES):
        run([py, "benchmarks/scenes/suite.py", str(scenes)])
    if args.stage in ("all", "render"):
        files = [a for n in SCENES for a in ("--scene", str(scenes / f"{n}.blend"))]
        for folder, seed in PASSES[: args.passes]:
            gen = [py, "-m", "blender_denoise_addon", "generate-dataset", "--out", str(work / folder)]
            run([*gen, "--count", str(len(SCENES)), *files, *RENDER, "--seed", str(seed), "--shard", args.shard])
    if args.stage in ("all", "score"):
        data = scored_set(work)
        print(f"references (spp): {json.loads((data / 'references.json').read_text())}")
        for m in args.models:
            suffix = ("-coarse" if args.coarse else "") + (
                "" if args.quality == DEFAULT_QUALITY else f"-{args.quality}"
            )
            suffix += "" if args.flips is None else f"-f{args.flips}"
            out = work / "eval" / (m.stem + suffix)
            run(
                [py, "-m", "training", "evaluate", "--data", str(data), "--model", str(m), "--split", "all"]
                + ["--out", str(out), "--grids", "0", "--figure-rows", "12"]
                + ["--threads", str(args.threads)]
                + (["--coarse"] if args.coarse else [])
                + ["--quality", args.quality]
                + ([] if args.flips is None else ["--flips", str(args.flips)])
                + (["--no-oidn"] if args.no_oidn else [])
            )
        print(summary(work, args.models))
    if args.stage in ("all", "figure"):
        print(f"wrote {figure(work, args.models, work / 'eval' / 'dim_wall.png', args.threads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
