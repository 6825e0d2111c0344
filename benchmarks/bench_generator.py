"""Training-pair generator cost on this machine, in one run:

1. pairs per hour at 128x128 and 256x256 with the shipped defaults
   (noisy 1, 4, 16 spp; clean 1024 spp with adaptive sampling), end to end
   (scene build, renders, EXR/PNG writing, records);
2. the clean render: plain 1024 spp vs adaptive sampling (a few thresholds) on the
   same scenes at 128x128, time and error against a 4096 spp plain reference.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_generator.py [--scenes 4] [--samples-128 4] [--samples-256 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from blender_denoise_addon.core.imageio import read_image  # noqa: E402
from blender_denoise_addon.dataset import spec as ss  # noqa: E402


def cpu_seconds() -> float:
    """User + system time of this process, all threads. On a shared machine wall time
    depends on the neighbours; CPU time / 2 is what a dedicated 2-core machine would take."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pairs_per_hour(res: int, count: int, seed: int, tmp: Path) -> tuple[float, float, int]:
    """(wall seconds per sample, CPU seconds per sample, samples)."""
    from blender_denoise_addon.blender.generator.run import DatasetJob

    st = ss.validate(tmp / f"ds{res}", count=count, resolution=(res, res), seed=seed)
    t0, c0 = time.perf_counter(), cpu_seconds()
    n = 0
    for step in DatasetJob(st).steps():
        n += step.sample_done
    return (time.perf_counter() - t0) / n, (cpu_seconds() - c0) / n, n


def clean_compare(n_scenes: int, seed: int, tmp: Path, ref_spp: int) -> list[dict[str, float]]:
    from blender_denoise_addon.blender.generator.render import configure, render_exr
    from blender_denoise_addon.blender.generator.scene import build_scene

    variants = [("plain 1024", 0.0, 0), ("adaptive 0.01/min64", 0.01, 64), ("adaptive 0.005/min128", 0.005, 128)]
    rows = []
    st = ss.validate(tmp, count=1, resolution=(128, 128))
    for index in range(n_scenes):
        built = build_scene(ss.scene_spec(seed, index))
        try:
            configure(built.scene, st)
            # Warm-up render so persistent data (BVH, HDRI map) is built before any timing.
            render_exr(built.scene, tmp / "warm.exr", 1, 1)
            ref_path = tmp / f"ref{index}.exr"
            render_exr(built.scene, ref_path, ref_spp, 777)
            ref = read_image(ref_path).color
            for name, thr, mn in variants:
                p = tmp / f"v{index}.exr"
                c0 = cpu_seconds()
                secs = render_exr(built.scene, p, 1024, 4242, thr, mn)
                cpu = cpu_seconds() - c0
                img = read_image(p).color
                rel = float(np.mean((img - ref) ** 2 / (ref**2 + 1e-2)))
                mad = float(np.mean(np.abs(img - ref)))
                tmae = float(np.mean(np.abs(img / (1 + img) - ref / (1 + ref))))
                rows.append({"scene": index, "variant": name, "seconds": cpu, "relmse": rel, "mad": mad, "tmae": tmae})
                print(
                    f"  scene {index} {name:24s} wall {secs:7.2f} s  cpu {cpu:7.2f} s  relMSE {rel:.2e}"
                    f"  MAD {mad:.4f}  tone-mapped MAE {tmae:.4f}",
                    flush=True,
                )
        finally:
            built.remove()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=4, help="scenes for the adaptive-vs-plain comparison")
    ap.add_argument("--samples-128", type=int, default=4)
    ap.add_argument("--samples-256", type=int, default=2)
    ap.add_argument("--ref-spp", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument(
        "--part", choices=("all", "throughput", "clean"), default="all", help="run one half (e.g. in parallel)"
    )
    args = ap.parse_args()
    import bpy

    print(f"Blender {bpy.app.version_string}, {os.cpu_count()} CPUs, seed {args.seed}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("== end-to-end, defaults (noisy 1/4/16 spp, clean 1024 spp adaptive 0.005/min128)", flush=True)
        results = {}
        for res, count in ((128, args.samples_128), (256, args.samples_256)):
            if count and args.part in ("all", "throughput"):
                wall, cpu, n = pairs_per_hour(res, count, args.seed, tmp)
                results[res] = (wall, cpu, n)
                print(f"  {res}x{res}: {n} samples, wall {wall:.1f} s/sample, CPU {cpu:.1f} s/sample", flush=True)
        print(f"== clean render at 128x128: plain vs adaptive, error vs {args.ref_spp} spp plain", flush=True)
        rows = clean_compare(args.scenes, args.seed + 1, tmp, args.ref_spp) if args.part != "throughput" else []
    print(f"== summary (load average now {os.getloadavg()})")
    cores = os.cpu_count() or 1
    for res, (wall, cpu, n) in results.items():
        # A sample = one clean + len(noisy) renders = 3 noisy/clean pairs with the defaults.
        dedicated = 3600 * cores / cpu
        print(
            f"{res}x{res}: {3600 / wall:.0f} samples/h measured ({3 * 3600 / wall:.0f} pairs/h), "
            f"{dedicated:.0f} samples/h on {cores} dedicated cores ({3 * dedicated:.0f} pairs/h)"
            f" [wall {wall:.1f} s, CPU {cpu:.1f} s per sample, n={n}]"
        )
    base = {r["scene"]: r for r in rows if r["variant"] == "plain 1024"}
    for name in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == name]
        t = sum(r["seconds"] for r in sel)
        tb = sum(base[r["scene"]]["seconds"] for r in sel)
        rel = np.mean([r["relmse"] for r in sel])
        relb = np.mean([base[r["scene"]]["relmse"] for r in sel])
        mad = np.mean([r["mad"] for r in sel])
        tm = np.mean([r["tmae"] for r in sel])
        tmb = np.mean([base[r["scene"]]["tmae"] for r in sel])
        print(
            f"{name:24s} CPU {t:7.1f} s ({t / tb:.2f}x plain)  relMSE {rel:.2e} ({rel / relb:.2f}x plain)"
            f"  tone-mapped MAE {tm:.4f} ({tm / tmb:.2f}x plain)  MAD {mad:.4f}"
        )


if __name__ == "__main__":
    main()
