"""Dataset generation locally and across Ray workers, side by side in one run.

    .venv/bin/python benchmarks/bench_ray.py [--count 8] [--resolution 64 64] [--clean-spp 64] [--cpus 2]

Rows: the local command (one process, Cycles on every core); ``--ray`` with one task per CPU
whose workers keep Blender loaded between tasks (what ``generate-dataset --ray`` does); and the
same tasks on fresh workers (``max_calls=1``: Blender starts for every task). Then the per-task
overheads: a Ray round trip of an empty task, and importing bpy in a new process. Pairs are
noisy/clean pairs (samples x noisy spp levels); ``vs local`` is the local seconds over the row's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


def _local(out: Path, gen_args: list[str]) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "blender_denoise_addon", "generate-dataset", "--out", str(out), *gen_args]
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _ray_tasks(ray, settings, count: int, max_calls: int) -> float:
    from blender_denoise_addon.cli.distributed import render_sample

    remote = ray.remote(num_cpus=1, max_calls=max_calls)(render_sample)
    fields = asdict(settings)
    t0 = time.perf_counter()
    ray.get([remote.remote(fields, i, 1) for i in range(count)])
    return time.perf_counter() - t0


def main() -> None:
    import ray

    from blender_denoise_addon.dataset.spec import validate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--resolution", type=int, nargs=2, default=[64, 64])
    p.add_argument("--noisy-spp", type=int, nargs="+", default=[1, 4])
    p.add_argument("--clean-spp", type=int, default=64)
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    gen = ["--count", str(args.count), "--resolution", *map(str, args.resolution), "--noisy-spp"]
    gen += [*map(str, args.noisy_spp), "--clean-spp", str(args.clean_spp), "--seed", "11", "--quiet"]
    pairs = args.count * len(args.noisy_spp)
    with tempfile.TemporaryDirectory() as tmp:
        local = _local(Path(tmp) / "local", gen)
        settings = validate(
            out=str(Path(tmp) / "unused"),
            count=args.count,
            resolution=tuple(args.resolution),
            noisy_spp=args.noisy_spp,
            clean_spp=args.clean_spp,
            seed=11,
        )
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        kept = _ray_tasks(ray, settings, args.count, 0)
        fresh = _ray_tasks(ray, settings, args.count, 1)

        @ray.remote(num_cpus=1)
        def nothing() -> None:
            return None

        ray.get(nothing.remote())
        trips = []
        for _ in range(30):
            t0 = time.perf_counter()
            ray.get(nothing.remote())
            trips.append(time.perf_counter() - t0)
        ray.shutdown()
    starts = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import bpy"], check=True, capture_output=True)
        starts.append(time.perf_counter() - t0)
    res = "x".join(map(str, args.resolution))
    print(f"{args.count} samples at {res}, noisy {args.noisy_spp} spp, clean {args.clean_spp} spp; {args.cpus} CPUs")
    print(f"{'run':52s} {'seconds':>8s} {'pairs/h':>8s} {'vs local':>8s}")
    for label, sec in (
        ("local generate-dataset (Cycles on every core)", local),
        (f"--ray, {args.cpus} workers keeping Blender loaded", kept),
        ("--ray tasks on fresh workers (Blender starts per task)", fresh),
    ):
        print(f"{label:52s} {sec:8.1f} {pairs / sec * 3600:8.0f} {local / sec:8.2f}x")
    print(f"Ray round trip of an empty task: median {statistics.median(trips) * 1e3:.1f} ms")
    print(f"import bpy in a new process: median {statistics.median(starts):.2f} s")
    print(f"per task on fresh workers, beyond the kept ones: {(fresh - kept) / args.count * args.cpus:.2f} s")


if __name__ == "__main__":
    main()
