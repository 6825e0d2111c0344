"""Temporal denoising: each frame of a shot is denoised with its neighbours.

Where a surface stays in view, the frames around frame t hold more samples of it. For frame t:

1. every neighbour t+d (|d| <= radius) is reprojected onto t with Cycles' Vector pass, chained
   frame by frame (X, Y: motion to the previous frame, Z, W: to the next, in pixels; in top-down
   rows, pixel (x, y) of frame t was at (x + X, y - Y) in t-1 and will be at (x - Z, y + W) in
   t+1), sampling bilinearly, so positions never snap to pixels and drift;
2. a neighbour's pixel is rejected where it shows another surface (depth, normal, albedo), where it
   left the frame (disocclusion), and where the two frames' half-resolution denoises disagree:
   reflections, refractions and lights that switch on do not follow the motion vectors. Its
   samples are clamped to a multiple of the frame's own level, so a firefly is not smeared
   over the window;
3. the accepted samples are averaged with the frame's own (weights fade near each tolerance),
   and the model denoises that average, with the averaged albedo and normal, like any frame.

Any model of the contract works, color-only included (the guides come from the same model).
A :class:`TemporalStream` holds only a window of ``2 * radius + 1`` frames: it takes frames in
order and gives back frame t once frame t + radius has arrived (all of them at the end). A gap in
the numbering is a cut: nothing is reused across it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import coarse as cp
from . import transfer as tf
from .defaults import COARSE, EXPOSURE, TEMPORAL, TemporalDefaults
from .denoise import DenoiseResult, denoise, prepare_albedo, prepare_normal, sanitize_color
from .errors import DenoiseError, MissingPassError
from .imageio import Frame
from .model import Model

VECTOR_HINT = (
    "in Blender: View Layer > Passes > Data > Vector (and Z), with Motion Blur off in the Render "
    "properties, since Cycles writes zero vectors when it is on"
)


@dataclass
class _Prepared:
    """One frame as the window keeps it: its passes stacked for one gather, and its half-resolution denoise.

    ``stack`` is (H * W) x C float32: color (3), then albedo (3) and normal (3) when present, depth
    (1) when present, the Vector pass (4, bad vectors set to 0) and a bad-vector flag (1).
    """

    number: int
    source: str
    height: int
    width: int
    stack: np.ndarray
    albedo_at: int | None  # channel offsets in ``stack``
    normal_at: int | None
    depth_at: int | None
    vector_at: int
    alpha: np.ndarray | None
    vector_bad: int  # pixels whose vectors were NaN or Inf
    vector_zero: bool  # the whole pass is zero: motion blur was on, or nothing moves
    guide: np.ndarray  # half-resolution denoise, (H/2 * W/2) x 3
    eps: float  # offset of the log ratio of guides, from the frame's log-average luminance
    seconds: float  # spent preparing it (mostly its half-resolution denoise)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def channels(self, at: int | None, n: int) -> np.ndarray | None:
        """H x W x n view of ``n`` stacked channels from ``at``."""
        if at is None:
            return None
        return self.stack[:, at : at + n].reshape(self.height, self.width, n)


@dataclass
class TemporalResult:
    number: int
    source: str
    result: DenoiseResult
    neighbours: int  # frames of the window that were reprojected onto this one
    reuse: float  # mean weight of all neighbours' samples, per pixel (0: none reused)
    seconds: float  # this frame's own work: its guide, the reprojection and the denoise
    warnings: list[str] = field(default_factory=list)


_Taps = tuple[np.ndarray, np.ndarray, np.ndarray, int, int]


def _taps(h: int, w: int, x: np.ndarray, y: np.ndarray) -> _Taps:
    """Bilinear taps at positions x, y (pixel units, edge-clamped) of an h x w image."""
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(x.astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(y.astype(np.intp), max(h - 2, 0))
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]
    return y0 * w + x0, fx, fy, 1 if w > 1 else 0, w if h > 1 else 0


def _gather(flat: np.ndarray, taps: _Taps) -> np.ndarray:
    """``flat`` ((h * w) x C) sampled at ``taps``: positions' shape x C."""
    i, fx, fy, dx, dy = taps
    a = np.take(flat, i, axis=0)
    b = np.take(flat, i + dx, axis=0)
    b -= a
    b *= fx
    a += b
    c = np.take(flat, i + dy, axis=0)
    d = np.take(flat, i + dy + dx, axis=0)
    d -= c
    d *= fx
    c += d
    c -= a
    c *= fy
    a += c
    return a


