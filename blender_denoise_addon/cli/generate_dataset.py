"""``generate-dataset``: render random Cycles scenes into noisy/clean training pairs (needs bpy)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import DenoiseError
from ..dataset.spec import DEFAULT_LAYOUT_WEIGHTS, GenerateSettings, validate
from .common import bars_off
from .distributed import as_completed, on_ray, require_ray, task_error, write_atomic

HELP = (
    "Render random Cycles scenes, or crops of your own .blend scenes (--scene), as noisy (low spp) and clean "
    "(high spp) training pairs. Resumable, shardable."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder (created; a rerun resumes it)")
    p.add_argument("--count", type=int, required=True, metavar="N", help="number of samples in the whole dataset")
    p.add_argument(
        "--resolution",
        type=int,
        nargs=2,
        default=[256, 256],
        metavar=("W", "H"),
        help="image size; with --scene, the crop taken from the full-resolution frame (default 256 256)",
    )
    p.add_argument(
        "--scene",
        action="append",
        default=[],
        metavar="FILE.blend",
        help="render pairs from this file's scene (camera, materials, lights, animation) instead of random "
        "scenes; repeat for several files. The file is never saved; Eevee scenes render with Cycles",
    )
    p.add_argument(
        "--frames", metavar="A-B", help="with --scene: frames to draw from (default: each scene's frame range)"
    )
    p.add_argument(
        "--camera-jitter",
        type=float,
        default=0.0,
        metavar="DEG",
        help="with --scene: turn the camera up to DEG degrees (pitch and yaw) per sample for more viewpoints",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="with --scene: missing image textures or linked libraries are an error instead of a warning",
    )
    p.add_argument("--noisy-spp", type=int, nargs="+", default=[1, 4, 16], metavar="SPP", help="default 1 4 16")
    p.add_argument("--clean-spp", type=int, default=1024, metavar="SPP", help="default %(default)s")
    p.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, same files (default %(default)s)")
    p.add_argument(
        "--shard", default="0/1", metavar="I/N", help="do only samples with index %% N == I (default %(default)s)"
    )
    p.add_argument(
        "--adaptive-threshold",
        type=float,
        default=GenerateSettings.clean_adaptive_threshold,
        help="clean render: Cycles adaptive-sampling noise threshold, 0 = plain clean spp (default %(default)s)",
    )
    p.add_argument(
        "--clean-chunks",
        type=int,
        default=1,
        metavar="N",
        help="render the clean image as N independent renders of clean-spp/N samples, averaged; each is kept as "
        "it finishes, so long references resume (default %(default)s)",
    )
    p.add_argument(
        "--adaptive-min-samples",
        type=int,
        default=GenerateSettings.clean_adaptive_min_samples,
        help="clean render: samples every pixel gets before adaptive stopping (default %(default)s)",
    )
    p.add_argument(
        "--clamp-indirect",
        type=float,
        help="Cycles indirect clamp, 0 = none (default: 0; with --scene, the scene's own)",
    )
    p.add_argument(
        "--clamp-direct", type=float, help="Cycles direct clamp, 0 = none (default: 0; with --scene, the scene's own)"
    )
    p.add_argument(
        "--layouts",
        metavar="NAME=W,...",
        help="random scenes: how often each layout is drawn, e.g. interior=0.35,night=0.3,studio=0.15,outdoor=0.15,"
        "void=0.05 (unnamed layouts 0). Layouts: outdoor, studio, interior (daylight through openings), void, "
        "night (a room lit by small lamps). Default: outdoor=0.35,studio=0.2,interior=0.3,void=0.15",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # the supervised child
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="one task per sample on a Ray cluster: a local one, or ADDRESS (auto, HOST:PORT, ray://HOST:PORT); "
        "the driver writes what the tasks return. Ray is optional: pip install -r requirements/ray.txt",
    )


def settings_from_args(args: argparse.Namespace) -> GenerateSettings:
    return validate(
        out=args.out,
        count=args.count,
        resolution=args.resolution,
        noisy_spp=args.noisy_spp,
        clean_spp=args.clean_spp,
        seed=args.seed,
        shard=args.shard,
        clean_adaptive_threshold=args.adaptive_threshold,
        clean_adaptive_min_samples=args.adaptive_min_samples,
        clamp_direct=args.clamp_direct,
        clamp_indirect=args.clamp_indirect,
        scenes=[str(p) for p in args.scene],
        frames=args.frames,
        camera_jitter=args.camera_jitter,
        strict=args.strict,
        clean_chunks=args.clean_chunks,
        layouts=args.layouts if args.layouts is not None else DEFAULT_LAYOUT_WEIGHTS,
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # validate before the slow bpy import
    try:
        import bpy
    except ImportError:
        raise DenoiseError(
            "generate-dataset needs Blender: install the bpy module (pip install bpy==5.0.1) or run inside Blender"
        ) from None
    if args.ray is not None:
        if settings.scenes:
            raise DenoiseError("--ray renders random scenes only; with --scene, run one --shard I/N per machine")
        return generate_on_ray(settings, args.ray or None, args.quiet)
    from tqdm import tqdm

    from ..blender.generator.run import DatasetJob

    job = DatasetJob(settings, quiet=True)
    job.prepare()  # refuses a folder made with other settings, here, before any child runs
    if not args.in_process and not bpy.app.binary_path:  # the bpy module, not a Blender binary
        return supervise(args._argv, settings.out)
    skipped = len(job.all_indices) - len(job.todo)
    shard = f" (shard {settings.shard[0]}/{settings.shard[1]})" if settings.shard[1] > 1 else ""
    print(
        f"{len(job.todo)} samples to render{shard}, {skipped} already done, into {settings.out}",
        file=sys.stderr,
    )
    # Progress counts samples per pixel rendered: render time grows with spp, so the ETA
    # does not jump at every clean render the way a count of renders would.
    total = len(job.todo) * (sum(settings.noisy_spp) + settings.clean_spp)
    made = 0
    plain = not args.quiet and bars_off(False)  # a log, not a terminal: one line per sample
    t0 = time.perf_counter()
    with tqdm(total=total, unit="spp", disable=bars_off(args.quiet), file=sys.stderr, smoothing=0.05) as bar:
        for step in job.steps():
            if step.sample_done:
                made += 1
                bar.set_postfix_str(f"{made}/{len(job.todo)} samples", refresh=False)
                if plain:
                    print(f"sample {made}/{len(job.todo)} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            bar.update(step.spp)
    print(f"done: {made} samples rendered, {skipped + made} of {len(job.all_indices)} complete", file=sys.stderr)
    return 0


# Blender as a Python module can die by a signal (bpy 5.0.1: SIGSEGV about once in 16 runs, not
# tied to a scene we could find). The run happens in a child process; when it dies, a fresh one
# resumes the dataset (finished samples are kept, the interrupted one is rendered again).
DEATHS_WITHOUT_PROGRESS = 3


def supervise(argv: list[str], out: Path) -> int:
    """Run this command in a child process until it exits by itself; returns its exit code."""
    from ..dataset import files as df

    def done() -> int:
        return len(list((Path(out) / df.RECORDS_DIR).glob("*.json")))

    # The child imports this same package: "blender_denoise_addon" from a checkout or a pip install,
    # "bl_ext.<repo>.<id>" for the installed extension (importable once its add-on is enabled).
    pkg = (__package__ or "blender_denoise_addon.cli").rpartition(".")[0]
    enable = f"import bpy, addon_utils; addon_utils.enable({pkg!r}, default_set=False); " if "bl_ext." in pkg else ""
    code = f"import importlib, sys; {enable}sys.exit(importlib.import_module({pkg!r} + '.cli').main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, *argv, "--in-process"]
    stalled, before = 0, done()
    while True:
        code = _run_child(cmd)
        if code >= 0:
            return code
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        now = done()
        stalled = stalled + 1 if now == before else 1
        before = now
        if stalled >= DEATHS_WITHOUT_PROGRESS:
            print(f"error: Blender died by {name} {stalled} times without finishing a sample; stopped "
                  "(run the same command to resume)", file=sys.stderr)  # fmt: skip
            return 1
        print(f"warning: Blender died by {name}; resuming in a fresh process (the unfinished sample is "
              "rendered again)", file=sys.stderr)  # fmt: skip


def _run_child(cmd: list[str]) -> int:
    """``cmd``'s exit code. The child never outlives this process: a stop (Ctrl-C, SIGTERM,
    SIGHUP) is passed on as SIGTERM, so it cleans up as this process does; on Linux a SIGKILL of
    this process kills it too, so no orphan renders on beside a resumed run."""
    pre = _die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
    with subprocess.Popen(cmd, preexec_fn=pre) as child:  # noqa: PLW1509 (no threads run yet)
        try:
            return child.wait()
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            raise


def _die_with_parent(parent: int) -> Callable[[], None]:
    def pre() -> None:
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before that took effect
            os._exit(1)

    return pre


# -- on Ray (--ray) ------------------------------------------------------------------------


def render_sample(settings: dict[str, Any], index: int, threads: int) -> dict[str, Any]:
    """One sample in a worker: rendered into a temporary folder, returned as {relative path: bytes}."""
    from ..blender.generator.run import DatasetJob
    from ..dataset import files as df
    from ..dataset.spec import GenerateSettings

    with tempfile.TemporaryDirectory(prefix="ai_denoise_sample_") as tmp:
        fields: dict[str, Any] = {**settings, "out": Path(tmp)}
        job = DatasetJob(GenerateSettings(**fields), quiet=True, threads=threads)
        job.prepare()
        for _step in job.sample_steps(index):
            pass
        root = Path(tmp)
        files = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != df.DATASET_CONFIG
        }
        return {"files": files, "record": df.record_path(root, index).relative_to(root).as_posix(),
                "blender": job.dataset_identity()["blender"]}  # fmt: skip


def generate_on_ray(settings: Any, address: str | None, quiet: bool) -> int:
    """generate-dataset's samples as Ray tasks; returns the exit code."""
    from dataclasses import asdict

    from tqdm import tqdm

    from ..blender.generator.run import DatasetJob

    require_ray()  # installed? before anything is written
    job = DatasetJob(settings, quiet=True)
    job.prepare()  # refuses a folder made with other settings, before any task runs
    blender = job.dataset_identity()["blender"]
    ray, remote, cpus = on_ray(address, render_sample, ("bpy", "blender_denoise_addon", "OpenEXR", "PIL"))
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
    with tqdm(total=len(job.todo), unit="sample", disable=bars_off(quiet), file=sys.stderr) as bar:
        for index, result in as_completed(ray, refs, 2 * cpus, submit):
            if isinstance(result, Exception):
                failed.append(f"sample {index}: {task_error(result)}")
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
