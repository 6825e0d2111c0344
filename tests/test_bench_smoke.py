"""The benchmark script runs end to end on tiny frames and prints its table (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_denoise.py"


@pytest.mark.slow
def test_bench_quick_times_each_preset_against_oidn():
    pytest.importorskip("pyoidn")
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| frame | denoiser | network")
    cells = {r.split("|")[2].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows[1:]}
    assert set(cells) == {f"{side} {q}" for side in ("ours", "OIDN") for q in ("fast", "balanced", "high")}
    assert "rt_hdr_alb_nrm_small" in cells["ours fast"][2] and "rt_hdr_calb_cnrm_large" in cells["ours high"][2]
    for label, row in cells.items():
        assert float(row[4]) > 0 and float(row[6]) > 0, row  # seconds and peak MB were measured
        if label.startswith("ours"):  # each against OIDN at the same preset
            assert row[8].endswith("x") and row[9].endswith("x"), row
    assert "onnxruntime" in p.stdout and "OIDN" in p.stdout


@pytest.mark.slow
def test_bench_color_only_runs_the_color_networks_on_both_sides():
    pytest.importorskip("pyoidn")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--color-only", "--only", "fast"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in p.stdout.splitlines() if line[:2] == "| "]
    assert "inputs: color only" in p.stdout
    assert [r[1] for r in rows[1:]] == ["ours fast", "OIDN fast"]
    assert rows[1][2] == "OIDN rt_hdr_small"


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


@pytest.mark.bpy
def test_bench_finetune_shots_are_animated_scenes_of_their_own(tmp_path, monkeypatch):
    """Both shots of bench_finetune build: 120 frames at 960x540 whose camera moves, so the frames
    scored (81-120) show more than the frames tuned on (1-40)."""
    pytest.importorskip("bpy")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_finetune

    files = []
    for name, script in bench_finetune.SCENES.items():
        files.append(str(tmp_path / f"{name}.blend"))
        assert subprocess.run([sys.executable, str(ROOT / script), files[-1]], cwd=ROOT).returncode == 0
    check = (
        "import bpy, sys\n"
        "for f in sys.argv[1:]:\n"
        "    bpy.ops.wm.open_mainfile(filepath=f)\n"
        "    s = bpy.context.scene\n"
        "    assert (s.frame_start, s.frame_end, s.render.resolution_x, s.render.resolution_y) == (1, 120, 960, 540)\n"
        "    s.frame_set(20); a = s.camera.matrix_world.copy()\n"
        "    s.frame_set(100); b = s.camera.matrix_world.copy()\n"
        "    assert (a.translation - b.translation).length > 1.0, f\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", check, *files], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.slow
def test_bench_temporal_prints_both_times_and_their_ratio():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_temporal.py"), "--size", "96", "64", "--frames", "3"]
    p = subprocess.run(
        [*cmd, "--repeats", "1", "--threads", "1", "--quality", "balanced"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "balanced: model OIDN rt_hdr_alb_nrm, guides OIDN rt_hdr_alb_nrm_small" in p.stdout, p.stdout
    lines = {ln.split(":")[0].strip(): ln for ln in p.stdout.splitlines() if ":" in ln}
    per = float(lines["per frame"].split()[2])
    tmp = float(lines["temporal"].split()[1])
    ratio = float(lines["temporal / per frame"].split()[-1].rstrip("x"))
    assert per > 0 and tmp > 0 and ratio > 0  # tiny frames: the rounded times do not give the ratio back
