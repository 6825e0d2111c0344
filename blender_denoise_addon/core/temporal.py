"""Temporal denoising: each frame of a shot is denoised with its neighbours.

Where a surface stays in view, the frames around frame t hold more samples of it. For frame t:

1. every neighbour t+d (|d| <= radius) is reprojected onto t with Cycles' Vector pass, chained
   frame by frame (X, Y: motion to the previous frame, Z, W: to the next, in pixels; in top-down
   rows, pixel (x, y) of frame t was at (x + X, y - Y) in t-1 and will be at (x - Z, y + W) in
   t+1). Positions are tracked in fractions of a pixel, so they do not drift, but whole samples
   are taken (the nearest pixel): each pixel's noise stays its own. Interpolated samples would
   make the averaged noise spatially correlated, and OIDN-type networks keep that as blotches;
2. a neighbour's pixel is rejected where it shows another surface (depth, normal, albedo), where it
   left the frame (disocclusion), and where the two frames' guides disagree: reflections,
   refractions and lights that switch on do not follow the motion vectors. A guide is the frame
   denoised alone by the fast network for the same passes, from a 2x2-averaged copy, blurred a
   little; the tolerance follows what is left of its noise (3x the median change between
   neighbouring guides on matching surfaces, within 20-35 %). No sample is clamped (a clamp on the
   neighbours alone biases the average);
3. the accepted samples are averaged with the frame's own (weights fade near each tolerance),
   and the model denoises that average, with the averaged albedo and normal, like any frame;
4. history: frame t-1's result (its window's denoise, before its own history blend, so a frame
   depends on a bounded stretch of the shot and a chunk of it, on Ray, gives the same files),
   reprojected (bilinearly: it is clean), clamped to the range of this frame's result around
   each pixel and accepted by the same tests as frame t-1's samples, is blended in, as temporal
   anti-aliasing does. Frames change less from one to the next; the area an object has just left
   fails the depth test, and a light that switches on lies outside the clamp.

Any model of the contract works, color-only included (the guides come from the same model).
A :class:`TemporalStream` holds only a window of ``2 * radius + 1`` frames: it takes frames in
order and gives back frame t once frame t + radius has arrived (all of them at the end). A gap in
the numbering is a cut: nothing is reused across it. Build one with
:meth:`TemporalStream.from_options`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import coarse as cp
from . import transfer as tf
from .coarse import log_offset
from .contract import GUIDE_RANGES
from .defaults import TEMPORAL, TemporalDefaults
from .denoise import (
    DenoiseResult,
    InputReport,
    check_pass_options,
    count_bad,
    denoise,
    prepare_guide,
    sanitize_color,
)
from .errors import DenoiseError, MissingPassError
from .imageio import Frame
from .model import Model
from .options import Options

VECTOR_HINT = (
    "in Blender: View Layer > Passes > Data > Vector (and Z), with Motion Blur off in the Render "
    "properties, since Cycles writes zero vectors when it is on"
)
_TILING_KEYS = frozenset(Options().tiling_args)  # what a guide's denoise shares with the final one
MOTION_BLUR_NOTE = (
    "Motion Blur is on, so Cycles writes the Vector pass as zeros: frames are denoised one by one "
    "(turn Motion Blur off for temporal denoising)"
)


@dataclass
class _Prepared:
    """One frame as the window keeps it: its passes stacked for one gather, and its guide.

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
    guide: np.ndarray  # the blurred per-frame denoise, (H * W) x 3 (1 x 3 when the radius is 0)
    report: InputReport  # NaN, Inf and negative pixels of the frame as it came (the stack is cleaned)
    eps: float  # offset of the log ratio of guides, from the frame's log-average luminance
    seconds: float  # spent preparing it (mostly its guide)

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
    history: float = 0.0  # mean weight of the previous result blended in


