"""Denoising a frame with a loaded model: input preparation, tiling, batching."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import coarse as cp
from . import transfer as tf
from .contract import GUIDE_RANGES
from .defaults import DEFAULT_QUALITY, QUALITY, TILING
from .errors import DenoiseCancelled, DenoiseError, MissingPassError
from .imageio import Frame
from .model import Model
from .options import Options, check_tiling
from .tiling import Tile, auto_tile, plan_tiles, reflect_index

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


@dataclass
class InputReport:
    """What input preparation had to fix, counted over the whole frame."""

    nan: int = 0
    inf: int = 0
    negative: int = 0

    @property
    def total(self) -> int:
        return self.nan + self.inf + self.negative

    def __str__(self) -> str:
        if not self.total:
            return "input clean"
        return f"set to 0: {self.nan} NaN, {self.inf} Inf, {self.negative} negative color values"


@dataclass
class DenoiseStats:
    model: str
    inputs: tuple[str, ...]
    tiling: str
    tile: int
    overlap: int
    tiles: int
    batches: int
    exposure: float
    seconds: float
    input_report: InputReport = field(default_factory=InputReport)
    coarse: bool = False  # the coarse pass ran (its tiles are in ``tiles``)
    flips: int = 1  # test-time flips averaged
    prefiltered: tuple[str, ...] = ()  # guides cleaned by the model's prefilters first

    @property
    def tiles_text(self) -> str:
        extra = ["with the coarse pass"] if self.coarse else []
        extra += [f"{self.flips} flips"] if self.flips > 1 else []
        extra += [f"prefiltered {' and '.join(self.prefiltered)}"] if self.prefiltered else []
        return f"{self.tiling} {self.tiles} tiles" + (f" ({', '.join(extra)})" if extra else "")


@dataclass
class DenoiseResult:
    image: np.ndarray  # H x W x 3 linear (x 4 when the input had alpha)
    stats: DenoiseStats


def _sanitize_inplace(c: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(c)
    bad |= c < 0  # NaN compares False, so NaN is caught above only
    np.copyto(c, np.float32(0), where=bad)
    return c


def sanitize_color(color: np.ndarray) -> np.ndarray:
    """NaN, Inf and negative -> 0. Returns a new float32 array."""
    return _sanitize_inplace(np.array(color, dtype=np.float32))


def _clip_inplace(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # np.clip keeps NaN (and maps +/-Inf to the bounds); NaN then becomes 0. Faster than nan_to_num.
    np.clip(y, lo, hi, out=y)
    np.copyto(y, np.float32(0), where=np.isnan(y))
    return y


def clip_guide(guide: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` (float32) kept in ``guide``'s range (contract.GUIDE_RANGES), NaN -> 0, in place."""
    return _clip_inplace(arr, *GUIDE_RANGES[guide])


def prepare_guide(guide: str, arr: np.ndarray) -> np.ndarray:
    """A guide pass as the core feeds it (a new float32 array): see :func:`clip_guide`."""
    return clip_guide(guide, np.array(arr, dtype=np.float32))


def prepare_albedo(albedo: np.ndarray) -> np.ndarray:
    """Blender's Denoising Albedo, NaN -> 0, clipped to [0, 1]. Returns a new float32 array."""
    return prepare_guide("albedo", albedo)


def prepare_normal(normal: np.ndarray) -> np.ndarray:
    """Camera-space normals as Blender writes them, kept in [-1, 1]; NaN -> 0. Returns a new float32 array."""
    return prepare_guide("normal", normal)


def count_bad(color: np.ndarray) -> InputReport:
    rep = InputReport()
    for y0 in range(0, color.shape[0], 512):
        chunk = color[y0 : y0 + 512]
        # NaN fails the first test. All channels: a contiguous reduction; a bad alpha only costs the exact count.
        if chunk.size and chunk.min() >= 0 and chunk.max() < np.inf:
            continue
        c = chunk[..., :3]
        nan = np.isnan(c)
        inf = np.isinf(c)
        rep.nan += int(nan.sum())
        rep.inf += int(inf.sum())
        rep.negative += int(((c < 0) & ~inf).sum())
    return rep


