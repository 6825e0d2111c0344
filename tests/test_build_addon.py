"""build_addon.py: zips validated by Blender's own tool, and the linux-x64 zip installed by
real Blender into a temporary user folder, in an environment with no onnxruntime of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.bpy, pytest.mark.slow]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    if not list((ROOT / "models").glob("*.onnx")):
        pytest.fail("models/ has no .onnx model: the extension must ship one")
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [sys.executable, "build_addon.py", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_one_validated_zip_per_platform(dist):
    zips = sorted(p.name for p in dist.glob("*.zip"))
    assert zips == [
        f"ai_denoiser-{v}-{p}.zip"
        for v in [_version()]
        for p in ("linux_x64", "macos_arm64", "macos_x64", "windows_x64")
    ]
    with zipfile.ZipFile(dist / f"ai_denoiser-{_version()}-windows_x64.zip") as z:
        names = z.namelist()
        manifest = z.read("blender_manifest.toml").decode()
    wheels = [n for n in names if n.startswith("wheels/")]
    assert any(n.startswith("wheels/onnxruntime-") and n.endswith("win_amd64.whl") for n in wheels)
    assert not any("numpy" in n for n in wheels), "Blender ships numpy; bundling it would shadow Blender's"
    assert not any("manylinux" in n or "macosx" in n for n in wheels)
    assert any(n.startswith("models/") and n.endswith(".onnx") for n in names)
    assert 'blender_version_min = "4.2.0"' in manifest and 'files = "' in manifest
    assert not any("__pycache__" in n for n in names)


def _version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "blender_denoise_addon" / "blender_manifest.toml").read_text())["version"]


def _venv_without_onnxruntime(tmp: Path) -> Path:
    """A venv that sees this test venv's packages (bpy, numpy, ...) except onnxruntime."""
    venv = tmp / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # type: ignore[attr-defined]
    site = next((venv / "lib").glob("python3*/site-packages"))
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith("onnxruntime"):
            (site / entry.name).symlink_to(entry)
    return venv / "bin" / "python"


INSTALL_SCRIPT = r"""
import json, sys
from pathlib import Path
result = {}
try:
    import onnxruntime  # noqa: F401
    result["onnxruntime_before"] = onnxruntime.__file__
except ImportError:
    result["onnxruntime_before"] = None
import bpy
sys.path.insert(0, sys.argv[3])
from blender_helpers import emitter_scene
scene = emitter_scene(32, 24, spp=2)  # before installing: it loads factory settings
ret = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
result["install"] = sorted(ret)
result["enabled"] = "bl_ext.user_default.ai_denoiser" in bpy.context.preferences.addons
import onnxruntime
result["onnxruntime_after"] = onnxruntime.__file__
ret = bpy.ops.render.ai_denoise()
result["denoise"] = sorted(ret)
img = bpy.data.images.get("AI Denoised")
result["image_size"] = list(img.size) if img else None
repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
ret = bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="ai_denoiser")
result["uninstall"] = sorted(ret)
result["enabled_after"] = "bl_ext.user_default.ai_denoiser" in bpy.context.preferences.addons
result["left"] = [str(p) for p in Path(bpy.utils.user_resource("EXTENSIONS"), "user_default").glob("ai_denoiser*")]
Path(sys.argv[2]).write_text(json.dumps(result))
"""


def test_install_run_uninstall_in_blender(dist, tmp_path):
    python = _venv_without_onnxruntime(tmp_path)
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    out = tmp_path / "result.json"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    env.pop("PYTHONPATH", None)
    zip_path = dist / f"ai_denoiser-{_version()}-linux_x64.zip"
    res = subprocess.run(
        [str(python), str(script), str(zip_path), str(out), str(ROOT / "tests")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    r = json.loads(out.read_text())
    assert r["onnxruntime_before"] is None, "the test environment must not have its own onnxruntime"
    assert r["install"] == ["FINISHED"] and r["enabled"], r
    assert str(tmp_path / "user" / "extensions") in r["onnxruntime_after"], r["onnxruntime_after"]
    assert r["denoise"] == ["FINISHED"] and r["image_size"] == [32, 24], r
    assert r["uninstall"] == ["FINISHED"] and not r["enabled_after"] and r["left"] == [], r
