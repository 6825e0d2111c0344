"""A hand-built archviz interior with an animated camera, saved as a .blend (needs bpy).

    .venv/bin/python benchmarks/scenes/interior_walkthrough.py OUT.blend [--frames 120] [--size 960 540]

Not the training generator's kind of scene: a furnished room (plaster walls, a wooden floor,
a rug, a sofa, a table, shelves of books, a plant, a glass vase, a metal lamp) lit by the sun
and the sky through a window and a dim ceiling lamp, with large flat walls in indirect light.
The camera walks through it over ``--frames`` frames. The scene is set to Eevee, the way many
archviz files are; generate-dataset renders it with Cycles. Deterministic (no randomness).
"""

from __future__ import annotations

import math
import os
import sys

import bpy
from common import box, cylinder, mat, shot_main, sphere, textured, walk_camera


def build(frames: int, size: tuple[int, int]) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Walkthrough"
    W, D, H = 6.0, 5.0, 2.8  # room: x from -W/2, y from -D/2, floor at z = 0
    t = 0.15  # wall thickness

    plaster = mat("plaster", (0.78, 0.76, 0.72), 0.9)
    textured(plaster, "noise", 40.0, (0.72, 0.70, 0.66), 0.05)
    ceiling = mat("ceiling", (0.85, 0.85, 0.84), 0.95)
    wood = mat("wood floor", (0.35, 0.2, 0.1), 0.45)
    textured(wood, "wood", 3.0, (0.2, 0.1, 0.05), 0.1)
    rug = mat("rug", (0.5, 0.12, 0.1), 1.0)
    textured(rug, "brick", 6.0, (0.75, 0.65, 0.45), 0.2)
    fabric = mat("sofa fabric", (0.16, 0.22, 0.3), 1.0)
    textured(fabric, "noise", 120.0, (0.12, 0.17, 0.24), 0.3)
    oak = mat("oak", (0.45, 0.3, 0.17), 0.35)
    textured(oak, "wood", 5.0, (0.3, 0.18, 0.08), 0.05)
    metal = mat("brushed metal", (0.8, 0.8, 0.78), 0.25, metallic=1.0)
    glass = mat("glass", (0.9, 0.95, 0.92), 0.0, transmission=1.0, ior=1.45)
    leaf = mat("leaves", (0.08, 0.25, 0.05), 0.5)
    pot = mat("terracotta", (0.55, 0.25, 0.12), 0.8)
    bulb = mat("bulb", (1.0, 1.0, 1.0), 0.5, emission=30.0)
    books = [
        mat(f"book {i}", c, 0.7)
        for i, c in enumerate([(0.6, 0.1, 0.1), (0.1, 0.3, 0.5), (0.8, 0.7, 0.4), (0.1, 0.4, 0.2)])
    ]

    # Shell: floor, ceiling, three full walls, and the +x wall with a window opening.
    box("floor", (0, 0, -t / 2), (W + 2 * t, D + 2 * t, t), wood)
    box("ceiling", (0, 0, H + t / 2), (W + 2 * t, D + 2 * t, t), ceiling)
    box("wall -x", (-W / 2 - t / 2, 0, H / 2), (t, D, H), plaster)
    box("wall -y", (0, -D / 2 - t / 2, H / 2), (W, t, H), plaster)
    box("wall +y", (0, D / 2 + t / 2, H / 2), (W, t, H), plaster)
    win_y, win_z = (-0.9, 1.3), (0.8, 2.3)  # the window in the +x wall
    x = W / 2 + t / 2
    box("wall +x a", (x, (-D / 2 + win_y[0]) / 2, H / 2), (t, win_y[0] + D / 2, H), plaster)
    box("wall +x b", (x, (win_y[1] + D / 2) / 2, H / 2), (t, D / 2 - win_y[1], H), plaster)
    wy = (win_y[0] + win_y[1]) / 2
    box("wall +x sill", (x, wy, win_z[0] / 2), (t, win_y[1] - win_y[0], win_z[0]), plaster)
    box("wall +x lintel", (x, wy, (win_z[1] + H) / 2), (t, win_y[1] - win_y[0], H - win_z[1]), plaster)
    box("window bar", (x, wy, (win_z[0] + win_z[1]) / 2), (0.05, 0.05, win_z[1] - win_z[0]), oak)

    # Furniture.
    box("rug", (0.3, 0.2, 0.005), (2.6, 1.8, 0.01), rug)
    box("sofa seat", (-2.1, 0.3, 0.22), (0.9, 2.2, 0.44), fabric)
    box("sofa back", (-2.5, 0.3, 0.6), (0.2, 2.2, 0.8), fabric)
    box("sofa arm a", (-2.1, -0.9, 0.35), (0.9, 0.2, 0.5), fabric)
    box("sofa arm b", (-2.1, 1.5, 0.35), (0.9, 0.2, 0.5), fabric)
    box("table top", (0.4, 0.2, 0.42), (1.2, 0.7, 0.04), oak)
    for i, (dx, dy) in enumerate([(-0.5, -0.28), (0.5, -0.28), (-0.5, 0.28), (0.5, 0.28)]):
        box(f"table leg {i}", (0.4 + dx, 0.2 + dy, 0.2), (0.04, 0.04, 0.4), oak)
    cylinder("vase", (0.6, 0.1, 0.44), 0.08, 0.05, 0.3, glass)
    sphere("fruit", (0.2, 0.3, 0.5), 0.06, pot)
    # Shelves along the -y wall, full of books.
    for level in range(4):
        z = 0.3 + level * 0.45
        box(f"shelf {level}", (1.2, -2.3, z), (1.6, 0.3, 0.03), oak)
        for b in range(12):
            h = 0.22 + 0.08 * ((b * 7 + level * 3) % 5) / 4
            box(f"book {level}.{b}", (0.5 + b * 0.12, -2.3, z + 0.015 + h / 2), (0.09, 0.22, h), books[(b + level) % 4])
    for side in (0.38, 2.02):
        box(f"shelf side {side}", (side, -2.3, 1.0), (0.03, 0.3, 1.75), oak)
    # A plant in the corner, a floor lamp by the sofa.
    cylinder("pot", (2.4, 1.9, 0.0), 0.22, 0.16, 0.4, pot)
    for i in range(9):
        a = 2 * math.pi * i / 9
        sphere(f"leaf {i}", (2.4 + 0.25 * math.cos(a), 1.9 + 0.25 * math.sin(a), 0.7 + 0.12 * (i % 3)), 0.16, leaf)
    cylinder("lamp pole", (-2.3, -1.6, 0.0), 0.02, 0.02, 1.5, metal)
    cylinder("lamp shade", (-2.3, -1.6, 1.45), 0.25, 0.15, 0.25, metal)
    sphere("ceiling bulb", (0.0, 0.0, H - 0.15), 0.05, bulb)

    # Light: the sun and the sky through the window, and a dim ceiling lamp.
    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy = 4.0
    sun.angle = math.radians(1.0)
    sun_ob = bpy.data.objects.new("sun", sun)
    sun_ob.rotation_euler = (math.radians(60), 0.0, math.radians(100))  # low, from +x
    scene.collection.objects.link(sun_ob)
    lamp = bpy.data.lights.new("ceiling lamp", "POINT")
    lamp.energy = 25.0
    lamp.shadow_soft_size = 0.05
    lamp_ob = bpy.data.objects.new("ceiling lamp", lamp)
    lamp_ob.location = (0.0, 0.0, H - 0.25)
    scene.collection.objects.link(lamp_ob)
    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    env = world.node_tree.nodes.new("ShaderNodeTexEnvironment")
    hdri = os.path.join(bpy.utils.system_resource("DATAFILES"), "studiolights", "world", "courtyard.exr")
    env.image = bpy.data.images.load(hdri, check_existing=True)
    world.node_tree.links.new(env.outputs["Color"], bg.inputs["Color"])
    bg.inputs["Strength"].default_value = 1.5
    scene.world = world

    # The camera walks from the door side to the window, turning to keep the room in view.
    cam = bpy.data.cameras.new("camera")
    cam.lens = 24.0
    cam_ob = bpy.data.objects.new("camera", cam)
    scene.collection.objects.link(cam_ob)
    scene.camera = cam_ob
    path = [((-1.5, 2.2, 1.6), (85, 0, -150)), ((0.5, 2.2, 1.5), (82, 0, -185)), ((2.2, 1.0, 1.4), (80, 0, -225))]
    walk_camera(cam_ob, path, frames)
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.engine = "BLENDER_EEVEE"  # artists' files often are; the pairs render with Cycles


def main(argv: list[str] | None = None) -> int:
    return shot_main(build, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
