"""The operators: AI Denoise (quick Cycles render -> passes -> core denoise -> "AI Denoised")
and Generate Training Pairs (random scenes or this file -> noisy/clean pairs, one render per timer tick,
so Blender redraws between renders and Esc stops after the current one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import bpy
from bpy.props import StringProperty

from ...core.denoise import DenoiseResult
from ...core.errors import DenoiseCancelled, DenoiseError
from ...core.imageio import Frame
from ...core.model import Model
from ...core.options import Options
from .. import blender_io
from . import preferences, properties


def _prepare(context: Any) -> tuple[Frame, Options, Model]:
    """Everything before inference; raises DenoiseError. Model first, so a bad model
    fails before a render is spent on it."""
    scene = context.scene
    blender_io.check_camera(scene)
    settings = scene.ai_denoise
    opts = blender_io.options_from(settings, preferences.model_path(context))
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
        blender_io.record_result(settings, result.stats, (w, h))
        _show_in_editor(context, img)
        path = self.filepath or settings.output_path
        saved = f", saved {blender_io.save_result(scene, img, path)}" if path else ""
        s = result.stats
        self.report({"INFO"}, f"AI Denoise: {w}x{h} in {s.seconds:.2f} s, {s.tiles} tiles, model {s.model}{saved}")

    def _fail(self, context: Any, e: DenoiseError) -> set[str]:
        # Errors cross here once; the scene stays untouched (no last_error either).
        self.report({"ERROR"}, str(e))
        return {"CANCELLED"}


class RENDER_OT_ai_denoise_generate_dataset(bpy.types.Operator):
    """Render random Cycles scenes as noisy/clean training pairs (Esc stops after the current render)"""

    bl_idname = "render.ai_denoise_generate_dataset"
    bl_label = "Generate Training Pairs"
    bl_options = {"REGISTER"}

    _steps: Iterator[Any] | None = None
    _timer: Any = None
    _total = 0
    _done = 0
    _samples = 0
    _cancel = False

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None and not context.scene.ai_denoise_dataset.running

    def _start(self, context: Any) -> bool:
        from ..generator.run import DatasetJob

        props = context.scene.ai_denoise_dataset
        try:
            job = DatasetJob(properties.settings_from(props), open_files=False)  # "This File": the open scene
            job.prepare()
        except DenoiseError as e:
            self.report({"ERROR"}, str(e))
            return False
        for w in job.warnings:
            self.report({"WARNING"}, w.removeprefix("warning: "))
        self._job = job
        self._steps = job.steps()
        self._total = len(job.todo) * (sum(job.settings.noisy_spp) + job.settings.clean_spp)  # spp-weighted
        self._done = 0
        self._samples = 0
        self._cancel = False
        props.status = f"{len(job.todo)} samples to render, {len(job.all_indices) - len(job.todo)} already done"
        return True

    def _advance(self, context: Any) -> bool:
        """One render; False when the job is over."""
        assert self._steps is not None
        step = next(self._steps, None)
        if step is None:
            return False
        if step.sample_done:
            self._samples += 1
        self._done += step.spp
        context.scene.ai_denoise_dataset.status = (
            f"{self._samples}/{len(self._job.todo)} samples, last: {step.what} of sample {step.index}"
        )
        return True

    def execute(self, context: Any) -> set[str]:
        """Blocking run, for scripts and background mode."""
        if not self._start(context):
            return {"CANCELLED"}
        try:
            while self._advance(context):
                pass
        except DenoiseError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Generated {self._samples} samples into {self._job.root}")
        return {"FINISHED"}

    def invoke(self, context: Any, event: Any) -> set[str]:
        if context.window is None:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        context.scene.ai_denoise_dataset.running = True
        wm.progress_begin(0, max(1, self._total))
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.modal_handler_add(self)
        self._header(context)
        return {"RUNNING_MODAL"}

    def _header(self, context: Any) -> None:
        text = f"AI Denoise dataset: {context.scene.ai_denoise_dataset.status} (Esc to stop after this render)"
        if context.workspace:
            context.workspace.status_text_set(text)

    def modal(self, context: Any, event: Any) -> set[str]:
        if event.type == "ESC":
            self._cancel = True
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._cancel:
            self._finish(context, f"Stopped: {self._samples} samples done; generate again to resume")
            return {"CANCELLED"}
        try:
            more = self._advance(context)
        except Exception as e:  # a modal must always end cleanly: timer, progress, status
            self._finish(context, None)
            self.report({"ERROR"}, str(e) if isinstance(e, DenoiseError) else f"{type(e).__name__}: {e}")
            return {"CANCELLED"}
        context.window_manager.progress_update(self._done)
        self._header(context)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        if not more:
            self._finish(context, f"Generated {self._samples} samples into {self._job.root}")
            return {"FINISHED"}
        return {"RUNNING_MODAL"}

    def _finish(self, context: Any, message: str | None) -> None:
        if self._steps is not None:
            self._steps.close()  # removes the half-built scene of an interrupted sample
            self._steps = None
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace:
            context.workspace.status_text_set(None)
        props = context.scene.ai_denoise_dataset
        props.running = False
        if message:
            props.status = message
            self.report({"INFO"}, message)

    def cancel(self, context: Any) -> None:
        self._finish(context, "Stopped")


classes = (RENDER_OT_ai_denoise, RENDER_OT_ai_denoise_generate_dataset)

register, unregister = bpy.utils.register_classes_factory(classes)  # pyright: ignore[reportGeneralTypeIssues]
