"""The linux-x64 zip in each Blender artists run (4.2 LTS, 4.5 LTS, 5.0, 5.2 LTS, 5.3), each a
clean venv with only bpy and the numpy that Blender bundles, installed with Blender's own
installer; every feature used there (tests/in_blender.py), the headless commands run with the
zip's wheels, and uninstalling checked to leave nothing. See tests/blender_matrix.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import blender_matrix as matrix
import pytest

pytestmark = [pytest.mark.bpy, pytest.mark.slow]

# Everything in_blender.py and the driver check: a run that skipped one fails too.
CHECKS = {
    "install",
    "denoise_button",
    "quality_setting",
    "imports_from_extension",
    "user_model",
    "models_folder",
    "missing_model_reported",
    "missing_pass_reported",
    "render_hook_still",
    "render_hook_animation",
    "render_hook_temporal",
    "generate_pairs_operator",
    "generate_pairs_this_file",
    "cli_command",
    "python_m_render_denoise",
    "python_m_render_denoise_temporal",
    "python_m_generate_dataset",
    "python_m_generate_dataset_scene",
    "uninstall",
    "foreign_platform_refused",
}


@pytest.mark.parametrize("blender", matrix.MATRIX, ids=lambda b: f"blender-{b.bpy}")
def test_zip_works_in_clean_blender(blender: matrix.Blender, dist: Path, tmp_path: Path) -> None:
    zip_path = next(dist.glob("*-linux_x64.zip"))
    result = matrix.run_one(blender, zip_path, tmp_path, foreign_zip=next(dist.glob("*-windows_x64.zip")))
    assert result.get("blender", [])[:2] == [int(x) for x in blender.bpy.split(".")[:2]], result
    assert result.get("python", "").startswith(blender.python), result
    ran = {k for k, v in result.items() if isinstance(v, dict) and "ok" in v}
    assert ran == CHECKS, f"checks missing: {sorted(CHECKS - ran)}, unexpected: {sorted(ran - CHECKS)}"
    bad = matrix.failures(result)
    assert not bad, json.dumps(bad, indent=1)[:6000]
    # The wheels the add-on imported are the ones pinned for this Python, from the extension.
    imported = result["imports_from_extension"]
    assert str(tmp_path / "user" / "extensions") in imported["onnxruntime"]
    assert imported["onnxruntime_version"] == matrix.pinned_version("onnxruntime", blender.python)


def test_core_on_python313_numpy2(tmp_path: Path) -> None:
    """Blender 5.1+ brings Python 3.13 and numpy 2: the core's own tests pass there too."""
    python = matrix.core_venv("3.13")
    res = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-m", "not bpy", "-p", "no:cacheprovider", *matrix.CORE_TESTS],
        cwd=matrix.ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and " failed" not in res.stdout
    versions = subprocess.run(
        [str(python), "-c", "import numpy, sys; print(sys.version_info[:2] >= (3, 13), numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions[0] == "True" and int(versions[1].split(".")[0]) >= 2, versions
