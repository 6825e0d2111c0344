"""``generate-dataset --scene FILE.blend``: pairs from the artist's own files, in real Blender
(the bpy module, in subprocesses, since the command loads the files).

The files are tiny (an animated camera over a floor, a sphere and a sun, 96x64 at 100 %), so
each run renders in a second or two.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy")

from blender_denoise_addon.core.imageio import read_image  # noqa: E402
from blender_denoise_addon.dataset import files as df  # noqa: E402

pytestmark = pytest.mark.bpy

MAKE = """
import sys, bpy
out, camera, missing, eevee = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4] == "1"
bpy.ops.wm.read_factory_settings(use_empty=True)
sc = bpy.context.scene
sc.render.engine = "BLENDER_EEVEE" if eevee else "CYCLES"
sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = 96, 64, 50
sc.frame_start, sc.frame_end = 1, 10
bpy.ops.mesh.primitive_plane_add(size=12)
mat = bpy.data.materials.new("floor")
mat.use_nodes = True
if missing:
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    img = bpy.data.images.new("wood", 4, 4)
    img.filepath, img.source = "//gone/wood_albedo.png", "FILE"
    tex.image = img
bpy.context.object.data.materials.append(mat)
bpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 1))
bpy.ops.object.light_add(type="SUN", rotation=(0.6, 0.2, 0))
if camera:
    bpy.ops.object.camera_add(location=(0, -7, 3), rotation=(1.2, 0, 0))
    cam = bpy.context.object
    sc.camera = cam
    cam.keyframe_insert("location", frame=1)
    cam.location.x = 2
    cam.keyframe_insert("location", frame=10)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""

SPP = ["--noisy-spp", "1", "2", "--clean-spp", "8"]


def make_blend(path: Path, camera: bool = True, missing: bool = False, eevee: bool = True) -> Path:
    flags = [str(int(x)) for x in (camera, missing, eevee)]
    subprocess.run([sys.executable, "-c", MAKE, str(path), *flags], check=True, capture_output=True)
    return path


def generate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "blender_denoise_addon", "generate-dataset", "--quiet", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("blends")
    return {
        "shot": make_blend(d / "shot.blend"),
        "pink": make_blend(d / "pink.blend", missing=True),
        "nocam": make_blend(d / "nocam.blend", camera=False),
    }


