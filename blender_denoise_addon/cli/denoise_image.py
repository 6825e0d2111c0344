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
from ..core.imageio import IMAGE_SUFFIXES, Frame, image_size, read_image, write_image
from ..core.model import load_model
from ..core.options import Options
from ..core.temporal import TemporalResult, TemporalStream, check_motion, sequence_number
from .common import add_denoise_arguments, bars_off, denoise_options, output_paths, removed_if_empty
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


def report_failures(failures: int, total: int) -> int:
    """The run's last line and exit status, the same for local and Ray runs."""
    if failures:
        print(f"error: {failures} of {total} images failed", file=sys.stderr)
        return 1
    return 0


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
    frames: list[tuple[tuple[str, int], Path, Path]], opts: Options, address: str | None, quiet: bool, chunk: int = 0
) -> int:
    """denoise-image --temporal on Ray: the sequence in chunks, each task with ``radius`` frames of
    its neighbours on either side, so every frame sees the window a local run gives it and the
    files are the same."""
    ray, remote, cpus = on_ray(address, denoise_chunk, WORKER_NEEDS)
    size = chunk or max(2 * opts.radius, -(-len(frames) // cpus))
    opts = replace(opts, threads=opts.threads or 1)
    starts = iter(range(0, len(frames), size))
    refs: dict[Any, list[tuple[tuple[str, int], Path, Path]]] = {}

    def submit() -> bool:
        start = next(starts, None)
        if start is None:
            return False
        core = frames[start : start + size]
        ctx = frames[max(0, start - opts.radius) : start + size + opts.radius]
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
