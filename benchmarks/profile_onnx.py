"""Where an ONNX model spends its time in onnxruntime: per operator type and per node.

    .venv/bin/python benchmarks/profile_onnx.py models/denoiser-v13-color-albedo-normal.onnx
        [--size 1920x1088] [--threads 2] [--runs 3] [--top 12]

Runs the model on a random frame with onnxruntime's profiler on
(``SessionOptions.enable_profiling``) and sums the kernel times of its trace: the model
alone, no tiling or transfer. ``Reorder*`` nodes are onnxruntime's conversions to and from
its blocked (NCHWc) layout.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--size", default="1920x1088", help="WIDTHxHEIGHT, multiples of the model's alignment")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--top", type=int, default=12, help="operator types and nodes to list")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).random((1, inp.shape[1], height, width), dtype=np.float32) * 0.5
        for _ in range(args.runs):
            sess.run(None, {inp.name: x})
        with open(sess.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    by_op: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            by_node[e["name"].removesuffix("_kernel_time")] += e["dur"]
    total = sum(by_op.values())
    per_run = total / args.runs / 1e3
    print(f"{args.model} at {width}x{height}, {args.threads} threads: {per_run:.1f} ms of kernels per run")
    print(f"{'operator':24s} {'ms/run':>8s} {'share':>6s}")
    for op, us in by_op.most_common(args.top):
        print(f"{op:24s} {us / args.runs / 1e3:8.1f} {us / total:6.1%}")
    print(f"\n{'node':64s} {'ms/run':>8s}")
    for node, us in by_node.most_common(args.top):
        print(f"{node[:64]:64s} {us / args.runs / 1e3:8.1f}")


if __name__ == "__main__":
    main()
