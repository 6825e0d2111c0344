"""The Denoise operator: quick Cycles render -> passes -> core denoise -> "AI Denoised"."""

from __future__ import annotations

import threading
from typing import Any

import bpy
from bpy.props import StringProperty

from .. import blender_io
from ..core.denoise import DenoiseResult
from ..core.errors import DenoiseCancelled, DenoiseError
from ..core.imageio import Frame
from ..core.model import Model
from . import preferences, properties


def _prepare(context: Any) -> tuple[Frame, blender_io.Options, Model]:
    """Everything before inference; raises DenoiseError. Model first, so a bad model
    fails before a render is spent on it."""
    scene = context.scene
    blender_io.check_camera(scene)
    settings = scene.ai_denoise
    opts = properties.options(settings, preferences.model_path(context))
    # The quick render stores all denoising passes; the model takes what it needs.
    model = blender_io.get_model(opts, {"color", "albedo", "normal"})
    frame = blender_io.render_passes(scene, settings.samples, context.view_layer)
    return frame, opts, model


def _show_in_editor(context: Any, img: Any) -> None:
    screen = context.screen
    if screen is None:
        return
    for area in screen.areas:
        if area.type == "IMAGE_EDITOR":
            area.spaces.active.image = img
            area.tag_redraw()
            return


class _Job:
    """State shared with the worker thread: plain Python, never a bpy struct."""

    def __init__(self) -> None:
        self.cancel = False
        self.progress = (0, 0)
        self.result: DenoiseResult | None = None
        self.error: DenoiseError | None = None
        self.thread: threading.Thread | None = None

    def set_progress(self, done: int, total: int) -> None:
        self.progress = (done, total)


class RENDER_OT_ai_denoise(bpy.types.Operator):
    """Render the active camera with Cycles at a few samples and denoise it with the AI model"""

    bl_idname = "render.ai_denoise"
    bl_label = "AI Denoise"
    bl_options = {"REGISTER"}

    filepath: StringProperty(  # type: ignore[valid-type]
        name="File Path",
        description="Also save the result here (default: the panel's Save To)",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
    )

    _job: _Job | None = None
    _timer: Any = None

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None

    # Scripts and background mode: synchronous.
    def execute(self, context: Any) -> set[str]:
        try:
            frame, opts, model = _prepare(context)
            result = blender_io.denoise_frame(frame, opts, model=model)
            self._finish(context, result)
        except DenoiseError as e:
            return self._fail(context, e)
        return {"FINISHED"}

    # The button: render, then infer in a worker thread so the status bar shows
    # progress and Esc cancels between tile batches.
    def invoke(self, context: Any, event: Any) -> set[str]:
        try:
            frame, opts, model = _prepare(context)
        except DenoiseError as e:
            return self._fail(context, e)
        job = self._job = _Job()

        def work() -> None:
            try:
                job.result = blender_io.denoise_frame(
                    frame, opts, progress=job.set_progress, cancel=lambda: job.cancel, model=model
                )
            except DenoiseError as e:
                job.error = e
            except Exception as e:  # surfaced in modal(), never lost in the thread
                job.error = DenoiseError(f"denoising failed: {type(e).__name__}: {e}")

        wm = context.window_manager
        wm.progress_begin(0, 100)
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        job.thread = threading.Thread(target=work, name="ai-denoise", daemon=True)
        job.thread.start()
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set[str]:
        job = self._job
        if job is None or job.thread is None:
            return {"CANCELLED"}
        if event.type == "ESC":
            job.cancel = True
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done, total = job.progress
        if total:
            context.window_manager.progress_update(int(100 * done / total))
            if context.workspace is not None:
                context.workspace.status_text_set(f"AI Denoise: {done}/{total} tiles (Esc to cancel)")
        if job.thread.is_alive():
            return {"RUNNING_MODAL"}
        self._cleanup(context)
        try:
            if job.error is not None:
                raise job.error
            if job.result is None:
                raise DenoiseCancelled("cancelled")
            self._finish(context, job.result)
        except DenoiseError as e:
            return self._fail(context, e)
        return {"FINISHED"}

    def cancel(self, context: Any) -> None:  # Blender stops the modal (e.g. file load)
        if self._job is not None and self._job.thread is not None:
            self._job.cancel = True
            self._job.thread.join()
        self._cleanup(context)

    def _cleanup(self, context: Any) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        self._job = None

    def _finish(self, context: Any, result: DenoiseResult) -> None:
        scene = context.scene
        settings = scene.ai_denoise
        img = blender_io.show_image(result.image)
        h, w = result.image.shape[:2]
        properties.record_result(settings, result.stats, (w, h))
        _show_in_editor(context, img)
        path = self.filepath or settings.output_path
        saved = f", saved {blender_io.save_result(scene, img, path)}" if path else ""
        s = result.stats
        self.report({"INFO"}, f"AI Denoise: {w}x{h} in {s.seconds:.2f} s, {s.tiles} tiles, model {s.model}{saved}")

    def _fail(self, context: Any, e: DenoiseError) -> set[str]:
        # Errors cross here once; the scene stays untouched (no last_error either).
        self.report({"ERROR"}, str(e))
        return {"CANCELLED"}


classes = (RENDER_OT_ai_denoise,)

register, unregister = bpy.utils.register_classes_factory(classes)  # pyright: ignore[reportGeneralTypeIssues]