def frame_exposure(color: np.ndarray, transfer: str) -> float:
    if transfer not in tf.EXPOSED_TRANSFERS:
        return 1.0
    return tf.autoexposure(color, prepare=sanitize_color)


def _segments(origin: int, size: int, n: int) -> list[tuple[int, int, slice | np.ndarray]]:
    """(start, stop, source) pieces of one tile axis: a slice for the part inside the image, mirrored
    indices for the padding around it."""
    a, b = max(0, -origin), min(size, n - origin)
    if a >= b:
        return [(0, size, reflect_index(np.arange(origin, origin + size), n))]
    pieces: list[tuple[int, int, slice | np.ndarray]] = [(a, b, slice(origin + a, origin + b))]
    if a:
        pieces.append((0, a, reflect_index(np.arange(origin, origin + a), n)))
    if b < size:
        pieces.append((b, size, reflect_index(np.arange(origin + b, origin + size), n)))
    return pieces


def _copy_tile(dst: np.ndarray, src: np.ndarray, tile: Tile, fill: float | None = None) -> None:
    """dst (3 x h x w) = the tile's window of src (H x W x >= 3), mirrored outside the image (or
    ``fill`` there, when given: the contract's zero padding).

    Copies the inside straight from views; only the few padding rows and columns are gathered.
    """
    d = dst.transpose(1, 2, 0)
    h, w = src.shape[:2]
    for r0, r1, rows in _segments(tile.y.origin, tile.y.size, h):
        if fill is not None and not isinstance(rows, slice):
            d[r0:r1] = fill
            continue
        band = src[rows] if isinstance(rows, slice) else src.take(rows, axis=0)
        for c0, c1, cols in _segments(tile.x.origin, tile.x.size, w):
            if fill is not None and not isinstance(cols, slice):
                d[r0:r1, c0:c1] = fill
            else:
                d[r0:r1, c0:c1] = band[:, cols, :3] if isinstance(cols, slice) else band[:, cols][..., :3]


def _fill(padding: str, guide: str) -> float | None:
    """What the padding holds for ``guide`` (None: mirrored): the pass's lowest value for ``zero``."""
    return None if padding == "mirror" else GUIDE_RANGES.get(guide, (0.0, 1.0))[0]


def _network_input(
    tile: Tile,
    color: np.ndarray,
    albedo: np.ndarray | None,
    normal: np.ndarray | None,
    transfer: str,
    exposure: float,
    padding: str = "mirror",
) -> np.ndarray:
    """C x h x w float32 network input for one tile, prepared as the contract says (in place: no frame copies)."""
    extra = [p for p in (albedo, normal) if p is not None]
    out = np.empty((3 + 3 * len(extra), tile.y.size, tile.x.size), np.float32)
    _copy_tile(out[0:3], color, tile, _fill(padding, "color"))
    c = _sanitize_inplace(out[0:3])
    y = tf.forward(c, transfer, exposure, inplace=True)
    if y is not c:
        out[0:3] = y
    if albedo is not None:
        _copy_tile(out[3:6], albedo, tile, _fill(padding, "albedo"))
        clip_guide("albedo", out[3:6])
    if normal is not None:
        _copy_tile(out[6:9], normal, tile, _fill(padding, "normal"))
        clip_guide("normal", out[6:9])
    return out


def _check_pass(name: str, arr: np.ndarray | None, shape: tuple[int, int], needed: bool) -> np.ndarray | None:
    if not needed:
        return None
    if arr is None:
        raise MissingPassError(
            f"the model needs the {name} pass, which the input does not have "
            f"(in Blender: View Layer > Passes > Data > Denoising Data)"
        )
    if arr.ndim != 3 or arr.shape[:2] != shape or arr.shape[2] < 3:
        raise DenoiseError(f"{name} pass has shape {arr.shape}, expected {shape[0]} x {shape[1]} x 3")
    return arr