def sample_bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` (h x w x c) at positions x, y (pixel units, edge-clamped), bilinearly."""
    h, w = img.shape[:2]
    return _gather(img.reshape(h * w, -1), _taps(h, w, x, y))


def _max3(a: np.ndarray) -> np.ndarray:
    """Largest absolute value of the last axis's 3 channels (faster than a reduction over a short axis)."""
    return np.maximum(np.maximum(np.abs(a[..., 0]), np.abs(a[..., 1])), np.abs(a[..., 2]))


def _mean3(a: np.ndarray) -> np.ndarray:
    """Mean absolute value of the last axis's 3 channels."""
    return (np.abs(a[..., 0]) + np.abs(a[..., 1]) + np.abs(a[..., 2])) * np.float32(1 / 3)


def _fade(err: np.ndarray, tol: float) -> np.ndarray:
    """1 up to ``tol``, falling linearly to 0 at twice it (NaN -> 0)."""
    w = np.clip(2.0 - err / np.float32(tol), 0.0, 1.0)
    return np.nan_to_num(w, nan=0.0).astype(np.float32, copy=False)


def check_motion(frame: Frame) -> None:
    """Raise MissingPassError when ``frame`` cannot be reprojected (no Vector pass)."""
    if frame.vector is None:
        raise MissingPassError(f"{frame.source or 'frame'}: no Vector pass, which --temporal needs ({VECTOR_HINT})")


class TemporalStream:
    """Frames in, denoised frames out, with ``radius`` frames of look-ahead and look-back.

    ``push(number, frame)`` returns the frames now complete; ``finish()`` the rest. ``denoise_args``
    go to :func:`~.denoise.denoise` for both the guides and the final pass (tiling, coarse, ...).
    """

    def __init__(
        self,
        model: Model,
        radius: int = TEMPORAL.radius,
        settings: TemporalDefaults = TEMPORAL,
        cancel: Callable[[], bool] | None = None,
        threads: int | None = None,
        **denoise_args: Any,
    ) -> None:
        if radius < 0:
            raise DenoiseError(f"the temporal radius must be 0 or more, got {radius}")
        self.model = model
        self.radius = radius
        self.settings = settings
        self.cancel = cancel
        self.threads = threads  # for the reprojection (None: all cores); the model has its own
        self.denoise_args = denoise_args
        self._window: dict[int, _Prepared] = {}
        self._next: int | None = None  # the next frame number to give back
        self._moving: dict[tuple[int, int], bool] = {}

    # -- the window ------------------------------------------------------------------------------

    def push(self, number: int, frame: Frame) -> list[TemporalResult]:
        check_motion(frame)
        continues = bool(self._window) and number == max(self._window) + 1
        if continues:  # after a cut another size is fine: another shot
            last = self._window[max(self._window)]
            if frame.color.shape[:2] != last.shape:
                h, w = last.shape
                raise DenoiseError(
                    f"{frame.source or number}: frame is {frame.size[0]}x{frame.size[1]}, "
                    f"the frames before it {w}x{h}; a sequence needs one size"
                )
        done: list[TemporalResult] = []
        if self._window and not continues:  # a cut, or frames out of order
            done += self.finish()
        prepared = self._prepare(number, frame)
        self._window[number] = prepared
        if self._next is None:
            self._next = number
        while self._next + self.radius <= number:
            done.append(self._emit(self._next))
            self._next += 1
            self._drop_old()
        return done

    def finish(self) -> list[TemporalResult]:
        """Everything still held (the end of a shot, or before a cut); empties the window."""
        done: list[TemporalResult] = []
        if self._window and self._next is not None:
            for n in range(self._next, max(self._window) + 1):
                done.append(self._emit(n))
        self._window.clear()
        self._moving.clear()
        self._next = None
        return done

    def _drop_old(self) -> None:
        assert self._next is not None
        for n in [n for n in self._window if n < self._next - self.radius]:
            del self._window[n]
            self._moving = {k: v for k, v in self._moving.items() if n not in k}

    # -- per frame -------------------------------------------------------------------------------

    def _prepare(self, number: int, frame: Frame) -> _Prepared:
        start = time.perf_counter()
        info = self.model.info
        h, w = frame.color.shape[:2]
        parts = [sanitize_color(frame.color[..., :3])]
        offsets: dict[str, int] = {}
        at = 3
        for name, arr, prep in (("albedo", frame.albedo, prepare_albedo), ("normal", frame.normal, prepare_normal)):
            if arr is not None:
                parts.append(prep(arr[..., :3]))
                offsets[name], at = at, at + 3
        if frame.depth is not None:
            depth = np.array(frame.depth, dtype=np.float32)[..., None]
            np.copyto(depth, np.float32(np.inf), where=~np.isfinite(depth))
            parts.append(depth)
            offsets["depth"], at = at, at + 1
        assert frame.vector is not None
        vector = np.array(frame.vector[..., :4], dtype=np.float32)
        bad = ~np.isfinite(vector[..., 0] + vector[..., 1] + vector[..., 2] + vector[..., 3])
        if bad.any():
            vector[bad] = 0.0
        parts += [vector, bad[..., None].astype(np.float32)]
        stack = np.concatenate(parts, axis=-1).reshape(h * w, -1)
        color = parts[0]
        # The guide: the model on a 2x2-averaged copy (4x the samples), as the coarse pass does.
        if not self.radius:  # no neighbours: nothing to compare
            guide = np.ones(cp.half_shape(h, w) + (3,), np.float32)
        else:
            guide_args = {k: v for k, v in self.denoise_args.items() if k not in ("coarse", "flips")}
            aux = {k: cp.halve(parts[1 + list(offsets).index(k)]) for k in ("albedo", "normal") if k in offsets}
            guide = denoise(
                self.model,
                cp.halve(color),
                aux.get("albedo") if "albedo" in info.inputs else None,
                aux.get("normal") if "normal" in info.inputs else None,
                coarse=False,
                cancel=self.cancel,
                **guide_args,
            ).image[..., :3]
        level = tf.autoexposure(guide)
        return _Prepared(
            number=number,
            source=frame.source,
            height=h,
            width=w,
            stack=stack,
            albedo_at=offsets.get("albedo"),
            normal_at=offsets.get("normal"),
            depth_at=offsets.get("depth"),
            vector_at=at,
            alpha=None if frame.alpha is None else np.asarray(frame.alpha, np.float32),
            vector_bad=int(bad.sum()),
            vector_zero=not np.any(vector),
            guide=np.ascontiguousarray(guide).reshape(-1, 3),
            eps=COARSE.eps * EXPOSURE.key / level,
            seconds=time.perf_counter() - start,
        )

    def _moves(self, a: _Prepared, b: _Prepared) -> bool:
        """Whether the image changes between a and b although a's vectors are all zero."""
        key = (a.number, b.number)
        if key not in self._moving:
            da, db = a.channels(a.depth_at, 1), b.channels(b.depth_at, 1)
            if da is not None and db is not None:
                rel = np.abs(da - db) / np.maximum(np.minimum(da, db), 1e-6)
                changed = float(np.mean(~(rel <= 1e-3)))
            else:  # no depth: the half-resolution denoises tell
                ga, gb = a.guide + a.eps, b.guide + a.eps
                changed = float(np.mean(np.abs(np.log(ga / gb)).max(axis=-1) > self.settings.color))
            self._moving[key] = changed > self.settings.still_changed
        return self._moving[key]

    def _emit(self, number: int) -> TemporalResult:
        start = time.perf_counter()
        t = self._window[number]
        warnings: list[str] = []
        links: dict[int, list[_Prepared]] = {}
        for direction in (-1, 1):
            chain: list[_Prepared] = []
            cur = t
            for step in range(1, self.radius + 1):
                nb = self._window.get(number + direction * step)
                if nb is None:
                    break
                if cur.vector_zero and self._moves(cur, nb):
                    warnings.append(
                        f"{cur.source or cur.number}: the Vector pass is all zero while the image moves "
                        "(Motion Blur on?); not blended with its neighbours there"
                    )
                    break
                chain.append(nb)
                cur = nb
            links[direction] = chain
        if t.vector_bad:
            warnings.append(
                f"{t.source or number}: {t.vector_bad} pixels have NaN or Inf motion vectors; "
                "those are denoised from this frame alone"
            )
        color, albedo, normal, reuse = self._accumulate(t, links)
        rgba = color if t.alpha is None else np.concatenate([color, t.alpha[..., None]], axis=-1)
        result = denoise(self.model, rgba, albedo, normal, cancel=self.cancel, **self.denoise_args)
        used = len(links[-1]) + len(links[1])
        seconds = t.seconds + time.perf_counter() - start
        return TemporalResult(number, t.source, result, used, reuse, seconds, warnings)

    def _accumulate(
        self, t: _Prepared, links: dict[int, list[_Prepared]]
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float]:
        """The window's samples averaged onto frame t (color, albedo, normal), in row chunks."""
        s = self.settings
        h, w = t.shape
        n = 3 + 3 * (t.albedo_at is not None) + 3 * (t.normal_at is not None)
        acc = np.array(t.stack[:, :n]).reshape(h, w, n)  # t's own samples, weight 1
        color = acc[..., :3]
        albedo = None if t.albedo_at is None else acc[..., t.albedo_at : t.albedo_at + 3]
        normal = None if t.normal_at is None else acc[..., t.normal_at : t.normal_at + 3]
        if not links[-1] and not links[1]:
            return color, albedo, normal, 0.0
        step = max(1, s.chunk_pixels // w)
        hh, hw = cp.half_shape(h, w)
        xs = np.arange(w, dtype=np.float32)
        va = t.vector_at

        def chunk(r0: int) -> float:
            """Rows r0 .. r0 + step: disjoint rows of ``acc``, so chunks run on threads (numpy
            releases the GIL in its gathers and arithmetic). Returns the chunk's reused weight."""
            reuse = 0.0
            r1 = min(h, r0 + step)
            rows = slice(r0, r1)
            py0, px0 = np.meshgrid(np.arange(r0, r1, dtype=np.float32), xs, indexing="ij")
            g_t = _gather(t.guide, _taps(hh, hw, (px0 + 0.5) / 2 - 0.5, (py0 + 0.5) / 2 - 0.5))
            g_t += t.eps
            log_g_t = np.log(g_t)
            cap = g_t * np.float32(s.firefly)
            own = t.stack[r0 * w : r1 * w].reshape(r1 - r0, w, -1)
            wsum = np.ones((r1 - r0, w, 1), np.float32)
            target = acc[rows]
            for direction, chain in links.items():
                px, py = px0.copy(), py0.copy()
                alive = own[..., va + 4] == 0
                v = own[..., va : va + 4]
                for k, nb in enumerate(chain, start=1):
                    if direction < 0:
                        px += v[..., 0]
                        py -= v[..., 1]
                    else:
                        px -= v[..., 2]
                        py += v[..., 3]
                    alive &= (px >= -0.5) & (px <= w - 0.5) & (py >= -0.5) & (py <= h - 0.5)
                    got = _gather(nb.stack, _taps(h, w, px, py))
                    wt = alive.astype(np.float32)
                    if t.depth_at is not None and nb.depth_at is not None:
                        d_t, d_s = own[..., t.depth_at], got[..., nb.depth_at]
                        with np.errstate(invalid="ignore", divide="ignore"):
                            rel = np.abs(d_s - d_t) / np.maximum(d_t, 1e-6)
                        rel[np.isinf(d_t) & np.isinf(d_s)] = 0.0  # both background: the same sky
                        wt *= _fade(rel, s.depth + s.depth_per_frame * k)
                    if t.normal_at is not None and nb.normal_at is not None:
                        n_s = got[..., nb.normal_at : nb.normal_at + 3]
                        wt *= _fade(_mean3(n_s - own[..., t.normal_at : t.normal_at + 3]), s.normal)
                    if t.albedo_at is not None and nb.albedo_at is not None:
                        a_s = got[..., nb.albedo_at : nb.albedo_at + 3]
                        wt *= _fade(_max3(a_s - own[..., t.albedo_at : t.albedo_at + 3]), s.albedo)
                    g_s = _gather(nb.guide, _taps(hh, hw, (px + 0.5) / 2 - 0.5, (py + 0.5) / 2 - 0.5))
                    g_s += t.eps
                    np.log(g_s, out=g_s)
                    g_s -= log_g_t
                    wt *= _fade(_max3(g_s), s.color)
                    wt3 = wt[..., None]
                    target[..., :3] += np.minimum(got[..., :3], cap) * wt3
                    for at_t, at_s in ((t.albedo_at, nb.albedo_at), (t.normal_at, nb.normal_at)):
                        if at_t is not None:  # a neighbour without the pass lends this frame's own
                            src = got[..., at_s : at_s + 3] if at_s is not None else own[..., at_t : at_t + 3]
                            target[..., at_t : at_t + 3] += src * wt3
                    wsum += wt3
                    reuse += float(wt.sum())
                    v = got[..., nb.vector_at : nb.vector_at + 4]  # nb's own vectors at the reached positions
                    alive &= got[..., nb.vector_at + 4] == 0
            target /= wsum
            return reuse

        starts = range(0, h, step)
        workers = min(len(starts), self.threads or os.cpu_count() or 1)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                reused = sum(pool.map(chunk, starts))
        else:
            reused = sum(chunk(r0) for r0 in starts)
        return color, albedo, normal, reused / (h * w)


def sequence_number(stem: str) -> tuple[str, int] | None:
    """(name without the number, frame number) from a file stem like ``shot_0042``; None without one."""
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if not digits:
        return None
    return stem[:-digits], int(stem[-digits:])
