"""Renders the small stored frame that pins the shipped models' results (test_shipped_models.py).

    ./run py tests/data/make_pin_frame.py     # writes tests/data/pin_frame.exr (bpy 5.0.1, Cycles CPU)

The demo's studio scene at 96x96: the noisy 4 spp passes (color, albedo, normal) and a 2048 spp
reference, in one EXR. Rendered once and committed, so the pin does not depend on Cycles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR

from blender_denoise_addon.blender import blender_io
from blender_denoise_addon.cli.demo import build_scene

OUT = Path(__file__).resolve().parent / "pin_frame.exr"
SIZE, SPP, REFERENCE_SPP, SEED = 96, 4, 2048, 11


def main() -> None:
    import bpy

    build_scene(SIZE, SIZE)
    scene = bpy.context.scene
    scene.cycles.seed = SEED
    noisy = blender_io.render_passes(scene, SPP)
    reference = blender_io.render_passes(scene, REFERENCE_SPP)
    assert noisy.albedo is not None and noisy.normal is not None
    channels = {}
    for name, arr, comps in (
        ("noisy", noisy.rgba, "RGBA"),
        ("albedo", noisy.albedo, "RGB"),
        ("normal", noisy.normal, "XYZ"),
        ("reference", reference.rgba[..., :3], "RGB"),
    ):
        for i, c in enumerate(comps):
            channels[f"{name}.{c}"] = np.ascontiguousarray(arr[..., i], dtype=np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as f:
        f.write(str(OUT))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
