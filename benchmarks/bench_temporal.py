"""What a temporal frame costs against a per-frame denoise, measured side by side in one run.

    .venv/bin/python benchmarks/bench_temporal.py [--size 1920 1080] [--frames 5] [--repeats 2]
        [--radius 2] [--quality high balanced fast] [--model MODEL] [--threads 0]

A synthetic shot (a textured wall seen by a moving camera, gamma noise like a few spp, every
pass a render with Vector and Depth has) at the given size. For each Quality preset, per frame:
the preset's network on each frame alone (``denoise_frame``); temporal: the whole shot through
``TemporalStream.from_options`` (each frame's guide, the reprojection of its window, the denoise
and the history blend), divided by the frames. The two runs alternate, ``--repeats`` times each;
the ratio of the medians is printed with both times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from blender_denoise_addon.core import catalog
from blender_denoise_addon.core.defaults import QUALITY, TEMPORAL
from blender_denoise_addon.core.denoise import denoise_frame
from blender_denoise_addon.core.imageio import Frame
from blender_denoise_addon.core.options import Options
from blender_denoise_addon.core.temporal import TemporalStream


def shot(width: int, height: int, frames: int) -> list[Frame]:
    out = []
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for t in range(frames):
        x, y = xs + 1.5 * t, ys - 0.5 * t
        clean = np.stack([0.3 + 0.2 * np.sin(x / 9), 0.3 + 0.2 * np.cos(y / 13), 0.4 + 0.1 * np.sin((x + y) / 17)], -1)
        rng = np.random.default_rng(t)
        vec = np.empty((height, width, 4), np.float32)
        vec[...] = (1.5, 0.5, 1.5, 0.5)
        normal = np.zeros((height, width, 3), np.float32)
        normal[..., 2] = 1
        out.append(Frame(
            color=(clean * rng.gamma(4.0, 0.25, (height, width, 1))).astype(np.float32),
            albedo=clean.astype(np.float32), normal=normal, vector=vec,
            depth=(5.0 + xs * 1e-3).astype(np.float32), source=f"bench_{t:04d}",
        ))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=(1920, 1080), metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--radius", type=int, default=TEMPORAL.radius)
    p.add_argument("--quality", nargs="+", default=["high", "balanced"], choices=list(QUALITY))
    p.add_argument("--model", help="ONNX model instead of the presets' networks")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all cores)")
    args = p.parse_args(argv)
    frames = shot(args.size[0], args.size[1], args.frames)
    w, h = args.size
    print(f"{w}x{h}, radius {args.radius}, {args.frames} frames x {args.repeats} runs each, alternating")
    for quality in args.quality:
        opts = Options(quality=quality, radius=args.radius, threads=args.threads or None, model_path=args.model)
        model = catalog.model_for(opts, frames[0].passes)
        denoise_frame(model, frames[0], opts)  # warm-up
        per_frame, temporal = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for f in frames:
                denoise_frame(model, f, opts)
            per_frame.append((time.perf_counter() - t0) / len(frames))
            t0 = time.perf_counter()
            stream = TemporalStream.from_options(model, opts)
            done = [r for i, f in enumerate(frames) for r in stream.push(i, f)] + stream.finish()
            assert len(done) == len(frames)
            temporal.append((time.perf_counter() - t0) / len(frames))
        a, b = statistics.median(per_frame), statistics.median(temporal)
        print(f"{quality}: model {model.label}, guides {stream.guide_model.label}")
        print(f"  per frame: {a:.2f} s a frame ({', '.join(f'{x:.2f}' for x in per_frame)})")
        print(f"  temporal:  {b:.2f} s a frame ({', '.join(f'{x:.2f}' for x in temporal)})")
        print(f"  temporal / per frame: {b / a:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
