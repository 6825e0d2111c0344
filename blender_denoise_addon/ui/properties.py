"""The scene's AI Denoise settings (``scene.ai_denoise``): what the panel edits."""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..blender_io import Options
from ..core.defaults import TILING

TILING_ITEMS = [
    ("SLIDING", "Sliding Window", "Overlapping tiles, seamless (exact when the overlap covers the receptive field)"),
    ("GRID", "Grid", "Non-overlapping tiles: least work, seams possible"),
    ("FULL", "Full Frame", "The whole frame at once: needs the most memory"),
]


def _hook_toggled(self: Any, context: Any) -> None:
    from . import hook  # lazy: hook imports this module

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
    # The last result, shown in the panel.
    last_seconds: FloatProperty(name="Time", default=0.0, unit="TIME_ABSOLUTE")  # type: ignore[valid-type]
    last_tiles: IntProperty(name="Tiles", default=0)  # type: ignore[valid-type]
    last_model: StringProperty(name="Model", default="")  # type: ignore[valid-type]
    last_size: StringProperty(name="Size", default="")  # type: ignore[valid-type]
    last_error: StringProperty(name="Last Error", default="")  # type: ignore[valid-type]


def options(settings: Any, model_path: str | None) -> Options:
    """Panel settings -> core options."""
    return Options(
        tiling=settings.tiling.lower(),
        tile=settings.tile_size or None,
        overlap=None if settings.auto_overlap else settings.overlap,
        threads=settings.threads or None,
        use_albedo=settings.use_albedo,
        use_normal=settings.use_normal,
        model_path=model_path,
    )


def record_result(settings: Any, stats: Any, size: tuple[int, int]) -> None:
    settings.last_seconds = stats.seconds
    settings.last_tiles = stats.tiles
    settings.last_model = f"{stats.model} ({', '.join(stats.inputs)})"
    settings.last_size = f"{size[0]} x {size[1]}"
    settings.last_error = ""


classes = (AIDenoiseSettings,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ai_denoise = PointerProperty(type=AIDenoiseSettings)


def unregister() -> None:
    del bpy.types.Scene.ai_denoise
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
