"""``denoise-image``: denoise EXR/PNG files or folders without Blender."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core import catalog
from ..core.defaults import TILING, TILING_MODES
from ..core.denoise import denoise
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
    p.add_argument(
        "--format", choices=("exr", "png"), help="output format for folder outputs (default: same as each input)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    inputs = collect_inputs(args.inputs)
    outputs = output_paths(inputs, args.output, args.format, any(Path(i).is_dir() for i in args.inputs))
    for src, dst in zip(inputs, outputs, strict=False):
        if src.resolve() == dst.resolve():
            raise DenoiseError(f"output {dst} would overwrite its input")
    fixed: Model | None = load_model(args.model, threads=args.threads) if args.model else None
    by_passes: dict[frozenset[str], Model] = {}
    failures = 0
    files_bar = tqdm(total=len(inputs), unit="img", disable=args.quiet or len(inputs) == 1, file=sys.stderr)
    for src, dst in zip(inputs, outputs, strict=False):
        try:
            frame = read_image(src)
            model = fixed
            if model is None:
                key = frozenset(frame.passes)
                if key not in by_passes:
                    by_passes[key] = catalog.pick_model(key, threads=args.threads)
                model = by_passes[key]
            with tqdm(total=0, unit="tile", desc=src.name, leave=False, disable=args.quiet, file=sys.stderr) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                result = denoise(
                    model,
                    frame.rgba,
                    frame.albedo,
                    frame.normal,
                    tiling=args.tiling,
                    tile=args.tile,
                    overlap=args.overlap,
                    batch=args.batch,
                    progress=progress,
                )
            write_image(dst, result.image)
        except DenoiseError as e:
            failures += 1
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        finally:
            files_bar.update(1)
        s = result.stats
        tqdm.write(
            f"{src.name} -> {dst} | model {s.model} ({','.join(s.inputs)}) | {s.tiling} {s.tiles} tiles"
            f" | {s.seconds:.2f} s | {s.input_report}",
            file=sys.stderr,
        )
    files_bar.close()
    if failures:
        print(f"error: {failures} of {len(inputs)} images failed", file=sys.stderr)
        return 1
    return 0
