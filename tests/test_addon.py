"""The add-on inside real Blender (the bpy module, background mode): the Denoise
operator, the render hook, the headless CLI and clean registration.

Renders are tiny (48x32 .. 64x64, a few spp) so the file runs in about a minute on
2 cores. Everything but the PSNR test uses a tiny random-weights model; the PSNR
test needs the bundled (trained) model in models/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (comes with bpy)

REPO = Path(__file__).resolve().parent.parent

from blender_denoise_addon.blender import blender_io  # noqa: E402
from blender_denoise_addon.blender.ui import hook  # noqa: E402
from blender_denoise_addon.core import catalog, metrics  # noqa: E402
from blender_denoise_addon.core.imageio import read_image  # noqa: E402
from training.onnx_builders import conv_chain  # noqa: E402

ADDON = "blender_denoise_addon"
pytestmark = pytest.mark.bpy


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv_chain(tmp_path_factory.mktemp("models") / "tiny.onnx", inputs=("color", "albedo", "normal"))


@pytest.fixture
def addon(tiny_model: Path):
    """A fresh empty file with the add-on enabled and the tiny model chosen."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(ADDON, default_set=True)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.model_source = "FILE"
    prefs.model_path = str(tiny_model)
    assert prefs.model_status.startswith("OK"), prefs.model_status
    yield prefs
    addon_utils.disable(ADDON, default_set=True)


def build_scene(width: int = 48, height: int = 32, camera: bool = True):
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 0))
    bpy.ops.mesh.primitive_plane_add(size=10, location=(0, 0, -1))
    bpy.ops.object.light_add(type="AREA", location=(2, -2, 3))
    bpy.context.object.data.energy = 300
    bpy.context.object.data.size = 0.5
    if camera:
        bpy.ops.object.camera_add(location=(0, -6, 2), rotation=(1.35, 0, 0))
        scene.camera = bpy.context.object
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.cycles.device = "CPU"
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    return scene


def snapshot(scene) -> dict[str, object]:
    """Every setting the operator may touch, plus the pieces of the file it may add to."""
    r, c, ims = scene.render, scene.cycles, scene.render.image_settings
    return {
        "engine": r.engine,
        "filepath": r.filepath,
        "use_file_extension": r.use_file_extension,
        "use_compositing": r.use_compositing,
        "use_single_layer": r.use_single_layer,
        "resolution_percentage": r.resolution_percentage,
        "samples": c.samples,
        "seed": c.seed,
        "use_denoising": c.use_denoising,
        "use_adaptive_sampling": c.use_adaptive_sampling,
        "media_type": ims.media_type,
        "file_format": ims.file_format,
        "color_depth": ims.color_depth,
        "exr_codec": ims.exr_codec,
        "store_passes": [vl.cycles.denoising_store_passes for vl in scene.view_layers],
        "compositing_node_group": scene.compositing_node_group,
        "frame": scene.frame_current,
    }


def test_denoise_operator_makes_result_and_restores_settings(addon, tmp_path: Path) -> None:
    scene = build_scene()
    scene.render.engine = "BLENDER_EEVEE"  # the operator renders with Cycles anyway
    scene.render.image_settings.file_format = "JPEG"
    scene.render.filepath = "//frames/"
    scene.cycles.samples = 77
    scene.cycles.use_denoising = True
    before = snapshot(scene)
    settings = scene.ai_denoise
    assert settings.samples == 4  # the default
    settings.tiling = "GRID"
    settings.tile_size = 16
    out = tmp_path / "denoised.exr"

    assert bpy.ops.render.ai_denoise(filepath=str(out)) == {"FINISHED"}

    img = bpy.data.images["AI Denoised"]
    assert tuple(img.size) == (48, 32)
    assert img.is_float and img.colorspace_settings.name == "Linear Rec.709"
    pixels = blender_io.image_array(img)
    assert np.isfinite(pixels).all() and pixels[..., :3].max() > 0
    assert snapshot(scene) == before
    assert settings.last_tiles == 6  # 48x32 in 16 px grid tiles
    assert settings.last_model.startswith("chain3") and settings.last_size == "48 x 32"
    saved = read_image(out)
    np.testing.assert_allclose(saved.rgba, pixels, atol=1e-6)

    png = tmp_path / "denoised.png"
    assert bpy.ops.render.ai_denoise(filepath=str(png)) == {"FINISHED"}
    assert read_image(png).color.shape == (32, 48, 3)
    assert snapshot(scene) == before


