"""The scene's AI Denoise settings: ``scene.ai_denoise`` (denoising) and
``scene.ai_denoise_dataset`` (training pairs), what the panels edit."""

from __future__ import annotations

import math
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ...core.defaults import DEFAULT_QUALITY, QUALITY, TEMPORAL, TILING
from ...core.errors import DenoiseError
from ...dataset.spec import GenerateSettings, parse_spp_list, validate
from . import hook

TILING_ITEMS = [
    ("SLIDING", "Sliding Window", "Overlapping tiles, seamless (exact when the overlap covers the receptive field)"),
    ("GRID", "Grid", "Non-overlapping tiles: least work, seams possible"),
    ("FULL", "Full Frame", "The whole frame at once: needs the most memory"),
]


def _hook_toggled(self: Any, context: Any) -> None:
    hook.toggled(context.scene if context.scene is not None else self.id_data)


class AIDenoiseSettings(bpy.types.PropertyGroup):
    samples: IntProperty(  # type: ignore[valid-type]
        name="Samples",
        description="Cycles samples per pixel for the quick render the Denoise button makes",
        default=4,
        min=1,
        soft_max=256,
    )
    tiling: EnumProperty(  # type: ignore[valid-type]
        name="Tiling", description="How the frame is split for the network", items=TILING_ITEMS, default="SLIDING"
    )
    tile_size: IntProperty(  # type: ignore[valid-type]
        name="Tile Size",
        description=(
            f"Tile edge in pixels (rounded up to the model's alignment). 0: {TILING.auto_tile_text} "
            "(fastest; bigger tiles take more memory)"
        ),
        default=0,
        min=0,
        soft_max=2048,
        subtype="PIXEL",
    )
    auto_overlap: BoolProperty(  # type: ignore[valid-type]
        name="Automatic Overlap",
        description="Overlap from the model's receptive field: sliding tiles then match a full-frame pass exactly",
        default=True,
    )
    overlap: IntProperty(  # type: ignore[valid-type]
        name="Overlap", description="Sliding-window overlap in pixels", default=32, min=0, soft_max=512, subtype="PIXEL"
    )
    use_albedo: BoolProperty(  # type: ignore[valid-type]
        name="Use Albedo", description="Feed the albedo pass when the model takes it", default=True
    )
    use_normal: BoolProperty(  # type: ignore[valid-type]
        name="Use Normal", description="Feed the normal pass when the model takes it", default=True
    )
    quality: EnumProperty(  # type: ignore[valid-type]
        name="Quality",
        description="Speed against quality of the denoise (the same choices as --quality on the command line)",
        items=[(k.upper(), k.title(), q.description[:1].upper() + q.description[1:]) for k, q in QUALITY.items()],
        default=DEFAULT_QUALITY.upper(),
    )
    threads: IntProperty(  # type: ignore[valid-type]
        name="Threads", description="CPU threads for inference (0: all cores)", default=0, min=0, soft_max=64
    )
    output_path: StringProperty(  # type: ignore[valid-type]
        name="Save To",
        description="Also save the result here (.exr: linear; .png/.jpg/.tif: with the view transform). Empty: don't",
        default="",
        subtype="FILE_PATH",
    )
    denoise_renders: BoolProperty(  # type: ignore[valid-type]
        name="Denoise Every Render",
        description=(
            "After F12 the Render Result shows the denoised image; each frame an animation writes gets a "
            "'_denoised' sibling file. Turns on Denoising Data passes"
        ),
        default=False,
        update=_hook_toggled,
    )
    temporal: BoolProperty(  # type: ignore[valid-type]
        name="Temporal",
        description=(
            "Animation renders: denoise each frame with its neighbours, for less flicker. While on, the view "
            "layers get the Vector and Z passes and Cycles' animated seed is on (all put back when off). "
            f"A frame's denoised file is written once the {TEMPORAL.radius} frames after it have rendered"
        ),
        default=False,
        update=_hook_toggled,
    )
    # The last result, shown in the panel.
    last_seconds: FloatProperty(name="Time", default=0.0, unit="TIME_ABSOLUTE")  # type: ignore[valid-type]
    last_tiles: IntProperty(name="Tiles", default=0)  # type: ignore[valid-type]
    last_model: StringProperty(name="Model", default="")  # type: ignore[valid-type]
    last_size: StringProperty(name="Size", default="")  # type: ignore[valid-type]
    last_error: StringProperty(name="Last Error", default="")  # type: ignore[valid-type]


