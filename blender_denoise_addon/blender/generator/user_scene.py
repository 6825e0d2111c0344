"""Training pairs from the artist's own scenes: the bpy side of ``generate-dataset --scene``.

Each sample renders a linked copy of the file's scene (its own render settings, the same
objects), so nothing of the artist's scene changes; the copy and anything made for it are
removed after the sample, and the file on disk is never saved. Crops come from the
full-resolution frame through a render border, so flat areas keep their real scale.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
from mathutils import Euler

from ...core.errors import DenoiseError
from ...dataset.spec import GenerateSettings
from .render import LAYER, configure_output
from .scene import BuiltScene, _snapshot


@dataclass
class OpenScene:
    """The scene of a loaded file that samples are rendered from."""

    file: str  # as given on the command line (or the open file's path)
    scene: Any
    frames: tuple[int, int]
    frame_size: tuple[int, int]  # full resolution, 100 %
    engine: str  # what the artist set; samples are rendered with Cycles
    missing: list[str]  # linked libraries and image files that are not there (render pink)


def open_blend(path: str) -> None:
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise DenoiseError(f"--scene {path}: Blender cannot open it ({first})") from None


def missing_files() -> list[str]:
    """Linked libraries and image files the loaded file points at that do not exist."""
    missing = []
    for lib in bpy.data.libraries:
        if not os.path.isfile(bpy.path.abspath(lib.filepath)):
            missing.append(f"library {lib.filepath}")
    for img in bpy.data.images:
        if img.source not in {"FILE", "SEQUENCE", "MOVIE", "TILED"} or img.packed_file is not None:
            continue
        path = bpy.path.abspath(img.filepath, library=img.library)
        if img.source == "TILED":
            path = path.replace("<UDIM>", "1001").replace("<UVTILE>", "u1_v1")
        if img.source != "SEQUENCE" and not os.path.isfile(path):
            missing.append(f"image {img.name} ({img.filepath})")
    return sorted(missing)


def inspect(file: str, settings: GenerateSettings, scene: Any = None) -> OpenScene:
    """Check the loaded file's scene against the settings; one-line errors for what cannot work."""
    scene = scene or bpy.context.scene
    where = f"{Path(file).name}, scene {scene.name!r}"
    if scene.camera is None:
        raise DenoiseError(f"{where} has no camera: set one in the Scene properties")
    own = (scene.frame_start, scene.frame_end)
    frames = settings.frames or own
    if frames[0] < own[0] or frames[1] > own[1]:
        raise DenoiseError(f"{where}: frames {frames[0]}-{frames[1]} are outside the scene's range {own[0]}-{own[1]}")
    r = scene.render
    missing = missing_files()
    if missing and settings.strict:
        raise DenoiseError(f"{where}: missing files (they render pink): {'; '.join(missing)}")
    return OpenScene(file, scene, frames, (r.resolution_x, r.resolution_y), r.engine, missing)


class CopiedScene(BuiltScene):
    """The render copy; ``remove()`` also puts the artist's scene back on its frame."""

    def __init__(self, scene: Any, before: set[int], original: Any) -> None:
        super().__init__(scene, before)
        self._original = original
        self._frame = original.frame_current

    def remove(self) -> None:
        super().remove()
        self._original.frame_set(self._frame)


def build_copy(src: OpenScene, settings: GenerateSettings, draw: dict[str, Any]) -> tuple[BuiltScene, dict[str, Any]]:
    """A linked copy of ``src.scene`` set up to render ``draw``'s frame and crop with Cycles.

    Returns the copy (its ``remove()`` deletes everything made here) and the render settings
    for the record.
    """
    original = src.scene
    before = _snapshot()
    copy = original.copy()
    built = CopiedScene(copy, before, original)
    try:
        copy.name = f"{original.name} (AI Denoise dataset)"
        # One view layer, named as the generator's EXR reader expects.
        keep = next((v for v in copy.view_layers if v.use), copy.view_layers[0])
        for vl in list(copy.view_layers):
            if vl != keep:
                copy.view_layers.remove(vl)
        keep.name = LAYER
        keep.use = True
        settings_ai = getattr(copy, "ai_denoise", None)
        if settings_ai is not None:
            settings_ai.denoise_renders = False  # the add-on's render hook must not touch dataset renders
        copy.frame_set(draw["frame"])
        if draw["jitter_degrees"]:
            copy.camera = _jittered_camera(copy, original.camera, draw["jitter_degrees"])
        r = copy.render
        r.engine = "CYCLES"
        r.resolution_percentage = 100
        x0, y0, w, h = draw["crop"]
        fw, fh = src.frame_size
        r.use_border = (w, h) != (fw, fh)
        r.use_crop_to_border = True
        r.border_min_x, r.border_max_x = x0 / fw, (x0 + w) / fw
        r.border_min_y, r.border_max_y = y0 / fh, (y0 + h) / fh
        r.use_compositing = False
        r.use_sequencer = False
        c = copy.cycles
        c.device = "CPU"
        c.use_denoising = False
        c.use_animated_seed = False
        c.time_limit = 0.0
        if settings.clamp_direct is not None:
            c.sample_clamp_direct = settings.clamp_direct
        if settings.clamp_indirect is not None:
            c.sample_clamp_indirect = settings.clamp_indirect
        r.use_persistent_data = True
        r.threads_mode = "AUTO"
        keep.cycles.denoising_store_passes = True
        keep.use_pass_combined = True
        configure_output(copy)
        record = {
            "engine": "CYCLES",
            "scene_engine": src.engine,
            "device": "CPU",
            "clamp_direct": c.sample_clamp_direct,
            "clamp_indirect": c.sample_clamp_indirect,
            "max_bounces": c.max_bounces,
            "motion_blur": r.use_motion_blur,
            "film_transparent": r.film_transparent,
            "frame_size": list(src.frame_size),
        }
    except BaseException:
        built.remove()
        raise
    return built, record


def _jittered_camera(scene: Any, camera: Any, degrees: list[float]) -> Any:
    """A static copy of ``camera`` where the animated one is at this frame, turned by ``degrees``
    (pitch, yaw about its own axes); linked to ``scene`` only."""
    jit = camera.copy()  # shares the camera data (lens, DOF); a new object
    jit.animation_data_clear()
    jit.constraints.clear()
    jit.parent = None
    world = camera.matrix_world.copy()
    turn = Euler((math.radians(degrees[0]), math.radians(degrees[1]), 0.0), "XYZ").to_matrix().to_4x4()
    jit.matrix_world = world @ turn
    scene.collection.objects.link(jit)
    return jit
