"""Helpers the hand-built scenes share: materials, simple meshes, lights, a world, a camera.

Everything is made with bpy.data and bmesh (no operators), so the scripts run headless with the
bpy module. Import after bpy (bmesh exists only once bpy is loaded).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

# isort: off
import bpy  # first: bmesh exists only once bpy is loaded
import bmesh
# isort: on

Vec = tuple[float, float, float]


def mat(name: str, color: Vec, rough: float = 0.6, glow: Vec = (1.0, 0.85, 0.65), **extra: float) -> bpy.types.Material:
    """A Principled BSDF; ``extra``: metallic, transmission, emission (strength, in ``glow``'s colour), ior, coat."""
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    bsdf = m.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = rough
    names = {
        "metallic": "Metallic",
        "transmission": "Transmission Weight",
        "emission": "Emission Strength",
        "ior": "IOR",
        "coat": "Coat Weight",
    }
    for key, value in extra.items():
        bsdf.inputs[names[key]].default_value = value
    if extra.get("emission"):
        bsdf.inputs["Emission Color"].default_value = (*glow, 1.0)
    return m


def textured(m: bpy.types.Material, kind: str, scale: float, color2: tuple[float, float, float], bump: float) -> None:
    """Procedural detail on the base colour (wood grain, plaster, a patterned rug) and a light bump."""
    nt = m.node_tree
    bsdf = nt.nodes["Principled BSDF"]
    base = tuple(bsdf.inputs["Base Color"].default_value)
    coord = nt.nodes.new("ShaderNodeTexCoord")
    if kind == "wood":
        tex = nt.nodes.new("ShaderNodeTexWave")
        tex.inputs["Scale"].default_value = scale
        tex.inputs["Distortion"].default_value = 6.0
        tex.inputs["Detail"].default_value = 4.0
    elif kind == "brick":
        tex = nt.nodes.new("ShaderNodeTexBrick")
        tex.inputs["Scale"].default_value = scale
    else:
        tex = nt.nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = scale
        tex.inputs["Detail"].default_value = 8.0
    nt.links.new(coord.outputs["Object"], tex.inputs["Vector"])
    mix = nt.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["A"].default_value = base
    mix.inputs["B"].default_value = (*color2, 1.0)
    nt.links.new(tex.outputs["Fac"], mix.inputs["Factor"])
    nt.links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    if bump:
        b = nt.nodes.new("ShaderNodeBump")
        b.inputs["Strength"].default_value = bump
        nt.links.new(tex.outputs["Fac"], b.inputs["Height"])
        nt.links.new(b.outputs["Normal"], bsdf.inputs["Normal"])


def box(name: str, center: Vec, size: Vec, mat: bpy.types.Material) -> bpy.types.Object:
    """A box with its origin at its centre (so rotating it turns it in place)."""
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    for v in bm.verts:
        v.co.x, v.co.y, v.co.z = v.co.x * size[0], v.co.y * size[1], v.co.z * size[2]
    ob = link(name, bm, mat)
    ob.location = center
    return ob


def sphere(name: str, center: Vec, r: float, mat: bpy.types.Material) -> bpy.types.Object:
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=r)
    ob = link(name, bm, mat, smooth=True)
    ob.location = center
    return ob


def cylinder(
    name: str, base: tuple[float, float, float], r1: float, r2: float, h: float, mat: bpy.types.Material
) -> bpy.types.Object:
    bm = bmesh.new()
    bmesh.ops.create_cone(bm, cap_ends=True, segments=32, radius1=r1, radius2=r2, depth=h)
    bmesh.ops.translate(bm, verts=bm.verts, vec=(0.0, 0.0, h / 2))
    ob = link(name, bm, mat, smooth=True)
    ob.location = base  # the origin at the centre of the base
    return ob


