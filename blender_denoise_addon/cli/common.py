"""What the denoising commands share: one option group, the options it makes, output names, the
lines they print, and the denoising of a sequence (``denoise-image`` and ``render-denoise --temporal``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..core import catalog
from ..core.defaults import DEFAULT_QUALITY, QUALITY, TEMPORAL, TILING, TILING_MODES
from ..core.denoise import DenoiseStats
from ..core.errors import DenoiseError
from ..core.imageio import IMAGE_SUFFIXES, image_size, read_image, write_image
from ..core.options import Options
from ..core.temporal import TemporalResult, TemporalStream, check_motion


def add_denoise_arguments(
    p: argparse.ArgumentParser, *, passes: bool = False, temporal: bool = True, ray: bool = True
) -> None:
    """The denoising options of ``denoise-image``, ``render-denoise`` and ``demo``."""
    g = p.add_argument_group("denoising")
    g.add_argument("--model", help="ONNX model (default: the bundled model that fits the passes)")
    g.add_argument("--tiling", choices=TILING_MODES, default=TILING.mode, help="full frame, grid tiles or "
                   "sliding window (default %(default)s)")  # fmt: skip
    g.add_argument("--tile", type=int, help=f"tile size in pixels (default: {TILING.auto_tile_text})")
    g.add_argument("--overlap", type=int, help="sliding-window overlap in pixels (default: receptive field - 1, exact)")
    g.add_argument("--batch", type=int, default=TILING.batch, help="tiles per inference call (default %(default)s)")
    g.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    g.add_argument("--quality", choices=tuple(QUALITY), default=DEFAULT_QUALITY, help="; ".join(
        f"{k}: {q.description}" for k, q in QUALITY.items()) + " (default %(default)s)")  # fmt: skip
    if passes:
        g.add_argument("--no-albedo", action="store_true", help="don't feed the albedo pass")
        g.add_argument("--no-normal", action="store_true", help="don't feed the normal pass")
    if temporal:
        g.add_argument("--temporal", action="store_true", help="denoise each frame of a sequence with its "
                       "neighbours (needs the Vector pass, and Depth; docs/temporal.md)")  # fmt: skip
        g.add_argument("--radius", type=int, default=TEMPORAL.radius, help="--temporal: neighbours on each "
                       "side of a frame (default %(default)s)")  # fmt: skip
    if ray:
        g.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="spread the work over a Ray cluster: "
                       "a local one, or ADDRESS (auto, HOST:PORT, ray://HOST:PORT); Ray is optional: "
                       "pip install -r requirements/ray.txt")  # fmt: skip


def denoise_options(args: argparse.Namespace) -> Options:
    """The options of :func:`add_denoise_arguments` as the core takes them, checked once before
    any frame (a bad one is one error line and nothing made; too many threads are capped, said)."""
    radius = getattr(args, "radius", TEMPORAL.radius)
    if radius < 1:
        raise DenoiseError(f"--radius must be at least 1, got {radius}")
    opts, notes = Options(
        tiling=args.tiling,
        tile=args.tile,
        overlap=args.overlap,
        batch=args.batch,
        threads=args.threads,
        use_albedo=not getattr(args, "no_albedo", False),
        use_normal=not getattr(args, "no_normal", False),
        quality=args.quality,
        model_path=args.model,
        temporal=getattr(args, "temporal", False),
        radius=radius,
    ).checked()
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return opts


def output_paths(names: list[str], output: str, fmt: str | None, single: bool, make: bool = True) -> list[Path]:
    """Where each output goes: ``output`` itself when ``single`` (one input, not a folder) and it
    names an image file, else ``output/NAME`` (``fmt`` replaces each name's extension). The
    folder is made here (``make``), once every name is known to be fine; else by the first write."""
    if not output.strip():
        raise DenoiseError("-o/--output is empty: name an output file or folder")
    out = Path(output)
    suffix = out.suffix.lower()
    if single and suffix and not out.is_dir():
        if suffix not in IMAGE_SUFFIXES:
            raise DenoiseError(f"{out}: unsupported output format {out.suffix!r} (use .exr or .png, or a folder)")
        return [out]
    if suffix in IMAGE_SUFFIXES:
        raise DenoiseError(f"{len(names)} outputs need an output folder, not the file {out}")
    paths = [out / (Path(n).stem + f".{fmt}" if fmt else n) for n in names]
    if len(set(paths)) != len(paths):
        raise DenoiseError("two inputs would write the same output name; denoise them into separate folders")
    if not make:
        return paths
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DenoiseError(f"cannot create output folder {out}: {e.strerror or e}") from None
    return paths


@contextlib.contextmanager
def removed_if_empty(folder: Path) -> Iterator[None]:
    """A folder this command makes goes again when nothing was written into it (an error before
    the first frame, a stop, a full disk): a failed run leaves no empty folder behind."""
    existed = folder.exists()
    try:
        yield
    finally:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            with contextlib.suppress(OSError):
                folder.rmdir()


def parse_frames(spec: str | None, current: int) -> list[int]:
    """``N`` or ``A-B`` (default: ``current``)."""
    if not spec:
        return [current]
    try:
        a, sep, b = spec.partition("-")
        start, end = int(a), int(b) if sep else int(a)
    except ValueError:
        raise DenoiseError(f"--frames {spec!r}: use N or A-B") from None
    if end < start:
        raise DenoiseError(f"--frames {spec!r}: end before start")
    return list(range(start, end + 1))


def bars_off(quiet: bool) -> bool:
    """Progress bars only on a terminal: a farm's log (no TTY) gets plain lines, no cursor escapes."""
    return quiet or not sys.stderr.isatty()


# -- what the denoising commands print and how a sequence is denoised ---------------------------


def summary(src: Path, dst: Path, s: DenoiseStats, extra: str = "") -> str:
    return (
        f"{src.name} -> {dst} | model {s.model} ({','.join(s.inputs)}) | {s.tiles_text}{extra}"
        f" | {s.seconds:.2f} s | {s.input_report}"
    )


def temporal_summary(src: Path, dst: Path, r: TemporalResult) -> str:
    s = replace(r.result.stats, seconds=r.seconds)
    return summary(src, dst, s, f" | temporal: {r.neighbours} neighbours, reuse {r.reuse:.2f}")


def denoise_sequence(
    frames: list[tuple[tuple[str, int], Path, Path]],
    opts: Options,
    write: set[Path] | None = None,
    motion_blur: bool = False,
) -> tuple[int, list[str]]:
    """Denoise ``frames`` ((name, number), input, output) temporally; write the outputs (all, or those
    in ``write``) as they complete. Returns (failures, lines to print), printing as it goes. Errors
    and warnings count only for the frames written: on Ray a chunk's neighbours belong to the
    chunks that write them, which report them. ``motion_blur``: the frames were rendered with it on."""
    failures = 0
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr, flush=True)

    stream: TemporalStream | None = None
    where: dict[int, tuple[Path, Path]] = {}
    shot: str | None = None

    def fail(src: Path, dst: Path, e: DenoiseError) -> None:
        nonlocal failures
        if write is None or dst in write:
            failures += 1
            say(f"error: {named(src, e)}")

    def emit(results: list[TemporalResult]) -> None:
        for r in results:
            src, dst = where.pop(r.number)
            if write is None or dst in write:
                for w in r.warnings:
                    say(f"warning: {w}")
                try:
                    write_image(dst, r.result.image)
                except DenoiseError as e:  # this frame's own output: the others go on
                    fail(src, dst, e)
                    continue
                say(temporal_summary(src, dst, r))

    odd = odd_sizes([(key, src) for key, src, _ in frames])
    for (name, number), src, dst in frames:
        if src in odd:
            fail(src, dst, DenoiseError(odd[src]))
            continue
        try:
            frame = read_image(src)
            check_motion(frame)
            if stream is None:
                model = catalog.model_for(opts, frame.passes)
                stream = TemporalStream.from_options(model, opts, motion_blur=motion_blur)
                for note in stream.notes:
                    say(f"warning: {note}")
            if name != shot:  # another shot: nothing crosses over
                emit(stream.finish())
                shot = name
            where[number] = (src, dst)
            emit(stream.push(number, frame))
        except DenoiseError as e:
            where.pop(number, None)
            fail(src, dst, e)
    if stream is not None:
        emit(stream.finish())
    return failures, lines


