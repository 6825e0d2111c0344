"""Real-bpy scene helpers for tests (Blender 5.0 as a Python module, background mode)."""

from __future__ import annotations

from pathlib import Path

from blender_denoise_addon.core.imageio import Frame


def emitter_scene(width: int = 32, height: int = 24, spp: int = 4):
    """Orthographic camera looking down at two emissive planes: red at the top, blue at the bottom."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = spp
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    world = bpy.data.worlds.new("World")
    scene.world = world
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    for name, y, color in (("Top", 0.5, (0.8, 0.1, 0.05, 1)), ("Bottom", -0.5, (0.05, 0.1, 0.8, 1))):
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata([(-2, y - 0.5, 0), (2, y - 0.5, 0), (2, y + 0.5, 0), (-2, y + 0.5, 0)], [], [(0, 1, 2, 3)])
        obj = bpy.data.objects.new(name, mesh)
        scene.collection.objects.link(obj)
        mat = bpy.data.materials.new(name)
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (0.6, 0.6, 0.6, 1)
        bsdf.inputs["Emission Color"].default_value = color
        bsdf.inputs["Emission Strength"].default_value = 1.0
        mesh.materials.append(mat)
    cam_data = bpy.data.cameras.new("Cam")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 2.0
    cam = bpy.data.objects.new("Cam", cam_data)
    cam.location = (0, 0, 5)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene


def render_multilayer(path: Path, width: int = 32, height: int = 24, spp: int = 4) -> Frame:
    import bpy

    from blender_denoise_addon.core import read_image

    scene = emitter_scene(width, height, spp)
    scene.view_layers[0].cycles.denoising_store_passes = True
    settings = scene.render.image_settings
    settings.media_type = "MULTI_LAYER_IMAGE"
    settings.color_depth = "32"
    settings.exr_codec = "ZIP"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return read_image(path)