class AIDenoiseDatasetSettings(bpy.types.PropertyGroup):
    source: EnumProperty(  # type: ignore[valid-type]
        name="Scenes",
        items=[
            ("RANDOM", "Random Scenes", "Random Cycles scenes built for each sample"),
            (
                "THIS_FILE",
                "This File",
                "Crops of this scene's full-resolution frames, drawn from its frame range (rendered with Cycles; "
                "the scene is not changed)",
            ),
        ],
        default="RANDOM",
    )
    camera_jitter: FloatProperty(  # type: ignore[valid-type]
        name="Camera Jitter",
        description="This File: turn the camera up to this much (pitch and yaw) per sample for more viewpoints",
        default=0.0,
        min=0.0,
        max=0.785398,
        subtype="ANGLE",
    )
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Output Folder",
        description="Dataset folder; generating into an existing one resumes it",
        subtype="DIR_PATH",
        default="//ai_denoise_dataset",
    )
    count: IntProperty(name="Count", description="Number of samples (scenes)", default=100, min=1)  # type: ignore[valid-type]
    resolution_x: IntProperty(name="Width", default=256, min=8, max=16384, subtype="PIXEL")  # type: ignore[valid-type]
    resolution_y: IntProperty(name="Height", default=256, min=8, max=16384, subtype="PIXEL")  # type: ignore[valid-type]
    noisy_spp: StringProperty(  # type: ignore[valid-type]
        name="Noisy Samples", description="Samples per pixel of the noisy renders, e.g. '1 4 16'", default="1 4 16"
    )
    clean_spp: IntProperty(name="Clean Samples", description="Samples of the clean render", default=1024, min=2)  # type: ignore[valid-type]
    seed: IntProperty(name="Seed", description="Same seed, same dataset", default=0, min=0)  # type: ignore[valid-type]
    adaptive_threshold: FloatProperty(  # type: ignore[valid-type]
        name="Clean Adaptive Threshold",
        description="Adaptive-sampling noise threshold of the clean render (0 = every pixel gets all samples)",
        default=GenerateSettings.clean_adaptive_threshold,
        min=0.0,
        max=0.5,
        precision=4,
    )
    running: BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    status: StringProperty(default="", options={"SKIP_SAVE"})  # type: ignore[valid-type]


def settings_from(props: AIDenoiseDatasetSettings) -> GenerateSettings:
    out = props.output_dir.strip()
    if not out:
        raise DenoiseError("choose an output folder")
    if out.startswith("//") and not bpy.data.filepath:
        raise DenoiseError(
            "the output folder is relative ('//') but the .blend file is not saved: save it or pick an absolute folder"
        )
    this_file = props.source == "THIS_FILE"
    scene = props.id_data  # the scene these settings belong to
    return validate(
        out=bpy.path.abspath(out),
        count=props.count,
        resolution=(props.resolution_x, props.resolution_y),
        noisy_spp=parse_spp_list(props.noisy_spp),
        clean_spp=props.clean_spp,
        seed=props.seed,
        clean_adaptive_threshold=props.adaptive_threshold,
        # The open scene as it is now (saved or not): the job renders it in this session.
        scenes=[bpy.data.filepath or "untitled.blend"] if this_file else [],
        frames=(scene.frame_start, scene.frame_end) if this_file else None,
        camera_jitter=math.degrees(props.camera_jitter) if this_file else 0.0,
        clamp_direct=None if this_file else 0.0,
        clamp_indirect=None if this_file else 0.0,
        check_files=False,
    )


classes = (AIDenoiseSettings, AIDenoiseDatasetSettings)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ai_denoise = PointerProperty(type=AIDenoiseSettings)
    bpy.types.Scene.ai_denoise_dataset = PointerProperty(type=AIDenoiseDatasetSettings)


def unregister() -> None:
    del bpy.types.Scene.ai_denoise_dataset
    del bpy.types.Scene.ai_denoise
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
