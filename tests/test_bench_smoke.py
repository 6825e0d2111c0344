"""The benchmark script runs end to end on tiny frames and prints its table (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_denoise.py"


@pytest.mark.slow
def test_bench_quick_prints_a_table_with_every_denoiser():
    pytest.importorskip("pyoidn")
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| frame | denoiser / mode")
    labels = {row.split("|")[2].strip() for row in rows[1:]}
    assert {"ours full", "ours grid", "ours sliding", "OIDN balanced", "OIDN high"} <= labels
    v13 = "shipped denoiser-v13-color-albedo-normal sliding"
    assert {v13, f"{v13}, fast", f"{v13}, high"} <= labels  # each Quality of the add-on's default tiling
    assert all(row.split("|")[-2].strip() != "-" for row in rows[1:] if v13 in row)  # timed against v13's default
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3]) > 0 and float(cells[6]) > 0, row  # seconds and peak MB were measured
    assert "onnxruntime" in p.stdout and "OIDN" in p.stdout


@pytest.mark.slow
def test_bench_color_only_times_the_shipped_color_model_against_oidn_without_passes():
    pytest.importorskip("pyoidn")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--color-only"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ")]
    labels = [row.split("|")[2].strip() for row in rows[1:]]
    assert "inputs: color only" in p.stdout
    assert any(label.startswith("shipped") and "color-albedo" not in label for label in labels), labels
    assert not any(label.startswith("ours") for label in labels)  # the U-Nets need albedo and normal
    assert {"OIDN balanced", "OIDN high"} <= set(labels)


@pytest.mark.bpy
def test_eval_suite_scenes_match_the_scenes_it_renders(tmp_path, monkeypatch):
    """The suite builder writes every scene that eval_suite renders, each a 512x512 Cycles frame with a camera."""
    pytest.importorskip("bpy")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import eval_suite

    out = tmp_path / "scenes"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scenes" / "suite.py"), str(out)], cwd=ROOT)
    assert proc.returncode == 0
    assert sorted(p.stem for p in out.glob("*.blend")) == sorted(eval_suite.SCENES)
    assert eval_suite.FIGURE_SCENE in eval_suite.SCENES
    check = (
        "import bpy, sys\n"
        "for f in sys.argv[1:]:\n"
        "    bpy.ops.wm.open_mainfile(filepath=f)\n"
        "    s = bpy.context.scene\n"
        "    assert s.camera and s.render.engine == 'CYCLES', f\n"
        "    r = s.render\n"
        "    assert (r.resolution_x, r.resolution_y, r.resolution_percentage) == (512, 512, 100), f\n"
        "print('ok')\n"
    )
    files = [str(out / f"{n}.blend") for n in eval_suite.SCENES]
    proc = subprocess.run([sys.executable, "-c", check, *files], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.slow
def test_bench_temporal_prints_both_times_and_their_ratio():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_temporal.py"), "--size", "96", "64", "--frames", "3"]
    p = subprocess.run(
        [*cmd, "--repeats", "1", "--threads", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert p.returncode == 0, p.stderr[-2000:]
    lines = {ln.split(":")[0]: ln for ln in p.stdout.splitlines() if ":" in ln}
    per = float(lines["per frame"].split()[2])
    tmp = float(lines["temporal"].split()[1])
    ratio = float(lines["temporal / per frame"].split()[-1].rstrip("x"))
    assert per > 0 and tmp > 0 and ratio > 0  # tiny frames: the rounded times do not give the ratio back
