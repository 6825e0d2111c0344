"""The animated evaluation suite: seven hand-built shots for temporal denoising, saved as .blend files.

    .venv/bin/python benchmarks/scenes/animated.py OUT_DIR [--only NAME ...] [--force]

Each file keeps its own frame range (``scene.frame_start .. frame_end``, 11 frames) at 256x256:
- walkthrough: the furnished interior of ``interior_walkthrough.py`` lit through a window, the
  camera walking at a realistic pace, a ball rolling across the floor;
- fast_object: a still camera, a ball and a box crossing the frame fast in front of a textured
  wall (large disocclusions every frame);
- turntable: a gold bottle, a glass and a glossy sphere on a turning stand in an HDRI studio
  (reflections and refractions that do not follow the motion vectors);
- fog_lamp: a foggy hall with a slow camera pan and a lamp that switches on mid-shot;
- dim_walkthrough: the same interior with the sun gone, lit only by the overcast sky through the
  window and bounced light (the kind of noisy dim shot where a fixed light test rejects good samples);
- glass_orbit: the camera orbiting a glass, a gold bottle and a lacquered ball (reflections and
  refractions that move across still objects);
- fast_pan: a camera panning fast (about 20 px a frame) across a textured courtyard.
Deterministic: no randomness.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import bpy
from common import box, build_files, camera, color_world, cylinder, hdri_world, light, mat, new_file, sphere, textured

SIZE = (256, 256)
FRAMES = 11
SCENES: dict[str, Callable[[], None]] = {}


def scene(fn: Callable[[], None]) -> Callable[[], None]:
    SCENES[fn.__name__] = fn
    return fn


def keys(ob: bpy.types.Object, attr: str, frames: dict[int, tuple[float, ...]]) -> None:
    """Keyframe ``attr`` of ``ob`` at each frame, with linear interpolation (constant speed)."""
    for f, value in frames.items():
        setattr(ob, attr, value)
        ob.keyframe_insert(attr, frame=f)
    action = ob.animation_data.action
    for fc in getattr(action, "fcurves", None) or []:
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"


def frame_range(start: int) -> None:
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = start, start + FRAMES - 1
    sc.frame_current = start


@scene
def walkthrough() -> None:
    """The archviz interior at 24 fps: frames 41-51 of a 120-frame walk, a ball rolling past."""
    from interior_walkthrough import build  # beside this script, on sys.path as the script's folder

    build(120, SIZE)
    bpy.context.scene.name = "walkthrough"
    bpy.context.scene.render.engine = "CYCLES"
    ball = sphere("rolling ball", (0, 0, 0), 0.15, mat("ball", (0.8, 0.15, 0.1), 0.35))
    keys(ball, "location", {41: (1.6, -1.2, 0.15), 51: (-0.6, 1.3, 0.15)})
    keys(ball, "rotation_euler", {41: (0.0, 0.0, 0.0), 51: (4.0, -4.0, 0.0)})
    frame_range(41)


@scene
def fast_object() -> None:
    """A still camera; a ball and a box cross the frame fast (about 20 px a frame) in front of a brick wall."""
    new_file("fast_object", SIZE)
    wall = mat("brick", (0.55, 0.25, 0.18), 0.8)
    textured(wall, "brick", 4.0, (0.75, 0.72, 0.68), 0.2)
    box("wall", (0, 1.5, 1.5), (8.0, 0.2, 3.0), wall)
    floor = mat("floor", (0.4, 0.4, 0.42), 0.5)
    textured(floor, "brick", 2.0, (0.15, 0.15, 0.16), 0.05)
    box("floor", (0, 0, -0.05), (8.0, 6.0, 0.1), floor)
    ball = sphere("ball", (0, 0, 0), 0.3, mat("ball", (0.9, 0.8, 0.1), 0.3))
    keys(ball, "location", {1: (-2.2, 0.3, 0.3), 11: (2.2, 0.3, 0.3)})
    crate = box("crate", (0, 0, 0), (0.5, 0.5, 0.5), mat("crate", (0.1, 0.35, 0.7), 0.5))
    keys(crate, "location", {1: (1.8, -0.4, 0.6), 11: (-1.8, -0.4, 1.2)})
    keys(crate, "rotation_euler", {1: (0.0, 0.0, 0.0), 11: (0.0, 1.5, 2.0)})
    light("AREA", "key", 120.0, (-2.0, -2.5, 3.0), (45, 0, -35), size=1.5)
    color_world((0.4, 0.45, 0.5), 0.15)
    camera((0.0, -4.0, 1.2), (85, 0, 0), 30.0)
    frame_range(1)


@scene
def turntable() -> None:
    """Gold, glass and a glossy ball turning 4 degrees a frame on a stand, studio HDRI, still camera."""
    new_file("turntable", SIZE)
    stand = bpy.data.objects.new("stand", None)
    bpy.context.scene.collection.objects.link(stand)
    parts = studio_objects()
    for ob in parts:
        ob.parent = stand
    keys(stand, "rotation_euler", {1: (0.0, 0.0, 0.0), 11: (0.0, 0.0, math.radians(40))})
    light("AREA", "softbox", 25.0, (-1.0, -1.0, 1.2), (55, 0, -45), size=0.8)
    hdri_world("studio.exr", 0.35, rotation=0.6)
    camera((0.0, -1.6, 0.55), (78, 0, 0), 50.0)
    frame_range(1)


@scene
def fog_lamp() -> None:
    """Thin fog in a dim hall, the camera panning slowly; a hanging lamp switches on at frame 6."""
    new_file("fog_lamp", SIZE)
    stone = mat("stone", (0.55, 0.52, 0.48), 0.9)
    textured(stone, "noise", 20.0, (0.45, 0.43, 0.4), 0.05)
    box("floor", (0, 0, -0.05), (8.0, 6.0, 0.1), mat("stone floor", (0.3, 0.3, 0.3), 0.7))
    box("back wall", (0, 2.5, 1.75), (8.0, 0.2, 3.5), stone)
    box("left wall", (-3.5, 0, 1.75), (0.2, 6.0, 3.5), stone)
    for i, x in enumerate((-2.0, 0.0, 2.0)):
        cylinder(f"column {i}", (x, 1.2, 0.0), 0.2, 0.2, 3.5, mat("column", (0.6, 0.58, 0.55), 0.8))
    fog = bpy.data.materials.new("fog")
    fog.use_nodes = True
    nt = fog.node_tree
    nt.nodes.clear()
    vol = nt.nodes.new("ShaderNodeVolumePrincipled")
    vol.inputs["Density"].default_value = 0.08
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(vol.outputs["Volume"], out.inputs["Volume"])
    box("fog", (0, 0, 1.75), (7.9, 5.9, 3.45), fog)
    bulb = mat("bulb", (1.0, 1.0, 1.0), 0.5, emission=0.0)
    sphere("bulb", (0.8, 0.4, 2.2), 0.08, bulb)
    strength = bulb.node_tree.nodes["Principled BSDF"].inputs["Emission Strength"]
    lamp = light("POINT", "lamp", 0.0, (0.8, 0.4, 2.05), shadow_soft_size=0.1)
    for f, on in ((5, 0.0), (6, 1.0)):  # off up to frame 5, on from frame 6
        strength.default_value = 40.0 * on
        strength.keyframe_insert("default_value", frame=f)
        lamp.data.energy = 150.0 * on
        lamp.data.keyframe_insert("energy", frame=f)
    for target in (bulb.node_tree, lamp.data):
        for fc in getattr(target.animation_data.action, "fcurves", None) or []:
            for kp in fc.keyframe_points:
                kp.interpolation = "CONSTANT"
    light("AREA", "window", 150.0, (3.0, -1.0, 3.0), (40, 0, 60), size=1.0)
    color_world((0.05, 0.06, 0.09), 1.0)
    cam = camera((-1.0, -3.5, 1.6), (86, 0, -8), 24.0)
    keys(
        cam,
        "rotation_euler",
        {1: tuple(math.radians(a) for a in (86, 0, -8)), 11: tuple(math.radians(a) for a in (86, 0, 8))},
    )
    frame_range(1)


@scene
def dim_walkthrough() -> None:
    """The walkthrough with no sun: the sky through the window and the bounces light the room."""
    walkthrough()
    bpy.context.scene.name = "dim_walkthrough"
    bpy.data.objects["sun"].data.energy = 0.0
    bpy.data.objects["ceiling lamp"].data.energy = 0.0
    bpy.data.materials["bulb"].node_tree.nodes["Principled BSDF"].inputs["Emission Strength"].default_value = 0.0


def studio_objects() -> list[bpy.types.Object]:
    """Gold, glass and a lacquered ball on a marble disc in front of a backdrop (the turntable's set)."""
    backdrop = mat("backdrop", (0.55, 0.55, 0.57), 0.6)
    box("floor", (0, 0, -0.01), (4.0, 4.0, 0.02), backdrop)
    box("back", (0, 1.5, 1.0), (4.0, 0.02, 2.0), backdrop)
    gold = mat("gold", (1.0, 0.76, 0.33), 0.2, metallic=1.0)
    glass = mat("glass", (0.95, 0.97, 0.95), 0.0, transmission=1.0, ior=1.5)
    return [
        cylinder("disc", (0, 0, 0), 0.45, 0.45, 0.04, mat("marble", (0.8, 0.8, 0.78), 0.2)),
        cylinder("gold bottle", (0.2, 0.0, 0.04), 0.09, 0.06, 0.35, gold),
        cylinder("glass", (-0.15, 0.15, 0.04), 0.08, 0.1, 0.22, glass),
        sphere("glossy ball", (-0.1, -0.2, 0.14), 0.1, mat("red lacquer", (0.6, 0.05, 0.05), 0.05, coat=1.0)),
    ]


@scene
def glass_orbit() -> None:
    """Still gold, glass and lacquer; the camera orbits them 3 degrees a frame, studio HDRI."""
    new_file("glass_orbit", SIZE)
    studio_objects()
    light("AREA", "softbox", 25.0, (-1.0, -1.0, 1.2), (55, 0, -45), size=0.8)
    hdri_world("studio.exr", 0.35, rotation=0.6)
    pivot = bpy.data.objects.new("orbit", None)
    bpy.context.scene.collection.objects.link(pivot)
    cam = camera((0.0, -1.6, 0.55), (78, 0, 0), 50.0)
    cam.parent = pivot
    keys(pivot, "rotation_euler", {1: (0.0, 0.0, math.radians(-15)), 11: (0.0, 0.0, math.radians(15))})
    frame_range(1)


@scene
def fast_pan() -> None:
    """A courtyard of brick walls, columns and crates; the camera pans 4 degrees a frame (about 20 px)."""
    new_file("fast_pan", SIZE)
    brick = mat("brick", (0.55, 0.25, 0.18), 0.8)
    textured(brick, "brick", 3.0, (0.75, 0.72, 0.68), 0.2)
    paving = mat("paving", (0.45, 0.44, 0.42), 0.6)
    textured(paving, "brick", 1.5, (0.2, 0.2, 0.2), 0.05)
    box("ground", (0, 0, -0.05), (16.0, 16.0, 0.1), paving)
    for name, center, size in (
        ("north wall", (0, 5.0, 1.5), (10.0, 0.3, 3.0)),
        ("west wall", (-5.0, 1.5, 1.5), (0.3, 7.0, 3.0)),
        ("east wall", (5.0, 1.5, 1.5), (0.3, 7.0, 3.0)),
    ):
        box(name, center, size, brick)
    stone = mat("stone", (0.7, 0.68, 0.62), 0.5)
    for i, x in enumerate((-3.0, -1.0, 1.0, 3.0)):
        cylinder(f"column {i}", (x, 3.5, 0.0), 0.25, 0.25, 3.0, stone)
    wood = mat("crate", (0.45, 0.3, 0.15), 0.7)
    textured(wood, "noise", 8.0, (0.3, 0.2, 0.1), 0.1)
    for i, (x, y) in enumerate(((-3.5, 1.0), (-1.8, 2.2), (2.0, 1.5), (3.6, 0.2))):
        box(f"crate {i}", (x, y, 0.35), (0.7, 0.7, 0.7), wood)
    sphere("planter", (0.3, 0.8, 0.4), 0.4, mat("terracotta", (0.6, 0.3, 0.2), 0.5))
    light("SUN", "sun", 3.0, (0, 0, 10), (50, 0, 30))
    hdri_world("courtyard.exr", 0.8)
    cam = camera((0.0, -3.0, 1.5), (85, 0, 40), 35.0)
    keys(
        cam,
        "rotation_euler",
        {1: tuple(math.radians(a) for a in (85, 0, 20)), 11: tuple(math.radians(a) for a in (85, 0, -20))},
    )
    frame_range(1)


def main(argv: list[str] | None = None) -> int:
    return build_files(SCENES, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
