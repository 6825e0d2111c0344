"""build_addon.py: one zip per platform, validated by Blender's own tool, carrying the wheels
for both Pythons Blender embeds. The zips installed and used in clean Blenders:
tests/test_blender_matrix.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.bpy, pytest.mark.slow]


def test_one_validated_zip_per_platform(dist):
    zips = sorted(p.name for p in dist.glob("*.zip"))
    assert zips == [
        f"ai_denoiser-{v}-{p}.zip"
        for v in [_version()]
        for p in ("linux_x64", "macos_arm64", "macos_x64", "windows_x64")
    ]
    for z in dist.glob("*.zip"):
        assert z.stat().st_size <= 150e6, f"{z.name}: {z.stat().st_size / 1e6:.0f} MB, over the 150 MB budget"
    with zipfile.ZipFile(dist / f"ai_denoiser-{_version()}-windows_x64.zip") as z:
        names = z.namelist()
        manifest = z.read("blender_manifest.toml").decode()
    wheels = [n for n in names if n.startswith("wheels/")]
    assert any(n.startswith("wheels/onnxruntime-") and n.endswith("win_amd64.whl") for n in wheels)
    assert not any("numpy" in n for n in wheels), "Blender ships numpy; bundling it would shadow Blender's"
    assert not any(n.startswith("wheels/ray-") for n in wheels), "Ray is optional and never in the zip"
    assert not any("manylinux" in n or "macosx" in n for n in wheels)
    assert any(n.startswith("models/") and n.endswith(".onnx") for n in names)
    assert {"models/NOTICE", "models/LICENSE-OIDN.txt"} <= set(names)  # credit for the OIDN weights
    assert 'blender_version_min = "4.2.0"' in manifest and 'files = "' in manifest
    assert not any("__pycache__" in n for n in names)
    # Both Pythons: cp311 for Blender 4.2 to 5.0, cp313 for 5.1 and later; the EXR reader too.
    for dist_name in ("onnxruntime", "openexr", "pillow"):
        for tag in ("cp311", "cp313"):
            assert any(n.startswith(f"wheels/{dist_name}-") and f"-{tag}-" in n for n in wheels), (dist_name, tag)
    with zipfile.ZipFile(dist / f"ai_denoiser-{_version()}-macos_x64.zip") as z:
        mac_intel = [n for n in z.namelist() if n.startswith("wheels/")]
    # Blender 5 has no Intel Mac build: that zip carries no cp313 wheel (no 31 MB onnxruntime).
    assert any("-cp311-" in n for n in mac_intel) and not any("-cp313-" in n for n in mac_intel)


def _version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "blender_denoise_addon" / "blender_manifest.toml").read_text())["version"]
