"""Speed and peak memory of each Quality preset against native OIDN running the same weights.

    .venv/bin/python benchmarks/bench_denoise.py [--sizes 1920x1080 3840x2160] [--repeats 3]
        [--threads 2] [--color-only] [--quick]

Both sides get the same synthetic HDR frame (smooth procedural image times Monte-Carlo-like
noise with a few fireflies, albedo in [0, 1], unit normals), built from a fixed seed. Ours is
``core.denoise()`` with the bundled model Automatic picks for the preset and the passes, at the
add-on's default tiling and the preset's settings (a model with guide prefilters runs them too).
OIDN's side is pyoidn's CPU device, filter "RT", hdr, the same networks: Fast and Balanced at
that quality on the raw passes, High as Blender runs it (albedo and normal each through their
own filter at high, then the color with cleanAux; all three executions timed). ``--color-only``:
the noisy color alone on both sides.

Every configuration runs in its own subprocess (this script with ``--one``), so its peak memory
is its own: ``peak MB`` is the child's peak resident set size (VmHWM, reset after the inputs were
built when the kernel allows it), ``+MB`` is that peak minus the resident size with the inputs
built and nothing of the denoiser loaded: its libraries, weights, sessions or committed filters
and scratch memory, on both sides. Seconds
are the median of ``--repeats`` timed runs after one warm-up run; for us a whole ``denoise()``
call (input preparation, tiling, inference, blending), for OIDN the filters' ``execute()``.
Model loading / filter commit is not timed on either side. Ratios: ours / OIDN's, per preset
(time and +MB; at most 1.2x is the target).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

SEED = 1234
HALF_ENC = (16, 24, 32, 40, 48)
HALF_DEC = (56, 48, 32, 32)
MAX_MEM_MB_DEFAULT = 16000
V13 = "denoiser-v13-color-albedo-normal"


# ---------------------------------------------------------------- inputs


def make_frame(width: int, height: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic synthetic HDR frame: (noisy color, albedo, normal), each H x W x 3 float32."""
    rng = np.random.default_rng(seed)
    y = (np.arange(height, dtype=np.float32) / max(height, 1))[:, None]
    x = (np.arange(width, dtype=np.float32) / max(width, 1))[None, :]
    # Height field -> normals: a few smooth bumps and ripples.
    hfield = np.zeros((height, width), np.float32)
    for _ in range(6):
        fx, fy, ph = rng.uniform(1, 9), rng.uniform(1, 9), rng.uniform(0, 2 * np.pi)
        hfield += (
            np.float32(rng.uniform(0.01, 0.04))
            * np.sin(np.float32(2 * np.pi * fx) * x + ph)
            * np.cos(np.float32(2 * np.pi * fy) * y + ph)
        )
    gy, gx = np.gradient(hfield)
    scale = np.float32(max(width, height) / 8)
    normal = np.stack([-gx * scale, -gy * scale, np.ones_like(hfield)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    del hfield, gx, gy
    # Albedo: piecewise-constant tiles of colour, blended with a smooth gradient.
    cells = rng.uniform(0.05, 0.95, (8, 12, 3)).astype(np.float32)
    iy = np.minimum((y[:, 0] * 8).astype(np.int64), 7)
    ix = np.minimum((x[0] * 12).astype(np.int64), 11)
    albedo = cells[iy][:, ix]
    albedo = np.clip(albedo * (np.float32(0.75) + np.float32(0.25) * x[..., None]), 0, 1).astype(np.float32)
    # Lighting: a sky gradient, two soft lights and a small very bright highlight (HDR).
    light = np.float32(0.3) + np.float32(0.7) * (1 - y)
    for cx, cy, r, power in ((0.3, 0.35, 0.25, 4.0), (0.75, 0.6, 0.15, 12.0), (0.55, 0.2, 0.02, 200.0)):
        d2 = (x - np.float32(cx)) ** 2 + (y - np.float32(cy)) ** 2
        light = light + np.float32(power) * np.exp(-d2 / np.float32(r * r))
    shade = np.clip(normal[..., 2], 0, 1) * light
    clean = albedo * shade[..., None]
    # Monte Carlo noise at ~4 spp: mean of 4 exponential samples per channel, plus fireflies.
    noise = rng.standard_gamma(4.0, size=clean.shape).astype(np.float32) / np.float32(4.0)
    color = clean * noise
    del noise
    fire = rng.random((height, width), dtype=np.float32) < 2e-4
    color[fire] *= np.float32(50.0)
    return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in (color, albedo, normal))  # type: ignore[return-value]


# ---------------------------------------------------------------- memory


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- one configuration (child)


def _oidn_filters(cfg: dict, color: np.ndarray, albedo: np.ndarray, normal: np.ndarray):
    """pyoidn filters for ``cfg``'s preset, committed; returns (device, filters to execute in order, the
    output buffers: OIDN holds pointers to them, so they must outlive the filters)."""
    import pyoidn

    device = pyoidn.Device(pyoidn.OIDN_DEVICE_TYPE_CPU)
    device.set_int("numThreads", cfg["threads"])
    device.commit()
    level = {"fast": pyoidn.OIDN_QUALITY_FAST, "balanced": pyoidn.OIDN_QUALITY_BALANCED,
             "high": pyoidn.OIDN_QUALITY_HIGH}[cfg["preset"]]  # fmt: skip

    def make(images: tuple[tuple[str, np.ndarray], ...], **flags: bool):
        flt = pyoidn.Filter(device, pyoidn.OIDN_FILTER_TYPE_RT)
        for name, img in images:
            flt.set_image(name, img, pyoidn.OIDN_FORMAT_FLOAT3)
        for k, v in flags.items():
            flt.set_bool(k, v)
        flt.set_int("quality", level)
        flt.commit()
        return flt

    out = np.empty_like(color)
    if cfg.get("color_only"):
        filters = [make((("color", color), ("output", out)), hdr=True)]
    elif cfg["preset"] == "high":  # Blender's Accurate prefilter: the guides cleaned in place first
        clean_a, clean_n = albedo.copy(), normal.copy()
        filters = [
            make((("albedo", albedo), ("output", clean_a))),
            make((("normal", normal), ("output", clean_n))),
            make((("color", color), ("albedo", clean_a), ("normal", clean_n), ("output", out)), hdr=True,
                 cleanAux=True),
        ]  # fmt: skip
    else:
        filters = [make((("color", color), ("albedo", albedo), ("normal", normal), ("output", out)), hdr=True)]
    err = device.get_error()
    if err:
        raise RuntimeError(f"OIDN: {err}")
    buffers = [out] + ([clean_a, clean_n] if cfg["preset"] == "high" and not cfg.get("color_only") else [])
    return device, filters, buffers


def run_one(cfg: dict) -> dict:
    color, albedo, normal = make_frame(cfg["width"], cfg["height"])
    # Everything from here is the denoiser's: its libraries, weights or committed filters, scratch.
    base = _status_mb("VmRSS")
    reset = _reset_peak()
    if cfg["kind"] == "oidn":
        device, filters, _buffers = _oidn_filters(cfg, color, albedo, normal)

        def once() -> dict:
            for flt in filters:
                flt.execute()
            e = device.get_error()
            if e:
                raise RuntimeError(f"OIDN: {e}")
            return {"tile": "-", "overlap": "-", "tiles": "-", "model": "OIDN"}
    else:
        from blender_denoise_addon.core import catalog
        from blender_denoise_addon.core.denoise import denoise
        from blender_denoise_addon.core.options import Options

        opts = Options(quality=cfg["preset"], threads=cfg["threads"])
        passes = {"color"} if cfg.get("color_only") else {"color", "albedo", "normal"}
        model = catalog.model_for(opts, passes)
        if cfg.get("color_only"):
            albedo = normal = None

        def once() -> dict:
            s = denoise(model, color, albedo, normal, **opts.denoise_args).stats
            return {"tile": s.tile, "overlap": s.overlap, "tiles": s.tiles, "model": model.label}

    info = once()  # warm-up: allocations, weight reorders, thread pools
    times = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    peak = _status_mb("VmHWM")
    if not reset:  # the peak may include building the inputs; still an upper bound
        peak = max(peak, base)
    return info | {
        "seconds": statistics.median(times),
        "times": times,
        "peak_mb": peak,
        "base_mb": base,
        "peak_reset": reset,
    }


# ---------------------------------------------------------------- driver (parent)


def configs(color_only: bool = False) -> list[dict]:
    from blender_denoise_addon.core.defaults import QUALITY

    out = []
    for preset in QUALITY:
        out.append({"kind": "ours", "label": f"ours {preset}", "preset": preset})
        out.append({"kind": "oidn", "label": f"OIDN {preset}", "preset": preset})
    return [c | {"color_only": color_only} for c in out]


def spawn(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps(cfg)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
    if p.returncode < 0:
        tail = f"killed by signal {-p.returncode} (out of memory?)"
    return {"error": tail}


def machine_info(threads: int) -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime as ort

    try:
        from importlib.metadata import version

        pyoidn_v = version("pyoidn")
    except Exception:
        pyoidn_v = "?"
    try:
        from pyoidn.version import oidn_version
    except Exception:
        oidn_version = "?"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "mem_gb": mem_gb,
        "onnxruntime": ort.__version__,
        "oidn": f"{oidn_version} (pyoidn {pyoidn_v})",
        "python": platform.python_version(),
    }


def fmt_ratio(num: float | None, den: float | None) -> str:
    if not num or not den:
        return "-"
    return f"{num / den:.2f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1920x1080", "3840x2160"], help="WIDTHxHEIGHT frames")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up; the median is reported")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both denoisers")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--only", nargs="+", help="run only the rows whose label contains one of these words")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny frames, 1 repeat, small tiles")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument(
        "--color-only",
        action="store_true",
        help="noisy color alone on both sides",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:
        res = run_one(json.loads(args.one))
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    sizes = args.sizes
    repeats = args.repeats
    if args.quick:
        sizes, repeats = ["160x96"], 1
    dims = sorted((tuple(int(v) for v in s.lower().split("x")) for s in sizes), key=lambda wh: wh[0] * wh[1])

    mach = machine_info(args.threads)
    started = time.perf_counter()
    results = []
    for w, h in dims:
        mp = w * h / 1e6
        for cfg in configs(args.color_only):
            if args.only and not any(word in cfg["label"] for word in args.only):
                continue
            cfg = cfg | {"width": w, "height": h, "threads": args.threads, "repeats": repeats}
            row = {"size": f"{w}x{h}", "mp": mp, **{k: cfg.get(k) for k in ("label", "kind", "preset")}}
            t0 = time.perf_counter()
            res = spawn(cfg, args.timeout)
            row.update(res)
            results.append(row)
            msg = row.get("error") or f"{res['seconds']:.2f} s, peak {res['peak_mb']:.0f} MB"
            print(f"# {row['size']} {row['label']}: {msg} ({time.perf_counter() - t0:.0f} s wall)", file=sys.stderr,
                  flush=True)  # fmt: skip
    total = time.perf_counter() - started

    print(
        f"Machine: {mach['cpu']}, {mach['cores']} logical CPUs, {mach['mem_gb']:.0f} GiB RAM; "
        f"threads used: {mach['threads']} (both denoisers); inputs: "
        + ("color only" if args.color_only else "color, albedo, normal")
    )
    print(f"onnxruntime {mach['onnxruntime']} (CPUExecutionProvider); OIDN {mach['oidn']}; Python {mach['python']}")
    print(f"median of {repeats} run(s) after a warm-up; benchmark took {total / 60:.1f} min")
    print()
    head = "| frame | denoiser | network | tile (overlap), tiles | s | best s | peak MB | +MB | time vs OIDN"
    print(head + " | +MB vs OIDN |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if "seconds" not in r:
            print(f"| {r['size']} | {r['label']} | - | - | - | - | - | - | {r.get('error', '?')} | |")
            continue
        oidn = next((x for x in results if x["size"] == r["size"] and x["label"] == f"OIDN {r['preset']}"), None)
        ok = r["kind"] == "ours" and oidn is not None and "seconds" in oidn
        tile = "- (OIDN's own)" if r["kind"] == "oidn" else f"{r['tile']} ({r['overlap']}), {r['tiles']}"
        s, extra = r["seconds"], r["peak_mb"] - r["base_mb"]
        print(
            f"| {r['size']} | {r['label']} | {r['model']} | {tile} | {s:.2f} | {min(r['times']):.2f} | "
            f"{r['peak_mb']:.0f} | {extra:.0f} | {fmt_ratio(s, oidn['seconds']) if ok else '-'} | "
            f"{fmt_ratio(extra, oidn['peak_mb'] - oidn['base_mb']) if ok else '-'} |"
        )
    print()
    print(
        "s: median seconds per frame; best s: fastest timed run; peak MB: the configuration's own process, peak "
        "resident memory; +MB: peak minus the resident size with the inputs built, before anything of the denoiser "
        "was loaded (libraries, weights, scratch). Ratios: ours / OIDN's at the same preset (below 1: we are faster or "
        "smaller)."
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "results": results}, indent=1))
    return 0 if all("seconds" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
