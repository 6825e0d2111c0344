"""Denoising a frame with a loaded model: input preparation, tiling, batching."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import coarse as cp
from . import transfer as tf
from .defaults import COARSE, EXPOSURE, TILING
from .errors import DenoiseCancelled, DenoiseError, MissingPassError
from .imageio import Frame
from .model import Model
from .options import Options
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

    @property
    def tiles_text(self) -> str:
        return f"{self.tiling} {self.tiles} tiles" + (" (with the coarse pass)" if self.coarse else "")


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


def prepare_albedo(albedo: np.ndarray) -> np.ndarray:
    """Blender's Denoising Albedo, NaN -> 0, clipped to [0, 1]. Returns a new float32 array."""
    return _clip_inplace(np.array(albedo, dtype=np.float32), 0.0, 1.0)


def prepare_normal(normal: np.ndarray) -> np.ndarray:
    """Camera-space normals as Blender writes them, kept in [-1, 1]; NaN -> 0. Returns a new float32 array."""
    return _clip_inplace(np.array(normal, dtype=np.float32), -1.0, 1.0)


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


def _copy_tile(dst: np.ndarray, src: np.ndarray, tile: Tile) -> None:
    """dst (3 x h x w) = the tile's window of src (H x W x >= 3), mirrored outside the image.

    Copies the inside straight from views; only the few padding rows and columns are gathered.
    """
    d = dst.transpose(1, 2, 0)
    h, w = src.shape[:2]
    for r0, r1, rows in _segments(tile.y.origin, tile.y.size, h):
        band = src[rows] if isinstance(rows, slice) else src.take(rows, axis=0)
        for c0, c1, cols in _segments(tile.x.origin, tile.x.size, w):
            d[r0:r1, c0:c1] = band[:, cols, :3] if isinstance(cols, slice) else band[:, cols][..., :3]


def _network_input(
    tile: Tile,
    color: np.ndarray,
    albedo: np.ndarray | None,
    normal: np.ndarray | None,
    transfer: str,
    exposure: float,
) -> np.ndarray:
    """C x h x w float32 network input for one tile, prepared as the contract says (in place: no frame copies)."""
    extra = [p for p in (albedo, normal) if p is not None]
    out = np.empty((3 + 3 * len(extra), tile.y.size, tile.x.size), np.float32)
    _copy_tile(out[0:3], color, tile)
    c = _sanitize_inplace(out[0:3])
    y = tf.forward(c, transfer, exposure, inplace=True)
    if y is not c:
        out[0:3] = y
    if albedo is not None:
        _copy_tile(out[3:6], albedo, tile)
        _clip_inplace(out[3:6], 0.0, 1.0)
    if normal is not None:
        _copy_tile(out[6:9], normal, tile)
        _clip_inplace(out[6:9], -1.0, 1.0)
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


