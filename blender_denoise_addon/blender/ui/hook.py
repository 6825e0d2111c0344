"""The opt-in render hook (``scene.ai_denoise.denoise_renders``).

- Every frame Blender writes (animation, ``-f``, ``write_still``) gets a sibling
  ``<name>_denoised.<ext>`` in the scene's own output format and view transform.
- After a single-frame render (F12) the Render Result shows the denoised image,
  through the compositor: the add-on owns one node group, ``AI Denoise Output``
  (an Image node showing "AI Denoised" -> Group Output). It becomes the scene's
  compositor output only for a compositor-only re-render (no Render Layers node,
  so Cycles does not run again, ~ms) and the user's compositor is put back right
  after (how, per Blender version: ``compat.compositing_with``).
- Turning the toggle on turns on Denoising Data passes on the scene's view layers
  (the model's albedo/normal); turning it off restores them and removes the group.

Handlers run in Blender's render thread in the UI: inference happens there; datablock,
file and compositor work is deferred to the main thread
with a timer. In background mode everything runs in the handler.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ...core.denoise import DenoiseResult
from ...core.errors import DenoiseError
from ...core.imageio import Frame, write_image
from ...core.temporal import TemporalResult, TemporalStream
from .. import blender_io, compat
from . import preferences

GROUP_NAME = "AI Denoise Output"
IMAGE_NODE = "AI Denoised"
_MARK = "ai_denoise_owned"  # custom property on the group: never touch a user's same-named group
_SAVED_PASSES = "ai_denoise_saved_store_passes"  # scene custom property while the hook is on
_SAVED_TEMPORAL = "ai_denoise_saved_temporal"  # the same, for what Temporal turns on
SUFFIX = "_denoised"


class _State:
    frames = 0  # frames rendered by the current render job
    last: DenoiseResult | None = None  # the written frame's result, reused for the still display
    busy = False  # our own compositor-only re-render is running
    stream: TemporalStream | None = None  # Temporal: the window of frames of the current render job


def _enabled(scene: Any) -> bool:
    settings = getattr(scene, "ai_denoise", None)
    return bool(settings and settings.denoise_renders) and not blender_io.hook_is_suspended() and not _State.busy


# -- the add-on's compositor group -------------------------------------------------------


def owned_group() -> Any:
    group = bpy.data.node_groups.get(GROUP_NAME)
    return group if group is not None and group.get(_MARK) else None


def ensure_group(image: Any = None) -> Any:
    group = owned_group()
    if group is None:
        group = bpy.data.node_groups.new(GROUP_NAME, "CompositorNodeTree")
        group[_MARK] = True
        group.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        node = group.nodes.new("CompositorNodeImage")
        node.name = node.label = IMAGE_NODE
        out = group.nodes.new("NodeGroupOutput")
        out.location = (300, 0)
        group.links.new(node.outputs["Image"], out.inputs[0])
    if image is not None:
        group.nodes[IMAGE_NODE].image = image
    return group


def remove_group() -> None:
    group = owned_group()
    if group is None:
        return
    compat.stop_compositing_with(group)
    bpy.data.node_groups.remove(group)


def toggled(scene: Any) -> None:
    """Update callback of the toggles: set up or take back what the hook (and Temporal) need."""
    settings = scene.ai_denoise
    _temporal_toggled(scene, settings.denoise_renders and settings.temporal)
    if settings.denoise_renders:
        if _SAVED_PASSES not in scene:
            scene[_SAVED_PASSES] = {vl.name: vl.cycles.denoising_store_passes for vl in scene.view_layers}
        for vl in scene.view_layers:
            vl.cycles.denoising_store_passes = True
        ensure_group()
        return
    saved = scene.get(_SAVED_PASSES)
    if saved is not None:
        for vl in scene.view_layers:
            if vl.name in saved:
                vl.cycles.denoising_store_passes = bool(saved[vl.name])
        del scene[_SAVED_PASSES]
    if not any(getattr(s, "ai_denoise", None) and s.ai_denoise.denoise_renders for s in bpy.data.scenes):
        remove_group()


def _temporal_toggled(scene: Any, on: bool) -> None:
    """Temporal needs the Vector and Z passes, and the animated seed (else a still camera sees the
    same noise in every frame); the user's values come back when it is turned off."""
    if on:
        if _SAVED_TEMPORAL not in scene:
            scene[_SAVED_TEMPORAL] = {
                "seed": scene.cycles.use_animated_seed,
                "layers": {vl.name: [vl.use_pass_vector, vl.use_pass_z] for vl in scene.view_layers},
            }
        scene.cycles.use_animated_seed = True
        for vl in scene.view_layers:
            vl.use_pass_vector = vl.use_pass_z = True
        return
    saved = scene.get(_SAVED_TEMPORAL)
    if saved is None:
        return
    scene.cycles.use_animated_seed = bool(saved["seed"])
    layers = saved["layers"]
    for vl in scene.view_layers:
        if vl.name in layers:
            vl.use_pass_vector, vl.use_pass_z = (bool(v) for v in layers[vl.name])
    del scene[_SAVED_TEMPORAL]


