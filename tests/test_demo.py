"""The README's main job, at toy size: renders with real bpy, denoises, writes the strip and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from training.onnx_builders import conv_chain

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bpy
def test_demo_writes_side_by_side_and_metrics(tmp_path):
    model = conv_chain(tmp_path / "m.onnx", inputs=("color", "albedo", "normal"))
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "blender_denoise_addon", "demo", "--out", str(out), "--resolution", "40", "30"]
    cmd += ["--spp", "2", "--reference-spp", "8", "--model", str(model)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    # The denoised result is reported before the reference is rendered.
    assert res.stderr.index("denoised in") < res.stderr.index("rendering the reference")
    with Image.open(out / "side_by_side.png") as im:
        assert im.size == (120, 30)
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"] == "chain3" and report["model_inputs"] == ["color", "albedo", "normal"]
    for key in ("noisy_vs_reference", "denoised_vs_reference"):
        assert set(report[key]) == {"psnr", "ssim", "relmse", "psnr_lf"}
    # The noisy render really is noisy against its 8 spp reference, so the metrics measure something.
    assert report["noisy_vs_reference"]["psnr"] < 60
    assert sorted(p.name for p in out.iterdir()) == [
        ".reference-cache",
        "denoised.exr",
        "metrics.json",
        "noisy.exr",
        "reference.exr",
        "side_by_side.png",
    ]
    # A second run reuses the reference rendered with the same settings: the same pixels, no render.
    before = (out / "reference.exr").read_bytes()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "(rendered before)" in res.stderr and "rendering the reference" not in res.stderr
    assert (out / "reference.exr").read_bytes() == before
    assert json.loads((out / "metrics.json").read_text())["seconds"]["render_reference"] == 0.0
