"""Scoring of the animated suite (benchmarks/eval_temporal.py): quality, flicker and stability.

- PSNR: display PSNR of each reference frame; the mean and the worst frame.
- Temporal PSNR: the PSNR of each frame-to-frame change (display space) against the reference's
  change. Flicker is change the reference does not have.
- Warp PSNR (no reference): each frame against the previous one moved by the Vector pass (nearest
  pixel), on pixels whose depth agrees within 2 %, in display space.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from blender_denoise_addon.core import catalog
from blender_denoise_addon.core.defaults import TEMPORAL, TemporalDefaults
from blender_denoise_addon.core.denoise import denoise_frame, prepare_albedo, prepare_normal, sanitize_color
from blender_denoise_addon.core.imageio import Frame, read_image
from blender_denoise_addon.core.metrics import psnr, to_display
from blender_denoise_addon.core.options import Options
from blender_denoise_addon.core.temporal import TemporalStream, sequence_number

QUALITIES = ("high", "balanced")  # the presets scored by default
BUILTIN = ("built-in, animated seed", "built-in, fixed seed")


def methods(qualities: tuple[str, ...]) -> list[str]:
    """The rows of the table, in order."""
    ours = [f"{q} {kind}" for q in qualities for kind in ("per frame", "temporal")]
    return ["noisy", *ours, "OIDN balanced", *BUILTIN]


def _psnr_masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    err = float(np.mean(((a - b) ** 2)[mask])) if mask.any() else 0.0
    return float("inf") if err == 0 else 10 * np.log10(1.0 / err)


def warp_psnr(prev: np.ndarray, cur: np.ndarray, cur_frame: Frame, prev_frame: Frame) -> float:
    """``prev`` (display) moved onto ``cur`` by cur's Vector pass, nearest pixel, where depth agrees within 2 %."""
    assert cur_frame.vector is not None and cur_frame.depth is not None and prev_frame.depth is not None
    h, w = cur.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    px = np.rint(xs + cur_frame.vector[..., 0]).astype(int)
    py = np.rint(ys - cur_frame.vector[..., 1]).astype(int)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    px, py = np.clip(px, 0, w - 1), np.clip(py, 0, h - 1)
    d_cur, d_prev = cur_frame.depth, prev_frame.depth[py, px]
    agree = inside & (np.abs(d_prev - d_cur) <= 0.02 * np.minimum(d_cur, d_prev))
    return _psnr_masked(prev[py, px], cur, agree)


def temporal_psnr(out: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """Over consecutive pairs: PSNR of the change of ``out`` against the change of ``ref`` (display)."""
    err = np.mean([np.mean(((out[i + 1] - out[i]) - (ref[i + 1] - ref[i])) ** 2) for i in range(len(out) - 1)])
    return float(10 * np.log10(1.0 / err))


def _oidn(frame: Frame) -> np.ndarray:
    import pyoidn

    return pyoidn.denoise(
        np.ascontiguousarray(sanitize_color(frame.color)),
        np.ascontiguousarray(prepare_albedo(frame.albedo)) if frame.albedo is not None else None,
        np.ascontiguousarray(prepare_normal(frame.normal)) if frame.normal is not None else None,
        hdr=True,
        quality="balanced",
    )


def load_shot(shot: Path) -> tuple[list[int], list[Frame], dict[str, dict[int, np.ndarray]]]:
    """A rendered shot: frame numbers, noisy frames, and the outputs that do not depend on us
    (noisy, OIDN balanced per frame, the built-in denoiser with either seed)."""
    noisy_files = sorted((shot / "noisy").glob("*.exr"))
    frames = [read_image(f) for f in noisy_files]
    numbers = [sequence_number(f.stem)[1] for f in noisy_files]  # type: ignore[index]
    outs: dict[str, dict[int, np.ndarray]] = {"noisy": {}, "OIDN balanced": {}} | {m: {} for m in BUILTIN}
    for n, fr, f in zip(numbers, frames, noisy_files, strict=True):
        outs["noisy"][n] = fr.color
        outs["OIDN balanced"][n] = _oidn(fr)
        for kind, name in zip(("builtin-animated", "builtin-fixed"), BUILTIN, strict=True):
            outs[name][n] = read_image(shot / kind / f.name).color
    return numbers, frames, outs


def denoise_ours(
    numbers: list[int],
    frames: list[Frame],
    opts: Options,
    settings: TemporalDefaults = TEMPORAL,
    per_frame: bool = True,
) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, float]]:
    """Our outputs for ``opts`` (its Quality): per frame and temporal; seconds per frame of each."""
    model = catalog.model_for(opts, frames[0].passes)
    outs: dict[str, dict[int, np.ndarray]] = {"per frame": {}, "temporal": {}}
    seconds = {"per frame": 0.0, "temporal": 0.0}
    if per_frame:
        t0 = time.perf_counter()
        for n, fr in zip(numbers, frames, strict=True):
            outs["per frame"][n] = denoise_frame(model, fr, opts).image
        seconds["per frame"] = (time.perf_counter() - t0) / len(frames)
    t0 = time.perf_counter()
    stream = TemporalStream.from_options(model, opts, settings=settings)
    results = []
    for n, fr in zip(numbers, frames, strict=True):
        results += stream.push(n, fr)
    results += stream.finish()
    seconds["temporal"] = (time.perf_counter() - t0) / len(frames)
    for r in results:
        outs["temporal"][r.number] = r.result.image
    return outs, seconds


