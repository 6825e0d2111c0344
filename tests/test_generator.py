"""The training-pair generator in real Blender (bpy 5.0, Cycles CPU), tiny: 32x32,
noisy 1/4/16 spp, clean 32 spp. One dataset is made once per module and the other
runs (sharded, killed and resumed) are compared with it byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_denoise_addon.cli import main  # noqa: E402
from blender_denoise_addon.core.imageio import read_image  # noqa: E402
from blender_denoise_addon.core.transfer import srgb_encode  # noqa: E402
from blender_denoise_addon.dataset import files as df  # noqa: E402
from blender_denoise_addon.dataset import spec as ss  # noqa: E402

pytestmark = pytest.mark.bpy

REPO = Path(__file__).resolve().parent.parent
COUNT = 3
SEED = 11
SPP = (1, 4, 16)
ARGS = ["--count", str(COUNT), "--resolution", "32", "32", "--noisy-spp", *map(str, SPP), "--clean-spp", "32"]
ARGS += ["--seed", str(SEED), "--quiet"]


def generate(out: Path, *extra: str) -> int:
    return main(["generate-dataset", "--out", str(out), *ARGS, *extra])


def data_files(root: Path) -> dict[str, bytes]:
    """Every image file by relative path (records hold render times, so they are compared apart)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".exr", ".png")
    }


def timeless(record: dict) -> dict:
    r = json.loads(json.dumps(record))
    r.pop("build_seconds")
    for item in r["noisy"] + [r["clean"]]:
        item.pop("seconds")
    return r


