"""What the denoising commands share: one option group, the options it makes, output names."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from ..core.defaults import DEFAULT_QUALITY, QUALITY, TEMPORAL, TILING, TILING_MODES
from ..core.errors import DenoiseError
from ..core.imageio import IMAGE_SUFFIXES
from ..core.options import Options


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
