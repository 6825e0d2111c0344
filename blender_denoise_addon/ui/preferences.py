"""Add-on preferences: which model denoises (the bundled default or a user .onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import EnumProperty, StringProperty

from ..core import catalog
from ..core.errors import DenoiseError

# The add-on's top package: "blender_denoise_addon" from a checkout, e.g.
# "bl_ext.user_default.ai_denoiser" as an installed extension.
ADDON_ID = __package__.rpartition(".")[0] if __package__ else "blender_denoise_addon"


def check_model(path: str) -> str:
    """Load ``path`` and check it against the model contract; a one-line summary."""
    from .. import blender_io
    from ..core.model import load_model

    if not path:
        raise DenoiseError("no model file chosen")
    model = load_model(bpy.path.abspath(path))
    blender_io.clear_model_cache()
    return f"{model.label}: inputs {', '.join(model.info.inputs)}, transfer {model.info.transfer}"


def _model_chosen(self: Any, context: Any) -> None:
    if self.model_source != "FILE":
        self.model_status = ""
        return
    try:
        self.model_status = "OK: " + check_model(self.model_path)
    except DenoiseError as e:
        self.model_status = f"ERROR: {e}"


class AIDenoisePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    model_source: EnumProperty(  # type: ignore[valid-type]
        name="Model",
        items=[
            ("BUNDLED", "Bundled", "The shipped model that uses the most of the passes available"),
            ("FILE", "File", "Your own .onnx file (checked against the model contract when chosen)"),
        ],
        default="BUNDLED",
        update=_model_chosen,
    )
    model_path: StringProperty(  # type: ignore[valid-type]
        name="Model File",
        description="An ONNX denoiser that follows the model contract",
        subtype="FILE_PATH",
        update=_model_chosen,
    )
    model_status: StringProperty(name="Status", default="")  # type: ignore[valid-type]

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.prop(self, "model_source", expand=True)
        if self.model_source == "FILE":
            layout.prop(self, "model_path")
            if self.model_status:
                ok = self.model_status.startswith("OK")
                layout.label(text=self.model_status, icon="CHECKMARK" if ok else "ERROR")
        else:
            models = catalog.bundled_models()
            if not models:
                layout.label(text="No bundled model found: choose a file", icon="ERROR")
            for p in models:
                layout.label(text=p.name, icon="FILE")


def get_preferences(context: Any = None) -> Any:
    """The add-on's preferences, or None when it was registered without addon_utils."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def model_path(context: Any = None) -> str | None:
    """The user's model file, or None for the bundled default."""
    prefs = get_preferences(context)
    if prefs is None or prefs.model_source != "FILE":
        return None
    return str(Path(bpy.path.abspath(prefs.model_path))) if prefs.model_path else ""


def model_label(context: Any = None) -> str:
    path = model_path(context)
    if path is None:
        models = catalog.bundled_models()
        return f"Bundled ({', '.join(p.stem for p in models)})" if models else "Bundled (none found)"
    return Path(path).name or "(no file chosen)"


classes = (AIDenoisePreferences,)

register, unregister = bpy.utils.register_classes_factory(classes)  # pyright: ignore[reportGeneralTypeIssues]