def test_no_camera_reports_and_changes_nothing(addon) -> None:
    scene = build_scene(camera=False)
    before = snapshot(scene)
    with pytest.raises(RuntimeError, match="no active camera"):
        bpy.ops.render.ai_denoise()
    assert "AI Denoised" not in bpy.data.images
    assert snapshot(scene) == before


def test_bad_model_reports_and_changes_nothing(addon, tmp_path: Path) -> None:
    scene = build_scene()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    addon.model_path = str(bad)
    assert addon.model_status.startswith("ERROR") and "bad.onnx" in addon.model_status
    before = snapshot(scene)
    with pytest.raises(RuntimeError, match="bad.onnx"):
        bpy.ops.render.ai_denoise()
    assert "AI Denoised" not in bpy.data.images
    assert snapshot(scene) == before


def test_missing_pass_reports(addon) -> None:
    scene = build_scene()
    scene.ai_denoise.use_albedo = False  # the tiny model takes albedo
    before = snapshot(scene)
    with pytest.raises(RuntimeError, match="albedo"):
        bpy.ops.render.ai_denoise()
    assert "AI Denoised" not in bpy.data.images
    assert snapshot(scene) == before


def _user_tree(scene):
    """A compositor tree the user made: Render Layers -> Blur -> Group Output."""
    ng = bpy.data.node_groups.new("User Comp", "CompositorNodeTree")
    ng.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    rl = ng.nodes.new("CompositorNodeRLayers")
    blur = ng.nodes.new("CompositorNodeBlur")
    out = ng.nodes.new("NodeGroupOutput")
    ng.links.new(rl.outputs["Image"], blur.inputs["Image"])
    ng.links.new(blur.outputs["Image"], out.inputs[0])
    scene.compositing_node_group = ng
    return ng


def _tree_state(ng) -> tuple:
    nodes = sorted((n.name, n.bl_idname) for n in ng.nodes)
    links = sorted(
        (lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier) for lk in ng.links
    )
    return nodes, links


def test_hook_toggle_adds_and_removes_only_its_group(addon) -> None:
    scene = build_scene()
    user = _user_tree(scene)
    user_before = _tree_state(user)
    groups_before = set(bpy.data.node_groups.keys())
    assert scene.view_layers[0].cycles.denoising_store_passes is False

    scene.ai_denoise.denoise_renders = True
    added = set(bpy.data.node_groups.keys()) - groups_before
    assert added == {hook.GROUP_NAME}
    group = bpy.data.node_groups[hook.GROUP_NAME]
    assert sorted(n.bl_idname for n in group.nodes) == ["CompositorNodeImage", "NodeGroupOutput"]
    assert len(group.links) == 1 and group.links[0].to_node.bl_idname == "NodeGroupOutput"
    assert scene.compositing_node_group == user and _tree_state(user) == user_before
    assert scene.view_layers[0].cycles.denoising_store_passes is True

    scene.ai_denoise.denoise_renders = False
    assert set(bpy.data.node_groups.keys()) == groups_before
    assert _tree_state(user) == user_before
    assert scene.view_layers[0].cycles.denoising_store_passes is False
    assert hook._SAVED_PASSES not in scene


def test_hook_still_render_shows_denoised_in_render_result(addon, tmp_path: Path) -> None:
    scene = build_scene()
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    user = _user_tree(scene)
    user_before = _tree_state(user)
    scene.ai_denoise.denoise_renders = True

    bpy.ops.render.render()  # F12

    denoised = blender_io.image_array(bpy.data.images["AI Denoised"])
    assert denoised.shape == (32, 48, 4)
    assert scene.ai_denoise.last_error == "" and scene.ai_denoise.last_tiles >= 1
    # The Render Result now holds exactly the denoised image.
    path = tmp_path / "rr.exr"
    blender_io.save_render_result(scene, path)
    shown = read_image(path, layer="Composite")  # what the Render Result displays
    np.testing.assert_allclose(shown.color, denoised[..., :3], atol=1e-5)
    # The user's compositor is back and untouched.
    assert scene.compositing_node_group == user and _tree_state(user) == user_before


