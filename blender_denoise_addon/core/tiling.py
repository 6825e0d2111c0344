"""Tile plans for the three strategies. Pure index arithmetic, no model calls.

Coordinates are in the frame padded on the right/bottom to the model alignment;
pixels outside the image are filled by mirroring (see :func:`reflect_index`), the
same way for every strategy, so ``sliding`` reproduces ``full`` exactly.

- ``full``: one tile, the whole padded frame.
- ``grid``: non-overlapping tiles of one size; edge tiles are padded, not shrunk
  (all tiles share one shape, so they batch).
- ``sliding``: overlapping windows, evenly spread, origins on the alignment grid.
  Each pair of neighbours splits its overlap at the middle. When the overlap is at
  least ``2 * halo`` (receptive field - 1) every kept pixel saw its whole receptive
  field and the split is exact; the remaining overlap, or the whole overlap when it
  is smaller than that, is cross-faded with linear weights that sum to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .defaults import TILING, TILING_MODES
from .errors import DenoiseError


def align_up(n: int, a: int) -> int:
    return -(-n // a) * a


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into [0, n) (edge pixel repeated, like numpy 'symmetric'); works for n == 1."""
    m = np.mod(idx, 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


@dataclass(frozen=True)
class AxisTile:
    origin: int  # first input pixel (padded coordinates)
    size: int  # input length
    keep0: int  # first output pixel written (image coordinates)
    keep1: int  # one past the last
    weights: np.ndarray | None  # len keep1-keep0, or None for all ones


@dataclass(frozen=True)
class Tile:
    y: AxisTile
    x: AxisTile

    @property
    def weights(self) -> np.ndarray | None:
        if self.y.weights is None and self.x.weights is None:
            return None
        wy = self.y.weights if self.y.weights is not None else np.ones(self.y.keep1 - self.y.keep0, np.float32)
        wx = self.x.weights if self.x.weights is not None else np.ones(self.x.keep1 - self.x.keep0, np.float32)
        return np.outer(wy, wx).astype(np.float32)


def _ramp_weights(
    keep0: int, keep1: int, left: tuple[int, int] | None, right: tuple[int, int] | None
) -> np.ndarray | None:
    """Weights over [keep0, keep1): ramps up over ``left`` (start, width), down over ``right``."""
    if (left is None or left[1] == 0) and (right is None or right[1] == 0):
        return None
    w = np.ones(keep1 - keep0, np.float64)
    if left is not None and left[1] > 0:
        start, width = left
        k = np.arange(width)
        w[start - keep0 : start - keep0 + width] = (k + 0.5) / width
    if right is not None and right[1] > 0:
        start, width = right
        k = np.arange(width)
        w[start - keep0 : start - keep0 + width] = 1.0 - (k + 0.5) / width
    return w.astype(np.float32)


def _sliding_count(padded: int, size: int, overlap: int) -> int:
    """Tiles ``plan_axis`` puts on an axis of ``padded`` pixels (sizes and overlap aligned)."""
    if padded <= size:
        return 1
    return math.ceil((padded - size) / (size - overlap)) + 1


def plan_axis(n: int, mode: str, tile: int, overlap: int, alignment: int, halo: int) -> list[AxisTile]:
    if n < 1:
        raise DenoiseError(f"image size must be at least 1 pixel, got {n}")
    a = alignment
    padded = align_up(n, a)
    if mode == "full":
        return [AxisTile(0, padded, 0, n, None)]
    size = min(align_up(max(tile, 1), a), padded)
    if mode == "grid":
        return [AxisTile(o, size, o, min(o + size, n), None) for o in range(0, n, size)]
    if mode != "sliding":
        raise DenoiseError(f"unknown tiling {mode!r}; choose one of {', '.join(TILING_MODES)}")
    if padded <= size:
        return [AxisTile(0, size, 0, n, None)]
    ov = align_up(max(overlap, 0), a)
    if ov >= size:
        raise DenoiseError(f"overlap {ov} must be smaller than the tile size {size}")
    count = _sliding_count(padded, size, ov)
    span = (padded - size) / (count - 1)
    origins = [a * round(j * span / a) for j in range(count)]
    # Cut between tiles j and j+1 at the middle of their overlap.
    cuts = []
    radii = []
    for j in range(count - 1):
        o_ov = origins[j] + size - origins[j + 1]
        cuts.append(origins[j + 1] + o_ov // 2)
        # Exact when the overlap covers the receptive field: fade only over the
        # surplus. Otherwise fade over the whole overlap to hide the border.
        radii.append(o_ov // 2 - halo if o_ov // 2 >= halo else o_ov // 2)
    bounds = [0] + cuts + [padded]
    for j in range(count - 1):
        # Neighbouring fades must not overlap each other.
        radii[j] = min(radii[j], (bounds[j + 1] - bounds[j]) // 2, (bounds[j + 2] - bounds[j + 1]) // 2)
    tiles = []
    for j, o in enumerate(origins):
        left = (cuts[j - 1] - radii[j - 1], 2 * radii[j - 1]) if j > 0 else None
        right = (cuts[j] - radii[j], 2 * radii[j]) if j < count - 1 else None
        keep0 = left[0] if left else 0
        keep1 = right[0] + right[1] if right else padded
        # Everything at or past n is padding: clip it (and its weights) away.
        k1 = min(keep1, n)
        if keep0 >= k1:
            continue
        w = _ramp_weights(keep0, keep1, left, right)
        tiles.append(AxisTile(o, size, keep0, k1, None if w is None else w[: k1 - keep0]))
    return tiles


def auto_tile(height: int, width: int, overlap: int, alignment: int) -> tuple[int, int]:
    """The tile (height, width) ``denoise`` uses when none is given.

    The whole frame when its padded area fits ``TILING.max_tile_pixels`` (no pixel is
    computed twice). Else the tiles within that area that compute the fewest pixels in
    all (overlaps included; fewer tiles on a tie); they need not be square: a 4K frame is
    five tiles of 2160x960, 10.4 M pixels, where squares of 1440 compute 12.4 M. No edge
    falls below ``TILING.tile`` or four times the overlap (so the overlap stays a modest
    share), unless it spans its whole axis.
    """
    a = max(alignment, 1)
    ph, pw = align_up(max(height, 1), a), align_up(max(width, 1), a)
    if ph * pw <= TILING.max_tile_pixels:
        return ph, pw
    ov = align_up(max(overlap, 0), a)
    floor = max(align_up(TILING.tile, a), align_up(4 * ov, a))

    def options(padded: int) -> list[tuple[int, int]]:
        """(tile edge, tile count) for 1, 2, ... tiles along one axis, down to the floor."""
        found: dict[int, int] = {}
        for n in range(1, padded // max(1, floor - ov) + 2):
            size = min(padded, align_up(math.ceil((padded + (n - 1) * ov) / n), a))
            if size < floor and size < padded:
                break
            found.setdefault(size, _sliding_count(padded, size, ov))
        return sorted(found.items())

    best: tuple[int, int, int, int] | None = None  # (pixels computed, tiles, height, width)
    for ty, ny in options(ph):
        for tx, nx in options(pw):
            if ty * tx <= TILING.max_tile_pixels:
                cand = (ny * nx * ty * tx, ny * nx, ty, tx)
                best = cand if best is None or cand < best else best
    if best is None:  # not even the floor fits the budget: square tiles at the floor
        return floor, floor
    return best[2], best[3]


def plan_tiles(
    height: int, width: int, mode: str, tile: int | tuple[int, int], overlap: int, alignment: int, halo: int
) -> list[Tile]:
    """``tile``: one edge for square tiles, or (height, width)."""
    ty, tx = (tile, tile) if isinstance(tile, int) else tile
    ys = plan_axis(height, mode, ty, overlap, alignment, halo)
    xs = plan_axis(width, mode, tx, overlap, alignment, halo)
    return [Tile(y, x) for y in ys for x in xs]