@pytest.fixture(scope="module")
def pairs(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("pairs") / "ds"
    before = {k: sha(p) for k, p in files.items()}
    run = generate(
        "--out", out, "--count", "4", "--scene", files["shot"], "--scene", files["pink"], "--frames", "3-8",
        "--resolution", "40", "24", "--camera-jitter", "3", *SPP,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert {k: sha(p) for k, p in files.items()} == before, "a --scene file changed on disk"
    return out, run


def test_pairs_from_the_files_in_the_random_layout(pairs) -> None:
    out, run = pairs
    assert df.complete_indices(out) == {0, 1, 2, 3}
    records = list(df.iter_records(out))
    # Round robin over the files, frames inside --frames, crops of the full 96x64 frame (not the 50 % preview).
    assert [r["scene"]["file"] for r in records] == ["shot.blend", "pink.blend"] * 2
    for r in records:
        assert 3 <= r["scene"]["frame"] <= 8
        x0, y0, w, h = r["spec"]["crop"]
        assert (w, h) == (40, 24) and 0 <= x0 <= 96 - 40 and 0 <= y0 <= 64 - 24
        assert r["render_settings"]["frame_size"] == [96, 64]
        assert r["scene"]["scene_engine"].startswith("BLENDER_EEVEE") and r["scene"]["rendered_with"] == "CYCLES"
        assert all(abs(a) <= 3 for a in r["spec"]["jitter_degrees"])
        for path in [df.clean_exr(out, r["index"])] + [df.noisy_exr(out, r["index"], s) for s in (1, 2)]:
            frame = read_image(path)
            assert frame.color.shape[:2] == (24, 40) and frame.albedo is not None and frame.normal is not None
        assert read_image(df.clean_exr(out, r["index"])).color[..., :3].mean() > 0.01  # lit, not black
    assert len({r["scene"]["frame"] for r in records} | {tuple(r["spec"]["crop"]) for r in records}) > 2


def test_missing_texture_is_recorded_and_warned(pairs) -> None:
    out, run = pairs
    pink = [r for r in df.iter_records(out) if r["scene"]["file"] == "pink.blend"]
    assert pink and all(any("wood_albedo.png" in m for m in r["spec"]["missing"]) for r in pink)
    assert all(r["spec"]["missing"] == [] for r in df.iter_records(out) if r["scene"]["file"] == "shot.blend")
    assert "warning: pink.blend: 1 missing file(s) will render pink" in run.stderr


def test_rerun_resumes_and_another_file_is_refused(pairs, files) -> None:
    out, _ = pairs
    args = ["--out", out, "--count", "4", "--scene", files["shot"], "--scene", files["pink"], "--frames", "3-8"]
    run = generate(*args, "--resolution", "40", "24", "--camera-jitter", "3", *SPP)
    assert run.returncode == 0 and "0 samples to render" in run.stderr and "4 already done" in run.stderr
    other = generate("--out", out, "--count", "4", "--scene", files["shot"], "--resolution", "40", "24", *SPP)
    assert other.returncode == 1 and "other settings" in other.stderr


def test_a_crop_is_that_region_of_the_full_frame(files, tmp_path: Path) -> None:
    """The render border keeps the frame's scale: a crop equals the same pixels of the whole frame."""
    common = ["--count", "1", "--scene", files["shot"], "--frames", "5-5", "--adaptive-threshold", "0", *SPP]
    assert generate("--out", tmp_path / "full", "--resolution", "96", "64", *common).returncode == 0
    assert generate("--out", tmp_path / "crop", "--resolution", "40", "24", *common).returncode == 0
    rec = next(df.iter_records(tmp_path / "crop"))
    x0, y0, w, h = rec["spec"]["crop"]
    for name in ("clean.exr", "noisy_0002spp.exr"):
        full = read_image(tmp_path / "full" / "exr" / "000000" / name).color[..., :3]
        crop = read_image(tmp_path / "crop" / "exr" / "000000" / name).color[..., :3]
        region = full[64 - y0 - h : 64 - y0, x0 : x0 + w]  # Blender's border counts rows from the bottom
        np.testing.assert_allclose(crop, region, atol=1e-4)


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("txt", "not a .blend file"),
        ("absent", "file not found"),
        ("fake", "not a Blender file"),
        ("nocam", "has no camera"),
        ("frames", "outside the scene's range 1-10"),
        ("strict", "missing files (they render pink)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path: Path, case: str, expect: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.blend").write_text("not blender")
    scene = {
        "txt": tmp_path / "notes.txt",
        "absent": tmp_path / "absent.blend",
        "fake": tmp_path / "fake.blend",
        "nocam": files["nocam"],
        "frames": files["shot"],
        "strict": files["pink"],
    }[case]
    extra = {"frames": ["--frames", "5-20"], "strict": ["--strict"]}.get(case, [])
    out = tmp_path / "ds"
    run = generate("--out", out, "--count", "2", "--scene", scene, *extra, *SPP)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


def test_frames_and_jitter_need_a_scene(tmp_path: Path) -> None:
    run = generate("--out", tmp_path / "ds", "--count", "1", "--frames", "1-2", *SPP)
    assert run.returncode == 1 and "need --scene" in run.stderr


def test_clean_chunks_average_independent_renders(files, tmp_path: Path) -> None:
    """--clean-chunks N: N renders with their own seeds, kept until averaged into clean.exr."""
    common = ["--count", "1", "--scene", files["shot"], "--resolution", "40", "24", "--adaptive-threshold", "0"]
    common += ["--noisy-spp", "1", "--clean-spp", "16"]
    assert generate("--out", tmp_path / "one", *common).returncode == 0
    assert generate("--out", tmp_path / "four", *common, "--clean-chunks", "4").returncode == 0
    rec = next(df.iter_records(tmp_path / "four"))
    chunks = rec["clean"]["chunks"]
    assert [c["spp"] for c in chunks] == [4] * 4 and len({c["seed"] for c in chunks}) == 4
    assert sorted(p.name for p in df.sample_dir(tmp_path / "four", 0).iterdir()) == ["clean.exr", "noisy_0001spp.exr"]
    one = read_image(df.clean_exr(tmp_path / "one", 0)).color[..., :3]
    four = read_image(df.clean_exr(tmp_path / "four", 0)).color[..., :3]
    assert not np.array_equal(one, four)  # other seeds, averaged
    assert abs(four.mean() / one.mean() - 1) < 0.05  # the same image, both at 16 spp in all
    bad = generate("--out", tmp_path / "bad", *common, "--clean-chunks", "3")
    assert bad.returncode == 1 and "split evenly" in bad.stderr
