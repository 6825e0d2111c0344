"""Properties > Render > AI Denoise, and its Training Dataset section."""

from __future__ import annotations

from typing import Any

import bpy

from . import preferences


class RENDER_PT_ai_denoise(bpy.types.Panel):
    """Denoise a quick Cycles render with the AI model, or every render"""

    bl_label = "AI Denoise"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        s = scene.ai_denoise

        row = layout.row()
        row.scale_y = 1.4
        row.operator("render.ai_denoise", icon="SHADERFX")
        if scene.camera is None:
            layout.label(text="The scene has no active camera", icon="ERROR")

        col = layout.column()
        col.prop(s, "samples")
        col.prop(s, "tiling")
        sub = col.column()
        sub.active = s.tiling != "FULL"
        sub.prop(s, "tile_size")
        if s.tiling == "SLIDING":
            col.prop(s, "auto_overlap")
            sub = col.column()
            sub.active = not s.auto_overlap
            sub.prop(s, "overlap")
        col.prop(s, "use_albedo")
        col.prop(s, "use_normal")
        col.prop(s, "quality")
        col.prop(s, "threads")
        col.prop(s, "output_path")

        layout.separator()
        layout.prop(s, "denoise_renders")
        if s.denoise_renders and scene.cycles.use_denoising:
            layout.label(text="Cycles' own denoiser is also on", icon="INFO")
        if s.denoise_renders:
            layout.prop(s, "temporal")
        if s.denoise_renders and s.temporal:
            col = layout.column(align=True)
            col.label(text="Adds the Vector and Z passes, animates the seed", icon="INFO")
            if scene.render.use_motion_blur:
                col.label(text="Motion Blur is on: no motion vectors,", icon="ERROR")
                col.label(text="so frames are denoised one by one")

        box = layout.box()
        box.use_property_split = False
        row = box.row()
        row.label(text=f"Model: {preferences.model_label(context)}", icon="NODE_COMPOSITING")
        row.operator("preferences.addon_show", text="", icon="PREFERENCES").module = preferences.ADDON_ID
        if s.last_model:
            box.label(text=f"Last: {s.last_size}, {s.last_seconds:.2f} s, {s.last_tiles} tiles", icon="TIME")
            box.label(text=f"Model used: {s.last_model}")
        if s.last_error:
            box.label(text=s.last_error, icon="ERROR")


class RENDER_PT_ai_denoise_dataset(bpy.types.Panel):
    """Render random scenes, or crops of this file's frames, as noisy/clean training pairs for the AI denoiser"""

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
        col.prop(s, "source")
        col.prop(s, "output_dir")
        col.prop(s, "count")
        this_file = s.source == "THIS_FILE"
        if this_file:
            sc = context.scene
            col.label(text=f"Frames {sc.frame_start}-{sc.frame_end}, crops of {sc.render.resolution_x} x "
                      f"{sc.render.resolution_y}", icon="IMAGE_BACKGROUND")  # fmt: skip
        sub = col.column(align=True)
        sub.prop(s, "resolution_x", text="Crop X" if this_file else "Resolution X")
        sub.prop(s, "resolution_y", text="Y")
        if this_file:
            col.prop(s, "camera_jitter")
        col.prop(s, "noisy_spp")
        col.prop(s, "clean_spp")
        col.prop(s, "adaptive_threshold")
        col.prop(s, "seed")
        row = layout.row()
        row.scale_y = 1.3
        row.operator("render.ai_denoise_generate_dataset", icon="RENDER_STILL")
        if s.status:
            layout.label(text=s.status, icon="INFO")


classes = (RENDER_PT_ai_denoise, RENDER_PT_ai_denoise_dataset)  # the parent first

register, unregister = bpy.utils.register_classes_factory(classes)  # pyright: ignore[reportGeneralTypeIssues]
