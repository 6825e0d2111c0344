"""An exterior shot with an animated camera, saved as a .blend (needs bpy): the suite's brick
facade in low sun (bricks, roof tiles, a wooden door, glass windows, a paved path, the courtyard
HDRI), with the camera walking past the house over ``--frames`` frames.

    .venv/bin/python benchmarks/scenes/facade_walk.py OUT.blend [--frames 120] [--size 960 540]

The second scene of ``bench_finetune.py`` next to the interior walkthrough: bright, outdoor,
mostly direct light, so a fine-tune is judged on more than one kind of shot. Deterministic.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import bpy
from suite import brick_facade

# (location, rotation in degrees) along the walk; frames are spread evenly between them.
PATH = (((5.0, -7.5, 1.6), (86, 0, 30)), ((0.0, -8.0, 1.7), (85, 0, 0)), ((-5.0, -7.0, 1.6), (86, 0, -32)))


def build(frames: int, size: tuple[int, int]) -> None:
    brick_facade()
    scene = bpy.context.scene
    scene.name = "FacadeWalk"
    cam = scene.camera
    for i, (loc, rot) in enumerate(PATH):
        cam.location = loc
        cam.rotation_euler = tuple(math.radians(a) for a in rot)
        f = 1 + round(i * (frames - 1) / (len(PATH) - 1))
        cam.keyframe_insert("location", frame=f)
        cam.keyframe_insert("rotation_euler", frame=f)
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.resolution_x, scene.render.resolution_y = size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the .blend file to write")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, nargs=2, default=[960, 540], metavar=("W", "H"))
    args = p.parse_args(argv)
    build(args.frames, (args.size[0], args.size[1]))
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
