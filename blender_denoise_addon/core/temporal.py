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

import time
from collections.abc import Callable
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
    """One frame as the window keeps it: cleaned passes and its half-resolution denoise."""

    number: int
    source: str
    color: np.ndarray  # H x W x 3, finite, >= 0
    alpha: np.ndarray | None
    albedo: np.ndarray | None
    normal: np.ndarray | None
    depth: np.ndarray | None
    vector: np.ndarray  # H x W x 4, finite (bad vectors are zero, and marked in vector_bad)
    vector_bad: np.ndarray | None  # H x W bool where the pass held NaN or Inf
    vector_zero: bool  # the whole pass is zero: motion blur was on, or nothing moves
    guide: np.ndarray  # half-resolution denoise (H/2 x W/2 x 3)
    eps: float  # offset of the log ratio of guides, from the frame's log-average luminance
    seconds: float  # spent preparing it (mostly its half-resolution denoise)

    @property
    def shape(self) -> tuple[int, int]:
        return self.color.shape[0], self.color.shape[1]


@dataclass
class TemporalResult:
    number: int
    source: str
    result: DenoiseResult
    neighbours: int  # frames of the window that were reprojected onto this one
    reuse: float  # mean weight of all neighbours' samples, per pixel (0: none reused)
    seconds: float  # this frame's own work: its guide, the reprojection and the denoise
    warnings: list[str] = field(default_factory=list)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` (h x w x c) at positions x, y (pixel units, edge-clamped), bilinearly."""
    h, w = img.shape[:2]
    flat = img.reshape(h * w, -1)
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(x.astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(y.astype(np.intp), max(h - 2, 0))
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]
    dx = 1 if w > 1 else 0
    dy = w if h > 1 else 0
    i = y0 * w + x0
    top = flat[i] * (1 - fx) + flat[i + dx] * fx
    bottom = flat[i + dy] * (1 - fx) + flat[i + dy + dx] * fx
    return top * (1 - fy) + bottom * fy


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
        **denoise_args: Any,
    ) -> None:
        if radius < 0:
            raise DenoiseError(f"the temporal radius must be 0 or more, got {radius}")
        self.model = model
        self.radius = radius
        self.settings = settings
        self.cancel = cancel
        self.denoise_args = denoise_args
        self._window: dict[int, _Prepared] = {}
        self._next: int | None = None  # the next frame number to give back
        self._moving: dict[tuple[int, int], bool] = {}
        self._history: tuple[int, np.ndarray] | None = None
        self._step_back: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- the window ------------------------------------------------------------------------------

    def push(self, number: int, frame: Frame) -> list[TemporalResult]:
        check_motion(frame)
        if self._window:
            last = self._window[max(self._window)]
            if frame.color.shape[:2] != last.shape:
                h, w = last.shape
                raise DenoiseError(
                    f"{frame.source or number}: frame is {frame.size[0]}x{frame.size[1]}, "
                    f"the frames before it {w}x{h}; a sequence needs one size"
                )
        done: list[TemporalResult] = []
        if self._window and number != max(self._window) + 1:  # a cut, or frames out of order
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
        self._history = None
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
        color = sanitize_color(frame.color[..., :3])
        albedo = None if frame.albedo is None else prepare_albedo(frame.albedo[..., :3])
        normal = None if frame.normal is None else prepare_normal(frame.normal[..., :3])
        assert frame.vector is not None
        vector = np.array(frame.vector[..., :4], dtype=np.float32)
        bad = ~np.isfinite(vector).all(axis=-1)
        if bad.any():
            vector[bad] = 0.0
        depth = None
        if frame.depth is not None:
            depth = np.array(frame.depth, dtype=np.float32)
            np.copyto(depth, np.float32(np.inf), where=~np.isfinite(depth))
        # The guide: the model on a 2x2-averaged copy (4x the samples), as the coarse pass does.
        guide_args = {k: v for k, v in self.denoise_args.items() if k != "coarse"}
        if not self.radius:  # no neighbours: nothing to compare
            guide = np.ones(cp.half_shape(*color.shape[:2]) + (3,), np.float32)
        else:
            guide = denoise(
                self.model,
                cp.halve(color),
                None if albedo is None or "albedo" not in info.inputs else cp.halve(albedo),
                None if normal is None or "normal" not in info.inputs else cp.halve(normal),
                coarse=False,
                cancel=self.cancel,
                **guide_args,
            ).image[..., :3]
        level = tf.autoexposure(guide)
        return _Prepared(
            number=number,
            source=frame.source,
            color=color,
            alpha=None if frame.alpha is None else np.asarray(frame.alpha, np.float32),
            albedo=albedo,
            normal=normal,
            depth=depth,
            vector=vector,
            vector_bad=bad if bad.any() else None,
            vector_zero=not np.any(vector),
            guide=guide,
            eps=COARSE.eps * EXPOSURE.key / level,
            seconds=time.perf_counter() - start,
        )

    def _moves(self, a: _Prepared, b: _Prepared) -> bool:
        """Whether the image changes between a and b although a's vectors are all zero."""
        key = (a.number, b.number)
        if key not in self._moving:
            if a.depth is not None and b.depth is not None:
                rel = np.abs(a.depth - b.depth) / np.maximum(np.minimum(a.depth, b.depth), 1e-6)
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
        if t.vector_bad is not None:
            warnings.append(
                f"{t.source or number}: {int(t.vector_bad.sum())} pixels have NaN or Inf motion vectors; "
                "those are denoised from this frame alone"
            )
        color, albedo, normal, reuse = self._accumulate(t, links)
        if not self.settings.accumulate_aux:
            albedo, normal = t.albedo, t.normal
        rgba = color if t.alpha is None else np.concatenate([color, t.alpha[..., None]], axis=-1)
        result = denoise(self.model, rgba, albedo, normal, cancel=self.cancel, **self.denoise_args)
        if self.settings.history and self._history is not None and self._history[0] == number - 1 and links[-1]:
            self._blend_history(t, result.image)
        self._history = (number, result.image[..., :3].copy())
        used = len(links[-1]) + len(links[1])
        seconds = t.seconds + time.perf_counter() - start
        return TemporalResult(number, t.source, result, used, reuse, seconds, warnings)

    def _blend_history(self, t: _Prepared, out: np.ndarray) -> None:
        assert self._history is not None and self._step_back is not None
        prev = self._history[1]
        px, py, wprev = self._step_back
        warped = _bilinear(prev, px, py)
        e = t.eps
        err = np.abs(np.log((warped + e) / (out[..., :3] + e))).max(axis=-1)
        wt = (wprev * _fade(err, self.settings.history_tol) * self.settings.history)[..., None]
        out[..., :3] = (out[..., :3] + wt * warped) / (1 + wt)
        import os

        if os.environ.get("TDEBUG"):
            print("hist", float(wt.mean()), float(wprev.mean()), float(np.median(err)))

    def _accumulate(
        self, t: _Prepared, links: dict[int, list[_Prepared]]
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float]:
        """The window's samples averaged onto frame t, in row chunks."""
        s = self.settings
        h, w = t.shape
        color = t.color.copy()
        albedo = None if t.albedo is None else t.albedo.copy()
        normal = None if t.normal is None else t.normal.copy()
        if not links[-1] and not links[1]:
            return color, albedo, normal, 0.0
        step = max(1, s.chunk_pixels // w)
        reuse = 0.0
        back = (np.zeros((h, w), np.float32), np.zeros((h, w), np.float32), np.zeros((h, w), np.float32))
        self._step_back = back
        xs = np.arange(w, dtype=np.float32)
        for r0 in range(0, h, step):
            r1 = min(h, r0 + step)
            py0, px0 = np.meshgrid(np.arange(r0, r1, dtype=np.float32), xs, indexing="ij")
            g_t = _bilinear(t.guide, (px0 + 0.5) / 2 - 0.5, (py0 + 0.5) / 2 - 0.5)
            g_t += t.eps
            cap = g_t * np.float32(s.firefly)
            rows = slice(r0, r1)
            wsum = np.ones((r1 - r0, w), np.float32)
            acc_c = color[rows]
            acc_a = None if albedo is None else albedo[rows]
            acc_n = None if normal is None else normal[rows]
            for direction, chain in links.items():
                px, py = px0.copy(), py0.copy()
                alive = np.ones((r1 - r0, w), bool)
                if t.vector_bad is not None:
                    alive &= ~t.vector_bad[rows]
                cur = t
                for k, nb in enumerate(chain, start=1):
                    v = cur.vector[rows] if k == 1 else _bilinear(cur.vector, px, py)
                    if direction < 0:
                        px += v[..., 0]
                        py -= v[..., 1]
                    else:
                        px -= v[..., 2]
                        py += v[..., 3]
                    if k > 1 and cur.vector_bad is not None:
                        alive &= _bilinear(cur.vector_bad[..., None].astype(np.float32), px, py)[..., 0] == 0
                    alive &= (px >= -0.5) & (px <= w - 0.5) & (py >= -0.5) & (py <= h - 0.5)
                    wt = alive.astype(np.float32)
                    if t.depth is not None and nb.depth is not None:
                        d_t = t.depth[rows]
                        d_s = _bilinear(nb.depth[..., None], px, py)[..., 0]
                        with np.errstate(invalid="ignore", divide="ignore"):
                            rel = np.abs(d_s - d_t) / np.maximum(d_t, 1e-6)
                        # Both background (inf): the same sky.
                        rel[np.isinf(d_t) & np.isinf(d_s)] = 0.0
                        wt *= _fade(rel, s.depth + s.depth_per_frame * k)
                    if t.normal is not None and nb.normal is not None:
                        n_s = _bilinear(nb.normal, px, py)
                        wt *= _fade(np.abs(n_s - t.normal[rows]).mean(axis=-1), s.normal)
                    else:
                        n_s = None
                    if t.albedo is not None and nb.albedo is not None:
                        a_s = _bilinear(nb.albedo, px, py)
                        wt *= _fade(np.abs(a_s - t.albedo[rows]).max(axis=-1), s.albedo)
                    else:
                        a_s = None
                    g_s = _bilinear(nb.guide, (px + 0.5) / 2 - 0.5, (py + 0.5) / 2 - 0.5)
                    g_s += t.eps
                    wt *= _fade(np.abs(np.log(g_s / g_t)).max(axis=-1), s.color)
                    c_s = np.minimum(_bilinear(nb.color, px, py), cap)
                    wt3 = wt[..., None]
                    acc_c += c_s * wt3
                    if acc_a is not None:
                        acc_a += (a_s if a_s is not None else t.albedo[rows]) * wt3
                    if acc_n is not None:
                        acc_n += (n_s if n_s is not None else t.normal[rows]) * wt3
                    wsum += wt
                    reuse += float(wt.sum())
                    if direction < 0 and k == 1:
                        back[0][rows], back[1][rows], back[2][rows] = px, py, wt
                    cur = nb
            inv = (1.0 / wsum)[..., None]
            acc_c *= inv
            if acc_a is not None:
                acc_a *= inv
            if acc_n is not None:
                acc_n *= inv
        return color, albedo, normal, reuse / (h * w)


def sequence_number(stem: str) -> tuple[str, int] | None:
    """(name without the number, frame number) from a file stem like ``shot_0042``; None without one."""
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if not digits:
        return None
    return stem[:-digits], int(stem[-digits:])