# Test-time flips: (flip rows, flip columns) of each transform, averaged. 2: the mirror image too.
FLIP_SETS = {1: ((False, False),), 2: ((False, False), (False, True)),
             4: ((False, False), (False, True), (True, False), (True, True))}  # fmt: skip


def _flipped(x: np.ndarray, flip_y: bool, flip_x: bool, normal_at: int | None) -> np.ndarray:
    """``x`` (N x C x h x w) mirrored; camera-space normals (x right, y up) turn with the image."""
    if not (flip_y or flip_x):
        return x
    y = np.ascontiguousarray(x[:, :, :: -1 if flip_y else 1, :: -1 if flip_x else 1])
    if normal_at is not None:
        if flip_x:
            y[:, normal_at] *= -1
        if flip_y:
            y[:, normal_at + 1] *= -1
    return y


def _run_tiles(
    model: Model,
    tiles: list[Tile],
    make_input: Callable[[Tile], np.ndarray],
    finish: Callable[[np.ndarray], np.ndarray],
    out: np.ndarray,
    flips: int,
    normal_at: int | None,
    batch: int,
    count: list[int],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    normal_out: bool = False,
) -> int:
    """Run ``model`` on ``tiles`` into ``out`` (H x W x C): ``make_input`` builds a tile's network input,
    ``finish`` maps a kept (h x w x C) network output back. ``count``: [tiles done, tiles in all],
    updated. With ``flips`` > 1 each tile is also run mirrored and the outputs averaged (``normal_at``: the
    input's normal channels, turned with the image; ``normal_out``: the output is a normal too). Returns batches."""
    batches = 0
    variants = FLIP_SETS[flips]
    for b0 in range(0, len(tiles), batch):
        if cancel is not None and cancel():
            raise DenoiseCancelled(f"cancelled after {count[0]} of {count[1]} tiles")
        group = tiles[b0 : b0 + batch]
        parts = [make_input(t) for t in group]
        x = parts[0][None] if len(parts) == 1 else np.stack(parts)  # one tile: a view, no copy of the frame
        y = model.run(x)
        for fy, fx in variants[1:]:  # undo each flip on the output
            y += _flipped(model.run(_flipped(x, fy, fx, normal_at)), fy, fx, normal_at if normal_out else None)
        if len(variants) > 1:
            y /= len(variants)
        batches += 1
        for t, yt in zip(group, y, strict=False):
            ky = slice(t.y.keep0 - t.y.origin, t.y.keep1 - t.y.origin)
            kx = slice(t.x.keep0 - t.x.origin, t.x.keep1 - t.x.origin)
            lin = finish(yt[:, ky, kx].transpose(1, 2, 0))
            w = t.weights
            region = out[t.y.keep0 : t.y.keep1, t.x.keep0 : t.x.keep1]
            region += lin if w is None else lin * w[..., None]
        count[0] += len(group)
        if progress:
            progress(count[0], count[1])
    return batches


@dataclass(frozen=True)
class _Plan:
    """Tiling of one frame size for one model."""

    tiling: str
    tile: int | None
    overlap: int | None

    def tiles(self, model: Model, height: int, width: int) -> list[Tile]:
        info = model.info
        ov = info.default_overlap() if self.overlap is None else self.overlap
        shape = auto_tile(height, width, ov, info.alignment) if self.tile is None else (self.tile, self.tile)
        return plan_tiles(height, width, self.tiling, shape, ov, info.alignment, info.halo)


