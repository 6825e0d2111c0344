"""``render-denoise``: open a .blend, render frames with Cycles at low spp, denoise them.

Runs with the ``bpy`` module (``python -m blender_denoise_addon render-denoise ...``)
or inside a Blender binary (see docs/addon.md). bpy is imported in run() only, so
``--help`` never loads Blender.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from ..core.errors import DenoiseError
from ..core.imageio import read_image, write_image
from ..core.options import Options
from .common import (
    add_denoise_arguments,
    denoise_options,
    denoise_sequence,
    output_paths,
    parse_frames,
    removed_if_empty,
    report_failures,
)

HELP = "Render a .blend with Cycles at low samples and denoise each frame (needs bpy or a Blender binary)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("blend", metavar="SCENE.blend", help="the scene to render (its active camera)")
    p.add_argument("-o", "--output", required=True, help="output file (one frame: .exr/.png) or folder")
    p.add_argument("--spp", type=int, default=4, help="Cycles samples per pixel (default %(default)s)")
    p.add_argument("--frames", help="frame or range A-B (default: the scene's current frame)")
    p.add_argument("--scene", help="scene name (default: the file's active scene)")
    p.add_argument("--format", choices=("exr", "png"), default="exr", help="format for folder outputs")
    p.add_argument("--save-noisy", action="store_true", help="also write the noisy render (<name>_noisy)")
    add_denoise_arguments(p, passes=True, ray=False)


def run(args: argparse.Namespace) -> int:
    import bpy  # lazy: only this command needs Blender

    from ..blender import blender_io

    opts = denoise_options(args)
    blend = Path(args.blend)
    if not blend.is_file():
        raise DenoiseError(f"scene file not found: {blend}")
    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)
    except RuntimeError as e:
        raise DenoiseError(f"cannot open {blend}: {str(e).strip()}") from None
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        raise DenoiseError(f"no scene {args.scene!r} in {blend} (has: {', '.join(s.name for s in bpy.data.scenes)})")
    blender_io.check_camera(scene)
    frames = parse_frames(args.frames, scene.frame_current)
    if opts.temporal and len(frames) < 2:
        raise DenoiseError("--temporal needs at least 2 frames (--frames A-B)")
    names = [f"{blend.stem}_{f:04d}.{args.format}" for f in frames]
    with removed_if_empty(Path(args.output)):  # a run that writes nothing leaves no empty folder
        outputs = output_paths(names, args.output, None, len(frames) == 1)
        model = blender_io.get_model(opts, {"color", "albedo", "normal"})
        layer = next((vl for vl in scene.view_layers if vl.use), scene.view_layers[0])
        if opts.temporal:
            return _run_temporal(scene, layer, frames, outputs, opts, args)
        for frame_no, dst in zip(frames, outputs, strict=True):
            scene.frame_set(frame_no)
            frame = blender_io.render_passes(scene, args.spp, layer)
            if args.save_noisy:
                write_image(dst.with_name(f"{dst.stem}_noisy{dst.suffix}"), frame.rgba)
            result = blender_io.denoise_frame(frame, opts, model=model)
            write_image(dst, result.image)
            s = result.stats
            print(
                f"frame {frame_no} -> {dst} | {args.spp} spp | model {s.model} ({','.join(s.inputs)})"
                f" | {s.tiles_text} | {s.seconds:.2f} s",
                file=sys.stderr,
            )
        return 0


def _run_temporal(
    scene: Any, layer: Any, frames: list[int], outputs: list[Path], opts: Options, args: argparse.Namespace
) -> int:
    """Render every frame to a multilayer EXR with the passes temporal denoising needs (into
    ``OUTPUT/.passes``, kept until the end, so a rerun renders only what is missing), then denoise
    them as a sequence."""
    from ..blender import blender_io

    passes = outputs[0].parent / ".passes"
    passes.mkdir(exist_ok=True)
    todo = []
    for frame_no, dst in zip(frames, outputs, strict=True):
        src = passes / f"{Path(args.blend).stem}_{frame_no:04d}.exr"
        if not src.is_file():
            scene.frame_set(frame_no)
            blender_io.render_sequence_frame(scene, args.spp, src, layer)
            print(f"frame {frame_no}: rendered {args.spp} spp -> {src}", file=sys.stderr, flush=True)
        if args.save_noisy:
            write_image(dst.with_name(f"{dst.stem}_noisy{dst.suffix}"), read_image(src).rgba)
        todo.append(((Path(args.blend).stem, frame_no), src, dst))
    failures, _ = denoise_sequence(todo, opts, motion_blur=scene.render.use_motion_blur)
    if not failures:
        for _, src, _ in todo:
            src.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            passes.rmdir()
    return report_failures(failures, len(frames))
