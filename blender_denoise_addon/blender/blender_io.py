"""Blender-side plumbing shared by the operator, the render hook and the headless CLI.

Only converts between bpy data and the core's numpy arrays/dataclasses: render
passes in (through a multilayer EXR, since Blender 5.0 gives Python no Render
Result pixels), an Image datablock out. All denoising goes through ``core``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..core import catalog
from ..core.atomic import atomic_path
from ..core.denoise import CancelFn, DenoiseResult, ProgressFn
from ..core.denoise import denoise_frame as core_denoise_frame
from ..core.errors import DenoiseCancelled, DenoiseError, ModelContractError
from ..core.imageio import (
    COMPOSITE_LAYER,
    PASS_ALBEDO,
    PASS_COMBINED,
    Frame,
    exr_layers,
    frame_from_layer,
    read_image,
    write_image,
)
from ..core.model import Model
from ..core.options import Options
from . import compat

RESULT_IMAGE = "AI Denoised"

# Render settings the quick render changes, restored in this order, which matters:
# media_type (5.0+; absent before) before file_format before color_depth, because each
# one limits the values the next accepts (PNG takes no 32-bit depth).
_RENDER_ATTRS: tuple[tuple[str, str], ...] = (
    ("render", "engine"),
    ("render", "filepath"),
    ("render", "use_file_extension"),
    ("render", "use_compositing"),
    ("render", "use_sequencer"),
    ("render", "use_single_layer"),
    ("render", "resolution_percentage"),
    ("cycles", "samples"),
    ("cycles", "seed"),
    ("cycles", "use_animated_seed"),
    ("cycles", "use_denoising"),
    ("cycles", "denoiser"),
    ("cycles", "denoising_input_passes"),
    ("cycles", "denoising_prefilter"),
    ("cycles", "denoising_quality"),
    ("cycles", "use_adaptive_sampling"),
    ("cycles", "adaptive_threshold"),
    ("cycles", "adaptive_min_samples"),
    ("cycles", "time_limit"),
    ("image_settings", "media_type"),
    ("image_settings", "file_format"),
    ("image_settings", "color_depth"),
    ("image_settings", "exr_codec"),
    ("image_settings", "color_management"),
)


def _owner(scene: Any, name: str) -> Any:
    if name == "render":
        return scene.render
    if name == "cycles":
        return scene.cycles
    return scene.render.image_settings


@contextlib.contextmanager
def preserved_settings(scene: Any) -> Iterator[None]:
    """Snapshot the render settings this add-on may change and restore them on exit,
    also when the body raises or is cancelled."""
    saved: list[tuple[Any, str, Any]] = []
    for owner_name, attr in _RENDER_ATTRS:
        owner = _owner(scene, owner_name)
        if hasattr(owner, attr):
            saved.append((owner, attr, getattr(owner, attr)))
    layers = [(vl, [(o, a, getattr(o, a)) for o, a in _layer_attrs(vl)]) for vl in scene.view_layers]
    try:
        yield
    finally:
        # Forward order: media_type must be back before file_format and color_depth.
        for owner, attr, value in saved:
            try:
                if getattr(owner, attr) != value:
                    setattr(owner, attr, value)
            except (TypeError, ValueError, AttributeError) as e:  # keep restoring the rest
                print(f"AI Denoise: could not restore {attr}={value!r}: {e}")
        for _vl, values in layers:
            for owner, attr, value in values:
                if getattr(owner, attr) != value:
                    setattr(owner, attr, value)


def _layer_attrs(vl: Any) -> list[tuple[Any, str]]:
    """The view-layer passes the add-on may turn on: Denoising Data, and Vector and Depth for temporal work."""
    return [(vl.cycles, "denoising_store_passes"), (vl, "use_pass_vector"), (vl, "use_pass_z")]


def set_multilayer_exr(scene: Any) -> None:
    """Lossless 32-bit multilayer EXR."""
    ims = scene.render.image_settings
    compat.set_file_format(ims, compat.MULTILAYER_EXR)
    ims.color_depth = "32"
    ims.exr_codec = "ZIP"


# -- the hook must not denoise the add-on's own renders -------------------------------

_suspend = threading.local()


@contextlib.contextmanager
def hook_suspended() -> Iterator[None]:
    """Renders inside this block are the add-on's own: the render hook ignores them."""
    depth = getattr(_suspend, "depth", 0)
    _suspend.depth = depth + 1
    try:
        yield
    finally:
        _suspend.depth = depth


def hook_is_suspended() -> bool:
    return getattr(_suspend, "depth", 0) > 0


# -- rendering passes ------------------------------------------------------------------


def check_camera(scene: Any) -> None:
    if scene.camera is None:
        raise DenoiseError(f"scene {scene.name!r} has no active camera: set one in Scene properties")


