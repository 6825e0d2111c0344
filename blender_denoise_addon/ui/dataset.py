"""Properties > Render > AI Denoise Dataset: generate training pairs from inside Blender.

The operator runs one render per timer tick, so Blender redraws its progress
between renders and Esc stops the job after the current render. Work goes into
a scene of its own that is removed afterwards; the user's scenes are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..core.errors import DenoiseError
from ..core.scene_spec import GenerateSettings, parse_spp_list, validate


class AIDenoiseDatasetSettings(bpy.types.PropertyGroup):
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
    return validate(
        out=bpy.path.abspath(out),
        count=props.count,
        resolution=(props.resolution_x, props.resolution_y),
        noisy_spp=parse_spp_list(props.noisy_spp),
        clean_spp=props.clean_spp,
        seed=props.seed,
        clean_adaptive_threshold=props.adaptive_threshold,
    )


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
            job = DatasetJob(settings_from(props))
            job.prepare()
        except DenoiseError as e:
            self.report({"ERROR"}, str(e))
            return False
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


class RENDER_PT_ai_denoise_dataset(bpy.types.Panel):
    """Render random scenes as noisy/clean training pairs for the AI denoiser"""

    bl_label = "Training Dataset"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_parent_id = "RENDER_PT_ai_denoise"  # a section of the add-on's panel
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        s = context.scene.ai_denoise_dataset
        col = layout.column()
        col.prop(s, "output_dir")
        col.prop(s, "count")
        sub = col.column(align=True)
        sub.prop(s, "resolution_x", text="Resolution X")
        sub.prop(s, "resolution_y", text="Y")
        col.prop(s, "noisy_spp")
        col.prop(s, "clean_spp")
        col.prop(s, "adaptive_threshold")
        col.prop(s, "seed")
        row = layout.row()
        row.scale_y = 1.3
        row.operator(RENDER_OT_ai_denoise_generate_dataset.bl_idname, icon="RENDER_STILL")
        if s.status:
            layout.label(text=s.status, icon="INFO")


classes = (AIDenoiseDatasetSettings, RENDER_OT_ai_denoise_generate_dataset, RENDER_PT_ai_denoise_dataset)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ai_denoise_dataset = PointerProperty(type=AIDenoiseDatasetSettings)


def unregister() -> None:
    del bpy.types.Scene.ai_denoise_dataset
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
