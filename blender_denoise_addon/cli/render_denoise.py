"""``render-denoise``: open a .blend, render frames with Cycles at low spp, denoise them.

Runs with the ``bpy`` module (``python -m blender_denoise_addon render-denoise ...``)
or inside a Blender binary (see docs/addon.md). bpy is imported in run() only, so
``--help`` never loads Blender.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.defaults import TILING, TILING_MODES
from ..core.errors import DenoiseError
from ..core.imageio import IMAGE_SUFFIXES, write_image
from ..core.options import Options

HELP = "Render a .blend with Cycles at low samples and denoise each frame (needs bpy or a Blender binary)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("blend", metavar="SCENE.blend", help="the scene to render (its active camera)")
    p.add_argument("-o", "--output", required=True, help="output file (one frame: .exr/.png) or folder")
    p.add_argument("--spp", type=int, default=4, help="Cycles samples per pixel (default %(default)s)")
    p.add_argument("--frames", help="frame or range A-B (default: the scene's current frame)")
    p.add_argument("--scene", help="scene name (default: the file's active scene)")
    p.add_argument("--model", help="ONNX model (default: the bundled model that fits the passes)")
    p.add_argument("--tiling", choices=TILING_MODES, default="sliding", help="default %(default)s")
    p.add_argument(
        "--tile",
        type=int,
        help=f"tile size in pixels (default: {TILING.auto_tile_text})",
    )
    p.add_argument("--overlap", type=int, help="sliding-window overlap (default: exact, from the receptive field)")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    p.add_argument("--no-coarse", action="store_true", help="skip the coarse pass (about a quarter faster)")
    p.add_argument("--no-albedo", action="store_true", help="don't feed the albedo pass")
    p.add_argument("--no-normal", action="store_true", help="don't feed the normal pass")
    p.add_argument("--format", choices=("exr", "png"), default="exr", help="format for folder outputs")
    p.add_argument("--save-noisy", action="store_true", help="also write the noisy render (<name>_noisy)")


def parse_frames(spec: str | None, current: int) -> list[int]:
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


def output_paths(output: str, frames: list[int], fmt: str, stem: str) -> list[Path]:
    out = Path(output)
    if out.suffix.lower() in IMAGE_SUFFIXES:
        if len(frames) != 1:
            raise DenoiseError(f"{len(frames)} frames need an output folder, not the file {out}")
        return [out]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DenoiseError(f"cannot create output folder {out}: {e.strerror or e}") from None
    return [out / f"{stem}_{f:04d}.{fmt}" for f in frames]


def run(args: argparse.Namespace) -> int:
    import bpy  # lazy: only this command needs Blender

    from .. import blender_io

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
    outputs = output_paths(args.output, frames, args.format, blend.stem)
    opts = Options(
        tiling=args.tiling,
        tile=args.tile,
        overlap=args.overlap,
        threads=args.threads,
        use_albedo=not args.no_albedo,
        use_normal=not args.no_normal,
        coarse=not args.no_coarse,
        model_path=args.model,
    )
    model = blender_io.get_model(opts, {"color", "albedo", "normal"})
    layer = next((vl for vl in scene.view_layers if vl.use), scene.view_layers[0])
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