def named(src: Path, e: DenoiseError) -> str:
    """The error, naming the frame it is about (once)."""
    text = str(e)
    return text if str(src) in text or src.name in text else f"{src}: {text}"


def odd_sizes(frames: list[tuple[tuple[str, int], Path]]) -> dict[Path, str]:
    """Frames whose size differs from the most common size of their shot, with why: a sequence
    needs one size, and the odd frame is the one to refuse, wherever it falls in the shot."""
    from collections import Counter

    shots: dict[str, list[tuple[Path, tuple[int, int] | None]]] = {}
    for (name, _), src in frames:
        shots.setdefault(name, []).append((src, image_size(src)))
    odd = {}
    for members in shots.values():
        counts = Counter(size for _, size in members if size is not None)
        if len(counts) < 2:
            continue
        (w, h), n = counts.most_common(1)[0]
        for src, size in members:
            if size is not None and size != (w, h):
                odd[src] = (
                    f"{src}: frame is {size[0]}x{size[1]}, the other {n} frames of the shot are {w}x{h}; "
                    "a sequence needs one size"
                )
    return odd


def report_failures(failures: int, total: int) -> int:
    """The run's last line and exit status, the same for local and Ray runs."""
    if failures:
        print(f"error: {failures} of {total} images failed", file=sys.stderr)
        return 1
    return 0