def test_hook_animation_writes_denoised_siblings(addon, tmp_path: Path) -> None:
    scene = build_scene(32, 32)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.frame_start, scene.frame_end = 1, 3
    scene.render.filepath = str(tmp_path / "frame_")
    scene.render.image_settings.file_format = "PNG"
    scene.ai_denoise.denoise_renders = True

    bpy.ops.render.render(animation=True)

    for f in (1, 2, 3):
        written = tmp_path / f"frame_{f:04d}.png"
        sibling = tmp_path / f"frame_{f:04d}_denoised.png"
        assert written.is_file() and sibling.is_file(), sorted(p.name for p in tmp_path.iterdir())
        assert read_image(sibling).color.shape == (32, 32, 3)
    assert len(list(tmp_path.glob("*_denoised.png"))) == 3
    assert not list(tmp_path.glob(".*"))  # no partial files left


def test_hook_temporal_animation_writes_each_frame_after_its_neighbours(addon, tmp_path: Path) -> None:
    scene = build_scene(32, 32)
    bpy.data.objects["Camera"].keyframe_insert("location", frame=1)
    bpy.data.objects["Camera"].location.x += 0.5
    bpy.data.objects["Camera"].keyframe_insert("location", frame=5)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.frame_start, scene.frame_end = 1, 5
    scene.render.filepath = str(tmp_path / "frame_")
    scene.render.image_settings.file_format = "PNG"
    before = (scene.cycles.use_animated_seed, scene.view_layers[0].use_pass_vector, scene.view_layers[0].use_pass_z)
    assert before == (False, False, False)
    scene.ai_denoise.denoise_renders = True
    scene.ai_denoise.temporal = True
    assert scene.cycles.use_animated_seed and scene.view_layers[0].use_pass_vector and scene.view_layers[0].use_pass_z
    seen: dict[int, list[str]] = {}

    def after_ours(sc, *_):  # runs after the add-on's own render_write handler
        seen[sc.frame_current] = sorted(p.name for p in tmp_path.glob("*_denoised.png"))

    bpy.app.handlers.render_write.append(after_ours)
    try:
        bpy.ops.render.render(animation=True)
    finally:
        bpy.app.handlers.render_write.remove(after_ours)
    # Frame t is written once frame t + 2 has rendered; the last two when the render completes.
    assert seen[2] == [] and seen[3] == ["frame_0001_denoised.png"], seen
    assert seen[5] == [f"frame_{f:04d}_denoised.png" for f in (1, 2, 3)], seen
    names = sorted(p.name for p in tmp_path.glob("*_denoised.png"))
    assert names == [f"frame_{f:04d}_denoised.png" for f in range(1, 6)]
    assert read_image(tmp_path / "frame_0003_denoised.png").color.shape == (32, 32, 3)
    assert not list(tmp_path.glob(".*")) and scene.ai_denoise.last_error == ""
    scene.ai_denoise.temporal = False  # everything it turned on is back
    after = (scene.cycles.use_animated_seed, scene.view_layers[0].use_pass_vector, scene.view_layers[0].use_pass_z)
    assert after == before
    scene.ai_denoise.temporal = True
    scene.ai_denoise.denoise_renders = False  # the main toggle takes it back too
    assert not scene.cycles.use_animated_seed and not scene.view_layers[0].use_pass_vector


def test_hook_temporal_refuses_a_model_that_needs_a_pass_turned_off(addon, tmp_path: Path) -> None:
    """Temporal with the chosen model (it takes albedo) and Use Albedo off: refused in one line, as
    for stills, with nothing written; the stream is built by the core's one constructor."""
    scene = build_scene(16, 16)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.frame_start, scene.frame_end = 1, 3
    scene.render.filepath = str(tmp_path / "frame_")
    scene.render.image_settings.file_format = "PNG"
    scene.ai_denoise.denoise_renders = True
    scene.ai_denoise.temporal = True
    scene.ai_denoise.use_albedo = False

    bpy.ops.render.render(animation=True)

    assert "needs the albedo pass, but 'Use Albedo' is off" in scene.ai_denoise.last_error
    assert not list(tmp_path.glob("*_denoised*")) and not list(tmp_path.glob(".*"))
    scene.ai_denoise.denoise_renders = False


