"""The coarse pass: correcting a denoised frame's low frequencies from a half-resolution denoise.

At half resolution every pixel averages four, so a 4 spp frame denoises like a 16 spp one,
and the blotches a network leaves on dim flat walls (10 to 40 px wide) shrink. The
full-resolution result keeps its detail and takes the half-resolution one's local level:

    r = log((lo + eps) / (box2(hi) + eps)),  0 where |r| > reject (lights, hard edges)
    out = hi * exp(bilinear_up(r))

A ratio, not a difference, so dark areas are not pushed below zero; ``eps`` scales with
the frame's log-average luminance, so the result does not depend on exposure. Everything
runs in row chunks: beyond the quarter-size arrays, temporaries stay small on 16K frames.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .defaults import COARSE, EXPOSURE


def applies(height: int, width: int) -> bool:
    return min(height, width) >= COARSE.min_side


def log_offset(level: float) -> float:
    """The offset of a log ratio of two images whose log-average luminance is ``level``: it keeps
    dark pixels' ratios from exploding, and scales with the exposure (the one home of this rule)."""
    return COARSE.eps * EXPOSURE.key / level


def half_shape(height: int, width: int) -> tuple[int, int]:
    return (height + 1) // 2, (width + 1) // 2


def _rows_per_chunk(width: int) -> int:
    return max(1, COARSE.chunk_pixels // max(1, width))


def _box2_into(dst: np.ndarray, block: np.ndarray) -> None:
    """dst = 2x2 means of block's first three channels; an odd last row or column repeats."""
    block = block[..., :3]
    if block.shape[0] % 2:
        block = np.concatenate([block, block[-1:]], axis=0)
    if block.shape[1] % 2:
        block = np.concatenate([block, block[:, -1:]], axis=1)
    np.add(block[0::2, 0::2], block[1::2, 0::2], out=dst)
    dst += block[0::2, 1::2]
    dst += block[1::2, 1::2]
    dst *= 0.25


def halve(src: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The half-resolution copy of an H x W x >=3 frame (float32, 3 channels).

    ``prepare`` cleans each row chunk in place before averaging (NaN, Inf, range), so a bad
    pixel cannot spread and the frame is never copied whole.
    """
    h, w = src.shape[:2]
    hh, hw = half_shape(h, w)
    out = np.empty((hh, hw, 3), np.float32)
    step = _rows_per_chunk(w) // 2 or 1
    for r0 in range(0, hh, step):
        r1 = min(hh, r0 + step)
        block = np.array(src[2 * r0 : 2 * r1, :, :3], dtype=np.float32)
        _box2_into(out[r0:r1], prepare(block) if prepare else block)
    return out


def _bilinear_taps(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight for n output samples from m half-resolution ones (centres aligned, clamped)."""
    pos = (np.arange(n) + 0.5) / 2 - 0.5
    base = np.floor(pos)
    frac = (pos - base).astype(np.float32)
    i0 = np.clip(base, 0, m - 1).astype(np.intp)
    i1 = np.clip(base + 1, 0, m - 1).astype(np.intp)
    return i0, i1, frac


def correct(hi: np.ndarray, lo: np.ndarray, eps: float, reject: float = COARSE.reject) -> None:
    """Apply the coarse correction to ``hi`` (H x W x 3) in place; ``lo`` (the half-resolution
    denoise) is overwritten with the log ratio."""
    h, w = hi.shape[:2]
    hh, hw = lo.shape[:2]
    if (hh, hw) != half_shape(h, w):
        raise ValueError(f"half frame is {hw}x{hh}, expected {half_shape(h, w)[::-1]}")
    step = _rows_per_chunk(w) // 2 or 1
    ref = np.empty((min(step, hh), hw, 3), np.float32)
    for r0 in range(0, hh, step):
        r1 = min(hh, r0 + step)
        b = ref[: r1 - r0]
        _box2_into(b, hi[2 * r0 : 2 * r1])
        b += eps
        seg = lo[r0:r1]
        seg += eps
        with np.errstate(divide="ignore", invalid="ignore"):
            seg /= b
            np.log(seg, out=seg)
        # NaN fails the comparison too: a model's negative output is left alone as well.
        np.copyto(seg, np.float32(0), where=~(np.abs(seg) <= reject))
    x0, x1, fx = _bilinear_taps(w, hw)
    fx = fx[None, :, None]
    y0s, y1s, fys = _bilinear_taps(h, hh)
    for y0 in range(0, h, 2 * step):
        y1 = min(h, y0 + 2 * step)
        fy = fys[y0:y1, None, None]
        rows = lo[y0s[y0:y1]]
        rows *= 1 - fy
        rows += lo[y1s[y0:y1]] * fy
        up = rows[:, x0]
        up *= 1 - fx
        right = rows[:, x1]
        right *= fx
        up += right
        np.exp(up, out=up)
        hi[y0:y1] *= up
