"""Add-on preferences: which model denoises. The choice lists Automatic (the bundled model that
fits the passes), every bundled model, every tuned model in the models folder (``python -m
training finetune`` writes them: named from their cards, with what they were tuned from; a broken
one is listed with its error) and a file anywhere."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import bpy
from bpy.props import EnumProperty, StringProperty

from ...core import catalog
from ...core.errors import DenoiseError

# The add-on's top package: "blender_denoise_addon" from a checkout, e.g.
# "bl_ext.user_default.ai_denoiser" as an installed extension.
# This module is TOP.blender.ui.preferences.
ADDON_ID = __package__.rsplit(".", 2)[0] if __package__ else "blender_denoise_addon"


def check_model(path: str) -> str:
    """Load ``path`` and check it against the model contract; a one-line summary."""
    from ...core.model import load_model
    from .. import blender_io

    if not path:
        raise DenoiseError("no model file chosen")
    model = load_model(bpy.path.abspath(path))
    blender_io.clear_model_cache()
    return f"{model.label}: inputs {', '.join(model.info.inputs)}, transfer {model.info.transfer}"


AUTOMATIC, FILE = "BUNDLED", "FILE"  # the fixed choices' identifiers (kept from older versions)
_BUNDLED, _USER = "bundled:", "user:"


def models_folder(create: bool = False) -> Path | None:
    """The extension's user directory's ``models`` folder, where fine-tuned models go (it survives
    updates of the extension). Installed from a checkout (not as an extension): Blender's config folder."""
    try:
        path = bpy.utils.extension_path_user(ADDON_ID, path="models", create=create)
    except ValueError:  # "the package does not name an extension"
        path = bpy.utils.user_resource("CONFIG", path="ai_denoise_models", create=create)
    return Path(path) if path else None


class _Listing:
    """``catalog.list_models`` of the models folder, redone only when its files change (each
    model is loaded to check it), and the enum items Blender needs kept alive."""

    key: tuple[Any, ...] | None = None
    models: list[catalog.Listed] = []
    items: list[tuple[str, str, str, str, int]] = []


def user_models() -> list[catalog.Listed]:
    folder = models_folder()
    try:
        files = sorted(os.scandir(folder), key=lambda e: e.name) if folder and folder.is_dir() else []
        key = tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in files)
    except OSError:
        key = ()
    if key != _Listing.key:
        _Listing.models = catalog.list_models(folder) if folder else []
        _Listing.key = key
    return _Listing.models


def _number(identifier: str) -> int:
    # Dynamic enums store the number: a stable one per identifier keeps the choice when the list changes.
    return zlib.crc32(identifier.encode()) & 0x7FFFFFFF


def _model_items(self: Any, context: Any) -> list[tuple[str, str, str, str, int]]:
    items = [(AUTOMATIC, "Automatic", "The bundled model that uses the most of the passes available", "AUTO", 0)]
    for p in catalog.bundled_models():
        items.append((_BUNDLED + p.name, p.stem, f"Bundled: {p.name}", "PACKAGE", _number(_BUNDLED + p.name)))
    for m in user_models():
        ident = _USER + m.path.name
        if m.error:
            items.append((ident, f"{m.name} (broken)", m.error, "ERROR", _number(ident)))
        else:
            tip = f"Tuned model: {m.path.name}{m.tuned_from}, inputs {', '.join(m.inputs)}"
            items.append((ident, m.name, tip, "FILE", _number(ident)))
    items.append((FILE, "File", "Your own .onnx file anywhere (checked against the model contract)", "FILEBROWSER", 1))
    _Listing.items = items  # Blender keeps no reference to dynamic items' strings
    return items


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
        description="The denoiser: automatic, a bundled model, one in your models folder, or a file",
        items=_model_items,
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
        layout.prop(self, "model_source")
        if self.model_source == FILE:
            layout.prop(self, "model_path")
            if self.model_status:
                ok = self.model_status.startswith("OK")
                layout.label(text=self.model_status, icon="CHECKMARK" if ok else "ERROR")
        if not catalog.bundled_models():
            layout.label(text="No bundled model found: choose a file", icon="ERROR")
        box = layout.box()
        box.label(text="Tuned models", icon="MODIFIER")
        folder = models_folder(create=True)
        row = box.row()
        row.label(text=f"Models folder: {folder}", icon="FILE_FOLDER")
        if folder is not None:
            row.operator("wm.path_open", text="", icon="FOLDER_REDIRECT").filepath = str(folder)
        listed = user_models()
        if not listed:
            box.label(text="None yet: python -m training finetune --quality high writes NAME.onnx, its card and its "
                      "prefilters; put them all here")  # fmt: skip
        for m in listed:
            if m.error:
                box.label(text=f"{m.path.name}: {m.error}", icon="ERROR")
            else:
                box.label(text=f"{m.name} ({m.path.name}{m.tuned_from}): {', '.join(m.inputs)}", icon="CHECKMARK")


def get_preferences(context: Any = None) -> Any:
    """The add-on's preferences, or None when it was registered without addon_utils."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def model_path(context: Any = None) -> str | None:
    """The chosen model file, or None for Automatic."""
    prefs = get_preferences(context)
    choice = prefs.model_source if prefs is not None else AUTOMATIC
    if choice == FILE:
        return str(Path(bpy.path.abspath(prefs.model_path))) if prefs.model_path else ""
    if choice.startswith(_BUNDLED):
        name = choice[len(_BUNDLED) :]
        return next((str(p) for p in catalog.bundled_models() if p.name == name), "")
    if choice.startswith(_USER):
        folder = models_folder()
        return str(folder / choice[len(_USER) :]) if folder else ""
    return None


def model_label(context: Any = None) -> str:
    path = model_path(context)
    if path is None:
        models = catalog.bundled_models()
        return f"Automatic ({', '.join(p.stem for p in models)})" if models else "Automatic (none found)"
    if not path:
        return "(no file chosen)"
    card = catalog.read_card(path)
    return str(card.get("name") or Path(path).name)


classes = (AIDenoisePreferences,)

register, unregister = bpy.utils.register_classes_factory(classes)  # pyright: ignore[reportGeneralTypeIssues]
