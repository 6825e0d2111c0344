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


@dataclass
class _Runner:
    """How tiles are run for one denoise, and its progress: ``flips`` averaged, ``batch`` tiles a
    call, ``done`` of ``total`` tiles so far (reported to ``progress``), ``batches`` run."""

    flips: int
    batch: int
    total: int
    progress: ProgressFn | None = None
    cancel: CancelFn | None = None
    done: int = 0
    batches: int = 0

    def start(self) -> None:
        if self.progress:
            self.progress(0, self.total)

    def run(
        self,
        model: Model,
        tiles: list[Tile],
        make_input: Callable[[Tile], np.ndarray],
        finish: Callable[[np.ndarray], np.ndarray],
        out: np.ndarray,
        normal_at: int | None = None,
        normal_out: bool = False,
    ) -> None:
        """Run ``model`` on ``tiles`` into ``out`` (H x W x C): ``make_input`` builds a tile's network
        input, ``finish`` maps a kept (h x w x C) network output back. With flips, each tile is also
        run mirrored and the outputs averaged (``normal_at``: the input's normal channels, turned with
        the image; ``normal_out``: the output is a normal too)."""
        variants = FLIP_SETS[self.flips]
        for b0 in range(0, len(tiles), self.batch):
            if self.cancel is not None and self.cancel():
                raise DenoiseCancelled(f"cancelled after {self.done} of {self.total} tiles")
            group = tiles[b0 : b0 + self.batch]
            parts = [make_input(t) for t in group]
            x = parts[0][None] if len(parts) == 1 else np.stack(parts)  # one tile: a view, no copy of the frame
            y = model.run(x)
            for fy, fx in variants[1:]:  # undo each flip on the output
                y += _flipped(model.run(_flipped(x, fy, fx, normal_at)), fy, fx, normal_at if normal_out else None)
            if len(variants) > 1:
                y /= len(variants)
            self.batches += 1
            for t, yt in zip(group, y, strict=False):
                ky = slice(t.y.keep0 - t.y.origin, t.y.keep1 - t.y.origin)
                kx = slice(t.x.keep0 - t.x.origin, t.x.keep1 - t.x.origin)
                _accumulate_tile(out, t, finish(yt[:, ky, kx].transpose(1, 2, 0)))
            self.done += len(group)
            if self.progress:
                self.progress(self.done, self.total)


def _accumulate_tile(out: np.ndarray, t: Tile, lin: np.ndarray) -> None:
    """A tile's kept output into ``out``, weighted where sliding-window tiles overlap."""
    region = out[t.y.keep0 : t.y.keep1, t.x.keep0 : t.x.keep1]
    region += lin if t.weights is None else lin * t.weights[..., None]


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
    pre: Model, guides: dict[str, np.ndarray], tiles: list[Tile], runner: _Runner
) -> dict[str, np.ndarray]:
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
    runner.run(pre, tiles, make_input, finish, out, at, normal_out=at is not None)
    return {g: clip_guide(g, out[..., 3 * i : 3 * i + 3]) for i, g in enumerate(names)}