def _run_tiles(
    model: Model,
    tiles: list[Tile],
    color: np.ndarray,
    albedo: np.ndarray | None,
    normal: np.ndarray | None,
    out: np.ndarray,
    exposure: float,
    batch: int,
    count: tuple[int, int],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> int:
    """Denoise ``tiles`` of one frame into ``out``; ``count``: (tiles done before, tiles in all). Returns batches."""
    info = model.info
    done, total = count
    batches = 0
    for b0 in range(0, len(tiles), batch):
        if cancel is not None and cancel():
            raise DenoiseCancelled(f"cancelled after {done + b0} of {total} tiles")
        group = tiles[b0 : b0 + batch]
        parts = [_network_input(t, color, albedo, normal, info.transfer, exposure) for t in group]
        x = parts[0][None] if len(parts) == 1 else np.stack(parts)  # one tile: a view, no copy of the frame
        y = model.run(x)
        batches += 1
        for t, yt in zip(group, y, strict=False):
            ky = slice(t.y.keep0 - t.y.origin, t.y.keep1 - t.y.origin)
            kx = slice(t.x.keep0 - t.x.origin, t.x.keep1 - t.x.origin)
            lin = tf.inverse(yt[:, ky, kx].transpose(1, 2, 0), info.transfer, exposure)
            np.copyto(lin, np.float32(0), where=~np.isfinite(lin))
            w = t.weights
            region = out[t.y.keep0 : t.y.keep1, t.x.keep0 : t.x.keep1]
            region += lin if w is None else lin * w[..., None]
        if progress:
            progress(done + min(b0 + batch, len(tiles)), total)
    return batches


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
    coarse: bool = COARSE.enabled,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> DenoiseResult:
    """Denoise one frame. ``color`` is H x W x 3 or 4 linear; alpha passes through.

    ``tile=None`` picks :func:`~.tiling.auto_tile`: one tile for frames up to 1920x1088.
    ``coarse`` adds the coarse pass (:mod:`.coarse`) on frames of at least
    ``COARSE.min_side`` pixels a side. Extra passes the model does not take are ignored;
    missing ones raise MissingPassError. Memory beyond the input and output frames is
    bounded by ``batch`` tiles and, with the coarse pass, a quarter-size frame.
    """
    start = time.perf_counter()
    info = model.info
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] not in (3, 4):
        raise DenoiseError(f"color must be H x W x 3 or 4, got shape {color.shape}")
    height, width = color.shape[:2]
    if height < 1 or width < 1:
        raise DenoiseError(f"image is empty ({width}x{height})")
    albedo = _check_pass("albedo", albedo, (height, width), "albedo" in info.inputs)
    normal = _check_pass("normal", normal, (height, width), "normal" in info.inputs)
    if batch < 1:
        raise DenoiseError(f"batch must be at least 1, got {batch}")

    ov = info.default_overlap() if overlap is None else overlap
    if overlap is not None and overlap < 0:
        raise DenoiseError(f"overlap must be 0 or more, got {overlap}")
    if tile is not None and tile < 1:
        raise DenoiseError(f"tile size must be at least 1, got {tile}")
    shape = auto_tile(height, width, ov, info.alignment) if tile is None else (tile, tile)
    tiles = plan_tiles(height, width, tiling, shape, ov, info.alignment, info.halo)

    report = count_bad(color)
    exposure = frame_exposure(color, info.transfer)
    use_coarse = coarse and cp.applies(height, width)
    lo_tiles: list[Tile] = []
    if use_coarse:
        hh, hw = cp.half_shape(height, width)
        lo_shape = auto_tile(hh, hw, ov, info.alignment) if tile is None else (tile, tile)
        lo_tiles = plan_tiles(hh, hw, tiling, lo_shape, ov, info.alignment, info.halo)
    total = len(tiles) + len(lo_tiles)
    if progress:
        progress(0, total)
    batches = 0
    lo = None
    if use_coarse:  # first, so its half-size inputs are freed before the full-size output exists
        lo_color = cp.halve(color, _sanitize_inplace)
        lo_albedo = None if albedo is None else cp.halve(albedo, lambda a: _clip_inplace(a, 0.0, 1.0))
        lo_normal = None if normal is None else cp.halve(normal, lambda n: _clip_inplace(n, -1.0, 1.0))
        lo = np.zeros_like(lo_color)
        level = tf.autoexposure(lo_color)  # from the half frame: no full-size temporaries later
        eps = COARSE.eps * EXPOSURE.key / level
        lo_exposure = level if info.transfer in tf.EXPOSED_TRANSFERS else 1.0
        count = (0, total)
        batches += _run_tiles(
            model, lo_tiles, lo_color, lo_albedo, lo_normal, lo, lo_exposure, batch, count, progress, cancel
        )
        del lo_color, lo_albedo, lo_normal
    out = np.zeros((height, width, 3), np.float32)
    count = (len(lo_tiles), total)
    batches += _run_tiles(model, tiles, color, albedo, normal, out, exposure, batch, count, progress, cancel)
    if lo is not None:
        cp.correct(out, lo, eps)
        del lo

    image = out
    if color.shape[2] == 4:
        image = np.concatenate([out, color[..., 3:4].astype(np.float32)], axis=-1)
    stats = DenoiseStats(
        model=model.label,
        inputs=info.inputs,
        tiling=tiling,
        tile=max(tiles[0].y.size, tiles[0].x.size),
        overlap=ov if tiling == "sliding" else 0,
        tiles=total,
        batches=batches,
        exposure=exposure,
        seconds=time.perf_counter() - start,
        input_report=report,
        coarse=use_coarse,
    )
    return DenoiseResult(image=image, stats=stats)


def usable_passes(passes: set[str], opts: Options) -> set[str]:
    """The passes a model may be picked for: those present that the user did not turn off."""
    return passes - {name for name, on in (("albedo", opts.use_albedo), ("normal", opts.use_normal)) if not on}


def check_pass_options(model: Model, opts: Options) -> None:
    """Raise when ``model`` needs a pass the user turned off."""
    for name, on in (("albedo", opts.use_albedo), ("normal", opts.use_normal)):
        if name in model.info.inputs and not on:
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