def _prefilter_guides(
    pre: Model, guides: dict[str, np.ndarray], tiles: list[Tile], flips: int, batch: int, count: list[int],
    progress: ProgressFn | None, cancel: CancelFn | None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The guides ``pre`` takes (name -> H x W x >= 3) cleaned by it, prepared as the core prepares guides."""
    names = pre.info.inputs

    def make_input(t: Tile) -> np.ndarray:
        x = np.empty((3 * len(names), t.y.size, t.x.size), np.float32)
        for i, g in enumerate(names):
            _copy_tile(x[3 * i : 3 * i + 3], guides[g], t, _fill(pre.info.padding, g))
            clip_guide(g, x[3 * i : 3 * i + 3])
        return x

    def finish(y: np.ndarray) -> np.ndarray:
        return tf.inverse(y, pre.info.transfer, 1.0)

    height, width = guides[names[0]].shape[:2]
    out = np.zeros((height, width, 3 * len(names)), np.float32)
    at = 3 * names.index("normal") if "normal" in names else None
    _run_tiles(
        pre, tiles, make_input, finish, out, flips, at, batch, count, progress, cancel, normal_out=at is not None
    )
    return {g: clip_guide(g, out[..., 3 * i : 3 * i + 3]) for i, g in enumerate(names)}


def prefilter(pre: Model, guides: dict[str, np.ndarray], flips: int = 1) -> dict[str, np.ndarray]:
    """Whole guides (name -> H x W x >= 3) through a prefilter model, in one tile."""
    tiles = _Plan("full", None, None).tiles(pre, *next(iter(guides.values())).shape[:2])
    return _prefilter_guides(pre, guides, tiles, flips, 1, [0, len(tiles)], None, None)


def denoise(
    model: Model,
    color: np.ndarray,
    albedo: np.ndarray | None = None,
    normal: np.ndarray | None = None,
    *,
    tiling: str = TILING.mode,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = TILING.batch,
    coarse: bool = QUALITY[DEFAULT_QUALITY].coarse,
    flips: int = QUALITY[DEFAULT_QUALITY].flips,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> DenoiseResult:
    """Denoise one frame. ``color`` is H x W x 3 or 4 linear; alpha passes through.

    ``tile=None`` picks :func:`~.tiling.auto_tile`: one tile for frames up to 1920x1088.
    ``coarse`` adds the coarse pass (:mod:`.coarse`) on frames of at least
    ``COARSE.min_side`` pixels a side. ``flips`` (1, 2 or 4) runs the network on mirrored
    copies too and averages. A model with guide prefilters (``denoiser.prefilter``) first cleans
    those guides with them, on the same tiling. Extra passes the model does not take are
    ignored; missing ones raise MissingPassError. Memory beyond the input and output frames is
    bounded by ``batch`` tiles, the prefiltered guides and, with the coarse pass, a quarter-size
    frame.
    """
    start = time.perf_counter()
    info = model.info
    if info.role != "denoiser":
        raise DenoiseError(f"{model.label} is a guide prefilter ({info.role}), not a denoiser")
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] not in (3, 4):
        raise DenoiseError(f"color must be H x W x 3 or 4, got shape {color.shape}")
    height, width = color.shape[:2]
    if height < 1 or width < 1:
        raise DenoiseError(f"image is empty ({width}x{height})")
    albedo = _check_pass("albedo", albedo, (height, width), "albedo" in info.inputs)
    normal = _check_pass("normal", normal, (height, width), "normal" in info.inputs)
    check_tiling(tiling, tile, overlap, batch)
    if flips not in FLIP_SETS:
        raise DenoiseError(f"flips must be one of {', '.join(map(str, FLIP_SETS))}, got {flips}")

    plan = _Plan(tiling, tile, overlap)
    use_coarse = bool(coarse) and cp.applies(height, width)
    shapes = [(height, width)] + ([cp.half_shape(height, width)] if use_coarse else [])
    level_tiles = [plan.tiles(model, h, w) for h, w in shapes]
    present = {g: arr for g, arr in (("albedo", albedo), ("normal", normal)) if arr is not None}
    # Each prefilter whose guides are all fed (a pass the user turned off is not fed, so not cleaned).
    pres = [pre for pre in model.prefilters if set(pre.info.inputs) <= set(present)]
    pre_tiles = [plan.tiles(pre, height, width) for pre in pres]
    count = [0, sum(map(len, level_tiles)) + sum(map(len, pre_tiles))]
    if progress:
        progress(0, count[1])

    report = count_bad(color)
    exposure = frame_exposure(color, info.transfer)
    batches = 0
    for pre, tiles in zip(pres, pre_tiles, strict=True):
        present |= _prefilter_guides(pre, present, tiles, flips, batch, count, progress, cancel)
    albedo, normal = present.get("albedo"), present.get("normal")

    normal_at = 3 * info.inputs.index("normal") if normal is not None else None

    def run_level(tiles: list[Tile], c: np.ndarray, a: np.ndarray | None, n: np.ndarray | None, e: float) -> np.ndarray:
        nonlocal batches

        def make_input(t: Tile) -> np.ndarray:
            return _network_input(t, c, a, n, info.transfer, e, info.padding)

        def finish(y: np.ndarray) -> np.ndarray:
            lin = tf.inverse(y, info.transfer, e)
            np.copyto(lin, np.float32(0), where=~np.isfinite(lin))
            return lin

        out = np.zeros((*c.shape[:2], 3), np.float32)
        batches += _run_tiles(model, tiles, make_input, finish, out, flips, normal_at, batch, count, progress, cancel)
        return out

    lo, lo_eps = None, 0.0
    if use_coarse:  # first, so its half-size inputs are freed before the full-size output exists
        lo_color = cp.halve(color, _sanitize_inplace)
        lo_albedo = None if albedo is None else cp.halve(albedo, lambda x: clip_guide("albedo", x))
        lo_normal = None if normal is None else cp.halve(normal, lambda x: clip_guide("normal", x))
        level = tf.autoexposure(lo_color)  # from the half frame: no full-size temporaries later
        e = level if info.transfer in tf.EXPOSED_TRANSFERS else 1.0
        lo = run_level(level_tiles[1], lo_color, lo_albedo, lo_normal, e)
        lo_eps = cp.log_offset(level)
        del lo_color, lo_albedo, lo_normal
    out = run_level(level_tiles[0], color, albedo, normal, exposure)
    if lo is not None:
        cp.correct(out, lo, lo_eps)
        del lo

    image = out
    if color.shape[2] == 4:
        image = np.concatenate([out, color[..., 3:4].astype(np.float32)], axis=-1)
    tiles0 = level_tiles[0]
    ov = info.default_overlap() if overlap is None else overlap
    stats = DenoiseStats(
        model=model.label,
        inputs=info.inputs,
        tiling=tiling,
        tile=max(tiles0[0].y.size, tiles0[0].x.size),
        overlap=ov if tiling == "sliding" else 0,
        tiles=count[1],
        batches=batches,
        exposure=exposure,
        seconds=time.perf_counter() - start,
        input_report=report,
        coarse=use_coarse,
        flips=flips,
        prefiltered=tuple(g for pre in pres for g in pre.info.inputs),
    )
    return DenoiseResult(image=image, stats=stats)


def usable_passes(passes: set[str], opts: Options) -> set[str]:
    """The passes a model may be picked for: those present that the user did not turn off."""
    return passes - opts.guides_off


def check_pass_options(model: Model, opts: Options) -> None:
    """Raise when ``model`` needs a pass the user turned off."""
    for name in sorted(opts.guides_off & set(model.info.inputs)):
        raise DenoiseError(f"model {model.label} needs the {name} pass, but 'Use {name.title()}' is off")


def denoise_frame(
    model: Model,
    frame: Frame,
    opts: Options,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> DenoiseResult:
    """Denoise one frame as ``opts`` say (the passes the user turned off are not fed)."""
    check_pass_options(model, opts)
    return denoise(
        model,
        frame.rgba,
        frame.albedo if opts.use_albedo else None,
        frame.normal if opts.use_normal else None,
        progress=progress,
        cancel=cancel,
        **opts.denoise_args,
    )
