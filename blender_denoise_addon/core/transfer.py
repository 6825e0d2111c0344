"""Transfer functions: how linear HDR color maps into the network's space and back.

The model names its transfer in the ``denoiser.transfer`` metadata. The training
package imports these same functions, so training and inference cannot drift.

- ``linear``: identity. For models trained on linear values directly.
- ``srgb``: the sRGB curve on color clipped to [0, 1]. For LDR models (PNG pairs).
- ``log``: ``y = log2(1 + e*x/eps) / log2(1 + MAX/eps)`` with a per-frame exposure
  ``e`` (see :func:`autoexposure`). ``eps = 2**-8`` keeps it linear near black;
  ``MAX = 65504`` (half-float max) maps to 1, so every real highlight fits a
  sigmoid output.

All functions are numpy-only and work on any array shape and on torch tensors
when given the matching ``xp`` module (``numpy`` or ``torch``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .defaults import EXPOSURE
from .errors import DenoiseError

LOG_EPS = 2.0**-8
LOG_MAX = 65504.0
_LOG_NORM = math.log2(1.0 + LOG_MAX / LOG_EPS)

TRANSFERS: tuple[str, ...] = ("linear", "srgb", "log")
# Transfers whose forward mapping uses the per-frame exposure.
EXPOSED_TRANSFERS: frozenset[str] = frozenset({"log"})


def _check(name: str) -> None:
    if name not in TRANSFERS:
        raise DenoiseError(f"unknown transfer {name!r}; known: {', '.join(TRANSFERS)}")


def srgb_encode(x: Any, xp: Any = np) -> Any:
    x = xp.clip(x, 0.0, 1.0)
    return xp.where(x <= 0.0031308, 12.92 * x, 1.055 * xp.clip(x, 0.0031308, None) ** (1 / 2.4) - 0.055)


def srgb_decode(y: Any, xp: Any = np) -> Any:
    y = xp.clip(y, 0.0, 1.0)
    return xp.where(y <= 0.04045, y / 12.92, ((xp.clip(y, 0.04045, None) + 0.055) / 1.055) ** 2.4)


def forward(x: Any, name: str, exposure: float = 1.0, xp: Any = np, inplace: bool = False) -> Any:
    """Linear, non-negative color -> network space. ``inplace`` (numpy): may overwrite and return ``x``."""
    _check(name)
    if name == "linear":
        return x
    if name == "srgb":
        return srgb_encode(x, xp)
    if inplace and xp is np:  # the same operations in the same order, without full-frame temporaries
        np.multiply(x, exposure / LOG_EPS, out=x)
        x += 1.0
        np.log2(x, out=x)
        x /= _LOG_NORM
        return x
    return xp.log2(1.0 + x * (exposure / LOG_EPS)) / _LOG_NORM


def inverse(y: Any, name: str, exposure: float = 1.0, xp: Any = np) -> Any:
    """Network space -> linear color. Exact inverse of :func:`forward` on its range."""
    _check(name)
    if name == "linear":
        return y
    if name == "srgb":
        return srgb_decode(y, xp)
    # exp, not exp2: ONNX has no Exp2, and the kernel-predicting model runs this in its graph.
    return (xp.exp(y * (_LOG_NORM * math.log(2.0))) - 1.0) * (LOG_EPS / exposure)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def autoexposure(color: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """One exposure for the whole frame: key / log-average of block luminances.

    Computed on 16x16 block means so single-pixel fireflies barely move it, and
    always on the full frame (never per tile) so tiles agree. ``color`` is H x W x 3
    (or more channels); ``prepare`` cleans each row chunk (NaN/Inf/negatives) so the
    frame is never copied whole.
    """
    h, w = color.shape[:2]
    b = EXPOSURE.block
    hb, wb = max(1, h // b), max(1, w // b)
    col_starts = np.arange(wb) * w // wb
    row_starts = np.arange(hb) * h // hb
    # Reduce columns per row chunk first so temporaries stay small on 8K frames.
    per_row = np.empty((h, wb), dtype=np.float64)
    for y0 in range(0, h, 256):
        rows = color[y0 : y0 + 256, :, :3]
        lum = luminance(prepare(rows) if prepare else np.asarray(rows, np.float32))
        per_row[y0 : y0 + 256] = np.add.reduceat(lum, col_starts, axis=1, dtype=np.float64)
    sums = np.add.reduceat(per_row, row_starts, axis=0)
    counts = np.outer(np.diff(np.append(row_starts, h)), np.diff(np.append(col_starts, w)))
    means = sums / counts
    valid = means[means > EXPOSURE.eps]
    if valid.size == 0:
        return 1.0
    return float(EXPOSURE.key / np.exp2(np.mean(np.log2(valid))))
