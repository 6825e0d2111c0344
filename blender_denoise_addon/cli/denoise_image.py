"""``denoise-image``: denoise EXR/PNG files or folders without Blender; ``--temporal``: a sequence."""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core import catalog
from ..core.denoise import DenoiseStats, denoise_frame
from ..core.errors import DenoiseError
from ..core.imageio import IMAGE_SUFFIXES, Frame, read_image, write_image
from ..core.model import load_model
from ..core.options import Options
from ..core.temporal import check_motion, sequence_number
from ..core.temporal import context as temporal_context
from .common import (
    add_denoise_arguments,
    bars_off,
    denoise_options,
    denoise_sequence,
    named,
    output_paths,
    removed_if_empty,
    report_failures,
    summary,
)
from .distributed import as_completed, on_ray, task_error, write_atomic

HELP = "Denoise rendered images (Blender multilayer EXR, plain EXR, PNG) with an ONNX model."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of .exr/.png frames")
    p.add_argument(
        "-o", "--output", required=True, help="output file (one input) or folder (several inputs or a folder)"
    )
    p.add_argument(
        "--format", choices=("exr", "png"), help="output format for folder outputs (default: same as each input)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_denoise_arguments(p)


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


def sequence_order(files: list[Path]) -> list[tuple[tuple[str, int], Path]]:
    """Frames of one or more shots, ordered by name and then frame number (``shot_0042.exr``)."""
    keyed = []
    for f in files:
        key = sequence_number(f.stem)
        if key is None:
            raise DenoiseError(f"--temporal: {f.name} has no frame number at the end of its name (like shot_0042.exr)")
        keyed.append((key, f))
    keyed.sort(key=lambda kf: kf[0])
    for (a, fa), (b, fb) in zip(keyed, keyed[1:], strict=False):
        if a == b:
            raise DenoiseError(f"--temporal: {fa.name} and {fb.name} are the same frame")
    if len(keyed) < 2:
        raise DenoiseError("--temporal needs a sequence of at least 2 frames; denoise a single frame without it")
    return keyed


def denoise_file(src: Path, dst: Path, opts: Options, quiet: bool = True) -> DenoiseStats:
    """Read ``src``, denoise it, write ``dst`` (atomically); raises DenoiseError."""
    from tqdm import tqdm

    frame = read_image(src)
    model = catalog.model_for(opts, frame.passes)
    with tqdm(total=0, unit="tile", desc=src.name, leave=False, disable=quiet, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        result = denoise_frame(model, frame, opts, progress=progress)
    write_image(dst, result.image)
    return result.stats


def run(args: argparse.Namespace) -> int:
    opts = denoise_options(args)
    inputs = collect_inputs(args.inputs)
    keys: list[tuple[str, int]] = []
    if opts.temporal:
        ordered = sequence_order(inputs)
        keys, inputs = [k for k, _ in ordered], [f for _, f in ordered]
    single = len(inputs) == 1 and not any(Path(i).is_dir() for i in args.inputs)
    if opts.model_path:
        load_model(opts.model_path)  # a missing or broken model fails once, before anything is made
    if opts.temporal:  # frames without vectors fail in one line, before anything is made
        first = _first_readable(inputs)
        if first is not None:
            check_motion(first)
    with removed_if_empty(Path(args.output)):
        return _write_outputs(args, opts, inputs, keys, single)


def _first_readable(inputs: list[Path]) -> Frame | None:
    """The first frame that reads (a damaged one is refused by name later, with the others going on)."""
    for src in inputs:
        try:
            return read_image(src)
        except DenoiseError:
            continue
    return None


def _write_outputs(
    args: argparse.Namespace, opts: Options, inputs: list[Path], keys: list[tuple[str, int]], single: bool
) -> int:
    from tqdm import tqdm

    names = [p.name for p in inputs]
    # On Ray the folder is made by the first write: a cluster that cannot be reached leaves nothing.
    outputs = output_paths(names, args.output, args.format, single, make=args.ray is None)
    for src, dst in zip(inputs, outputs, strict=False):
        if src.resolve() == dst.resolve():
            raise DenoiseError(f"output {dst} would overwrite its input")
    if args.ray is not None:
        if opts.temporal:
            frames = list(zip(keys, inputs, outputs, strict=True))
            return denoise_sequence_on_ray(frames, opts, args.ray or None, args.quiet)
        return denoise_frames_on_ray(list(zip(inputs, outputs, strict=True)), opts, args.ray or None, args.quiet)
    if opts.temporal:
        failures, _ = denoise_sequence(list(zip(keys, inputs, outputs, strict=True)), opts)
        return report_failures(failures, len(inputs))
    failures = 0
    quiet = bars_off(args.quiet)
    files_bar = tqdm(total=len(inputs), unit="img", disable=quiet or len(inputs) == 1, file=sys.stderr)
    for src, dst in zip(inputs, outputs, strict=False):
        try:
            stats = denoise_file(src, dst, opts, quiet=quiet)
        except DenoiseError as e:
            failures += 1
            tqdm.write(f"error: {named(src, e)}", file=sys.stderr)
            continue
        finally:
            files_bar.update(1)
        tqdm.write(summary(src, dst, stats), file=sys.stderr)
    files_bar.close()
    return report_failures(failures, len(inputs))


# -- on Ray (--ray) ------------------------------------------------------------------------

WORKER_NEEDS = ("blender_denoise_addon", "onnxruntime", "OpenEXR", "PIL")


def denoise_bytes(path: str, data: bytes, out_suffix: str, opts: Options) -> tuple[bytes, Any]:
    """One frame in a worker: the input file's bytes in; the output file's bytes and the stats out."""
    with tempfile.TemporaryDirectory(prefix="ai_denoise_frame_") as tmp:
        src, dst = Path(tmp) / Path(path).name, Path(tmp) / f"out{out_suffix}"
        src.write_bytes(data)
        try:
            stats = denoise_file(src, dst, opts)
        except DenoiseError as e:  # the same message as a local run: the real path, not the worker's copy
            raise DenoiseError(str(e).replace(str(src), path)) from None
        return dst.read_bytes(), stats


def denoise_frames_on_ray(pairs: list[tuple[Path, Path]], opts: Options, address: str | None, quiet: bool) -> int:
    """denoise-image, one Ray task per frame; the same writes, per-frame errors and summary as locally."""
    from tqdm import tqdm

    ray, remote, cpus = on_ray(address, denoise_bytes, WORKER_NEEDS)
    work = iter(pairs)
    refs: dict[Any, tuple[Path, Path]] = {}
    # One onnxruntime thread per task unless asked: the tasks are the parallelism.
    opts = replace(opts, threads=opts.threads or 1)

    def submit() -> bool:
        pair = next(work, None)
        if pair is None:
            return False
        src, dst = pair
        refs[remote.remote(str(src), src.read_bytes(), dst.suffix, opts)] = pair
        return True

    failures = 0
    with tqdm(total=len(pairs), unit="img", disable=bars_off(quiet) or len(pairs) == 1, file=sys.stderr) as bar:
        for (src, dst), result in as_completed(ray, refs, 2 * cpus, submit):
            if isinstance(result, Exception):
                failures += 1
                tqdm.write(f"error: {task_error(result)}", file=sys.stderr)
            else:
                data, stats = result
                write_atomic(dst, data)
                tqdm.write(summary(src, dst, stats), file=sys.stderr)
            bar.update(1)
    return report_failures(failures, len(pairs))


def denoise_chunk(
    frames: list[tuple[tuple[str, int], str, bytes]], keep: list[str], out_suffix: str, opts: Options
) -> tuple[dict[str, bytes], int, list[str]]:
    """Frames of a sequence in a worker (the chunk and its neighbours), as bytes; gives back the
    outputs of the names in ``keep`` (the chunk itself), the failures and the lines to print."""
    with tempfile.TemporaryDirectory(prefix="ai_denoise_chunk_") as tmp:
        root = Path(tmp)
        (root / "out").mkdir()
        todo = []
        for key, name, data in frames:
            src = root / name
            src.write_bytes(data)
            todo.append((key, src, root / "out" / (Path(name).stem + out_suffix)))
        wanted = {root / "out" / (Path(n).stem + out_suffix) for n in keep}
        failures, lines = denoise_sequence(todo, opts, write=wanted)
        out = {p.name: p.read_bytes() for p in wanted if p.is_file()}
        lines = [ln.replace(str(root / "out") + "/", "").replace(str(root) + "/", "") for ln in lines]
        return out, failures, lines


def denoise_sequence_on_ray(
    frames: list[tuple[tuple[str, int], Path, Path]], opts: Options, address: str | None, quiet: bool
) -> int:
    """denoise-image --temporal on Ray: the sequence in chunks, each task with the neighbours a
    stream needs on either side (:func:`~..core.temporal.context`), so every frame gets what a local
    run gives it and the files are the same."""
    ray, remote, cpus = on_ray(address, denoise_chunk, WORKER_NEEDS)
    size = max(2 * opts.radius, -(-len(frames) // cpus))
    opts = replace(opts, threads=opts.threads or 1)
    starts = iter(range(0, len(frames), size))
    refs: dict[Any, list[tuple[tuple[str, int], Path, Path]]] = {}

    def submit() -> bool:
        start = next(starts, None)
        if start is None:
            return False
        core = frames[start : start + size]
        before, after = temporal_context(opts.radius)
        ctx = frames[max(0, start - before) : start + size + after]
        payload = [(key, src.name, src.read_bytes()) for key, src, _ in ctx]
        refs[remote.remote(payload, [src.name for _, src, _ in core], core[0][2].suffix, opts)] = core
        return True

    failures = 0
    for core, result in as_completed(ray, refs, 2 * cpus, submit):
        if isinstance(result, Exception):
            failures += len(core)
            print(f"error: {task_error(result)}", file=sys.stderr)
            continue
        files, failed, lines = result
        for _, _src, dst in core:
            if dst.name in files:
                write_atomic(dst, files[dst.name])
        failures += failed
        for line in lines:
            if not quiet or line.startswith(("error", "warning")):
                print(line, file=sys.stderr)
    return report_failures(failures, len(frames))