# -- denoising the Render Result ------------------------------------------------------------


def _render_result_frame(scene: Any) -> Frame:
    with tempfile.TemporaryDirectory(prefix="ai_denoise_hook_") as tmp:
        path = Path(tmp) / "render.exr"
        blender_io.save_render_result(scene, path)
        return blender_io.read_render_result(scene, path)


def _denoise_render_result(scene: Any) -> DenoiseResult:
    opts = blender_io.options_from(scene.ai_denoise, preferences.model_path())
    return blender_io.denoise_frame(_render_result_frame(scene), opts)


def _temporal_push(scene: Any) -> list[TemporalResult]:
    """Temporal: the written frame into the window; the frames now complete out."""
    frame = _render_result_frame(scene)
    if _State.stream is None:
        opts = blender_io.options_from(scene.ai_denoise, preferences.model_path())
        model = blender_io.get_model(opts, frame.passes)
        stream = TemporalStream.from_options(model, opts, motion_blur=scene.render.use_motion_blur)
        for note in stream.notes:
            print(f"AI Denoise: {note}")
        _State.stream = stream
    if frame.vector is None:  # a still, or passes turned off behind our back: one by one
        frame.vector = np.zeros(frame.color.shape[:2] + (4,), np.float32)
    return _State.stream.push(scene.frame_current, frame)


def _write_temporal(scene: Any, results: list[TemporalResult]) -> None:
    for r in results:
        for w in r.warnings:
            print(f"AI Denoise: {w}")
        path = sibling_path(scene, r.number)
        _on_main_thread(scene, lambda sc, path=path, res=r.result: _write_sibling(sc, path, res))


def _flush_temporal(scene: Any) -> list[TemporalResult]:
    """The frames still in the window (the render ended or was cancelled): written too."""
    stream, _State.stream = _State.stream, None
    if stream is None:
        return []
    try:
        results = stream.finish()
    except DenoiseError as e:
        _report(scene, e)
        return []
    _write_temporal(scene, results)
    return results


def sibling_path(scene: Any, frame: int) -> Path:
    """Where the denoised copy of a written frame goes."""
    written = Path(bpy.path.abspath(scene.render.frame_path(frame=frame)))
    if scene.render.is_movie_format:  # one movie file: denoised frames go next to it as EXRs
        return written.with_name(f"{written.stem}{SUFFIX}_{frame:04d}.exr")
    return written.with_name(f"{written.stem}{SUFFIX}{written.suffix}")


def _write_sibling(scene: Any, path: Path, result: DenoiseResult) -> None:
    if scene.render.is_movie_format:
        write_image(path, result.image)
    else:
        blender_io.save_like_render(scene, blender_io.show_image(result.image), path)
    print(f"AI Denoise: wrote {path} ({result.stats.seconds:.2f} s, {result.stats.tiles} tiles)")


def _report(scene: Any, e: DenoiseError) -> None:
    # No operator to report to: the console and the panel's last error.
    print(f"AI Denoise (render hook): {e}")
    with contextlib.suppress(AttributeError, RuntimeError):  # scene gone or not writable from here
        scene.ai_denoise.last_error = str(e)