def _render_exr(
    scene: Any,
    spp: int,
    path: Path,
    layer: Any,
    *,
    motion: bool = False,
    seed: int | None = None,
    animated_seed: bool | None = None,
    builtin_denoiser: str | None = None,
) -> None:
    """Render the active camera with Cycles at exactly ``spp`` into a multilayer EXR at ``path``
    (Denoising Data on; ``motion``: Vector and Depth too). ``builtin_denoiser``: None, or Blender's
    own OIDN at that quality ('HIGH', ...) with the Accurate prefilter, as Blender runs it. The
    scene's settings are restored; raises DenoiseCancelled when nothing was written."""
    check_camera(scene)
    if spp < 1:
        raise DenoiseError(f"samples must be at least 1, got {spp}")
    with preserved_settings(scene), hook_suspended():
        r = scene.render
        r.engine = "CYCLES"
        cy = scene.cycles
        cy.samples = spp
        cy.use_adaptive_sampling = False  # exactly spp samples per pixel
        cy.time_limit = 0.0
        if seed is not None:
            cy.seed = seed
        if animated_seed is not None:
            cy.use_animated_seed = animated_seed
        cy.use_denoising = builtin_denoiser is not None
        if builtin_denoiser is not None:
            cy.denoiser = "OPENIMAGEDENOISE"
            cy.denoising_input_passes = "RGB_ALBEDO_NORMAL"
            cy.denoising_prefilter = "ACCURATE"
            if hasattr(cy, "denoising_quality"):
                cy.denoising_quality = builtin_denoiser
        # One view layer and no compositor, so the EXR holds exactly one Combined.
        r.use_single_layer = True
        r.use_compositing = False
        r.use_sequencer = False
        layer.cycles.denoising_store_passes = True
        if motion:
            layer.use_pass_vector = True
            layer.use_pass_z = True
        set_multilayer_exr(scene)
        r.filepath = str(path)
        r.use_file_extension = False
        # layer=: only this view layer renders; no window needed (background mode).
        result = bpy.ops.render.render(write_still=True, scene=scene.name, layer=layer.name)
    if "CANCELLED" in result or not path.is_file():
        raise DenoiseCancelled("the render was cancelled")


def _layer(scene: Any, view_layer: Any = None) -> Any:
    layer = view_layer or bpy.context.view_layer
    if layer is None or layer.name not in scene.view_layers:
        layer = scene.view_layers[0]
    return layer


def render_passes(scene: Any, spp: int, view_layer: Any = None) -> Frame:
    """Render the active camera with Cycles at ``spp`` (Denoising Data on, Cycles'
    own denoiser off) and return the passes. The scene's settings are restored."""
    with tempfile.TemporaryDirectory(prefix="ai_denoise_") as tmp:
        path = Path(tmp) / "passes.exr"
        _render_exr(scene, spp, path, _layer(scene, view_layer))
        return read_image(path)


def render_sequence_frame(
    scene: Any,
    spp: int,
    dst: Path,
    view_layer: Any = None,
    *,
    seed: int | None = None,
    animated_seed: bool = True,
    builtin_denoiser: str | None = None,
) -> Path:
    """Render the scene's current frame for temporal denoising into the multilayer EXR ``dst``
    (atomically: a cancelled render leaves no file): Denoising Data, Vector and Depth passes, and
    Cycles' animated seed, so that neighbouring frames hold other samples."""
    with atomic_path(dst) as tmp:
        _render_exr(
            scene,
            spp,
            tmp,
            _layer(scene, view_layer),
            motion=True,
            seed=seed,
            animated_seed=animated_seed,
            builtin_denoiser=builtin_denoiser,
        )
    return dst


def read_render_result(scene: Any, path: Path) -> Frame:
    """Passes of a saved Render Result, choosing layers explicitly (several view layers
    and a Composite layer can share the file).

    Color: the composited image when the compositor ran (that is what Blender shows
    and writes), else the view layer's Noisy Image (Cycles' own denoiser was on),
    else its Combined. Albedo/normal: the first rendered view layer that has them.
    """
    layers = exr_layers(path)
    vl_names = [vl.name for vl in scene.view_layers if vl.use]
    rendered = [n for n in vl_names if n in layers] or [n for n in layers if n != COMPOSITE_LAYER]
    aux_name = next((n for n in rendered if f"{PASS_ALBEDO}.R" in layers[n]), rendered[0] if rendered else None)
    aux = frame_from_layer(layers[aux_name]) if aux_name is not None else None
    frame = None
    if COMPOSITE_LAYER in layers:
        frame = frame_from_layer(layers[COMPOSITE_LAYER], source=str(path))
    if frame is None and aux_name is not None:
        frame = frame_from_layer(layers[aux_name], str(path), color_pass="Noisy Image")
        if frame is not None:
            frame.alpha = layers[aux_name].get(f"{PASS_COMBINED}.A")
        else:
            frame = aux
    if frame is None:
        raise DenoiseError(f"the render has no color pass (layers: {', '.join(sorted(layers))})")
    if aux is not None:
        frame.albedo, frame.normal = aux.albedo, aux.normal
        frame.vector, frame.depth = aux.vector, aux.depth
    return frame