def prefilter(pre: Model, guides: dict[str, np.ndarray], flips: int = 1) -> dict[str, np.ndarray]:
    """Whole guides (name -> H x W x >= 3) through a prefilter model, in one tile."""
    tiles = _Plan("full", None, None).tiles(pre, *next(iter(guides.values())).shape[:2])
    return _prefilter_guides(pre, guides, tiles, _Runner(flips, 1, len(tiles)))


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
    color = np.asarray(color)
    height, width = _check_inputs(model, color)
    albedo = _check_pass("albedo", albedo, (height, width), "albedo" in info.inputs)
    normal = _check_pass("normal", normal, (height, width), "normal" in info.inputs)
    check_tiling(tiling, tile, overlap, batch)
    if flips not in FLIP_SETS:
        raise DenoiseError(f"flips must be one of {', '.join(map(str, FLIP_SETS))}, got {flips}")

    # The plan: every tile of every step is known first, so progress counts them all.
    plan = _Plan(tiling, tile, overlap)
    use_coarse = bool(coarse) and cp.applies(height, width)
    full_tiles = plan.tiles(model, height, width)
    half_tiles = plan.tiles(model, *cp.half_shape(height, width)) if use_coarse else []
    guides = {g: arr for g, arr in (("albedo", albedo), ("normal", normal)) if arr is not None}
    # Each prefilter whose guides are all fed (a pass the user turned off is not fed, so not cleaned).
    pres = [(pre, plan.tiles(pre, height, width)) for pre in model.prefilters if set(pre.info.inputs) <= set(guides)]
    total = len(full_tiles) + len(half_tiles) + sum(len(t) for _, t in pres)
    runner = _Runner(flips, batch, total, progress, cancel)
    runner.start()

    report = count_bad(color)
    exposure = frame_exposure(color, info.transfer)
    for pre, tiles in pres:
        guides |= _prefilter_guides(pre, guides, tiles, runner)
    albedo, normal = guides.get("albedo"), guides.get("normal")
    # First the coarse pass, so its half-size inputs are freed before the full-size output exists.
    coarse_out = _coarse_pass(model, runner, half_tiles, color, albedo, normal) if use_coarse else None
    out = _run_level(model, runner, full_tiles, color, albedo, normal, exposure)
    if coarse_out is not None:
        cp.correct(out, *coarse_out)
        del coarse_out

    image = out if color.shape[2] == 3 else np.concatenate([out, color[..., 3:4].astype(np.float32)], axis=-1)
    ov = info.default_overlap() if overlap is None else overlap
    stats = DenoiseStats(
        model=model.label,
        inputs=info.inputs,
        tiling=tiling,
        tile=max(full_tiles[0].y.size, full_tiles[0].x.size),
        overlap=ov if tiling == "sliding" else 0,
        tiles=total,
        batches=runner.batches,
        exposure=exposure,
        seconds=time.perf_counter() - start,
        input_report=report,
        coarse=use_coarse,
        flips=flips,
        prefiltered=tuple(g for pre, _ in pres for g in pre.info.inputs),
    )
    return DenoiseResult(image=image, stats=stats)


def _check_inputs(model: Model, color: np.ndarray) -> tuple[int, int]:
    """(height, width) of a frame ``model`` can denoise; raises for anything else."""
    if model.info.role != "denoiser":
        raise DenoiseError(f"{model.label} is a guide prefilter ({model.info.role}), not a denoiser")
    if color.ndim != 3 or color.shape[2] not in (3, 4):
        raise DenoiseError(f"color must be H x W x 3 or 4, got shape {color.shape}")
    height, width = color.shape[:2]
    if height < 1 or width < 1:
        raise DenoiseError(f"image is empty ({width}x{height})")
    return height, width


def _run_level(
    model: Model,
    runner: _Runner,
    tiles: list[Tile],
    color: np.ndarray,
    albedo: np.ndarray | None,
    normal: np.ndarray | None,
    exposure: float,
) -> np.ndarray:
    """The network over one frame (full or half size) in ``tiles``: H x W x 3 linear."""
    info = model.info

    def make_input(t: Tile) -> np.ndarray:
        return _network_input(t, color, albedo, normal, info.transfer, exposure, info.padding)

    def finish(y: np.ndarray) -> np.ndarray:
        lin = tf.inverse(y, info.transfer, exposure)
        np.copyto(lin, np.float32(0), where=~np.isfinite(lin))
        return lin

    out = np.zeros((*color.shape[:2], 3), np.float32)
    normal_at = 3 * info.inputs.index("normal") if normal is not None else None
    runner.run(model, tiles, make_input, finish, out, normal_at)
    return out


def _coarse_pass(
    model: Model,
    runner: _Runner,
    tiles: list[Tile],
    color: np.ndarray,
    albedo: np.ndarray | None,
    normal: np.ndarray | None,
) -> tuple[np.ndarray, float]:
    """The half-resolution denoise (4x the samples a pixel) and the log offset its correction uses."""
    lo_color = cp.halve(color, _sanitize_inplace)
    lo_albedo = None if albedo is None else cp.halve(albedo, lambda x: clip_guide("albedo", x))
    lo_normal = None if normal is None else cp.halve(normal, lambda x: clip_guide("normal", x))
    level = tf.autoexposure(lo_color)  # from the half frame: no full-size temporaries later
    e = level if model.info.transfer in tf.EXPOSED_TRANSFERS else 1.0
    return _run_level(model, runner, tiles, lo_color, lo_albedo, lo_normal, e), cp.log_offset(level)


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