def show_still(scene: Any, result: DenoiseResult) -> None:
    """Main thread: fill "AI Denoised" and re-run only the compositor, through the
    add-on's group, so the Render Result shows it."""
    img = blender_io.show_image(result.image)
    h, w = result.image.shape[:2]
    blender_io.record_result(scene.ai_denoise, result.stats, (w, h))
    group = ensure_group(img)
    _State.busy = True
    try:
        with blender_io.preserved_settings(scene), compat.compositing_with(scene, group):
            scene.render.use_compositing = True
            scene.render.use_sequencer = False
            bpy.ops.render.render(scene=scene.name)
    finally:
        _State.busy = False


# Work that touches datablocks: (scene name, fn). Run at once in background mode;
# in the UI, by a main-thread timer once the render job has ended.
_queue: list[tuple[str, Callable[[Any], None]]] = []


def _run_queue() -> float | None:
    if bpy.app.is_job_running("RENDER") and not bpy.app.background:
        return 0.2
    while _queue:
        name, fn = _queue.pop(0)
        scene = bpy.data.scenes.get(name)
        if scene is None:
            continue
        try:
            fn(scene)
        except DenoiseError as e:
            _report(scene, e)
    return None


def _on_main_thread(scene: Any, fn: Callable[[Any], None]) -> None:
    _queue.append((scene.name, fn))
    if bpy.app.background:
        _run_queue()
    elif not bpy.app.timers.is_registered(_run_queue):
        bpy.app.timers.register(_run_queue, first_interval=0.0)


@persistent
def _on_init(scene: Any, *_: Any) -> None:
    if not _State.busy:
        _State.frames = 0
        _State.last = None
        _State.stream = None


@persistent
def _on_pre(scene: Any, *_: Any) -> None:
    if not _State.busy:
        _State.frames += 1


@persistent
def _on_write(scene: Any, *_: Any) -> None:
    if not _enabled(scene):
        return
    if scene.ai_denoise.temporal:
        try:
            _write_temporal(scene, _temporal_push(scene))
        except DenoiseError as e:
            _report(scene, e)
        return
    try:
        result = _denoise_render_result(scene)
    except DenoiseError as e:
        _report(scene, e)
        return
    _State.last = result
    path = sibling_path(scene, scene.frame_current)
    _on_main_thread(scene, lambda sc: _write_sibling(sc, path, result))


@persistent
def _on_complete(scene: Any, *_: Any) -> None:
    if not _enabled(scene):
        return
    flushed = _flush_temporal(scene)
    if _State.frames != 1:
        return
    result = flushed[-1].result if flushed else _State.last
    try:
        if result is None:  # F12 without write_still: nothing denoised yet
            result = _denoise_render_result(scene)
    except DenoiseError as e:
        _report(scene, e)
        return
    _State.last = None
    _on_main_thread(scene, lambda sc: show_still(sc, result))


@persistent
def _on_cancel(scene: Any, *_: Any) -> None:
    """A cancelled animation keeps every frame written, the last ones of the window included."""
    if _enabled(scene):
        _flush_temporal(scene)
    _State.stream = None


_HANDLERS = (
    ("render_init", _on_init),
    ("render_pre", _on_pre),
    ("render_write", _on_write),
    ("render_complete", _on_complete),
    ("render_cancel", _on_cancel),
)

classes: tuple[type, ...] = ()


def register() -> None:
    for name, fn in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if fn not in handlers:
            handlers.append(fn)


def unregister() -> None:
    for name, fn in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        # Match by name too: a reloaded module has new function objects.
        for h in [
            h
            for h in handlers
            if h is fn
            or getattr(h, "__qualname__", None) == fn.__qualname__
            and getattr(h, "__module__", None) == fn.__module__
        ]:
            handlers.remove(h)
    if bpy.app.timers.is_registered(_run_queue):
        bpy.app.timers.unregister(_run_queue)
    _queue.clear()
    _State.last = None
    _State.stream = None
    blender_io.clear_model_cache()
    remove_group()