def link(name: str, bm: bmesh.types.BMesh, mat: bpy.types.Material, smooth: bool = False) -> bpy.types.Object:
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    for p in me.polygons:
        p.use_smooth = smooth
    me.materials.append(mat)
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def hdri_world(name: str, strength: float = 1.0, rotation: float = 0.0) -> bpy.types.World:
    """A world lit by one of Blender's bundled HDRIs (datafiles/studiolights/world)."""
    world = bpy.data.worlds.new(name)
    world.use_nodes = True
    nt = world.node_tree
    bg = nt.nodes["Background"]
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    path = os.path.join(bpy.utils.system_resource("DATAFILES"), "studiolights", "world", name)
    env.image = bpy.data.images.load(path, check_existing=True)
    mapping = nt.nodes.new("ShaderNodeMapping")
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, rotation)
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    bg.inputs["Strength"].default_value = strength
    bpy.context.scene.world = world
    return world


def color_world(color: Vec, strength: float) -> bpy.types.World:
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*color, 1.0)
    bg.inputs["Strength"].default_value = strength
    bpy.context.scene.world = world
    return world


def light(
    kind: str, name: str, energy: float, location: Vec = (0, 0, 0), rotation: Vec = (0, 0, 0), **data: float
) -> bpy.types.Object:
    """A light; ``rotation`` in degrees; ``data`` sets the light's own properties (size, angle, ...)."""
    ld = bpy.data.lights.new(name, kind)
    ld.energy = energy
    for k, v in data.items():
        setattr(ld, k, math.radians(v) if k in ("angle", "spot_size") else v)
    ob = bpy.data.objects.new(name, ld)
    ob.location = location
    ob.rotation_euler = tuple(math.radians(a) for a in rotation)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def camera(location: Vec, rotation: Vec, lens: float = 35.0) -> bpy.types.Object:
    """The scene's camera; ``rotation`` in degrees."""
    cam = bpy.data.cameras.new("camera")
    cam.lens = lens
    ob = bpy.data.objects.new("camera", cam)
    ob.location = location
    ob.rotation_euler = tuple(math.radians(a) for a in rotation)
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.scene.camera = ob
    return ob


def new_file(name: str, size: tuple[int, int]) -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = name
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.engine = "CYCLES"
    scene.frame_start = scene.frame_end = 1
    return scene


def build_files(scenes: dict[str, Callable[[], None]], description: str, argv: list[str] | None = None) -> int:
    """The scene scripts' command line: ``OUT_DIR [--only NAME ...] [--force]``, one NAME.blend each."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("out", type=Path, help="folder for NAME.blend, one per scene")
    p.add_argument("--only", nargs="+", choices=sorted(scenes), help="build only these scenes")
    p.add_argument("--force", action="store_true", help="rebuild files that exist")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or scenes:
        path = args.out / f"{name}.blend"
        if path.is_file() and not args.force:
            continue
        scenes[name]()
        bpy.ops.wm.save_as_mainfile(filepath=str(path.resolve()))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def walk_camera(cam: bpy.types.Object, path: list[tuple[Vec, Vec]], frames: int) -> None:
    """Keyframe ``cam`` through ``path`` ((location, rotation in degrees) pairs), spread evenly
    over frames 1..``frames``, and set the scene's frame range."""
    for i, (loc, rot) in enumerate(path):
        cam.location = loc
        cam.rotation_euler = tuple(math.radians(a) for a in rot)
        f = 1 + round(i * (frames - 1) / (len(path) - 1))
        cam.keyframe_insert("location", frame=f)
        cam.keyframe_insert("rotation_euler", frame=f)
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, frames


def shot_main(build: Callable[[int, tuple[int, int]], None], description: str, argv: list[str] | None = None) -> int:
    """The animated shots' command line: ``OUT.blend [--frames 120] [--size 960 540]``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("out", help="the .blend file to write")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, nargs=2, default=[960, 540], metavar=("W", "H"))
    args = p.parse_args(argv)
    build(args.frames, (args.size[0], args.size[1]))
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
