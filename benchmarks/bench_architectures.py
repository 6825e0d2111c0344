"""onnxruntime time of the shipped U-Net shapes at one frame size, side by side in one run.

    .venv/bin/python benchmarks/bench_architectures.py [--size 1920x1080] [--threads 2] [--repeats 3] [--only v16]

Multiply-adds are a poor guide to CPU time: onnxruntime runs convolutions in a blocked
(NCHWc) layout and converts around operators without a blocked kernel (ConvTranspose),
and pads channel counts up to the block (16 with AVX-512). So this exports each shape
with random weights (same cost as trained ones) and times ``session.run`` on one
full frame with color, albedo and normal (the model alone: no tiling or transfer).
Seconds are the median of ``--repeats`` runs after a warm-up; ``vs first`` is the first
row's seconds divided by the row's (above 1: faster than the first row).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

KERNEL_HEAD = {"kernel_size": 3, "kernel_scales": 5, "depth": 4}
# The shipped models' shapes (models/README.md); the first row is the reference for "vs first".
SHAPES: list[tuple[str, dict]] = [
    (
        "v13 color + albedo + normal",
        {
            "width": 16,
            "growth": 16,
            "upsample": "nearest",
            "kernel_space": "both",
            "demodulate": True,
            "picker_width": 8,
            "post_kernel": 3,
        },
    ),
    (
        "v16 color",
        {
            "inputs": "color",
            "width": 16,
            "growth": 16,
            "upsample": "transpose",
            "kernel_space": "both",
            "post_kernel": 3,
            "refine_width": 16,
        },
    ),
]


def time_shape(kw: dict, height: int, width: int, threads: int, repeats: int, folder: Path) -> tuple[float, float, int]:
    """(median seconds, kMAC per pixel, parameters) of one shape."""
    import onnxruntime as ort
    import torch

    from blender_denoise_addon.core.contract import INPUT_NAME
    from training.export import trace_to_onnx
    from training.model import ModifiedUNet, UNetConfig, count_parameters

    torch.manual_seed(0)
    cfg = UNetConfig(**({"inputs": "color,albedo,normal"} | KERNEL_HEAD | kw))  # a shape may set its inputs
    net = ModifiedUNet(cfg).eval()
    path = folder / "model.onnx"
    trace_to_onnx(net, cfg.model_info("log"), path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    pad = cfg.alignment
    h, w = -(-height // pad) * pad, -(-width // pad) * pad
    x = np.random.default_rng(0).random((1, cfg.in_channels, h, w), dtype=np.float32)
    sess.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {INPUT_NAME: x})
        times.append(time.perf_counter() - t)
    return statistics.median(times), cfg.macs_per_pixel() / 1e3, count_parameters(net)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT (padded up to the alignment)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up; the median is reported")
    ap.add_argument("--only", default="", help="time only the shapes whose label contains this text (the first too)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    inputs = "color + albedo + normal inputs (color alone where the label says color)"
    print(f"{args.size}, {args.threads} threads, kernel head (3x3, 5 scales), {inputs}")
    print(f"{'shape':56s} {'kMAC/px':>8s} {'params':>9s} {'seconds':>8s} {'vs first':>8s}")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, kw) in enumerate(SHAPES):
            if i and args.only not in label:
                continue
            sec, kmac, params = time_shape(kw, height, width, args.threads, args.repeats, Path(tmp))
            first = first or sec
            print(f"{label:56s} {kmac:8.1f} {params:9,d} {sec:8.3f} {first / sec:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
