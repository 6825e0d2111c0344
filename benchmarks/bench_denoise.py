"""Denoising throughput and peak memory: our ONNX U-Net (every tiling mode) vs OIDN 2.5.

    .venv/bin/python benchmarks/bench_denoise.py [--sizes 1920x1080 3840x2160] [--repeats 2]
        [--threads 2] [--quick]

Both denoisers get the same synthetic HDR frame (smooth procedural image times
Monte-Carlo-like noise with a few fireflies, albedo in [0, 1], unit normals),
built from a fixed seed. Our side is ``core.denoise()`` with the OIDN-base-sized
U-Net from ``tests/onnx_builders.unet`` (random weights: same shape and cost as a
trained one), a half-width U-Net, and the shipped color + albedo + normal model
from ``models/`` (every shipped denoiser for the passes: full frame, and the add-on's default
sliding window at each Quality setting; a model with guide prefilters runs them too). OIDN's side is pyoidn's CPU
device, filter "RT", hdr, color+albedo+normal, quality high and balanced. With
``--color-only`` both get the noisy color alone: the shipped color model against
OIDN without albedo and normal (the random-weight U-Nets take all three passes and
are left out).

Every configuration runs in its own subprocess (this script with ``--one``), so
its peak memory is its own: ``peak MB`` is the child's peak resident set size
while denoising (VmHWM, reset after the inputs were built when the kernel allows
it), ``+MB`` is that peak minus the resident size just before the warm-up run
(inputs, output buffers not yet allocated, and the loaded model / committed
filter). Seconds are the median of ``--repeats`` timed runs after one warm-up
run; for us that is a whole ``denoise()`` call (input preparation, tiling,
inference, blending), for OIDN one ``execute()`` of a committed filter. Model
loading / filter commit is not timed on either side. Speed ratio = OIDN's
seconds / our seconds (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
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


def run_one(cfg: dict) -> dict:
    color, albedo, normal = make_frame(cfg["width"], cfg["height"])
    threads = cfg["threads"]
    if cfg["kind"] == "oidn":
        import pyoidn

        device = pyoidn.Device(pyoidn.OIDN_DEVICE_TYPE_CPU)
        device.set_int("numThreads", threads)
        device.commit()
        out = np.empty_like(color)
        flt = pyoidn.Filter(device, pyoidn.OIDN_FILTER_TYPE_RT)
        images = (("color", color), ("output", out))
        if not cfg.get("color_only"):
            images += (("albedo", albedo), ("normal", normal))
        for name, img in images:
            flt.set_image(name, img, pyoidn.OIDN_FORMAT_FLOAT3)
        flt.set_bool("hdr", True)
        q = {"high": pyoidn.OIDN_QUALITY_HIGH, "balanced": pyoidn.OIDN_QUALITY_BALANCED}[cfg["quality"]]
        flt.set_int("quality", q)
        flt.commit()
        err = device.get_error()
        if err:
            raise RuntimeError(f"OIDN: {err}")

        def once() -> dict:
            flt.execute()
            e = device.get_error()
            if e:
                raise RuntimeError(f"OIDN: {e}")
            return {}

        tile, overlap, tiles = "-", "-", "-"
    else:
        from blender_denoise_addon.core.defaults import DEFAULT_QUALITY
        from blender_denoise_addon.core.denoise import denoise
        from blender_denoise_addon.core.options import Options

        quality = Options(quality=cfg.get("preset", DEFAULT_QUALITY)).denoise_args
        from blender_denoise_addon.core.model import load_model

        model = load_model(cfg["model"], threads=threads)
        if cfg.get("color_only"):
            albedo = normal = None

        def once() -> dict:
            r = denoise(
                model,
                color,
                albedo,
                normal,
                tiling=cfg["mode"],
                tile=cfg.get("tile"),
                batch=cfg["batch"],
                **{k: quality[k] for k in ("coarse", "flips")},
            )
            s = r.stats
            return {"tile": s.tile, "overlap": s.overlap, "tiles": s.tiles}

    base = _status_mb("VmRSS")
    reset = _reset_peak()
    info = once()  # warm-up: allocations, weight reorders, thread pools
    times = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    peak = _status_mb("VmHWM")
    if not reset:  # the peak may include building the inputs; still an upper bound
        peak = max(peak, base)
    if cfg["kind"] != "oidn":
        tile, overlap, tiles = info["tile"], info["overlap"], info["tiles"]
    return {
        "seconds": statistics.median(times),
        "times": times,
        "peak_mb": peak,
        "base_mb": base,
        "peak_reset": reset,
        "tile": tile,
        "overlap": overlap,
        "tiles": tiles,
    }


# ---------------------------------------------------------------- driver (parent)


def build_models(workdir: Path, color_only: bool = False) -> dict[str, dict]:
    from blender_denoise_addon.core.contract import parse_metadata
    from training.onnx_builders import unet

    models = {}
    for key, kw in (("base", {}), ("half", {"enc": HALF_ENC, "dec": HALF_DEC})):
        path, params = unet(workdir / f"unet-{key}.onnx", **kw)
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        info = parse_metadata(meta, where=path.name)
        models[key] = {"path": str(path), "params": params, "rf": info.receptive_field, "align": info.alignment}
    # Every shipped denoiser for these passes (prefilters are timed inside the model that names them).
    from blender_denoise_addon.core.catalog import bundled_models

    passes = {"color"} if color_only else {"color", "albedo", "normal"}
    shipped = []
    for path in bundled_models():
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        info = parse_metadata(meta, where=path.name)
        if info.role == "denoiser" and set(info.inputs) == passes:
            params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
            entry = {"path": str(path), "params": params, "rf": info.receptive_field, "align": info.alignment}
            shipped.append(entry | {"name": path.stem})
    models["shipped"] = shipped
    return models


def configs(
    models: dict, grid_tile: int, sliding_tiles: list[int | None], batch: int, color_only: bool = False
) -> list[dict]:
    base, half = models["base"]["path"], models["half"]["path"]
    out = []
    if not color_only:  # the random-weight U-Nets take color, albedo and normal
        out.append({"kind": "ours", "label": "ours full", "model": base, "mode": "full"})
        out.append({"kind": "ours", "label": "ours grid", "model": base, "mode": "grid", "tile": grid_tile})
        for t in sliding_tiles:
            out.append({"kind": "ours", "label": "ours sliding", "model": base, "mode": "sliding", "tile": t})
        out.append({"kind": "ours", "label": "ours half-width full", "model": half, "mode": "full"})
        out.append({"kind": "ours", "label": "ours half-width sliding", "model": half, "mode": "sliding", "tile": None})
    from blender_denoise_addon.core.defaults import DEFAULT_QUALITY, QUALITY

    for m in models["shipped"]:
        path, name = m["path"], m["name"]
        out.append({"kind": "ours", "label": f"shipped {name} full", "model": path, "mode": "full"})
        for preset in QUALITY:  # the add-on's default tiling at each Quality
            label = f"shipped {name} sliding" + ("" if preset == DEFAULT_QUALITY else f", {preset}")
            out.append({"kind": "ours", "label": label, "model": path, "mode": "sliding", "preset": preset})
    out.append({"kind": "oidn", "label": "OIDN balanced", "quality": "balanced"})
    out.append({"kind": "oidn", "label": "OIDN high", "quality": "high"})
    for c in out:
        c.setdefault("batch", batch)
        c["color_only"] = color_only
    return out


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
    ap.add_argument("--repeats", type=int, default=2, help="timed runs after the warm-up; the median is reported")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both denoisers")
    ap.add_argument("--grid-tile", type=int, default=None, help="grid tile size (default: core TILING.tile)")
    ap.add_argument(
        "--sliding-tiles",
        nargs="+",
        default=["default", "1024"],
        help="sliding tile sizes; 'default' = what denoise() picks (overlap = RF-1 rounded to the alignment)",
    )
    ap.add_argument("--batch", type=int, default=None, help="tiles per inference call (default: core TILING.batch)")
    ap.add_argument("--max-mem-mb", type=float, default=MAX_MEM_MB_DEFAULT, help="skip configs expected above this")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--only", nargs="+", help="run only the rows whose label contains one of these words")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny frames, 1 repeat, small tiles")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument(
        "--color-only",
        action="store_true",
        help="noisy color alone: the shipped color model vs OIDN without albedo/normal",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:
        res = run_one(json.loads(args.one))
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    from blender_denoise_addon.core.defaults import TILING

    grid_tile = args.grid_tile or TILING.tile
    batch = args.batch or TILING.batch
    sliding = [None if t == "default" else int(t) for t in args.sliding_tiles]
    sizes = args.sizes
    repeats = args.repeats
    if args.quick:
        sizes, repeats, grid_tile, sliding = ["160x96"], 1, 64, [None]
    dims = []
    for s in sizes:
        w, h = (int(v) for v in s.lower().split("x"))
        dims.append((w, h))
    dims.sort(key=lambda wh: wh[0] * wh[1])

    mach = machine_info(args.threads)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as td:
        models = build_models(Path(td), args.color_only)
        print(
            f"# models: base U-Net {models['base']['params'] / 1e6:.2f} M parameters, "
            f"half-width {models['half']['params'] / 1e6:.2f} M; receptive field {models['base']['rf']}, "
            f"alignment {models['base']['align']}",
            file=sys.stderr,
            flush=True,
        )
        full_per_mp: dict[str, float] = {}  # full-frame memory above baseline, MB per megapixel
        for w, h in dims:
            mp = w * h / 1e6
            for cfg in configs(models, grid_tile, sliding, batch, args.color_only):
                if args.only and not any(w in cfg["label"] for w in args.only):
                    continue
                cfg = cfg | {"width": w, "height": h, "threads": args.threads, "repeats": repeats}
                row = {"size": f"{w}x{h}", "mp": mp, **{k: cfg.get(k) for k in ("label", "kind", "mode", "model")}}
                est = full_per_mp.get(cfg.get("model", "")) if cfg.get("mode") == "full" else None
                if est is not None and est * mp > args.max_mem_mb:
                    row["error"] = f"skipped: needs about {est * mp / 1000:.0f} GB (> {args.max_mem_mb / 1000:.0f} GB)"
                    results.append(row)
                    print(f"# {row['size']} {row['label']}: {row['error']}", file=sys.stderr, flush=True)
                    continue
                t0 = time.perf_counter()
                res = spawn(cfg, args.timeout)
                row.update(res)
                if cfg.get("mode") == "full" and "peak_mb" in res:
                    full_per_mp[cfg["model"]] = (res["peak_mb"] - res["base_mb"]) / mp
                results.append(row)
                msg = row.get("error") or f"{res['seconds']:.2f} s, peak {res['peak_mb']:.0f} MB"
                print(
                    f"# {row['size']} {row['label']} tile={cfg.get('tile')}: {msg} "
                    f"({time.perf_counter() - t0:.0f} s wall)",
                    file=sys.stderr,
                    flush=True,
                )
    total = time.perf_counter() - started

    print(
        f"Machine: {mach['cpu']}, {mach['cores']} logical CPUs, {mach['mem_gb']:.0f} GiB RAM; "
        f"threads used: {mach['threads']} (both denoisers); inputs: "
        + ("color only" if args.color_only else "color, albedo, normal")
    )
    print(f"onnxruntime {mach['onnxruntime']} (CPUExecutionProvider); OIDN {mach['oidn']}; Python {mach['python']}")
    print(
        f"U-Net: {models['base']['params'] / 1e6:.2f} M parameters "
        f"(half-width: {models['half']['params'] / 1e6:.2f} M), "
        f"receptive field {models['base']['rf']}, alignment {models['base']['align']}; "
        f"median of {repeats} run(s) after a warm-up; benchmark took {total / 60:.1f} min"
    )
    print()
    print(
        "| frame | denoiser / mode | tile (overlap), tiles | s | best s | MP/s | peak MB | +MB "
        "| vs OIDN balanced | vs OIDN high | time vs v13 default |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        same = [x for x in results if x["size"] == r["size"] and "seconds" in x]
        bal = next((x["seconds"] for x in same if x["label"] == "OIDN balanced"), None)
        # The default before issue 36: v13 on the sliding window at Balanced.
        v13 = next((x["seconds"] for x in same if x["label"] == f"shipped {V13} sliding"), None)
        high = next((x["seconds"] for x in same if x["label"] == "OIDN high"), None)
        if "seconds" not in r:
            print(f"| {r['size']} | {r['label']} | - | - | - | - | - | - | {r.get('error', '?')} | | |")
            continue
        if r["kind"] == "oidn":
            tile = "- (OIDN's own)"
        elif r["mode"] == "full":
            tile = f"{r['tile']} (whole frame), {r['tiles']}"
        elif r["mode"] == "grid":
            tile = f"{r['tile']} (0), {r['tiles']}"
        else:
            tile = f"{r['tile']} ({r['overlap']}), {r['tiles']}"
        s = r["seconds"]
        print(
            f"| {r['size']} | {r['label']} | {tile} | {s:.2f} | {min(r['times']):.2f} | {r['mp'] / s:.3f} | "
            f"{r['peak_mb']:.0f} | "
            f"{r['peak_mb'] - r['base_mb']:.0f} | {fmt_ratio(bal, s)} | {fmt_ratio(high, s)} | {fmt_ratio(s, v13)} |"
        )
    print()
    print(
        "s: median seconds per frame; best s: fastest timed run; MP/s: frame megapixels / s; "
        "peak MB: the configuration's own process, peak "
        "resident memory while denoising; +MB: peak minus the resident size before the first run (inputs + "
        "loaded model). Ratios: OIDN seconds / these seconds (above 1 = faster than OIDN); time vs v13 default: "
        "these seconds / v13's on the sliding window at Balanced (the default before issue 36)."
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": mach, "models": models, "results": results}, indent=1))
    return 0 if all("seconds" in r or r.get("error", "").startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
