"""The production-like evaluation suite: twelve hand-built scenes at 512x512, saved as .blend files.

    .venv/bin/python benchmarks/scenes/suite.py OUT_DIR [--only NAME ...] [--force]

Not the training generator's scenes: interiors lit through windows (sun, overcast), a Cornell
box, a room at night lit by small lamps, a foggy hall with light shafts, glass at sunset with
caustics, depth of field, motion blur, fine geometry (wires, grass, hair), textured
architecture, and two product shots in HDRI studios. Large flat walls in indirect light are on
purpose: that is where denoisers leave blotches. Each file renders with Cycles at frame 1
(``generate-dataset --scene OUT_DIR/NAME.blend --resolution 512 512`` takes the whole frame).
Deterministic: no randomness but seeded numpy.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import bpy
import numpy as np
from common import (
    box,
    build_files,
    camera,
    color_world,
    cylinder,
    hdri_world,
    light,
    link,
    mat,
    new_file,
    sphere,
    textured,
)

SIZE = (512, 512)
SCENES: dict[str, Callable[[], None]] = {}


def scene(fn: Callable[[], None]) -> Callable[[], None]:
    SCENES[fn.__name__] = fn
    return fn


def room(w: float, d: float, h: float, walls: bpy.types.Material, floor: bpy.types.Material, window: tuple | None):
    """A closed room (x in +-w/2, y in +-d/2, z in 0..h); ``window`` = (y0, y1, z0, z1) cut in the +x wall."""
    t = 0.15
    ceiling = mat("ceiling", (0.8, 0.8, 0.78), 0.95)
    box("floor", (0, 0, -t / 2), (w + 2 * t, d + 2 * t, t), floor)
    box("ceiling", (0, 0, h + t / 2), (w + 2 * t, d + 2 * t, t), ceiling)
    box("wall -x", (-w / 2 - t / 2, 0, h / 2), (t, d, h), walls)
    box("wall -y", (0, -d / 2 - t / 2, h / 2), (w, t, h), walls)
    box("wall +y", (0, d / 2 + t / 2, h / 2), (w, t, h), walls)
    x = w / 2 + t / 2
    if window is None:
        box("wall +x", (x, 0, h / 2), (t, d, h), walls)
        return
    y0, y1, z0, z1 = window
    box("wall +x a", (x, (-d / 2 + y0) / 2, h / 2), (t, y0 + d / 2, h), walls)
    box("wall +x b", (x, (y1 + d / 2) / 2, h / 2), (t, d / 2 - y1, h), walls)
    box("wall +x sill", (x, (y0 + y1) / 2, z0 / 2), (t, y1 - y0, z0), walls)
    box("wall +x lintel", (x, (y0 + y1) / 2, (z1 + h) / 2), (t, y1 - y0, h - z1), walls)


def plaster(name: str = "plaster", color: tuple[float, float, float] = (0.75, 0.73, 0.7)) -> bpy.types.Material:
    m = mat(name, color, 0.9)
    textured(m, "noise", 30.0, tuple(c * 0.93 for c in color), 0.03)
    return m


def wood(name: str = "wood", scale: float = 3.0) -> bpy.types.Material:
    m = mat(name, (0.33, 0.19, 0.09), 0.45)
    textured(m, "wood", scale, (0.18, 0.09, 0.04), 0.08)
    return m


@scene
def sunlit_room() -> None:
    """Sun and sky through one window; the camera faces the dim corner away from it."""
    new_file("sunlit_room", SIZE)
    room(5.0, 4.0, 2.7, plaster(), wood(), (-0.8, 0.8, 0.7, 2.2))
    fabric = mat("fabric", (0.35, 0.3, 0.25), 1.0)
    box("bed", (-1.2, 0.9, 0.25), (2.0, 1.6, 0.5), fabric)
    box("cabinet", (-2.2, -1.4, 0.45), (0.5, 0.9, 0.9), wood("cabinet", 6.0))
    light("SUN", "sun", 5.0, rotation=(55, 0, 95), angle=0.6)
    hdri_world("courtyard.exr", 1.0)
    camera((2.0, -1.5, 1.5), (85, 0, 60), 20.0)


@scene
def overcast_room() -> None:
    """Sky only through a wide window, no sun: a soft, dim, mostly white room."""
    new_file("overcast_room", SIZE)
    room(6.0, 4.5, 2.8, plaster("white plaster", (0.82, 0.82, 0.8)), mat("concrete", (0.4, 0.4, 0.38), 0.8),
         (-1.8, 1.8, 0.5, 2.4))  # fmt: skip
    sofa = mat("sofa", (0.25, 0.3, 0.35), 1.0)
    box("sofa seat", (-2.2, 0.0, 0.22), (0.9, 2.4, 0.44), sofa)
    box("sofa back", (-2.6, 0.0, 0.6), (0.2, 2.4, 0.8), sofa)
    box("table", (-0.8, 0.0, 0.35), (0.8, 1.2, 0.05), wood("table", 5.0))
    sphere("lamp globe", (-2.6, 1.8, 1.6), 0.2, mat("opal", (0.9, 0.9, 0.9), 0.3))
    color_world((0.75, 0.8, 0.9), 1.2)
    camera((2.6, 1.9, 1.5), (85, 0, 125), 22.0)


@scene
def cornell_box() -> None:
    """The classic box: white, red and green walls, a small ceiling light, two blocks and a glossy sphere."""
    new_file("cornell_box", SIZE)
    white, red, green = (
        mat("white", (0.73, 0.73, 0.73), 1.0),
        mat("red", (0.63, 0.06, 0.05), 1.0),
        mat("green", (0.12, 0.45, 0.15), 1.0),
    )
    box("floor", (0, 0, -0.05), (2.1, 2.1, 0.1), white)
    box("ceiling", (0, 0, 2.05), (2.1, 2.1, 0.1), white)
    box("back", (0, 1.05, 1.0), (2.1, 0.1, 2.1), white)
    box("left", (-1.05, 0, 1.0), (0.1, 2.1, 2.1), red)
    box("right", (1.05, 0, 1.0), (0.1, 2.1, 2.1), green)
    tall = box("tall block", (-0.35, 0.3, 0.6), (0.55, 0.55, 1.2), white)
    tall.rotation_euler = (0, 0, math.radians(18))
    short = box("short block", (0.35, -0.3, 0.3), (0.55, 0.55, 0.6), white)
    short.rotation_euler = (0, 0, math.radians(-17))
    sphere("sphere", (0.35, -0.3, 0.8), 0.2, mat("glossy", (0.8, 0.8, 0.8), 0.1, metallic=1.0))
    light("AREA", "ceiling light", 40.0, (0, 0, 1.99), (0, 0, 0), size=0.45)
    color_world((0, 0, 0), 0.0)
    camera((0, -3.0, 1.0), (90, 0, 0), 38.0)


@scene
def night_room() -> None:
    """Night outside, three small warm bulbs and a desk lamp inside: most of the room in their bounce light."""
    new_file("night_room", SIZE)
    room(5.0, 4.0, 2.6, plaster("blue plaster", (0.45, 0.5, 0.6)), wood(), (-0.7, 0.7, 0.8, 2.1))
    bulb = mat("bulb", (1, 1, 1), 0.5, emission=300.0)
    for i, (x, y) in enumerate([(-1.5, -1.2), (0.0, 1.4), (1.6, -0.6)]):
        cylinder(f"cord {i}", (x, y, 2.1), 0.004, 0.004, 0.5, mat("cord", (0.05, 0.05, 0.05), 0.5))
        sphere(f"bulb {i}", (x, y, 2.05), 0.03, bulb)
    box("desk", (-1.8, 1.3, 0.72), (1.2, 0.6, 0.04), wood("desk", 6.0))
    light("SPOT", "desk lamp", 15.0, (-1.8, 1.3, 1.2), (0, 0, 0), spot_size=70.0, shadow_soft_size=0.05)
    color_world((0.01, 0.015, 0.04), 1.0)
    camera((2.1, -1.6, 1.4), (84, 0, 50), 20.0)


@scene
def foggy_hall() -> None:
    """A hall filled with thin fog; the sun through a window draws shafts of light."""
    new_file("foggy_hall", SIZE)
    room(7.0, 4.0, 3.5, plaster("stone", (0.55, 0.52, 0.48)), mat("stone floor", (0.3, 0.3, 0.3), 0.7),
         (-0.6, 0.6, 1.2, 3.0))  # fmt: skip
    fog = bpy.data.materials.new("fog")
    fog.use_nodes = True
    nt = fog.node_tree
    nt.nodes.clear()
    vol = nt.nodes.new("ShaderNodeVolumePrincipled")
    vol.inputs["Density"].default_value = 0.06
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(vol.outputs["Volume"], out.inputs["Volume"])
    box("fog", (0, 0, 1.75), (6.9, 3.9, 3.45), fog)
    for i, x in enumerate((-2.0, 0.0, 2.0)):
        cylinder(f"column {i}", (x, -1.2, 0.0), 0.2, 0.2, 3.5, mat("column", (0.6, 0.58, 0.55), 0.8))
    light("SUN", "sun", 14.0, rotation=(50, 0, 80), angle=0.5)
    hdri_world("sunset.exr", 0.6)
    camera((-3.2, 1.5, 1.6), (88, 0, -110), 20.0)


@scene
def glass_sunset() -> None:
    """Glasses, a vase and a bottle on a table at sunset: refraction and caustics on the tabletop."""
    new_file("glass_sunset", SIZE)
    box("table", (0, 0, -0.02), (3.0, 2.0, 0.04), wood("tabletop", 4.0))
    glass = mat("glass", (0.95, 0.97, 0.95), 0.0, transmission=1.0, ior=1.5)
    tinted = mat("green glass", (0.5, 0.8, 0.55), 0.02, transmission=1.0, ior=1.5)
    cylinder("glass a", (-0.3, 0.0, 0.0), 0.08, 0.1, 0.25, glass)
    cylinder("glass b", (0.05, 0.25, 0.0), 0.07, 0.07, 0.18, glass)
    cylinder("vase", (0.35, -0.1, 0.0), 0.12, 0.07, 0.4, tinted)
    sphere("marble", (0.0, -0.25, 0.05), 0.05, glass)
    light("SUN", "sun", 4.0, rotation=(75, 0, 250), angle=0.5)
    hdri_world("sunset.exr", 1.0, rotation=1.2)
    camera((0.0, -1.4, 0.55), (72, 0, 0), 50.0)


@scene
def depth_of_field() -> None:
    """A row of objects on a long table, f/1.4 focused on the middle one."""
    new_file("depth_of_field", SIZE)
    box("table", (0, 1.0, -0.02), (1.2, 4.0, 0.04), wood("long table", 2.0))
    for i in range(7):
        y = -0.4 + i * 0.5
        m = mat(f"object {i}", ((i * 0.37) % 1, 0.4, 1 - (i * 0.23) % 1), 0.3 + 0.1 * (i % 3))
        if i % 2:
            sphere(f"ball {i}", (0.1 * (-1) ** i, y, 0.12), 0.12, m)
        else:
            textured(m, "brick", 8.0, (0.9, 0.9, 0.85), 0.1)
            cylinder(f"can {i}", (0.1 * (-1) ** i, y, 0.0), 0.09, 0.09, 0.3, m)
    cam = camera((0.0, -1.3, 0.35), (80, 0, 0), 60.0)
    cam.data.dof.use_dof = True
    cam.data.dof.focus_distance = 2.3
    cam.data.dof.aperture_fstop = 1.4
    hdri_world("interior.exr", 1.2)


@scene
def motion_blur() -> None:
    """A spinning fan and a ball in flight, half-frame shutter."""
    scene = new_file("motion_blur", SIZE)
    scene.frame_start = scene.frame_end = scene.frame_current = 2
    room(5.0, 5.0, 3.0, plaster(), wood(), None)
    metal = mat("fan metal", (0.7, 0.7, 0.72), 0.3, metallic=1.0)
    cylinder("fan hub", (0, 0.35, 1.45), 0.08, 0.08, 0.1, metal).rotation_euler = (math.pi / 2, 0, 0)
    mount = bpy.data.objects.new("fan mount", None)  # turns the fan to face the camera
    bpy.context.scene.collection.objects.link(mount)
    mount.location = (0, 0.3, 1.45)
    mount.rotation_euler = (math.pi / 2, 0, 0)
    fan = bpy.data.objects.new("fan", None)
    bpy.context.scene.collection.objects.link(fan)
    fan.parent = mount
    for i in range(4):
        blade = box(f"blade {i}", (0.35, 0, 0), (0.6, 0.12, 0.01), metal)
        blade.parent = fan
        blade.rotation_euler = (0.3, 0, 0)
        pivot = bpy.data.objects.new(f"pivot {i}", None)
        bpy.context.scene.collection.objects.link(pivot)
        pivot.parent = fan
        pivot.rotation_euler = (0, 0, i * math.pi / 2)
        blade.parent = pivot
    for f, angle in ((1, 0.0), (3, 2.4)):
        fan.rotation_euler = (0, 0, angle)
        fan.keyframe_insert("rotation_euler", frame=f)
    ball = sphere("ball", (0, 0, 0), 0.15, mat("ball", (0.8, 0.2, 0.1), 0.4))
    for f, x in ((1, -1.2), (3, 1.2)):
        ball.location = (x, -0.5, 0.6 + 0.3 * f)
        ball.keyframe_insert("location", frame=f)
    for ob in (fan, ball):
        for fc in ob.animation_data.action.fcurves if hasattr(ob.animation_data.action, "fcurves") else []:
            for kp in fc.keyframe_points:
                kp.interpolation = "LINEAR"
    scene.render.use_motion_blur = True
    scene.render.motion_blur_shutter = 0.5
    light("AREA", "window light", 300.0, (2.0, -2.0, 2.5), (45, 0, 45), size=1.5)
    color_world((0.3, 0.35, 0.4), 0.3)
    camera((0.0, -2.3, 1.2), (85, 0, 0), 28.0)


@scene
def fine_geometry() -> None:
    """Thin wires, a tuft of grass and a hairy ball against a forest sky: sub-pixel geometry."""
    new_file("fine_geometry", SIZE)
    rng = np.random.default_rng(7)
    ground = mat("soil", (0.2, 0.14, 0.08), 0.9)
    textured(ground, "noise", 20.0, (0.12, 0.09, 0.05), 0.3)
    box("ground", (0, 0, -0.05), (8, 8, 0.1), ground)
    import bmesh

    def strands(name: str, roots: np.ndarray, tips: np.ndarray, radius: float, m: bpy.types.Material) -> None:
        bm = bmesh.new()
        for a, b in zip(roots, tips, strict=True):
            d = b - a
            length = float(np.linalg.norm(d))
            geom = bmesh.ops.create_cone(bm, cap_ends=False, segments=5, radius1=radius, radius2=radius * 0.3,
                                         depth=length)  # fmt: skip
            verts = geom["verts"]
            z = np.array([0.0, 0.0, 1.0])
            axis = np.cross(z, d / length)
            s, c = float(np.linalg.norm(axis)), float(np.dot(z, d / length))
            from mathutils import Matrix, Vector

            rot = Matrix.Rotation(math.atan2(s, c), 4, Vector(axis / s)) if s > 1e-9 else Matrix.Identity(4)
            bmesh.ops.transform(bm, matrix=Matrix.Translation(Vector((a + b) / 2)) @ rot, verts=verts)
        link(name, bm, m, smooth=True)

    n = 400
    roots = np.column_stack([rng.normal(0, 0.25, n), rng.normal(0, 0.25, n), np.zeros(n)])
    tips = roots + np.column_stack([rng.normal(0, 0.08, n), rng.normal(0, 0.08, n), rng.uniform(0.3, 0.6, n)])
    strands("grass", roots, tips, 0.004, mat("grass", (0.1, 0.35, 0.05), 0.5))
    dirs = rng.normal(size=(600, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    center = np.array([0.45, -0.4, 0.35])
    strands("hair", center + dirs * 0.12, center + dirs * 0.3, 0.002, mat("fur", (0.6, 0.45, 0.3), 0.4))
    sphere("hair core", tuple(center), 0.13, mat("skin", (0.6, 0.45, 0.3), 0.6))
    wire = mat("wire", (0.05, 0.05, 0.05), 0.3, metallic=1.0)
    for i in range(6):
        a = np.array([-2.0, 0.6 + 0.1 * i, 0.7 + 0.05 * i])
        b = np.array([2.0, 0.9 + 0.1 * i, 0.5 + 0.08 * i])
        strands(f"wire {i}", a[None], b[None], 0.003, wire)
    light("SUN", "sun", 3.0, rotation=(40, 0, 140), angle=2.0)
    hdri_world("forest.exr", 1.0)
    camera((0.0, -2.0, 0.8), (78, 0, 8), 35.0)


@scene
def brick_facade() -> None:
    """A house front in low sun: bricks, tiles, a wooden door, glass windows, a paved path."""
    new_file("brick_facade", SIZE)
    brick = mat("brick", (0.5, 0.18, 0.1), 0.8)
    textured(brick, "brick", 4.0, (0.7, 0.68, 0.62), 0.4)
    box("wall", (0, 0.1, 2.0), (8.0, 0.2, 4.0), brick)
    tiles = mat("roof tiles", (0.3, 0.12, 0.08), 0.6)
    textured(tiles, "brick", 6.0, (0.2, 0.08, 0.05), 0.5)
    roof = box("roof", (0, -0.4, 4.3), (8.4, 1.6, 0.15), tiles)
    roof.rotation_euler = (math.radians(-25), 0, 0)
    box("door", (0, -0.01, 1.05), (1.0, 0.06, 2.1), wood("door", 8.0))
    glass = mat("window glass", (0.9, 0.95, 1.0), 0.0, transmission=1.0, ior=1.5)
    frame = mat("frame", (0.9, 0.9, 0.88), 0.4)
    for x in (-2.5, 2.5):
        box(f"window frame {x}", (x, -0.01, 2.2), (1.3, 0.06, 1.5), frame)
        box(f"window {x}", (x, -0.05, 2.2), (1.1, 0.04, 1.3), glass)
    paving = mat("paving", (0.45, 0.44, 0.42), 0.7)
    textured(paving, "brick", 2.0, (0.3, 0.3, 0.3), 0.3)
    box("path", (0, -3.0, -0.02), (10.0, 6.0, 0.04), paving)
    light("SUN", "sun", 4.0, rotation=(70, 0, 210), angle=1.0)
    hdri_world("courtyard.exr", 0.8)
    camera((3.5, -7.0, 1.6), (86, 0, 25), 30.0)


@scene
def studio_bottle() -> None:
    """A glossy bottle and a brushed metal cap on a seamless backdrop, lit by the studio HDRI."""
    new_file("studio_bottle", SIZE)
    backdrop = mat("backdrop", (0.6, 0.6, 0.62), 0.7)
    box("floor", (0, 0, -0.01), (4.0, 4.0, 0.02), backdrop)
    box("back", (0, 1.5, 1.0), (4.0, 0.02, 2.0), backdrop)
    body = mat("bottle", (0.05, 0.2, 0.45), 0.15, coat=1.0)
    cylinder("bottle body", (0, 0, 0), 0.12, 0.12, 0.45, body)
    cylinder("bottle neck", (0, 0, 0.45), 0.12, 0.04, 0.12, body)
    cylinder("cap", (0, 0, 0.57), 0.045, 0.045, 0.08, mat("cap", (0.8, 0.78, 0.75), 0.25, metallic=1.0))
    box("label", (0, -0.121, 0.22), (0.16, 0.002, 0.18), mat("label", (0.9, 0.88, 0.8), 0.6))
    hdri_world("studio.exr", 1.5, rotation=0.6)
    camera((0.5, -1.5, 0.45), (84, 0, 18), 70.0)


@scene
def studio_watch() -> None:
    """A watch-like product: a metal case, a glass crystal and a leather base, two softboxes and the studio HDRI."""
    new_file("studio_watch", SIZE)
    leather = mat("leather", (0.25, 0.12, 0.06), 0.55)
    textured(leather, "noise", 200.0, (0.15, 0.07, 0.03), 0.4)
    box("stand", (0, 0, 0.05), (0.6, 0.6, 0.1), leather)
    box("floor", (0, 0, -0.01), (4, 4, 0.02), mat("dark floor", (0.05, 0.05, 0.05), 0.3))
    steel = mat("steel", (0.85, 0.85, 0.85), 0.15, metallic=1.0)
    cylinder("case", (0, 0, 0.1), 0.17, 0.17, 0.05, steel)
    cylinder("dial", (0, 0, 0.15), 0.15, 0.15, 0.003, mat("dial", (0.1, 0.1, 0.12), 0.4))
    cylinder("crystal", (0, 0, 0.153), 0.15, 0.14, 0.02, mat("crystal", (1, 1, 1), 0.0, transmission=1.0, ior=1.77))
    for i in range(12):
        a = i * math.pi / 6
        box(f"index {i}", (0.12 * math.cos(a), 0.12 * math.sin(a), 0.154), (0.02, 0.005, 0.002), steel)
    light("AREA", "softbox left", 60.0, (-1.0, -0.6, 1.0), (50, 0, -60), size=0.8)
    light("AREA", "softbox right", 25.0, (1.0, -0.4, 0.6), (65, 0, 65), size=0.6)
    hdri_world("studio.exr", 0.5)
    camera((0.0, -0.9, 0.75), (50, 0, 0), 85.0)


def main(argv: list[str] | None = None) -> int:
    return build_files(SCENES, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
