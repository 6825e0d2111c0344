"""An exterior shot with an animated camera, saved as a .blend (needs bpy): the suite's brick
facade in low sun (bricks, roof tiles, a wooden door, glass windows, a paved path, the courtyard
HDRI), with the camera walking past the house over ``--frames`` frames.

    .venv/bin/python benchmarks/scenes/facade_walk.py OUT.blend [--frames 120] [--size 960 540]

The second scene of ``bench_finetune.py`` next to the interior walkthrough: bright, outdoor,
mostly direct light, so a fine-tune is judged on more than one kind of shot. Deterministic.
"""

from __future__ import annotations

import sys

import bpy
from common import shot_main, walk_camera
from suite import brick_facade

# (location, rotation in degrees) along the walk; frames are spread evenly between them.
PATH = (((5.0, -7.5, 1.6), (86, 0, 30)), ((0.0, -8.0, 1.7), (85, 0, 0)), ((-5.0, -7.0, 1.6), (86, 0, -32)))


def build(frames: int, size: tuple[int, int]) -> None:
    brick_facade()
    scene = bpy.context.scene
    scene.name = "FacadeWalk"
    walk_camera(scene.camera, list(PATH), frames)
    scene.render.resolution_x, scene.render.resolution_y = size


def main(argv: list[str] | None = None) -> int:
    return shot_main(build, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