def records(root: Path) -> dict[int, dict]:
    return {r["index"]: timeless(r) for r in df.iter_records(root)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen") / "full"
    assert generate(root) == 0
    return root


def test_counts_and_layout(dataset: Path) -> None:
    for i in range(COUNT):
        assert sorted(p.name for p in df.sample_dir(dataset, i).iterdir()) == sorted(
            [df.CLEAN_EXR] + [df.noisy_exr(dataset, i, s).name for s in SPP]
        )
        for s in SPP:
            assert df.noisy_png(dataset, i, s).is_file() and df.clean_png(dataset, i, s).is_file()
    assert len(df.png_pairs(dataset)) == COUNT * len(SPP)
    assert df.complete_indices(dataset) == set(range(COUNT))
    assert not [p for p in dataset.rglob("*") if df.PARTIAL in p.name]
    manifest = [json.loads(x) for x in (dataset / df.MANIFEST).read_text().splitlines()]
    assert [m["index"] for m in manifest] == list(range(COUNT))
    rec = manifest[0]
    assert rec["blender"] == bpy.app.version_string
    assert rec["render_settings"]["clamp_indirect"] == 0 and rec["render_settings"]["clamp_direct"] == 0
    assert [n["spp"] for n in rec["noisy"]] == list(SPP) and rec["clean"]["spp"] == 32
    assert all(n["seconds"] > 0 for n in rec["noisy"]) and rec["clean"]["seconds"] > 0
    assert len({n["seed"] for n in rec["noisy"]} | {rec["clean"]["seed"]}) == len(SPP) + 1
    assert rec["spec"] == ss.scene_spec(SEED, 0)
    cfg = json.loads((dataset / df.DATASET_CONFIG).read_text())
    assert cfg["seed"] == SEED and cfg["resolution"] == [32, 32]


def test_every_exr_has_its_passes(dataset: Path) -> None:
    for i in range(COUNT):
        for path in [df.clean_exr(dataset, i)] + [df.noisy_exr(dataset, i, s) for s in SPP]:
            f = read_image(path)
            assert f.color.shape == (32, 32, 3) and f.alpha is not None
            assert f.albedo is not None and f.albedo.shape == (32, 32, 3)
            assert f.normal is not None and f.normal.shape == (32, 32, 3)
            assert np.isfinite(f.color).all() and f.color.max() > 0


def test_png_pairs_line_up_with_exrs(dataset: Path) -> None:
    for rec in df.iter_records(dataset):
        i, e = rec["index"], rec["png_exposure"]
        clean = read_image(df.clean_exr(dataset, i)).color
        for s in SPP:
            noisy = read_image(df.noisy_exr(dataset, i, s)).color
            for png, lin in ((df.noisy_png(dataset, i, s), noisy), (df.clean_png(dataset, i, s), clean)):
                from PIL import Image

                got = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255
                want = srgb_encode(lin * e)
                assert np.abs(got - want).max() <= 1 / 255 + 1e-6, png


def test_clean_is_closer_to_reference_than_noisy(dataset: Path, tmp_path: Path) -> None:
    from blender_denoise_addon.blender.generator.render import configure, render_exr
    from blender_denoise_addon.blender.generator.scene import build_scene

    settings = ss.validate(tmp_path, count=1, resolution=(32, 32), clean_spp=32)
    for i in range(COUNT):
        built = build_scene(ss.scene_spec(SEED, i))
        try:
            configure(built.scene, settings)
            render_exr(built.scene, tmp_path / "ref.exr", 512, 99991)
        finally:
            built.remove()
        ref = read_image(tmp_path / "ref.exr").color

        def err(path: Path) -> float:
            # Tone-mapped MAE: unclamped fireflies would otherwise decide a squared error alone.
            img = read_image(path).color
            return float(np.mean(np.abs(img / (1 + img) - ref / (1 + ref))))  # noqa: B023

        clean = err(df.clean_exr(dataset, i))
        assert clean < err(df.noisy_exr(dataset, i, 1)), i
        assert clean < err(df.noisy_exr(dataset, i, 4)), i
    # The scene was removed again:
    assert not [s for s in bpy.data.scenes if s.name.startswith("AI Denoise")]


def test_a_scene_that_renders_black_is_drawn_again(tmp_path: Path) -> None:
    # Seed 3000, sample 173: an interior whose only light is a sun that no opening lets in
    # rendered entirely black in the shipped models' training set. The shard picks that sample alone.
    out = tmp_path / "black"
    args = ["generate-dataset", "--out", str(out), "--count", "174", "--shard", "173/174", "--seed", "3000"]
    assert main([*args, "--resolution", "32", "32", "--noisy-spp", "1", "--clean-spp", "8", "--quiet"]) == 0
    rec = json.loads(df.record_path(out, 173).read_text())
    attempt = rec["spec"].get("attempt", 0)
    assert 1 <= attempt < ss.MAX_ATTEMPTS
    assert rec["spec"] == ss.scene_spec(3000, 173, attempt)
    assert ss.is_lit(read_image(df.clean_exr(out, 173)).color)
    assert not df.partial_files(out, 173)  # the probe renders are gone


def test_night_rooms_render_lit_by_their_lamps(tmp_path: Path) -> None:
    out = tmp_path / "night"
    args = ["generate-dataset", "--out", str(out), "--count", "2", "--layouts", "night=1", "--seed", "4"]
    assert main([*args, "--resolution", "32", "32", "--noisy-spp", "1", "--clean-spp", "16", "--quiet"]) == 0
    for i in range(2):
        rec = json.loads(df.record_path(out, i).read_text())
        assert rec["spec"]["layout"] == "night" and rec["spec"].get("attempt", 0) == 0  # lit at the first draw
        assert ss.is_lit(read_image(df.clean_exr(out, i)).color)
    assert json.loads((out / "dataset.json").read_text())["layouts"]["night"] == 1.0


def test_shards_merge_into_the_same_dataset(dataset: Path, tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    parts = []
    for i in range(2):
        part = tmp_path / f"shard{i}"
        assert generate(part, "--shard", f"{i}/2") == 0
        parts.append(part)
    a, b = (set(data_files(p)) for p in parts)
    assert a and b and not a & b
    assert df.complete_indices(parts[0]) == {0, 2} and df.complete_indices(parts[1]) == {1}
    for part in parts:
        shutil.copytree(part, merged, dirs_exist_ok=True)
    assert generate(merged) == 0  # nothing left to render: only compiles manifest.jsonl
    assert data_files(merged) == data_files(dataset)  # byte-identical: same seed, other processes
    assert records(merged) == records(dataset)
    assert (merged / df.MANIFEST).is_file()


def test_killed_run_resumes_and_completes(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "blender_denoise_addon", "generate-dataset", "--out", str(out), *ARGS]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = df.noisy_exr(out, 1, SPP[0])  # kill inside sample 1, after its first render
    deadline = time.monotonic() + 120
    try:
        while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert target.exists(), "the generator never got to sample 1"
    assert df.complete_indices(out) == {0}
    # What a kill mid-write leaves: temporary names only. Plant one to be sure it goes.
    (df.sample_dir(out, 1) / f".clean{df.PARTIAL}.exr").write_bytes(b"half")
    for p in out.rglob("*.exr"):
        if df.PARTIAL not in p.name:
            read_image(p)  # everything under a real name is whole
    assert generate(out) == 0
    assert not [p for p in out.rglob("*") if df.PARTIAL in p.name]
    assert data_files(out) == data_files(dataset)
    assert records(out) == records(dataset)


def test_other_settings_in_same_folder_are_refused(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in dataset.rglob("*")}
    assert main(["generate-dataset", "--out", str(dataset), *ARGS[:-3], "--seed", "12", "--quiet"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*")} == before


def test_operator_generates_and_unregisters(tmp_path: Path) -> None:
    # The whole UI: the dataset panel is a section of the add-on's main panel.
    from blender_denoise_addon.blender import ui

    ui.register()
    try:
        props = bpy.context.scene.ai_denoise_dataset
        props.output_dir = str(tmp_path / "ui")
        props.count, props.resolution_x, props.resolution_y = 1, 16, 16
        props.noisy_spp, props.clean_spp, props.seed = "1 2", 8, 3
        n_scenes = len(bpy.data.scenes)
        assert bpy.ops.render.ai_denoise_generate_dataset() == {"FINISHED"}
        assert df.complete_indices(tmp_path / "ui") == {0}
        assert len(bpy.data.scenes) == n_scenes
        props.noisy_spp = "1 x"
        with pytest.raises(RuntimeError, match="whole numbers"):
            bpy.ops.render.ai_denoise_generate_dataset()
    finally:
        ui.unregister()
    assert not hasattr(bpy.types.Scene, "ai_denoise_dataset")
    assert not hasattr(bpy.types, "RENDER_OT_ai_denoise_generate_dataset")


def test_a_blender_crash_is_survived_in_a_fresh_process(tmp_path: Path) -> None:
    """bpy can die by a signal (SIGSEGV): the sample is rendered again in a fresh process and the
    run goes on. The crash comes from this test (a sitecustomize on PYTHONPATH), once."""
    import os
    import subprocess
    import sys

    inject, marker = tmp_path / "inject", tmp_path / "crashed"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import os, signal\n"
        "from pathlib import Path\n"
        "from blender_denoise_addon.blender.generator import run\n"
        "steps = run.DatasetJob.sample_steps\n"
        "def dying(self, index):\n"
        "    for step in steps(self, index):\n"
        f"        if step.what.startswith('noisy') and not Path({str(marker)!r}).exists():\n"
        f"            Path({str(marker)!r}).touch()\n"
        "            os.kill(os.getpid(), signal.SIGSEGV)\n"
        "        yield step\n"
        "run.DatasetJob.sample_steps = dying\n"
    )
    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "blender_denoise_addon", "generate-dataset", "--out", str(out), "--count", "2"]
    cmd += ["--resolution", "16", "16", "--noisy-spp", "1", "--clean-spp", "4", "--quiet"]
    res = subprocess.run(
        cmd, env={**os.environ, "PYTHONPATH": str(inject)}, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert marker.exists(), "the injected crash did not happen"
    assert "warning: Blender died by SIGSEGV; resuming in a fresh process" in res.stderr
    assert len(list((out / "samples").glob("*.json"))) == 2
    assert not list(out.rglob("*.partial*"))