def save_render_result(scene: Any, path: Path) -> None:
    """Write the Render Result (all layers and passes) to a multilayer EXR."""
    img = bpy.data.images.get("Render Result")
    if img is None:
        raise DenoiseError("there is no Render Result to denoise")
    with preserved_settings(scene):
        set_multilayer_exr(scene)
        img.save_render(str(path), scene=scene)
    if not path.is_file():
        raise DenoiseError("could not save the Render Result")


# -- models and denoising ---------------------------------------------------------------


def clear_model_cache() -> None:
    catalog.clear_cache()


def get_model(opts: Options, passes: set[str]) -> Model:
    if opts.model_path is not None:
        if not opts.model_path:
            raise ModelContractError("no model file chosen (Preferences > Add-ons > AI Denoiser)")
        path = bpy.path.abspath(opts.model_path) if opts.model_path.startswith("//") else opts.model_path
        return catalog.get_model(path, (), opts.threads)
    return catalog.model_for(opts, passes)


def denoise_frame(
    frame: Frame,
    opts: Options,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    model: Model | None = None,
) -> DenoiseResult:
    return core_denoise_frame(model or get_model(opts, frame.passes), frame, opts, progress, cancel)


def options_from(settings: Any, model_path: str | None) -> Options:
    """The panel's settings (``scene.ai_denoise``) -> core options."""
    return Options(
        tiling=settings.tiling.lower(),
        tile=settings.tile_size or None,
        overlap=None if settings.auto_overlap else settings.overlap,
        threads=settings.threads or None,
        use_albedo=settings.use_albedo,
        use_normal=settings.use_normal,
        quality=settings.quality.lower(),
        model_path=model_path,
    )


def record_result(settings: Any, stats: Any, size: tuple[int, int]) -> None:
    settings.last_seconds = stats.seconds
    settings.last_tiles = stats.tiles
    settings.last_model = f"{stats.model} ({', '.join(stats.inputs)})"
    settings.last_size = f"{size[0]} x {size[1]}"
    settings.last_error = ""


# -- results ------------------------------------------------------------------------------


def to_rgba(image: np.ndarray) -> np.ndarray:
    if image.shape[2] == 4:
        return image.astype(np.float32, copy=False)
    alpha = np.ones(image.shape[:2] + (1,), np.float32)
    return np.concatenate([image.astype(np.float32, copy=False), alpha], axis=-1)


def show_image(image: np.ndarray, name: str = RESULT_IMAGE) -> Any:
    """Put H x W x 3|4 linear float (top row first) into a float Image datablock."""
    h, w = image.shape[:2]
    img = bpy.data.images.get(name)
    if img is not None and (not img.is_float or img.source != "GENERATED"):
        bpy.data.images.remove(img)
        img = None
    if img is not None and tuple(img.size) != (w, h):
        img.scale(w, h)  # keeps the datablock, so editors and compositor nodes still show it
    if img is None:
        # Float images are created Linear Rec.709; set nothing after filling
        # (changing the colorspace of a generated image wipes its pixels).
        img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
    img.pixels.foreach_set(np.ascontiguousarray(to_rgba(image)[::-1]).ravel())  # bpy rows are bottom-up
    img.update()
    return img


def image_array(img: Any) -> np.ndarray:
    """H x W x 4 float32, top row first."""
    w, h = img.size
    buf = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(h, w, 4)[::-1].copy()


def save_result(scene: Any, img: Any, path: str | os.PathLike[str]) -> Path:
    """``.exr``: linear, exact (core writer). Other formats: Blender's writer with the
    scene's view transform, as a render would be saved."""
    path = Path(bpy.path.abspath(str(path)) if str(path).startswith("//") else path)
    if path.suffix.lower() == ".exr":
        return write_image(path, image_array(img))
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise DenoiseError(f"{path}: unsupported format {path.suffix!r} (use .exr, .png, .jpg or .tif)")
    if not path.parent.is_dir():
        raise DenoiseError(f"output folder does not exist: {path.parent}")
    with atomic_path(path) as tmp, preserved_settings(scene):
        ims = scene.render.image_settings
        compat.set_file_format(ims, fmt)
        ims.color_management = "FOLLOW_SCENE"
        _save_render(img, tmp, scene, path)
    return path


def save_like_render(scene: Any, img: Any, path: Path) -> Path:
    """Write with the scene's own output settings (format, depth, view transform), so a
    denoised sibling looks like the frame Blender wrote next to it."""
    with atomic_path(path) as tmp:
        _save_render(img, tmp, scene, path)
    return path


def _save_render(img: Any, tmp: Path, scene: Any, path: Path) -> None:
    """Blender writes ``img`` to ``tmp`` (an empty temporary file, which it replaces)."""
    img.save_render(str(tmp), scene=scene)
    if not tmp.stat().st_size:
        raise DenoiseError(f"could not write {path}")
