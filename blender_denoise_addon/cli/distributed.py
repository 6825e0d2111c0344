"""``--ray [ADDRESS]``: generate-dataset and denoise-image across a Ray cluster.

Ray is optional (requirements/ray.txt) and never in the extension zip. Without an address a
local Ray starts on this machine's cores; with one (``auto``, ``HOST:6379``, ``ray://HOST:10001``)
the command joins that cluster. A Ray that this process already started (``ray.init``) is used
as it is.

Where results go: the workers share no storage with the driver. Each task gets its inputs as
bytes (a dataset task needs only the settings), works in a temporary folder of its own, and
returns the finished files as bytes; the driver writes them under their real names through
temporary ones, a sample's record last, so a worker that dies mid-task leaves nothing in the
output and Ray runs the task again. Renders are deterministic, so the files are the same bytes
a local run writes (sample records differ only in their timings).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import DenoiseError
from ..core.options import Options

INSTALL_HINT = "pip install -r requirements/ray.txt (or pip install 'ray==2.60.0')"
RETRIES = 3  # a task whose worker dies runs again this many times
CONNECT_SECONDS = 10.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DenoiseError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _reachable(address: str) -> None:
    """Fail within seconds on an address nobody listens at (ray.init would retry for minutes)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise DenoiseError(f"--ray {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as e:
        raise DenoiseError(f"--ray {address}: cannot reach the cluster ({e.strerror or e})") from None


def connect(address: str | None) -> Any:
    """The ray module, connected: to ``address``, to a Ray this process started, or a new local one."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address:
        _reachable(address)
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    return ray


def check_workers(ray: Any, needed: tuple[str, ...]) -> None:
    """Refuse a cluster whose workers cannot import what the tasks need, naming the packages."""

    def missing(names: tuple[str, ...]) -> list[str]:  # defined here: pickled by value, runs without the project
        import importlib.util

        return [n for n in names if importlib.util.find_spec(n) is None]

    absent = ray.get(ray.remote(num_cpus=0)(missing).remote(needed))
    if absent:
        raise DenoiseError(
            f"the Ray workers lack {', '.join(absent)}: install them (and this project) where the workers run"
        )


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial" + path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def as_completed(ray: Any, refs: dict[Any, Any], window: int, submit: Callable[[], bool]) -> Iterator[tuple[Any, Any]]:
    """(key, result or exception) as tasks finish, keeping ``window`` tasks in flight."""
    while len(refs) < window and submit():
        pass
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        key = refs.pop(done[0])
        try:
            yield key, ray.get(done[0])
        except Exception as e:  # a task error (after Ray's retries): reported per item
            yield key, e
        while len(refs) < window and submit():
            pass


def _cause(e: BaseException) -> str:
    """A failed task's error in one line: the core's message as a local run prints it."""
    cause = getattr(e, "cause", None) or e
    text = str(cause) if isinstance(cause, DenoiseError) else f"{type(cause).__name__}: {cause}"
    return text.strip().splitlines()[-1][:500] if text.strip() else type(cause).__name__


# -- generate-dataset -----------------------------------------------------------------


def render_sample(settings: dict[str, Any], index: int, threads: int) -> dict[str, Any]:
    """One sample in a worker: rendered into a temporary folder, returned as {relative path: bytes}."""
    from ..dataset import files as df
    from ..dataset.spec import GenerateSettings
    from ..generator.run import DatasetJob

    kill = os.environ.get("AI_DENOISE_KILL_ONCE")  # tests: the first attempt dies mid-render
    with tempfile.TemporaryDirectory(prefix="ai_denoise_sample_") as tmp:
        fields: dict[str, Any] = {**settings, "out": Path(tmp)}
        job = DatasetJob(GenerateSettings(**fields), quiet=True, threads=threads)
        job.prepare()
        for step in job.sample_steps(index):
            if kill and step.what.startswith("noisy") and not Path(kill).exists():
                Path(kill).touch()
                os._exit(1)
        root = Path(tmp)
        files = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != df.DATASET_CONFIG
        }
        return {"files": files, "record": df.record_path(root, index).relative_to(root).as_posix(),
                "blender": job.dataset_identity()["blender"]}  # fmt: skip


def generate(settings: Any, address: str | None, quiet: bool) -> int:
    """generate-dataset's samples as Ray tasks; returns the exit code."""
    from dataclasses import asdict

    from tqdm import tqdm

    from ..generator.run import DatasetJob

    _ray()  # installed? before anything is written
    job = DatasetJob(settings, quiet=True)
    job.prepare()  # refuses a folder made with other settings, before any task runs
    blender = job.dataset_identity()["blender"]
    ray = connect(address)
    check_workers(ray, ("bpy", "blender_denoise_addon", "OpenEXR", "PIL"))
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(render_sample)
    fields = asdict(settings)
    todo = iter(job.todo)
    refs: dict[Any, int] = {}

    def submit() -> bool:
        index = next(todo, None)
        if index is None:
            return False
        refs[remote.remote(fields, index, 1)] = index
        return True

    print(f"{len(job.todo)} samples to render on Ray ({cpus} CPUs), into {settings.out}", file=sys.stderr)
    failed: list[str] = []
    t0 = time.perf_counter()
    with tqdm(total=len(job.todo), unit="sample", disable=quiet, file=sys.stderr) as bar:
        for index, result in as_completed(ray, refs, 2 * cpus, submit):
            if isinstance(result, Exception):
                failed.append(f"sample {index}: {_cause(result)}")
                tqdm.write(f"error: {failed[-1]}", file=sys.stderr)
            elif result["blender"] != blender:
                failed.append(f"sample {index}: a worker runs Blender {result['blender']}, this dataset {blender}")
                tqdm.write(f"error: {failed[-1]}", file=sys.stderr)
            else:
                record = result["record"]
                for rel, data in result["files"].items():
                    if rel != record:
                        write_atomic(job.root / rel, data)
                write_atomic(job.root / record, result["files"][record])  # last: marks the sample complete
            bar.update(1)
    job.finish()
    made = len(job.todo) - len(failed)
    hours = (time.perf_counter() - t0) / 3600
    rate = f", {made / hours:.0f} samples per hour" if made and hours > 0 else ""
    print(f"done: {made} samples rendered on Ray{rate}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(job.todo)} samples failed; run again to retry them", file=sys.stderr)
        return 1
    return 0


# -- denoise-image ----------------------------------------------------------------------


def denoise_bytes(path: str, data: bytes, out_suffix: str, opts: Options) -> tuple[bytes, Any]:
    """One frame in a worker: the input file's bytes in; the output file's bytes and the stats out."""
    from .denoise_image import denoise_file

    with tempfile.TemporaryDirectory(prefix="ai_denoise_frame_") as tmp:
        src, dst = Path(tmp) / Path(path).name, Path(tmp) / f"out{out_suffix}"
        src.write_bytes(data)
        try:
            stats = denoise_file(src, dst, opts)
        except DenoiseError as e:  # the same message as a local run: the real path, not the worker's copy
            raise DenoiseError(str(e).replace(str(src), path)) from None
        return dst.read_bytes(), stats


def denoise_frames(pairs: list[tuple[Path, Path]], opts: Options, address: str | None, quiet: bool) -> int:
    """denoise-image, one Ray task per frame; the same writes, per-frame errors and summary as locally."""
    from tqdm import tqdm

    from .denoise_image import report_failures, summary

    ray = connect(address)
    check_workers(ray, ("blender_denoise_addon", "onnxruntime", "OpenEXR", "PIL"))
    remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(denoise_bytes)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
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
    with tqdm(total=len(pairs), unit="img", disable=quiet or len(pairs) == 1, file=sys.stderr) as bar:
        for (src, dst), result in as_completed(ray, refs, 2 * cpus, submit):
            if isinstance(result, Exception):
                failures += 1
                tqdm.write(f"error: {_cause(result)}", file=sys.stderr)
            else:
                data, stats = result
                write_atomic(dst, data)
                tqdm.write(summary(src, dst, stats), file=sys.stderr)
            bar.update(1)
    return report_failures(failures, len(pairs))


# -- denoise-image --temporal -------------------------------------------------------------

Key = tuple[str, int]


def denoise_chunk(
    frames: list[tuple[Key, str, bytes]], keep: list[str], out_suffix: str, opts: Options
) -> tuple[dict[str, bytes], int, list[str]]:
    """Frames of a sequence in a worker (the chunk and its neighbours), as bytes; gives back the
    outputs of the names in ``keep`` (the chunk itself), the failures and the lines to print."""
    from .denoise_image import denoise_sequence

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


def denoise_sequence(
    frames: list[tuple[Key, Path, Path]], opts: Options, address: str | None, quiet: bool, chunk: int = 0
) -> int:
    """denoise-image --temporal on Ray: the sequence in chunks, each task with ``radius`` frames of
    its neighbours on either side, so every frame sees the window a local run gives it and the
    files are the same."""
    from .denoise_image import report_failures

    ray = connect(address)
    check_workers(ray, ("blender_denoise_addon", "onnxruntime", "OpenEXR", "PIL"))
    remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(denoise_chunk)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = chunk or max(2 * opts.radius, -(-len(frames) // cpus))
    opts = replace(opts, threads=opts.threads or 1)
    starts = iter(range(0, len(frames), size))
    refs: dict[Any, list[tuple[Key, Path, Path]]] = {}

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
            print(f"error: {_cause(result)}", file=sys.stderr)
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
