"""``demo``: render a demo scene at low spp, denoise it with the bundled model, and write
a side-by-side image (noisy | denoised | reference) and metrics against a high-spp render."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core import catalog, metrics
from ..core.atomic import atomic_path
from ..core.denoise import denoise_frame
from ..core.errors import DenoiseError
from ..core.imageio import Frame, read_image, write_image
from .common import add_denoise_arguments, denoise_options

# The reference cache (inside the output folder) is keyed by this: bump it when build_scene changes.
DEMO_SCENE_VERSION = 1
REFERENCE_CACHE = ".reference-cache"
HELP = "Render a demo scene at low spp, denoise it with the bundled model, write side-by-side + metrics."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default %(default)s)")
    p.add_argument("--resolution", nargs=2, type=int, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--spp", type=int, default=4, help="samples of the noisy render (default %(default)s)")
    p.add_argument("--reference-spp", type=int, default=1024, help="samples of the reference (default %(default)s)")
    add_denoise_arguments(p, temporal=False, ray=False)


def build_scene(width: int, height: int) -> None:
    """A small studio: textured floor, glass, metal, a brick cube and a lamp, lit by a bundled HDRI."""
    import bpy

    from ..blender import compat

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    world = bpy.data.worlds.new("Demo")
    scene.world = world
    nodes, links = compat.node_tree(world).nodes, world.node_tree.links
    env = nodes.new("ShaderNodeTexEnvironment")
    hdri = Path(bpy.utils.system_resource("DATAFILES")) / "studiolights" / "world" / "interior.exr"
    env.image = bpy.data.images.load(str(hdri))
    links.new(env.outputs["Color"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = 0.35

    def material(name: str, **inputs: object) -> bpy.types.Material:
        mat = bpy.data.materials.new(name)
        bsdf = compat.node_tree(mat).nodes["Principled BSDF"]
        for key, value in inputs.items():
            bsdf.inputs[key.replace("_", " ")].default_value = value
        return mat

    def add(obj_name: str, mat: bpy.types.Material) -> bpy.types.Object:
        obj = bpy.context.active_object
        assert obj is not None  # the primitive operator just made it active
        obj.name = obj_name
        obj.data.materials.append(mat)
        return obj

    floor = material("Floor", Roughness=0.35)
    tex = floor.node_tree.nodes.new("ShaderNodeTexChecker")
    tex.inputs["Scale"].default_value = 12.0
    tex.inputs["Color1"].default_value = (0.8, 0.75, 0.7, 1)
    tex.inputs["Color2"].default_value = (0.15, 0.12, 0.1, 1)
    floor.node_tree.links.new(tex.outputs["Color"], floor.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    bpy.ops.mesh.primitive_plane_add(size=20)
    add("Floor", floor)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(-1.2, 0.2, 0.8), segments=48, ring_count=24)
    bpy.ops.object.shade_smooth()
    add("Glass", material("Glass", Roughness=0.0, Transmission_Weight=1.0, IOR=1.45))
    bpy.ops.mesh.primitive_monkey_add(size=1.3, location=(0.9, -0.3, 0.75), rotation=(0.2, 0, 0.5))
    bpy.ops.object.shade_smooth()
    add("Metal", material("Metal", Base_Color=(0.9, 0.6, 0.3, 1), Metallic=1.0, Roughness=0.25))
    bpy.ops.mesh.primitive_cube_add(size=0.9, location=(0.3, 1.6, 0.45), rotation=(0, 0, 0.6))
    brick = material("Brick", Roughness=0.8)
    bt = brick.node_tree.nodes.new("ShaderNodeTexBrick")
    brick.node_tree.links.new(bt.outputs["Color"], brick.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    add("Brick", brick)
    bpy.ops.object.light_add(type="AREA", location=(2.5, -2.0, 3.5))
    lamp = bpy.context.active_object
    lamp.data.energy = 60.0
    lamp.data.size = 1.0
    lamp.rotation_euler = (0.6, 0.4, 0.8)
    bpy.ops.object.camera_add(location=(0.5, -6.0, 2.6), rotation=(1.2, 0.0, 0.05))
    scene.camera = bpy.context.active_object


def render(spp: int, seed: int) -> tuple[Frame, float]:
    """Render the active camera through the add-on's own path (multilayer EXR read back)."""
    import bpy

    from ..blender import blender_io

    bpy.context.scene.cycles.seed = seed
    start = time.perf_counter()
    frame = blender_io.render_passes(bpy.context.scene, spp)
    return frame, time.perf_counter() - start


