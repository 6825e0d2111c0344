"""Transfer functions: how linear HDR color maps into the network's space and back.

The model names its transfer in the ``denoiser.transfer`` metadata. The training
package imports these same functions, so training and inference cannot drift.

- ``linear``: identity. For models trained on linear values directly.
- ``srgb``: the sRGB curve on color clipped to [0, 1]. For LDR models (PNG pairs).
- ``log``: ``y = log2(1 + e*x/eps) / log2(1 + MAX/eps)`` with a per-frame exposure
  ``e`` (see :func:`autoexposure`). ``eps = 2**-8`` keeps it linear near black;
  ``MAX = 65504`` (half-float max) maps to 1, so every real highlight fits a
  sigmoid output.
- ``pu``: OIDN's perceptually uniform curve (the PU fit in OIDN's ``training/color.py``) on
  ``e*x`` (negatives to 0), divided by PU(65504) so the half-float maximum maps to 1. The
  networks imported from OIDN (``python -m training import-oidn``) take it, with ``e`` from
  :func:`autoexposure`, which follows OIDN's own.

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

# OIDN's PU curve: y <= Y0: A*y; y <= Y1: B*y**C + D; else E*ln(y + F) + G; inverse at X0 and X1.
PU_A, PU_B, PU_C, PU_D = 1.41283765e03, 1.64593172e00, 4.31384981e-01, -2.94139609e-03
PU_E, PU_F, PU_G = 1.92653254e-01, 6.26026094e-03, 9.98620152e-01
PU_Y0, PU_Y1, PU_X0, PU_X1 = 1.57945760e-06, 3.22087631e-02, 2.23151711e-03, 3.70974749e-01
PU_MAX = 65504.0  # normalised to 1 (OIDN's HDR maximum; brighter values are not clipped)

TRANSFERS: tuple[str, ...] = ("linear", "srgb", "log", "pu")
# Transfers whose forward mapping uses the per-frame exposure.
EXPOSED_TRANSFERS: frozenset[str] = frozenset({"log", "pu"})


def _check(name: str) -> None:
    if name not in TRANSFERS:
        raise DenoiseError(f"unknown transfer {name!r}; known: {', '.join(TRANSFERS)}")


def srgb_encode(x: Any, xp: Any = np) -> Any:
    x = xp.clip(x, 0.0, 1.0)
    return xp.where(x <= 0.0031308, 12.92 * x, 1.055 * xp.clip(x, 0.0031308, None) ** (1 / 2.4) - 0.055)


def srgb_decode(y: Any, xp: Any = np) -> Any:
    y = xp.clip(y, 0.0, 1.0)
    return xp.where(y <= 0.04045, y / 12.92, ((xp.clip(y, 0.04045, None) + 0.055) / 1.055) ** 2.4)


def _pu(y: Any, xp: Any) -> Any:
    mid = PU_B * xp.clip(y, PU_Y0, None) ** PU_C + PU_D
    return xp.where(y <= PU_Y0, PU_A * y, xp.where(y <= PU_Y1, mid, PU_E * xp.log(y + PU_F) + PU_G))


def _pu_inverse(x: Any, xp: Any) -> Any:
    mid = (xp.clip(x - PU_D, 1e-30, None) / PU_B) ** (1.0 / PU_C)
    return xp.where(x <= PU_X0, x / PU_A, xp.where(x <= PU_X1, mid, xp.exp((x - PU_G) / PU_E) - PU_F))


_PU_NORM = float(_pu(np.float64(PU_MAX), np))


def _pu_inplace(y: np.ndarray) -> np.ndarray:
    """:func:`_pu` / PU(65504) on a float32 array of values >= 0, overwriting it: the log branch on
    the whole array, the others only on the dark pixels that need them (a fifth of the time)."""
    dark = y <= PU_Y1
    low = y[dark]
    np.add(y, PU_F, out=y)
    np.log(y, out=y)
    y *= PU_E / _PU_NORM
    y += PU_G / _PU_NORM
    if low.size:
        y[dark] = np.where(low <= PU_Y0, low * (PU_A / _PU_NORM), (PU_B * np.power(low, PU_C) + PU_D) / _PU_NORM)
    return y


def _pu_inverse_inplace(x: np.ndarray) -> np.ndarray:
    """:func:`_pu_inverse` of ``x * PU(65504)``, overwriting ``x`` (float32)."""
    x *= _PU_NORM
    dark = x <= PU_X1
    low = x[dark]
    x -= PU_G
    x *= 1.0 / PU_E
    np.exp(x, out=x)
    x -= PU_F
    if low.size:
        mid = np.power(np.clip(low - PU_D, 1e-30, None) / PU_B, 1.0 / PU_C)
        x[dark] = np.where(low <= PU_X0, low / PU_A, mid)
    return x


def forward(x: Any, name: str, exposure: float = 1.0, xp: Any = np, inplace: bool = False) -> Any:
    """Linear, non-negative color -> network space. ``inplace`` (numpy): may overwrite and return ``x``."""
    _check(name)
    if name == "linear":
        return x
    if name == "srgb":
        return srgb_encode(x, xp)
    if name == "pu":
        if xp is np and inplace and x.dtype == np.float32:
            np.multiply(x, exposure, out=x)
            return _pu_inplace(np.maximum(x, 0.0, out=x))
        return _pu(xp.clip(x * exposure, 0.0, None), xp) / _PU_NORM
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
    if name == "pu":
        if xp is np and isinstance(y, np.ndarray) and y.dtype == np.float32:
            out = _pu_inverse_inplace(y.copy())
            out *= 1.0 / exposure
            return out
        return _pu_inverse(y * _PU_NORM, xp) / exposure
    # exp, not exp2: ONNX has no Exp2, and the kernel-predicting model runs this in its graph.
    return (xp.exp(y * (_LOG_NORM * math.log(2.0))) - 1.0) * (LOG_EPS / exposure)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance with OIDN's coefficients (its autoexposure uses them)."""
    return rgb[..., 0] * 0.212671 + rgb[..., 1] * 0.715160 + rgb[..., 2] * 0.072169


def autoexposure(color: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """One exposure for the whole frame: key / log-average of block luminances, as OIDN computes it
    (``core/autoexposure.h``: ceil(H / 16) x ceil(W / 16) blocks of at most 16x16 pixels, blocks
    darker than ``eps`` left out, 1 when none is brighter).

    Computed on block means so single-pixel fireflies barely move it, and
    always on the full frame (never per tile) so tiles agree. ``color`` is H x W x 3
    (or more channels); ``prepare`` cleans each row chunk (NaN/Inf/negatives) so the
    frame is never copied whole.
    """
    h, w = color.shape[:2]
    b = EXPOSURE.block
    hb, wb = max(1, -(-h // b)), max(1, -(-w // b))
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