def test_operator_render_is_not_hooked(addon, tmp_path: Path) -> None:
    scene = build_scene(16, 16)
    user = _user_tree(scene)
    scene.ai_denoise.denoise_renders = True
    before = snapshot(scene)
    assert bpy.ops.render.ai_denoise() == {"FINISHED"}
    assert snapshot(scene) == before and scene.compositing_node_group == user
    assert scene.ai_denoise.last_error == ""


def test_hook_ignores_renders_when_off(addon, tmp_path: Path) -> None:
    scene = build_scene(16, 16)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.filepath = str(tmp_path / "frame_")
    scene.frame_end = 1
    bpy.ops.render.render(animation=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_0001.png"]
    assert "AI Denoised" not in bpy.data.images


def test_render_denoise_cli(addon, tiny_model: Path, tmp_path: Path) -> None:
    from blender_denoise_addon.cli import main

    scene = build_scene(32, 24)
    scene.frame_end = 5
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    out = tmp_path / "out"
    code = main(["render-denoise", str(blend), "-o", str(out), "--frames", "2-3", "--model", str(tiny_model)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["scene_0002.exr", "scene_0003.exr"]
    assert read_image(out / "scene_0002.exr").color.shape == (24, 32, 3)
    assert main(["render-denoise", str(tmp_path / "missing.blend"), "-o", str(out)]) == 1


def _handler_count() -> int:
    h = bpy.app.handlers
    return sum(len(getattr(h, n)) for n in ("render_init", "render_pre", "render_write", "render_complete"))


def test_register_unregister_100_cycles_leave_nothing(addon) -> None:
    import blender_denoise_addon as pkg

    scene = build_scene(camera=False)
    addon_utils.disable(ADDON, default_set=True)
    base_handlers = _handler_count()
    base_groups = set(bpy.data.node_groups.keys())
    assert not hasattr(bpy.types.Scene, "ai_denoise")
    for i in range(100):
        pkg.register()
        assert hasattr(bpy.types.Scene, "ai_denoise") and hasattr(bpy.types, "RENDER_OT_ai_denoise")
        if i % 10 == 0:
            scene.ai_denoise.denoise_renders = True  # creates the compositor group
            assert hook.GROUP_NAME in bpy.data.node_groups
        pkg.unregister()
        assert _handler_count() == base_handlers
        assert set(bpy.data.node_groups.keys()) == base_groups
    for name in ("RENDER_OT_ai_denoise", "RENDER_PT_ai_denoise", "AIDenoiseSettings", "AIDenoisePreferences"):
        assert not hasattr(bpy.types, name), name
    assert not hasattr(bpy.types.Scene, "ai_denoise")
    addon_utils.enable(ADDON, default_set=True)  # the fixture disables it again


def test_enable_does_not_import_onnxruntime() -> None:
    code = (
        "import sys; import bpy, addon_utils;"
        f"addon_utils.enable({ADDON!r}, default_set=True);"
        "assert hasattr(bpy.types.Scene, 'ai_denoise');"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported at registration'"
    )
    subprocess.run([sys.executable, "-c", code, str(REPO)], check=True, timeout=120, capture_output=True)


def test_denoised_is_closer_to_reference_than_noisy(addon) -> None:
    if not catalog.bundled_models():
        pytest.fail(
            "no bundled model in models/*.onnx: this test needs the trained default model "
            f"(looked in {', '.join(str(d) for d in catalog.model_dirs()) or 'models/'})"
        )
    addon.model_source = "BUNDLED"
    scene = build_scene(64, 64)
    scene.cycles.seed = 7
    spp = scene.ai_denoise.samples
    noisy = blender_io.render_passes(scene, spp).rgba  # same seed: the operator's exact input
    reference = blender_io.render_passes(scene, 512).rgba
    assert bpy.ops.render.ai_denoise() == {"FINISHED"}
    denoised = blender_io.image_array(bpy.data.images["AI Denoised"])
    p_noisy, p_denoised = (metrics.report(x, reference)["psnr"] for x in (noisy, denoised))
    model = scene.ai_denoise.last_model
    assert p_denoised > p_noisy, (
        f"bundled model {model} made it worse: PSNR noisy {p_noisy:.2f} dB, denoised {p_denoised:.2f} dB "
        "(is models/ holding a trained model?)"
    )
