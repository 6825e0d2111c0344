"""The animated suite: build seven shots, render them, score per-frame and temporal denoising against
Blender's built-in denoiser (flicker and stability included).

    .venv/bin/python benchmarks/eval_temporal.py [--work data/temporal] [--stage all|scenes|render|score|figure]
        [--spp 4] [--ref-spp 1024] [--radius 2] [--quality high balanced] [--model MODEL]

- scenes: ``benchmarks/scenes/animated.py`` writes WORK/scenes/NAME.blend (walkthrough, fast_object,
  turntable, fog_lamp, dim_walkthrough, glass_orbit, fast_pan; 11 frames each, 256x256);
- render (resumable: finished frames are kept), per shot into WORK/NAME/:
  ``noisy/`` every frame at SPP with Cycles' animated seed, Denoising Data, Vector and Depth passes
  (what ``render-denoise --temporal`` renders); ``builtin-animated/`` and ``builtin-fixed/`` the same
  samples with Blender's denoiser on (OIDN high, Accurate prefilter), with the animated seed and with
  Blender's default fixed seed; ``ref/`` the middle 5 frames at REF_SPP (another seed);
- score: on the reference frames, mean and worst display PSNR, temporal PSNR (the frame-to-frame
  change against the reference's change) and warp PSNR (each frame against the previous one moved
  by the Vector pass, where depth agrees within 2 %), for: noisy, each preset (High and Balanced)
  per frame and temporal (``TemporalStream.from_options``, as ``denoise-image --temporal``, which
  sees every noisy frame), OIDN balanced per frame, and the built-in denoiser with either seed.
  Writes WORK/scores.json and WORK/table.md and prints the table;
- figure: docs/images/temporal-strip.png (4 consecutive frames of each method and the reference)
  and docs/images/temporal.gif (ours per frame | ours temporal | built-in, the whole shot).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from temporal_scoring import QUALITIES, figure, score_all

from blender_denoise_addon.core.defaults import QUALITY, TEMPORAL
from blender_denoise_addon.core.options import Options

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ("walkthrough", "fast_object", "turntable", "fog_lamp", "dim_walkthrough", "glass_orbit", "fast_pan")
REF_MARGIN = 3  # references skip this many frames at each end: every scored frame has 3 neighbours a side


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


# -- rendering (inside bpy) ----------------------------------------------------------------------


def render_shot(blend: Path, out: Path, spp: int, ref_spp: int) -> None:
    """Every output of one shot; a frame that exists is skipped."""
    import bpy

    from blender_denoise_addon.blender import blender_io

    bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)
    scene = bpy.context.scene
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    refs = frames[REF_MARGIN:-REF_MARGIN]
    jobs = [("noisy", f, spp, None, True) for f in frames]
    jobs += [("builtin-animated", f, spp, "HIGH", True) for f in frames]
    jobs += [("builtin-fixed", f, spp, "HIGH", False) for f in frames]
    jobs += [("ref", f, ref_spp, None, True) for f in refs]
    for kind, f, samples, oidn, animated in jobs:
        dst = out / kind / f"{blend.stem}_{f:04d}.exr"
        if dst.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        scene.frame_set(f)
        blender_io.render_sequence_frame(
            scene, samples, dst, seed=1000 if kind == "ref" else 0, animated_seed=animated, builtin_denoiser=oidn
        )
        print(f"{blend.stem} {kind} frame {f} ({samples} spp)", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "data" / "temporal")
    p.add_argument("--stage", choices=("all", "scenes", "render", "render-one", "score", "figure"), default="all")
    p.add_argument("--figure-shot", default="fast_object", choices=SHOTS)
    p.add_argument("--figure-out", type=Path, default=ROOT / "docs" / "images")
    p.add_argument("--shots", nargs="+", default=list(SHOTS), choices=SHOTS)
    p.add_argument("--spp", type=int, default=4)
    p.add_argument("--ref-spp", type=int, default=1024)
    p.add_argument("--radius", type=int, default=TEMPORAL.radius, help="temporal window: frames on each side")
    p.add_argument("--quality", nargs="+", default=list(QUALITIES), choices=list(QUALITY), help="presets to score")
    p.add_argument("--model", type=Path, help="our model instead of the presets' networks")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    work: Path = args.work
    py = sys.executable
    scenes = work / "scenes"
    if args.stage in ("all", "scenes") or not all((scenes / f"{n}.blend").is_file() for n in args.shots):
        run([py, "benchmarks/scenes/animated.py", str(scenes)])
    if args.stage == "render-one":
        for name in args.shots:
            render_shot(scenes / f"{name}.blend", work / name, args.spp, args.ref_spp)
        return 0
    if args.stage in ("all", "render"):
        for name in args.shots:  # one process a shot: a crash costs one frame, a rerun resumes
            run([py, __file__, "--stage", "render-one", "--work", str(work), "--shots", name]
                + ["--spp", str(args.spp), "--ref-spp", str(args.ref_spp)])  # fmt: skip
    opts = Options(radius=args.radius, threads=args.threads or None, model_path=str(args.model) if args.model else None)
    if args.stage in ("all", "score"):
        table = score_all(work, args.shots, tuple(args.quality), opts)
        (work / "table.md").write_text(table)
        print(table)
    if args.stage in ("all", "figure"):
        for path in figure(work, args.figure_shot, replace(opts, quality=args.quality[0]), args.figure_out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
