"""Scoring a pair through the core, the one way every command and benchmark does it.

``score_pair`` reads a pair (noisy frame, clean reference), runs each model through the core's
``denoise`` at a Quality preset (what the add-on runs: the model's prefilters, tiling, transfer),
and with ``oidn`` OIDN 2.5 on the same raw passes (high, balanced) and OIDN as Blender runs it
(the Accurate prefilter, then cleanAux). ``finetune``, ``evaluate``, ``benchmarks/bench_finetune.py``
and ``benchmarks/eval_suite.py`` all call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from blender_denoise_addon.core import metrics
from blender_denoise_addon.core.defaults import DEFAULT_QUALITY, QUALITY
from blender_denoise_addon.core.denoise import denoise, prepare_albedo, prepare_normal, sanitize_color
from blender_denoise_addon.core.imageio import Frame, read_image

from .dataset import Pair


@dataclass
class Scored:
    """One pair's inputs and results: ``results`` by method (``noisy``, each model's name, ``oidn_*``)."""

    frame: Frame
    clean: np.ndarray
    results: dict[str, np.ndarray]

    def psnr(self, method: str) -> float:
        return metrics.psnr(metrics.to_display(self.results[method]), metrics.to_display(self.clean))


def run_model(model: Any, color: np.ndarray, frame: Frame, quality: str = DEFAULT_QUALITY,
              coarse: bool | None = None, flips: int | None = None) -> np.ndarray:  # fmt: skip
    """``model`` (a core Model, or anything with its interface) on a whole frame (``color``: its
    sanitized color), as the preset runs it."""
    args = QUALITY[quality].denoise_args
    args |= {k: v for k, v in (("coarse", coarse), ("flips", flips)) if v is not None}
    passes = model.info.inputs
    return denoise(
        model,
        color,
        frame.albedo if "albedo" in passes else None,
        frame.normal if "normal" in passes else None,
        tiling="full",
        **args,
    ).image[..., :3]


def oidn_denoise(
    color: np.ndarray, albedo: np.ndarray | None, normal: np.ndarray | None, hdr: bool, quality: str = "high"
) -> np.ndarray:
    """OIDN 2.5 (RT filter) on prepared passes; albedo and normal only as the model gets them."""
    import pyoidn

    return pyoidn.denoise(
        np.ascontiguousarray(color, np.float32),
        None if albedo is None else np.ascontiguousarray(albedo, np.float32),
        None if normal is None or albedo is None else np.ascontiguousarray(normal, np.float32),
        hdr=hdr,
        quality=quality,
    )


def oidn_prefiltered(color: np.ndarray, albedo: np.ndarray, normal: np.ndarray, quality: str = "high") -> np.ndarray:
    """OIDN as Blender runs it with the Accurate prefilter: albedo and normal each denoised by an RT
    filter of their own first, then the color with ``cleanAux``."""
    import pyoidn

    def run(images: dict[str, np.ndarray], **options: bool) -> np.ndarray:
        out = np.zeros(next(iter(images.values())).shape, np.float32)
        with pyoidn.Device() as device:
            device.commit()
            with pyoidn.Filter(device, pyoidn.OIDN_FILTER_TYPE_RT) as f:
                for name, img in images.items():
                    f.set_image(name, np.ascontiguousarray(img, np.float32), pyoidn.OIDN_FORMAT_FLOAT3)
                f.set_image(pyoidn.OIDN_IMAGE_OUTPUT, out, pyoidn.OIDN_FORMAT_FLOAT3)
                for k, v in options.items():
                    f.set_bool(k, v)
                f.set_quality({"high": pyoidn.OIDN_QUALITY_HIGH, "balanced": pyoidn.OIDN_QUALITY_BALANCED}[quality])
                f.commit()
                f.execute()
            error = device.get_error()
        if error:
            raise RuntimeError(f"OIDN: {error}")
        return out

    clean_albedo = run({pyoidn.OIDN_IMAGE_ALBEDO: albedo})
    clean_normal = run({pyoidn.OIDN_IMAGE_NORMAL: normal})
    images = {
        pyoidn.OIDN_IMAGE_COLOR: color,
        pyoidn.OIDN_IMAGE_ALBEDO: clean_albedo,
        pyoidn.OIDN_IMAGE_NORMAL: clean_normal,
    }
    return run(images, hdr=True, cleanAux=True)


def oidn_results(color: np.ndarray, frame: Frame, passes: tuple[str, ...], hdr: bool) -> dict[str, np.ndarray]:
    """OIDN 2.5 high and balanced on ``passes`` of the raw frame (``color``: its sanitized color),
    and Blender's built-in (OIDN high after the Accurate prefilter) where the frame has both guides."""
    albedo = prepare_albedo(frame.albedo[..., :3]) if "albedo" in passes and frame.albedo is not None else None
    normal = prepare_normal(frame.normal[..., :3]) if "normal" in passes and frame.normal is not None else None
    out = {f"oidn_{q}": oidn_denoise(color, albedo, normal, hdr=hdr, quality=q) for q in ("high", "balanced")}
    if albedo is not None and normal is not None and hdr:
        out["oidn_blender"] = oidn_prefiltered(color, albedo, normal)
    return out


def score_pair(pair: Pair, models: dict[str, Any], oidn: bool = False, quality: str = DEFAULT_QUALITY,
               coarse: bool | None = None, flips: int | None = None) -> Scored:  # fmt: skip
    """Every model in ``models`` (by name) on ``pair``'s noisy frame, and OIDN with ``oidn``."""
    frame = read_image(pair.noisy)
    clean = sanitize_color(read_image(pair.clean).color[..., :3])
    color = sanitize_color(frame.color[..., :3])
    results = {"noisy": color}
    for name, model in models.items():
        results[name] = run_model(model, color, frame, quality, coarse, flips)
    if oidn:
        passes = tuple({p for m in models.values() for p in m.info.inputs}) or ("color", "albedo", "normal")
        results |= oidn_results(color, frame, passes, hdr=pair.kind == "exr")
    return Scored(frame, clean, results)


def mean_psnr(pairs: list[Pair], model: Any, quality: str = DEFAULT_QUALITY) -> dict[str, float]:
    """Mean display PSNR of ``model`` over ``pairs``: per spp and ``all`` (frames equal to their
    reference, infinite, left out)."""
    per: dict[str, list[float]] = {}
    for pair in pairs:
        value = score_pair(pair, {"m": model}, quality=quality).psnr("m")
        if math.isfinite(value):
            per.setdefault(f"{pair.spp}spp", []).append(value)
            per.setdefault("all", []).append(value)
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(per.items())}
