"""``denoise-image``: denoise EXR/PNG files or folders without Blender."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core import catalog
from ..core.defaults import TILING, TILING_MODES
from ..core.denoise import DenoiseStats, denoise
from ..core.errors import DenoiseError
from ..core.imageio import IMAGE_SUFFIXES, read_image, write_image
from ..core.model import Model, load_model

HELP = "Denoise rendered images (Blender multilayer EXR, plain EXR, PNG) with an ONNX model."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of .exr/.png frames")
    p.add_argument(
        "-o", "--output", required=True, help="output file (one input) or folder (several inputs or a folder)"
    )
    p.add_argument("--model", help="ONNX model (default: the bundled model that fits the passes in each image)")
    p.add_argument(
        "--tiling",
        choices=TILING_MODES,
        default=TILING.mode,
        help="full frame, grid tiles or sliding window (default %(default)s)",
    )
    p.add_argument(
        "--tile",
        type=int,
        help=f"tile size in pixels (default: {TILING.auto_tile_text})",
    )
    p.add_argument("--overlap", type=int, help="sliding-window overlap in pixels (default: receptive field - 1, exact)")
    p.add_argument("--batch", type=int, default=TILING.batch, help="tiles per inference call (default %(default)s)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    p.add_argument("--no-coarse", action="store_true", help="skip the coarse pass (about a quarter faster)")
    p.add_argument(
        "--format", choices=("exr", "png"), help="output format for folder outputs (default: same as each input)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="one task per frame on a Ray cluster: a local one, or ADDRESS (auto, HOST:PORT, ray://HOST:PORT); "
        "Ray is optional: pip install -r requirements/ray.txt",
    )


def collect_inputs(items: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise DenoiseError(f"no .exr or .png files in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DenoiseError(f"input not found: {path}")
    return files


def output_paths(inputs: list[Path], output: str, fmt: str | None, folder_input: bool) -> list[Path]:
    out = Path(output)
    if len(inputs) == 1 and not folder_input and out.suffix.lower() in IMAGE_SUFFIXES:
        return [out]
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise DenoiseError(f"{len(inputs)} inputs need an output folder, not the file {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DenoiseError(f"cannot create output folder {out}: {e.strerror or e}") from None
    paths = [out / (p.stem + (f".{fmt}" if fmt else p.suffix.lower())) for p in inputs]
    if len(set(paths)) != len(paths):
        raise DenoiseError("two inputs would write the same output name; denoise them into separate folders")
    return paths


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    """What denoising one file needs from the command line (plain data: it travels to Ray workers)."""
    keys = ("model", "tiling", "tile", "overlap", "batch", "threads")
    return {k: getattr(args, k) for k in keys} | {"coarse": not args.no_coarse}


# Loaded models by (file or passes, threads): a process denoising many frames (or a Ray worker
# running many tasks) builds each session once.
_models: dict[tuple[Any, int | None], Model] = {}


def _model_for(frame: Any, options: dict[str, Any]) -> Model:
    key = (options["model"] or frozenset(frame.passes), options["threads"])
    if key not in _models:
        if options["model"]:
            _models[key] = load_model(options["model"], threads=options["threads"])
        else:
            _models[key] = catalog.pick_model(frozenset(frame.passes), threads=options["threads"])
    return _models[key]


def denoise_file(src: Path, dst: Path, options: dict[str, Any], quiet: bool = True) -> DenoiseStats:
    """Read ``src``, denoise it, write ``dst`` (atomically); raises DenoiseError."""
    from tqdm import tqdm

    frame = read_image(src)
    model = _model_for(frame, options)
    with tqdm(total=0, unit="tile", desc=src.name, leave=False, disable=quiet, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        result = denoise(
            model,
            frame.rgba,
            frame.albedo,
            frame.normal,
            tiling=options["tiling"],
            tile=options["tile"],
            overlap=options["overlap"],
            batch=options["batch"],
            coarse=options["coarse"],
            progress=progress,
        )
    write_image(dst, result.image)
    return result.stats


def summary(src: Path, dst: Path, s: DenoiseStats) -> str:
    return (
        f"{src.name} -> {dst} | model {s.model} ({','.join(s.inputs)}) | {s.tiles_text}"
        f" | {s.seconds:.2f} s | {s.input_report}"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    inputs = collect_inputs(args.inputs)
    outputs = output_paths(inputs, args.output, args.format, any(Path(i).is_dir() for i in args.inputs))
    for src, dst in zip(inputs, outputs, strict=False):
        if src.resolve() == dst.resolve():
            raise DenoiseError(f"output {dst} would overwrite its input")
    options = options_from(args)
    if args.model:
        load_model(args.model)  # a missing or broken model fails once, before any frame
    if args.ray is not None:
        from .distributed import denoise_frames

        return denoise_frames(list(zip(inputs, outputs, strict=True)), options, args.ray or None, args.quiet)
    failures = 0
    files_bar = tqdm(total=len(inputs), unit="img", disable=args.quiet or len(inputs) == 1, file=sys.stderr)
    for src, dst in zip(inputs, outputs, strict=False):
        try:
            stats = denoise_file(src, dst, options, quiet=args.quiet)
        except DenoiseError as e:
            failures += 1
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        finally:
            files_bar.update(1)
        tqdm.write(summary(src, dst, stats), file=sys.stderr)
    files_bar.close()
    return report_failures(failures, len(inputs))


def report_failures(failures: int, total: int) -> int:
    """The run's last line and exit status, the same for local and Ray runs."""
    if failures:
        print(f"error: {failures} of {total} images failed", file=sys.stderr)
        return 1
    return 0
