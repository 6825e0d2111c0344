"""Runs inside a clean Blender (a venv with only bpy and its numpy), as a new user would:
installs the extension zip with Blender's installer and uses every Blender-facing feature on
tiny scenes. Writes what it saw as JSON; tests/blender_matrix.py and the tests judge it.

    python in_blender.py STEP ZIP RESULT.json WORKDIR

STEP is ``features`` (install, then use everything; the extension stays installed),
``uninstall``, or ``foreign`` (ZIP is another platform's: Blender must refuse it). Each
check is recorded as {"ok": bool, ...}; an exception records the traceback and the script
goes on with the next check.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy

PKG_ID = "ai_denoiser"
ADDON = f"bl_ext.user_default.{PKG_ID}"
STEP, ZIP, RESULT, WORK = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
results: dict[str, Any] = {"blender": list(bpy.app.version), "python": sys.version.split()[0]}


def save() -> None:
    RESULT.write_text(json.dumps(results, indent=1, default=str))


def check(name: str) -> Callable[[Callable[[], dict[str, Any]]], None]:
    def run(fn: Callable[[], dict[str, Any]]) -> None:
        try:
            results[name] = fn()
        except Exception as e:
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        save()

    return run


def addon(module: str = "") -> Any:
    return importlib.import_module(f"{ADDON}.{module}" if module else ADDON)


def scene_with_camera(width: int = 32, height: int = 24) -> Any:
    """A sphere on a plane, an area light and a camera: Cycles at a few samples."""
    bpy.ops.wm.read_homefile(use_empty=True)  # a new file; read_factory_settings would drop the add-on
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 0))
    bpy.ops.mesh.primitive_plane_add(size=10, location=(0, 0, -1))
    bpy.ops.object.light_add(type="AREA", location=(2, -2, 3))
    bpy.context.object.data.energy = 300
    bpy.ops.object.camera_add(location=(0, -6, 2), rotation=(1.35, 0, 0))
    scene.camera = bpy.context.object
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    return scene


def prefs() -> Any:
    return bpy.context.preferences.addons[ADDON].preferences


def features() -> None:
    ret = bpy.ops.extensions.package_install_files(filepath=str(ZIP), repo="user_default", enable_on_install=True)
    # A failed install (wrong Python, wrong platform) still returns FINISHED: look for the add-on.
    results["install"] = {
        "ok": "FINISHED" in ret and ADDON in bpy.context.preferences.addons,
        "returned": sorted(ret),
        "enabled": ADDON in bpy.context.preferences.addons,
    }
    save()
    if not results["install"]["ok"]:
        return
    ext_dir = Path(bpy.utils.user_resource("EXTENSIONS"))
    results["extensions_dir"] = str(ext_dir)

    @check("denoise_button")
    def _() -> dict[str, Any]:
        scene_with_camera()
        ret = bpy.ops.render.ai_denoise()
        img = bpy.data.images.get("AI Denoised")
        settings = bpy.context.scene.ai_denoise
        return {
            "ok": ret == {"FINISHED"} and img is not None and tuple(img.size) == (32, 24),
            "model": settings.last_model,
        }

    @check("quality_setting")
    def _() -> dict[str, Any]:
        # Each preset runs its own bundled network: OIDN's small, base, and large with its prefilters.
        scene_with_camera(96, 72)
        settings = bpy.context.scene.ai_denoise
        seen = {}
        for quality in ("BALANCED", "FAST", "HIGH"):
            settings.quality = quality
            ret = bpy.ops.render.ai_denoise()
            pixels = list(bpy.data.images["AI Denoised"].pixels)
            seen[quality] = (ret, settings.last_model, settings.last_tiles, pixels)
        settings.quality = "BALANCED"
        models = {q: v[1] for q, v in seen.items()}
        pixels = {q: v[3] for q, v in seen.items()}
        ok = (
            all(v[0] == {"FINISHED"} for v in seen.values())
            and "rt_hdr_alb_nrm_small" in models["FAST"]
            and "rt_hdr_alb_nrm (" in models["BALANCED"]
            and "rt_hdr_calb_cnrm_large" in models["HIGH"]
            and seen["HIGH"][2] == seen["BALANCED"][2] + 2  # the two prefilters' tiles
            and len({tuple(p) for p in pixels.values()}) == 3
        )
        return {"ok": ok, "models": models, "tiles": {q: v[2] for q, v in seen.items()}}

    @check("imports_from_extension")
    def _() -> dict[str, Any]:
        import onnxruntime
        import OpenEXR

        files = {"onnxruntime": onnxruntime.__file__, "OpenEXR": OpenEXR.__file__}
        inside = all(str(ext_dir) in f for f in files.values())
        site = Path(onnxruntime.__file__).parent.parent
        results["site_packages"] = str(site)
        return {"ok": inside, **files, "onnxruntime_version": onnxruntime.__version__}

    @check("user_model")
    def _() -> dict[str, Any]:
        catalog = addon("core.catalog")
        color_only = catalog.pick_model({"color"}).path
        mine = WORK / "models" / "my_model.onnx"
        mine.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(color_only, mine)
        scene_with_camera()
        p = prefs()
        p.model_source = "FILE"
        p.model_path = str(mine)
        status = p.model_status
        ret = bpy.ops.render.ai_denoise()
        used = bpy.context.scene.ai_denoise.last_model
        p.model_source = "BUNDLED"
        # The bundled choice would be the color + albedo + normal model: the file's is color only.
        return {"ok": status.startswith("OK") and ret == {"FINISHED"} and used.endswith("(color)"), "status": status,
                "used": used}  # fmt: skip

    @check("models_folder")
    def _() -> dict[str, Any]:
        # A model tuned from High (what `finetune --quality high` writes: the model, its card and its
        # prefilters) dropped into the extension's user directory, and a broken one.
        catalog, preferences = addon("core.catalog"), addon("blender.ui.preferences")
        folder = preferences.models_folder(create=True)
        high = catalog.pick_model({"color", "albedo", "normal"}, quality="high")
        shutil.copy(high.path, folder / "walk_tuned.onnx")
        for name in high.info.prefilter:
            shutil.copy(high.path.parent / name, folder / name)
        card = {"name": "Walkthrough tuned", "base_name": high.info.name, "kept": "tuned"}
        catalog.card_path(folder / "walk_tuned.onnx").write_text(json.dumps(card))
        (folder / "broken.onnx").write_bytes(b"not an onnx file")
        scene = scene_with_camera()
        p = prefs()
        items = {i[0]: (i[1], i[2]) for i in preferences._model_items(p, bpy.context)}
        p.model_source = "user:walk_tuned.onnx"
        ret = bpy.ops.render.ai_denoise()
        label = preferences.model_label()
        p.model_source = "user:broken.onnx"
        try:
            bpy.ops.render.ai_denoise()
            broken_error = None
        except RuntimeError as e:
            broken_error = str(e)
        p.model_source = "BUNDLED"
        in_ext = str(folder).startswith(bpy.utils.user_resource("EXTENSIONS"))
        listed = items.get("user:walk_tuned.onnx", ("", ""))[0] == "Walkthrough tuned"
        listed = listed and f"tuned from {high.info.name}" in items["user:walk_tuned.onnx"][1]
        listed = listed and not any(f"user:{n}" in items for n in high.info.prefilter)  # they serve the model
        broken = "broken.onnx" in items.get("user:broken.onnx", ("", ""))[1]
        bundled = sum(k.startswith("bundled:") for k in items) == len(catalog.bundled_models())
        return {"ok": in_ext and listed and broken and bundled and ret == {"FINISHED"} and label == "Walkthrough tuned"
                and broken_error is not None and "broken.onnx" in broken_error, "folder": str(folder), "items": items,
                "used": scene.ai_denoise.last_model, "broken_error": broken_error}  # fmt: skip

    def reported_error(model_path: Path, use_albedo: bool = True) -> str | None:
        """The operator's ERROR report (a RuntimeError in background mode) with this user model."""
        scene = scene_with_camera()
        scene.ai_denoise.use_albedo = use_albedo
        p = prefs()
        p.model_source = "FILE"
        p.model_path = str(model_path)
        try:
            bpy.ops.render.ai_denoise()
            return None
        except RuntimeError as e:
            return str(e)
        finally:
            p.model_source = "BUNDLED"

    @check("missing_model_reported")
    def _() -> dict[str, Any]:
        message = reported_error(WORK / "no_such_model.onnx")
        return {"ok": message is not None and "no_such_model" in message, "message": message}

    @check("missing_pass_reported")
    def _() -> dict[str, Any]:
        catalog = addon("core.catalog")
        full = catalog.pick_model({"color", "albedo", "normal"}).path
        message = reported_error(full, use_albedo=False)
        return {"ok": message is not None and "albedo" in message, "message": message}

    @check("render_hook_still")
    def _() -> dict[str, Any]:
        compat, bio, imageio = addon("blender.compat"), addon("blender.blender_io"), addon("core.imageio")
        import numpy as np

        scene = scene_with_camera()
        user = _user_compositor(scene)
        before = compat.compositor_state(scene)
        scene.ai_denoise.denoise_renders = True
        bpy.ops.render.render()  # F12
        img = bpy.data.images.get("AI Denoised")
        if img is None:
            return {"ok": False, "error": "no AI Denoised image", "last_error": scene.ai_denoise.last_error}
        denoised = bio.image_array(img)
        path = WORK / "render_result.exr"
        bio.save_render_result(scene, path)
        shown = imageio.read_image(path, layer="Composite")  # what the Render Result displays
        diff = float(np.abs(shown.color - denoised[..., :3]).max())
        untouched = compat.compositor_state(scene) == before
        scene.ai_denoise.denoise_renders = False
        return {"ok": diff < 1e-4 and untouched and scene.ai_denoise.last_error == "", "max_diff": diff,
                "user_compositor_untouched": untouched, "user_tree": user}  # fmt: skip

    @check("render_hook_animation")
    def _() -> dict[str, Any]:
        scene = scene_with_camera()
        out = WORK / "anim"
        scene.frame_start, scene.frame_end = 1, 2
        scene.render.filepath = str(out / "frame_")
        addon("blender.compat").set_file_format(scene.render.image_settings, "PNG")
        scene.ai_denoise.denoise_renders = True
        bpy.ops.render.render(animation=True)
        scene.ai_denoise.denoise_renders = False
        names = sorted(p.name for p in out.iterdir())
        want = ["frame_0001.png", "frame_0001_denoised.png", "frame_0002.png", "frame_0002_denoised.png"]
        return {"ok": names == want, "files": names}

    @check("render_hook_temporal")
    def _() -> dict[str, Any]:
        scene = scene_with_camera()
        cam = scene.camera
        cam.keyframe_insert("location", frame=1)
        cam.location.x += 0.4
        cam.keyframe_insert("location", frame=3)
        out = WORK / "anim_temporal"
        scene.frame_start, scene.frame_end = 1, 3
        scene.render.filepath = str(out / "frame_")
        addon("blender.compat").set_file_format(scene.render.image_settings, "PNG")
        scene.ai_denoise.denoise_renders = True
        scene.ai_denoise.temporal = True
        turned_on = scene.cycles.use_animated_seed and scene.view_layers[0].use_pass_vector
        bpy.ops.render.render(animation=True)
        scene.ai_denoise.denoise_renders = False
        restored = not scene.cycles.use_animated_seed and not scene.view_layers[0].use_pass_vector
        names = sorted(p.name for p in out.iterdir())
        want = sorted([f"frame_{f:04d}.png" for f in (1, 2, 3)] + [f"frame_{f:04d}_denoised.png" for f in (1, 2, 3)])
        return {"ok": names == want and turned_on and restored and scene.ai_denoise.last_error == "",
                "files": names, "turned_on": turned_on, "restored": restored,
                "last_error": scene.ai_denoise.last_error}  # fmt: skip

    @check("generate_pairs_operator")
    def _() -> dict[str, Any]:
        bpy.ops.wm.read_homefile(use_empty=True)  # a new file; read_factory_settings would drop the add-on
        props = bpy.context.scene.ai_denoise_dataset
        props.output_dir = str(WORK / "pairs")
        props.count = 1
        props.resolution_x = props.resolution_y = 16
        props.noisy_spp = "1"
        props.clean_spp = 4
        ret = bpy.ops.render.ai_denoise_generate_dataset()
        files = sorted(str(p.relative_to(WORK / "pairs")) for p in (WORK / "pairs").rglob("*") if p.is_file())
        exrs = [f for f in files if f.endswith(".exr")]
        return {"ok": ret == {"FINISHED"} and len(exrs) >= 2, "files": files}

    @check("generate_pairs_this_file")
    def _() -> dict[str, Any]:
        scene = scene_with_camera(48, 32)
        scene.frame_start, scene.frame_end = 1, 3
        scene.render.engine = next(e for e in ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE") if _engine_ok(scene, e))
        engine, ids = scene.render.engine, len(bpy.data.objects) + len(bpy.data.scenes)
        props = scene.ai_denoise_dataset
        props.source = "THIS_FILE"
        props.output_dir = str(WORK / "pairs_file")
        props.count = 2
        props.resolution_x, props.resolution_y = 24, 16
        props.noisy_spp = "1"
        props.clean_spp = 4
        ret = bpy.ops.render.ai_denoise_generate_dataset()
        recs = [json.loads(p.read_text()) for p in sorted((WORK / "pairs_file" / "samples").glob("*.json"))]
        kept = scene.render.engine == engine and len(bpy.data.objects) + len(bpy.data.scenes) == ids
        crops = [r["spec"]["crop"][2:] for r in recs]
        return {"ok": ret == {"FINISHED"} and len(recs) == 2 and kept and crops == [[24, 16]] * 2
                and all(r["scene"]["rendered_with"] == "CYCLES" for r in recs), "crops": crops,
                "scene_unchanged": kept}  # fmt: skip

    @check("cli_command")
    def _() -> dict[str, Any]:
        # `blender -c ai_denoise ...` runs this function; the bpy module has no -c to call it with.
        cli = addon("cli")
        registered = addon()._cli_handle is not None
        scene = scene_with_camera()
        scene.frame_end = 3
        blend = WORK / "cli_scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        out = WORK / "cli_out"
        code = cli.blender_command(["render-denoise", str(blend), "-o", str(out), "--frames", "2-3"])
        names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        bad = cli.blender_command(["render-denoise", str(WORK / "missing.blend"), "-o", str(out)])
        return {"ok": registered and code == 0 and names == ["cli_scene_0002.exr", "cli_scene_0003.exr"] and bad == 1,
                "registered": registered, "exit": code, "files": names, "missing_blend_exit": bad}  # fmt: skip


def _engine_ok(scene: Any, engine: str) -> bool:
    try:
        scene.render.engine = engine
        return True
    except TypeError:  # not an engine of this version (Eevee Next is 4.2-4.5's name)
        return False


def _user_compositor(scene: Any) -> str:
    """A compositor the user made (Render Layers -> Blur -> output), in the version's own way."""
    if hasattr(scene, "compositing_node_group"):
        ng = bpy.data.node_groups.new("User Comp", "CompositorNodeTree")
        ng.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = ng.nodes.new("NodeGroupOutput")
        scene.compositing_node_group = ng
    else:
        scene.use_nodes = True
        ng = scene.node_tree
        out = next(n for n in ng.nodes if n.bl_idname == "CompositorNodeComposite")
    rl = next((n for n in ng.nodes if n.bl_idname == "CompositorNodeRLayers"), None) or ng.nodes.new(
        "CompositorNodeRLayers"
    )
    blur = ng.nodes.new("CompositorNodeBlur")
    ng.links.new(rl.outputs["Image"], blur.inputs["Image"])
    ng.links.new(blur.outputs["Image"], out.inputs[0])
    return ng.name


def foreign() -> None:
    """Another platform's zip: Blender's installer refuses it with its own message."""
    try:
        ret = bpy.ops.extensions.package_install_files(filepath=str(ZIP), repo="user_default", enable_on_install=True)
        error = None
    except RuntimeError as e:
        ret, error = set(), str(e)
    ext = Path(bpy.utils.user_resource("EXTENSIONS"))
    installed = [str(p) for p in ext.rglob("*") if PKG_ID in p.name]
    results["foreign_platform_refused"] = {
        "ok": ADDON not in bpy.context.preferences.addons and not installed,
        "returned": sorted(ret),
        "error": error,
        "installed": installed,
    }
    save()


def uninstall() -> None:
    repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
    ret = bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id=PKG_ID)
    ext = Path(bpy.utils.user_resource("EXTENSIONS"))
    left = [str(p) for p in ext.rglob("*") if PKG_ID in p.name or p.name.lower().startswith(("onnxruntime", "openexr"))]
    results["uninstall"] = {
        "ok": "FINISHED" in ret and ADDON not in bpy.context.preferences.addons and not left,
        "returned": sorted(ret),
        "left": left,
    }
    save()


if __name__ == "__main__":
    {"features": features, "uninstall": uninstall, "foreign": foreign}[STEP]()