def _nearest(h: int, w: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Flat indices of the pixels nearest to positions x, y (pixel units, edge-clamped) of an h x w image."""
    # floor(v + 0.5), not rint: rint rounds halves to even, which maps two pixels onto one under
    # a motion of 1.5 px and repeats their samples.
    xi = np.clip(np.floor(x + 0.5), 0, w - 1).astype(np.intp)
    yi = np.clip(np.floor(y + 0.5), 0, h - 1).astype(np.intp)
    yi *= w
    yi += xi
    return yi


def sample_bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` (h x w x c) at positions x, y (pixel units, edge-clamped), bilinearly."""
    h, w = img.shape[:2]
    flat = img.reshape(h * w, -1)
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(x.astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(y.astype(np.intp), max(h - 2, 0))
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]
    i, dx, dy = y0 * w + x0, 1 if w > 1 else 0, w if h > 1 else 0
    # a + (b - a) * f, in place: a third of the temporaries of the textbook form
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


def _box(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over (2r + 1)^2 pixels (edges repeat), per channel."""
    if r <= 0:
        return img
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    rows = sum(p[i : i + h] for i in range(1, 2 * r + 1)) + p[:h]
    out = sum(rows[:, j : j + w] for j in range(1, 2 * r + 1)) + rows[:, :w]
    return (out * np.float32(1 / (2 * r + 1) ** 2)).astype(np.float32, copy=False)


def _range3(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel minimum and maximum over each pixel's 3x3 neighbourhood (edges repeat)."""
    h, w = img.shape[:2]
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    lo_r = np.minimum(np.minimum(p[:-2], p[1:-1]), p[2:])
    hi_r = np.maximum(np.maximum(p[:-2], p[1:-1]), p[2:])
    lo = np.minimum(np.minimum(lo_r[:, :-2], lo_r[:, 1:-1]), lo_r[:, 2:])
    hi = np.maximum(np.maximum(hi_r[:, :-2], hi_r[:, 1:-1]), hi_r[:, 2:])
    return lo[:h, :w], hi[:h, :w]


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


def context(radius: int, settings: TemporalDefaults = TEMPORAL) -> tuple[int, int]:
    """Frames before and after a stretch of a shot that a stream needs to give that stretch the
    results a run over the whole shot gives it (for chunks on a cluster): the window, and one more
    before for the history's previous result."""
    return radius + (1 if settings.history > 0 and radius > 0 else 0), radius


def check_motion(frame: Frame) -> None:
    """Raise MissingPassError when ``frame`` cannot be reprojected (no Vector pass)."""
    if frame.vector is None:
        raise MissingPassError(f"{frame.source or 'frame'}: no Vector pass, which --temporal needs ({VECTOR_HINT})")


def _guide_model(model: Model, threads: int | None, quality: str) -> Model:
    """The network that makes the guides: the bundled one of ``quality`` for the passes ``model``
    takes; ``model`` itself when it is not bundled (the user's own, or a tuned one)."""
    from . import catalog

    bundled = {p.resolve() for p in catalog.bundled_models()}
    if model.path.resolve() not in bundled:
        return model
    return catalog.get_model(None, model.info.inputs, threads, quality)


class TemporalStream:
    """Frames in, denoised frames out, with ``radius`` frames of look-ahead and look-back.

    ``push(number, frame)`` returns the frames now complete; ``finish()`` the rest. ``denoise_args``
    go to :func:`~.denoise.denoise` for the final pass (tiling, flips, ...); the guides use the
    same tiling. ``guide_model`` makes the guides (default: ``model``). ``notes`` are lines for the
    user about how the stream was set up.
    """

    def __init__(
        self,
        model: Model,
        radius: int = TEMPORAL.radius,
        settings: TemporalDefaults = TEMPORAL,
        cancel: Callable[[], bool] | None = None,
        threads: int | None = None,
        guide_model: Model | None = None,
        **denoise_args: Any,
    ) -> None:
        if radius < 0:
            raise DenoiseError(f"the temporal radius must be 0 or more, got {radius}")
        self.model = model
        self.guide_model = guide_model or model
        self.radius = radius
        self.settings = settings
        self.cancel = cancel
        self.threads = threads  # for the reprojection (None: all cores); the model has its own
        self.denoise_args = denoise_args
        self.notes: list[str] = []
        self._window: dict[int, _Prepared] = {}
        self._next: int | None = None  # the next frame number to give back
        self._moving: dict[tuple[int, int], bool] = {}
        self._last: tuple[int, np.ndarray] | None = None  # the previous frame's number and result (RGB)

    @classmethod
    def from_options(
        cls,
        model: Model,
        opts: Options,
        *,
        motion_blur: bool = False,
        cancel: Callable[[], bool] | None = None,
        settings: TemporalDefaults = TEMPORAL,
    ) -> TemporalStream:
        """The stream ``opts`` ask for, for every caller (panel, hook, commands): their radius,
        Quality and tiling; a model that needs a pass the user turned off is refused, as for stills;
        the guides come from the fast network for the same passes. With ``motion_blur`` on, Cycles
        writes zero vectors: the radius is 0 (frames one by one) and ``notes`` says so."""
        check_pass_options(model, opts)
        radius = opts.radius
        notes = []
        if motion_blur and radius:
            notes.append(MOTION_BLUR_NOTE)
            radius = 0
        guide = _guide_model(model, opts.threads, settings.guide_quality) if radius else None
        stream = cls(model, radius, settings, cancel, opts.threads, guide, **opts.denoise_args)
        stream.notes = notes
        return stream

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
        self._last = None
        return done

    def _drop_old(self) -> None:
        assert self._next is not None
        for n in [n for n in self._window if n < self._next - self.radius]:
            del self._window[n]
            self._moving = {k: v for k, v in self._moving.items() if n not in k}

    # -- per frame -------------------------------------------------------------------------------

    def _prepare(self, number: int, frame: Frame) -> _Prepared:
        start = time.perf_counter()
        h, w = frame.color.shape[:2]
        report = count_bad(frame.color[..., :3])
        parts = [sanitize_color(frame.color[..., :3])]
        offsets: dict[str, int] = {}
        at = 3
        for name in GUIDE_RANGES:
            arr = getattr(frame, name)
            if arr is not None:
                parts.append(prepare_guide(name, arr[..., :3]))
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
        guide = self._guide(parts[0], {k: parts[1 + list(offsets).index(k)] for k in GUIDE_RANGES if k in offsets})
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
            eps=log_offset(tf.autoexposure(guide)),
            report=report,
            seconds=time.perf_counter() - start,
        )

    def _guide(self, color: np.ndarray, aux: dict[str, np.ndarray]) -> np.ndarray:
        """The frame denoised alone by the guide network, blurred: what the light test compares."""
        if not self.radius:  # no neighbours: nothing to compare, no guide to make or keep
            return np.ones((1, 1, 3), np.float32)
        args = {k: v for k, v in self.denoise_args.items() if k in _TILING_KEYS}  # not the preset's flips
        inputs = self.guide_model.info.inputs
        h, w = color.shape[:2]
        half = self.settings.guide_half and min(h, w) >= 2
        if half:  # 4x the samples a pixel and a quarter of the cost; the blur hides the blocks
            color = cp.halve(color)
            aux = {k: cp.halve(v) for k, v in aux.items()}
        image = denoise(
            self.guide_model,
            color,
            aux.get("albedo") if "albedo" in inputs else None,
            aux.get("normal") if "normal" in inputs else None,
            coarse=False,
            flips=1,
            cancel=self.cancel,
            **args,
        ).image[..., :3]
        if half:
            image = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)[:h, :w]
        return _box(image, self.settings.guide_blur)

    def _moves(self, a: _Prepared, b: _Prepared) -> bool:
        """Whether the image changes between a and b although a's vectors are all zero."""
        key = (a.number, b.number)
        if key not in self._moving:
            da, db = a.channels(a.depth_at, 1), b.channels(b.depth_at, 1)
            if da is not None and db is not None:
                rel = np.abs(da - db) / np.maximum(np.minimum(da, db), 1e-6)
                changed = float(np.mean(~(rel <= 1e-3)))
            else:  # no depth: the guides tell
                ga, gb = a.guide + a.eps, b.guide + a.eps
                changed = float(np.mean(np.abs(np.log(ga / gb)).max(axis=-1) > self.settings.color))
            self._moving[key] = changed > self.settings.still_changed
        return self._moving[key]

    def _links(self, t: _Prepared) -> tuple[dict[int, list[_Prepared]], list[str]]:
        """The neighbours reprojected onto t, each direction in order of distance, and warnings."""
        warnings: list[str] = []
        links: dict[int, list[_Prepared]] = {}
        for direction in (-1, 1):
            chain: list[_Prepared] = []
            cur = t
            for step in range(1, self.radius + 1):
                nb = self._window.get(t.number + direction * step)
                if nb is None:
                    break
                if cur.vector_zero and self._moves(cur, nb):
                    warning = (
                        f"{cur.source or cur.number}: the Vector pass is all zero while the image moves "
                        "(Motion Blur on?); not blended with its neighbours there"
                    )
                    if warning not in warnings:  # both directions of the same frame: said once
                        warnings.append(warning)
                    break
                chain.append(nb)
                cur = nb
            links[direction] = chain
        if t.vector_bad:
            warnings.append(
                f"{t.source or t.number}: {t.vector_bad} pixels have NaN or Inf motion vectors; "
                "those are denoised from this frame alone"
            )
        return links, warnings

    def _emit(self, number: int) -> TemporalResult:
        start = time.perf_counter()
        t = self._window[number]
        links, warnings = self._links(t)
        history = self.settings.history > 0 and self._last is not None and self._last[0] == number - 1
        history = history and bool(links[-1])
        tolerance = self._tolerance(t, links) if links[-1] or links[1] else self.settings.color
        color, albedo, normal, reuse, back = self._accumulate(t, links, history, tolerance)
        rgba = color if t.alpha is None else np.concatenate([color, t.alpha[..., None]], axis=-1)
        result = denoise(self.model, rgba, albedo, normal, cancel=self.cancel, **self.denoise_args)
        result = replace(result, stats=replace(result.stats, input_report=t.report))  # what the frame had
        own = np.array(result.image[..., :3]) if self.settings.history > 0 else None
        used_history = 0.0
        if back is not None and self._last is not None:
            used_history = self._blend_history(result.image, self._last[1], back)
        self._last = None if own is None else (number, own)
        used = len(links[-1]) + len(links[1])
        seconds = t.seconds + time.perf_counter() - start
        return TemporalResult(number, t.source, result, used, reuse, seconds, warnings, used_history)

    # -- reprojection ----------------------------------------------------------------------------

    def _walk(
        self, t: _Prepared, own: np.ndarray, rows: tuple[int, int], direction: int, chain: list[_Prepared]
    ) -> Iterator[tuple[int, _Prepared, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Along ``chain``, for t's rows r0 .. r1: (k, neighbour, its whole samples at the reached
        pixels, their flat indices, x, y, alive). Positions are chained frame by frame through each neighbour's own
        vectors; a pixel dies when it leaves the frame or meets a bad vector."""
        h, w = t.shape
        py, px = np.meshgrid(np.arange(*rows, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        alive = own[..., t.vector_at + 4] == 0
        v = own[..., t.vector_at : t.vector_at + 4]
        for k, nb in enumerate(chain, start=1):
            if direction < 0:
                px = px + v[..., 0]
                py = py - v[..., 1]
            else:
                px = px - v[..., 2]
                py = py + v[..., 3]
            alive &= (px >= -0.5) & (px <= w - 0.5) & (py >= -0.5) & (py <= h - 0.5)
            idx = _nearest(h, w, px, py)
            got = np.take(nb.stack, idx, axis=0)
            yield k, nb, got, idx, px, py, alive.copy()
            v = got[..., nb.vector_at : nb.vector_at + 4]  # nb's own vectors at the reached pixels
            alive &= got[..., nb.vector_at + 4] == 0

    def _weight(
        self, t: _Prepared, own: np.ndarray, nb: _Prepared, k: int, got: np.ndarray, idx: np.ndarray,
        log_guide: np.ndarray, alive: np.ndarray, tolerance: float,
    ) -> np.ndarray:  # fmt: skip
        """How much each reached sample of ``nb`` (``k`` frames away) counts for t: 0 where the
        tests say it shows another surface or another light, 1 well within every tolerance."""
        wt = self._same_surface(t, own, nb, k, got, alive)
        wt *= _fade(self._light_change(t, nb, idx, log_guide), tolerance)
        return wt

    def _light_change(self, t: _Prepared, nb: _Prepared, idx: np.ndarray, log_guide: np.ndarray) -> np.ndarray:
        """|log ratio| of the two frames' guides at the reached pixels, the largest channel's."""
        g_s = np.take(nb.guide, idx, axis=0)
        g_s += t.eps
        np.log(g_s, out=g_s)
        g_s -= log_guide
        return _max3(g_s)

    def _same_surface(
        self, t: _Prepared, own: np.ndarray, nb: _Prepared, k: int, got: np.ndarray, alive: np.ndarray
    ) -> np.ndarray:
        """The geometric tests: 1 where the reached sample shows t's surface (depth, normal, albedo)."""
        s = self.settings
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
        return wt

    def _tolerance(self, t: _Prepared, links: dict[int, list[_Prepared]]) -> float:
        """The light test's tolerance for frame t, from the noise of its guides: ``noise_sigmas``
        times the typical change between t's guide and its nearest neighbours' on matching surfaces
        (mostly what is left of the noise; a light that changes covers few pixels), within
        ``color_min`` .. ``color``. A sparse grid of rows and columns is enough for a median."""
        s = self.settings
        if s.noise_sigmas <= 0:
            return s.color
        h, w = t.shape
        step = max(1, min(h, w) // 64)
        changes = []
        for direction, chain in links.items():
            for r0 in range(0, h, step):
                own = t.stack[r0 * w : (r0 + 1) * w].reshape(1, w, -1)
                log_guide = np.log(t.guide[r0 * w : (r0 + 1) * w].reshape(1, w, 3) + np.float32(t.eps))
                for k, nb, got, idx, _px, _py, alive in self._walk(t, own, (r0, r0 + 1), direction, chain[:1]):
                    same = self._same_surface(t, own, nb, k, got, alive) >= 1.0
                    changes.append(self._light_change(t, nb, idx, log_guide)[same][::step])
        found = np.concatenate(changes) if changes else np.empty(0, np.float32)
        if found.size < 64:
            return s.color
        return float(np.clip(s.noise_sigmas * np.median(found), s.color_min, s.color))

    def _accumulate(
        self, t: _Prepared, links: dict[int, list[_Prepared]], history: bool, tolerance: float
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float, np.ndarray | None]:
        """The window's samples averaged onto frame t (color, albedo, normal), in row chunks; with
        ``history``, also where frame t-1 lies under each pixel and how much it counts
        (H x W x 3: x, y, weight)."""
        h, w = t.shape
        n = 3 + 3 * (t.albedo_at is not None) + 3 * (t.normal_at is not None)
        acc = np.array(t.stack[:, :n]).reshape(h, w, n)  # t's own samples, weight 1
        color = acc[..., :3]
        albedo = None if t.albedo_at is None else acc[..., t.albedo_at : t.albedo_at + 3]
        normal = None if t.normal_at is None else acc[..., t.normal_at : t.normal_at + 3]
        if not links[-1] and not links[1]:
            return color, albedo, normal, 0.0, None
        back = np.zeros((h, w, 3), np.float32) if history else None
        step = max(1, self.settings.chunk_pixels // w)

        def chunk(r0: int) -> float:
            """Rows r0 .. r0 + step: disjoint rows of ``acc``, so chunks run on threads (numpy
            releases the GIL in its gathers and arithmetic). Returns the chunk's reused weight."""
            r1 = min(h, r0 + step)
            own = t.stack[r0 * w : r1 * w].reshape(r1 - r0, w, -1)
            log_guide = np.log(t.guide[r0 * w : r1 * w].reshape(r1 - r0, w, 3) + np.float32(t.eps))
            wsum = np.ones((r1 - r0, w, 1), np.float32)
            target = acc[r0:r1]
            reuse = 0.0
            for direction, chain in links.items():
                for k, nb, got, idx, px, py, alive in self._walk(t, own, (r0, r1), direction, chain):
                    wt = self._weight(t, own, nb, k, got, idx, log_guide, alive, tolerance)
                    if back is not None and direction < 0 and k == 1:
                        back[r0:r1, :, 0], back[r0:r1, :, 1], back[r0:r1, :, 2] = px, py, wt
                    wt3 = wt[..., None]
                    target[..., :3] += got[..., :3] * wt3
                    for at_t, at_s in ((t.albedo_at, nb.albedo_at), (t.normal_at, nb.normal_at)):
                        if at_t is not None:  # a neighbour without the pass lends this frame's own
                            src = got[..., at_s : at_s + 3] if at_s is not None else own[..., at_t : at_t + 3]
                            target[..., at_t : at_t + 3] += src * wt3
                    wsum += wt3
                    reuse += float(wt.sum())
            target /= wsum
            return reuse

        starts = range(0, h, step)
        workers = min(len(starts), self.threads or os.cpu_count() or 1)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                reused = sum(pool.map(chunk, starts))
        else:
            reused = sum(chunk(r0) for r0 in starts)
        return color, albedo, normal, reused / (h * w), back

    def _blend_history(self, image: np.ndarray, previous: np.ndarray, back: np.ndarray) -> float:
        """Blend the previous result, moved onto this frame and clamped to this result's 3x3 range,
        into ``image`` (in place) where ``back`` accepts it. Returns the mean weight used."""
        cur = image[..., :3]
        moved = sample_bilinear(previous, back[..., 0], back[..., 1])
        lo, hi = _range3(np.ascontiguousarray(cur))
        np.clip(moved, lo, hi, out=moved)
        wt = back[..., 2:3] * np.float32(self.settings.history)
        moved -= cur
        moved *= wt
        cur += moved
        return float(wt.mean())


def sequence_number(stem: str) -> tuple[str, int] | None:
    """(name without the number, frame number) from a file stem like ``shot_0042``; None without one."""
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if not digits:
        return None
    return stem[:-digits], int(stem[-digits:])