def score_outputs(
    shot: Path, numbers: list[int], frames: list[Frame], outs: dict[str, dict[int, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """Every method's mean and worst PSNR, temporal and warp PSNR on the shot's reference frames."""
    refs = {sequence_number(f.stem)[1]: to_display(read_image(f).color) for f in sorted((shot / "ref").glob("*.exr"))}  # type: ignore[index]
    by_number = dict(zip(numbers, frames, strict=True))
    scored = sorted(refs)
    scores: dict[str, dict[str, float]] = {}
    for m, out in outs.items():
        disp = {n: to_display(out[n]) for n in scored}
        per = [psnr(disp[n], refs[n]) for n in scored]
        warps = [
            warp_psnr(disp[a], disp[b], by_number[b], by_number[a]) for a, b in zip(scored, scored[1:], strict=False)
        ]
        scores[m] = {
            "psnr": float(np.mean(per)),
            "worst": float(np.min(per)),
            "temporal": temporal_psnr([disp[n] for n in scored], [refs[n] for n in scored]),
            "warp": float(np.mean(warps)),
        }
    return scores


def score_shot(shot: Path, qualities: tuple[str, ...], opts: Options) -> dict[str, dict[str, float]]:
    numbers, frames, outs = load_shot(shot)
    seconds: dict[str, float] = {}
    for q in qualities:
        ours, secs = denoise_ours(numbers, frames, replace(opts, quality=q))
        for kind in ours:
            outs[f"{q} {kind}"] = ours[kind]
            seconds[f"{q} {kind}"] = secs[kind]
    scores = score_outputs(shot, numbers, frames, outs)
    scores["_seconds"] = seconds
    return scores


def table(allscores: dict[str, dict[str, dict[str, float]]], qualities: tuple[str, ...]) -> str:
    shots = list(allscores)
    lines = ["display PSNR mean / worst frame, temporal PSNR, warp PSNR (dB)", ""]
    lines += ["| shot | method | mean | worst | temporal | warp |", "|---|---|---:|---:|---:|---:|"]
    for s, sc in allscores.items():
        for m in methods(qualities):
            v = sc[m]
            lines.append(f"| {s} | {m} | {v['psnr']:.2f} | {v['worst']:.2f} | {v['temporal']:.2f} | {v['warp']:.2f} |")
    lines += ["", "| mean over shots | mean | worst | temporal | warp |", "|---|---:|---:|---:|---:|"]
    for m in methods(qualities):
        vals = [np.mean([allscores[s][m][k] for s in shots]) for k in ("psnr", "worst", "temporal", "warp")]
        lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def score_all(work: Path, shots: list[str], qualities: tuple[str, ...], opts: Options) -> str:
    allscores = {s: score_shot(work / s, qualities, opts) for s in shots}
    (work / "scores.json").write_text(
        json.dumps({"radius": opts.radius, "qualities": qualities, "shots": allscores}, indent=1)
    )
    return f"radius {opts.radius}; " + table(allscores, qualities)


FIGURE_METHODS = ("noisy", "ours per frame", "ours temporal", "built-in, animated seed", "built-in, fixed seed")


def figure(work: Path, shot: str, opts: Options, out: Path) -> list[Path]:
    """``out``/temporal-strip.png: 4 consecutive frames (columns) of each method (rows) and the
    reference; ``out``/temporal.gif: ours per frame | ours temporal | built-in (animated seed)
    over the whole shot, to watch the flicker."""
    from PIL import Image, ImageDraw

    numbers, frames, outs = load_shot(work / shot)
    ours, _ = denoise_ours(numbers, frames, opts)
    outs |= {f"ours {kind}": v for kind, v in ours.items()}
    refs = {sequence_number(f.stem)[1]: read_image(f).color for f in sorted((work / shot / "ref").glob("*.exr"))}  # type: ignore[index]
    outs["reference"] = refs
    cols = sorted(refs)[1:5]

    def u8(img: np.ndarray) -> np.ndarray:
        return (np.clip(to_display(img), 0, 1) * 255 + 0.5).astype(np.uint8)

    label_w = 150
    rows = []
    for m in (*FIGURE_METHODS, "reference"):
        row = np.concatenate([u8(outs[m][n]) for n in cols], axis=1)
        pad = np.full((row.shape[0], label_w, 3), 255, np.uint8)
        rows.append(np.concatenate([pad, row], axis=1))
    strip = Image.fromarray(np.concatenate(rows, axis=0))
    draw = ImageDraw.Draw(strip)
    h = rows[0].shape[0]
    for i, m in enumerate((*FIGURE_METHODS, "reference")):
        draw.text((6, i * h + h // 2 - 6), m, fill=(0, 0, 0))
    out.mkdir(parents=True, exist_ok=True)
    strip_path = out / "temporal-strip.png"
    strip.save(strip_path)
    gif_methods = ("ours per frame", "ours temporal", "built-in, animated seed")
    frames = []
    for n in sorted(outs["ours temporal"]):
        im = Image.fromarray(np.concatenate([u8(outs[m][n]) for m in gif_methods], axis=1))
        d = ImageDraw.Draw(im)
        for i, m in enumerate(gif_methods):
            d.text((i * im.width // 3 + 4, 4), m, fill=(255, 255, 255))
        frames.append(im.convert("P", palette=Image.Palette.ADAPTIVE, colors=255))
    gif_path = out / "temporal.gif"
    frames[0].save(gif_path, save_all=True, append_images=frames[1:], duration=125, loop=0)
    return [strip_path, gif_path]