def side_by_side(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    from PIL import Image, ImageDraw

    strip = np.concatenate([metrics.to_display(im) for im in images], axis=1)
    pil = Image.fromarray((np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    w = images[0].shape[1]
    for i, label in enumerate(labels):
        draw.text((i * w + 6, 4), label, fill=(255, 255, 255))
    return np.asarray(pil)


def run(args: argparse.Namespace) -> int:
    try:
        import bpy
    except ImportError:
        raise DenoiseError("the demo renders with Blender: install the bpy module (./run demo does)") from None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DenoiseError(f"cannot create output folder {out}: {e.strerror or e}") from None
    w, h = args.resolution
    build_scene(w, h)
    print(f"rendering {w}x{h} at {args.spp} spp ...", file=sys.stderr)
    noisy, t_noisy = render(args.spp, seed=1)
    opts = denoise_options(args)
    model = catalog.model_for(opts, noisy.passes)
    result = denoise_frame(model, replace(noisy, alpha=None), opts)  # color only, as shown
    write_image(out / "noisy.exr", noisy.color)
    write_image(out / "denoised.exr", result.image)
    print(f"denoised in {result.stats.seconds:.2f} s ({result.stats.model}): {out / 'denoised.exr'}", file=sys.stderr)
    # The reference is the slow part (minutes on a CPU): the result comes first, and a reference
    # rendered before with the same settings and Blender is reused.
    bpy_version = ".".join(str(v) for v in bpy.app.version)
    key = f"{w}x{h}-{args.reference_spp}spp-seed2-scene{DEMO_SCENE_VERSION}-blender{bpy_version}"
    cached = out / REFERENCE_CACHE / f"reference-{key}.exr"
    if cached.is_file():
        ref, t_ref = read_image(cached), 0.0
        print(f"reference: {cached} (rendered before)", file=sys.stderr)
    else:
        print(f"rendering the reference at {args.reference_spp} spp (takes a while on a CPU) ...", file=sys.stderr)
        ref, t_ref = render(args.reference_spp, seed=2)
        cached.parent.mkdir(exist_ok=True)
        write_image(cached, ref.color)
    write_image(out / "reference.exr", ref.color)
    strip = side_by_side(
        [noisy.color, result.image, ref.color],
        [f"noisy {args.spp} spp", f"denoised ({result.stats.model})", f"reference {args.reference_spp} spp"],
    )
    write_image(out / "side_by_side.png", _srgb_to_linear_u8(strip))
    report = {
        "resolution": [w, h],
        "spp": args.spp,
        "reference_spp": args.reference_spp,
        "model": result.stats.model,
        "model_inputs": list(result.stats.inputs),
        "tiling": result.stats.tiling,
        "tiles": result.stats.tiles,
        "quality": args.quality,
        "coarse_pass": result.stats.coarse,
        "flips": result.stats.flips,
        "prefiltered": list(result.stats.prefiltered),
        "seconds": {"render_noisy": t_noisy, "render_reference": t_ref, "denoise": result.stats.seconds},
        "noisy_vs_reference": metrics.report(noisy.color, ref.color),
        "denoised_vs_reference": metrics.report(result.image, ref.color),
    }
    with atomic_path(out / "metrics.json") as tmp_json:
        tmp_json.write_text(json.dumps(report, indent=2) + "\n")
    n, d = report["noisy_vs_reference"], report["denoised_vs_reference"]
    print(
        f"noisy    PSNR {n['psnr']:.2f} dB  SSIM {n['ssim']:.4f}  relMSE {n['relmse']:.4f}\n"
        f"denoised PSNR {d['psnr']:.2f} dB  SSIM {d['ssim']:.4f}  relMSE {d['relmse']:.4f}"
        f"  ({result.stats.model}, {result.stats.seconds:.2f} s)\n"
        f"wrote {out / 'side_by_side.png'} and {out / 'metrics.json'}"
    )
    return 0


def _srgb_to_linear_u8(strip: np.ndarray) -> np.ndarray:
    """write_image encodes PNGs to sRGB; hand it linear values so the strip round-trips."""
    from ..core.transfer import srgb_decode

    return srgb_decode(strip.astype(np.float32) / 255.0).astype(np.float32)
