"""`python -m blender_denoise_addon denoise-image`, run as a user would (subprocess, no bpy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from blender_denoise_addon.core import denoise, load_model, read_image, write_image
from training.onnx_builders import conv_chain

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blender_denoise_addon", "denoise-image", "--quiet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def write_multilayer(path: Path, color: np.ndarray, albedo: np.ndarray, normal: np.ndarray) -> None:
    """Channel names as Blender writes them with Denoising Data passes on."""
    chans = {f"ViewLayer.Combined.{c}": color[..., i] for i, c in enumerate("RGB")}
    chans["ViewLayer.Combined.A"] = np.ones(color.shape[:2], np.float32)
    chans |= {f"ViewLayer.Denoising Albedo.{c}": albedo[..., i] for i, c in enumerate("RGB")}
    chans |= {f"ViewLayer.Denoising Normal.{c}": normal[..., i] for i, c in enumerate("XYZ")}
    chans = {k: np.ascontiguousarray(v, np.float32) for k, v in chans.items()}
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, chans) as f:
        f.write(str(path))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    conv_chain(d / "color.onnx", layers=2)
    conv_chain(d / "aux.onnx", layers=2, inputs=("color", "albedo", "normal"), seed=1)
    return d


@pytest.mark.parametrize("quality", ["fast", "high"])
def test_quality_runs_its_preset(tmp_path, models, quality):
    from blender_denoise_addon.core.defaults import QUALITY

    rng = np.random.default_rng(4)
    color = rng.random((100, 90, 3), dtype=np.float32) * 2  # large enough for the coarse pass
    write_image(tmp_path / "in.exr", color)
    out = tmp_path / "out.exr"
    res = cli(str(tmp_path / "in.exr"), "-o", str(out), "--model", str(models / "color.onnx"), "--quality", quality)
    assert res.returncode == 0, res.stderr
    preset = QUALITY[quality]
    expected = denoise(load_model(models / "color.onnx"), color, coarse=preset.coarse, flips=preset.flips).image
    np.testing.assert_allclose(read_image(out).color, expected, atol=1e-5)
    assert ("4 flips" in res.stderr) == (preset.flips == 4) and ("coarse pass" in res.stderr) == preset.coarse


def test_single_exr_matches_the_core(tmp_path, models):
    from blender_denoise_addon.core.options import Options

    rng = np.random.default_rng(0)
    color = rng.random((70, 90, 3), dtype=np.float32) * 3
    write_image(tmp_path / "in.exr", color)
    res = cli(str(tmp_path / "in.exr"), "-o", str(tmp_path / "out.exr"), "--model", str(models / "color.onnx"))
    assert res.returncode == 0, res.stderr
    out = read_image(tmp_path / "out.exr").color
    expected = denoise(load_model(models / "color.onnx"), color, **Options().denoise_args).image
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert "model chain2" in res.stderr


def test_folder_sequence_picks_model_by_passes(tmp_path, models):
    rng = np.random.default_rng(1)
    frames = tmp_path / "frames"
    frames.mkdir()
    c = rng.random((16, 16, 3), dtype=np.float32)
    write_multilayer(frames / "f_0001.exr", c, rng.random((16, 16, 3), dtype=np.float32), np.zeros((16, 16, 3)))
    write_image(frames / "f_0002.exr", c)  # no aux passes: the color-only model
    write_image(frames / "f_0003.png", c)
    res = cli(str(frames), "-o", str(tmp_path / "out"), env={"BLENDER_DENOISE_MODELS": str(models)})
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f_0001.exr", "f_0002.exr", "f_0003.png"]
    lines = res.stderr.splitlines()
    assert "(color,albedo,normal)" in next(x for x in lines if x.startswith("f_0001"))
    assert "(color)" in next(x for x in lines if x.startswith("f_0002"))
    res = cli(
        str(frames / "f_0001.exr"), "-o", str(tmp_path / "png"), "--format", "png", "--model", str(models / "aux.onnx")
    )
    assert res.returncode == 0 and (tmp_path / "png" / "f_0001.png").is_file()


def test_missing_aux_pass_is_one_line_error_and_no_file(tmp_path, models):
    write_image(tmp_path / "in.exr", np.ones((8, 8, 3), np.float32))
    res = cli(str(tmp_path / "in.exr"), "-o", str(tmp_path / "out.exr"), "--model", str(models / "aux.onnx"))
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert (
        errors[0].startswith(f"error: {tmp_path / 'in.exr'}: ") and "needs the albedo pass" in errors[0]
    )  # names the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.exr"]


@pytest.mark.parametrize(
    "setup,args,message",
    [
        ("corrupt", ["--model", "{tmp}/corrupt.onnx"], "not a valid ONNX model"),
        ("none", ["--model", "{tmp}/absent.onnx"], "model file not found"),
        ("none", ["--tiling", "sliding", "--tile", "0"], "tile size must be at least 1"),
        ("blocked", [], "cannot create output folder"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, models, setup, args, message):
    write_image(tmp_path / "a.exr", np.ones((8, 8, 3), np.float32))
    write_image(tmp_path / "b.exr", np.ones((8, 8, 3), np.float32))
    (tmp_path / "corrupt.onnx").write_bytes(b"nonsense")
    out = tmp_path / "out"
    if setup == "blocked":
        out.write_text("a file where the output folder should go")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--model" not in args:
        args += ["--model", str(models / "color.onnx")]
    res = cli(str(tmp_path / "a.exr"), str(tmp_path / "b.exr"), "-o", str(out), *args)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    leftovers = [p.name for p in tmp_path.rglob("*") if ".partial" in p.name]
    assert leftovers == []


def test_missing_input_and_bad_option(tmp_path, models):
    res = cli(str(tmp_path / "nothing.exr"), "-o", str(tmp_path / "o.exr"))
    assert res.returncode == 1 and "input not found" in res.stderr
    res = cli(str(tmp_path / "nothing.exr"), "-o", str(tmp_path / "o.exr"), "--tiling", "spiral")
    assert res.returncode == 2 and "invalid choice" in res.stderr


# -- --temporal ---------------------------------------------------------------------------------


def write_sequence_frame(path: Path, frame, vector: bool = True) -> None:
    """A multilayer EXR as Blender writes it with Denoising Data, Vector and Z passes."""
    chans = {f"ViewLayer.Combined.{c}": frame.color[..., i] for i, c in enumerate("RGB")}
    chans |= {f"ViewLayer.Denoising Albedo.{c}": frame.albedo[..., i] for i, c in enumerate("RGB")}
    chans |= {f"ViewLayer.Denoising Normal.{c}": frame.normal[..., i] for i, c in enumerate("XYZ")}
    if vector:
        chans |= {f"ViewLayer.Vector.{c}": frame.vector[..., i] for i, c in enumerate("XYZW")}
    chans["ViewLayer.Depth.Z"] = frame.depth
    chans = {k: np.ascontiguousarray(v, np.float32) for k, v in chans.items()}
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, chans) as f:
        f.write(str(path))


def sequence(folder: Path, numbers, vector: bool = True) -> Path:
    from test_core_temporal import scene

    folder.mkdir(exist_ok=True)
    for t in numbers:
        write_sequence_frame(folder / f"shot_{t:04d}.exr", scene(t)[0], vector)
    return folder


def test_temporal_folder_gives_every_frame_and_matches_the_core(tmp_path, models):
    from blender_denoise_addon.core.temporal import TemporalStream

    frames = sequence(tmp_path / "frames", [1, 2, 3, 4, 8, 9])  # 5-7 missing: a cut
    res = cli(str(frames), "-o", str(tmp_path / "out"), "--temporal", "--model", str(models / "aux.onnx"))
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"shot_{t:04d}.exr" for t in (1, 2, 3, 4, 8, 9)]
    lines = {ln.split(" ")[0]: ln for ln in res.stderr.splitlines()}
    assert "temporal: 3 neighbours" in lines["shot_0002.exr"]
    assert "temporal: 1 neighbours" in lines["shot_0008.exr"]  # nothing across the cut
    stream = TemporalStream(load_model(models / "aux.onnx"))
    for t in (1, 2, 3, 4):
        stream.push(t, read_image(frames / f"shot_{t:04d}.exr"))
    expected = {r.number: r.result.image for r in stream.finish()}
    np.testing.assert_allclose(read_image(tmp_path / "out" / "shot_0003.exr").rgba, expected[3], atol=1e-5)


@pytest.mark.parametrize(
    "case,message",
    [
        ("single", "--temporal needs a sequence of at least 2 frames"),
        ("no vector", "shot_0001.exr: no Vector pass, which --temporal needs (in Blender: View Layer > Passes"),
        ("no number", "--temporal: still.exr has no frame number"),
    ],
)
def test_temporal_bad_input_is_one_line_and_makes_nothing(tmp_path, models, case, message):
    frames = sequence(tmp_path / "frames", [1] if case == "single" else [1, 2, 3], vector=case != "no vector")
    if case == "no number":
        (frames / "shot_0002.exr").rename(frames / "still.exr")
    res = cli(str(frames), "-o", str(tmp_path / "out"), "--temporal", "--model", str(models / "aux.onnx"))
    assert res.returncode == 1
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("odd", [1, 3])
def test_temporal_frame_of_another_size_fails_alone(tmp_path, models, odd):
    """The frame of the odd size is refused, by name, wherever it falls (the first frame once made
    the good second one the culprit)."""
    from test_core_temporal import scene

    frames = sequence(tmp_path / "frames", [t for t in range(1, 6) if t != odd])
    f = scene(odd)[0]
    small = type(f)(color=f.color[:40], albedo=f.albedo[:40], normal=f.normal[:40], vector=f.vector[:40],
                    depth=f.depth[:40])  # fmt: skip
    write_sequence_frame(frames / f"shot_{odd:04d}.exr", small)
    res = cli(str(frames), "-o", str(tmp_path / "out"), "--temporal", "--model", str(models / "aux.onnx"))
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: {frames / f'shot_{odd:04d}.exr'}: frame is 96x40, the other 4 frames of the shot are 96x72; "
        "a sequence needs one size",
        "error: 1 of 5 images failed",
    ]
    good = [f"shot_{t:04d}.exr" for t in range(1, 6) if t != odd]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == good


@pytest.mark.parametrize("name", ["x.txt", "out.jpg"])
def test_one_input_and_an_output_file_of_another_format_is_refused(tmp_path, models, name):
    write_image(tmp_path / "in.exr", np.ones((8, 8, 3), np.float32))
    res = cli(str(tmp_path / "in.exr"), "-o", str(tmp_path / name), "--model", str(models / "color.onnx"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path / name}: unsupported output format {Path(name).suffix!r} (use .exr or .png, or a folder)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.exr"]  # no folder named like a file


def test_ray_that_cannot_connect_leaves_no_output_folder(tmp_path, models):
    pytest.importorskip("ray")
    write_image(tmp_path / "a.exr", np.ones((8, 8, 3), np.float32))
    write_image(tmp_path / "b.exr", np.ones((8, 8, 3), np.float32))
    res = cli(str(tmp_path / "a.exr"), str(tmp_path / "b.exr"), "-o", str(tmp_path / "out"),
              "--model", str(models / "color.onnx"), "--ray", "127.0.0.1:1")  # fmt: skip
    assert res.returncode == 1 and "cannot reach the cluster" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_without_a_terminal_each_frame_is_one_plain_line(tmp_path, models):
    """A farm's log: no progress bars, no cursor escapes, one line per frame."""
    for name in ("a", "b", "c"):
        write_image(tmp_path / f"{name}.exr", np.ones((8, 8, 3), np.float32))
    cmd = [sys.executable, "-m", "blender_denoise_addon", "denoise-image", *(str(tmp_path / f"{n}.exr") for n in "abc")]
    res = subprocess.run([*cmd, "-o", str(tmp_path / "out"), "--model", str(models / "color.onnx")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "\x1b[" not in res.stderr and "\r" not in res.stderr
    lines = res.stderr.splitlines()
    assert [ln.split(" ")[0] for ln in lines] == ["a.exr", "b.exr", "c.exr"], lines


def test_temporal_honours_passes_turned_off(tmp_path, models, monkeypatch, capsys):
    """render-denoise --temporal --no-albedo: the model is picked without albedo, and a model that
    needs it is refused in one line, as for a single frame."""
    from dataclasses import replace

    from blender_denoise_addon.cli.common import denoise_sequence
    from blender_denoise_addon.core import catalog
    from blender_denoise_addon.core.options import Options
    from blender_denoise_addon.core.temporal import sequence_number

    frames = sequence(tmp_path / "frames", [1, 2, 3])
    out = tmp_path / "out"
    out.mkdir()
    todo = [(sequence_number(f.stem), f, out / f.name) for f in sorted(frames.iterdir())]
    monkeypatch.setenv("BLENDER_DENOISE_MODELS", str(models))
    monkeypatch.setattr(catalog, "bundled_models", lambda: [models / "color.onnx", models / "aux.onnx"])
    catalog.clear_cache()
    opts = Options(use_albedo=False)
    assert denoise_sequence(todo, opts)[0] == 0
    assert "(color)" in capsys.readouterr().err  # the color-only model, not the one that takes albedo
    failures, lines = denoise_sequence(todo, replace(opts, model_path=str(models / "aux.onnx")))
    assert failures == 3 and all("needs the albedo pass, but 'Use Albedo' is off" in ln for ln in lines)
    catalog.clear_cache()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_leaves_only_whole_files(tmp_path, models, sig):
    """A farm manager stops jobs with SIGTERM (a closed terminal sends SIGHUP): the same clean stop as
    Ctrl-C, one line, exit 130, and every file in the output folder a whole frame."""
    import signal
    import time

    frames = tmp_path / "in"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        write_image(frames / f"f_{i:04d}.exr", rng.random((256, 256, 3), dtype=np.float32))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "blender_denoise_addon", "denoise-image", "--quiet", str(frames), "-o", str(out),
         "--model", str(models / "color.onnx"), "--threads", "1"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.is_dir() and len(list(out.glob("f_*.exr"))) >= 2):
        time.sleep(0.02)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "error: interrupted", err
    written = sorted(out.iterdir())
    assert written and not [p for p in written if p.name.startswith(".")], written  # no partial file
    assert len(written) < 60
    for p in written:
        assert read_image(p).color.shape == (256, 256, 3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "-3"], "threads must be at least 1, got -3"),
        (["--threads", "0"], "threads must be at least 1, got 0"),
        (["--tile", "0"], "tile size must be at least 1, got 0"),
        (["--overlap", "-1"], "overlap must be 0 or more, got -1"),
        (["--batch", "0"], "batch must be at least 1, got 0"),
        (
            ["--tiling", "sliding", "--tile", "32", "--overlap", "32"],
            "overlap 32 must be smaller than the tile size 32",
        ),
    ],
)
def test_bad_options_fail_once_before_any_frame(tmp_path, models, flags, message):
    """One error line for the whole folder (not one per frame), and no output folder made."""
    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(3):
        write_image(frames / f"f_{i}.exr", np.ones((8, 8, 3), np.float32))
    out = tmp_path / "out"
    res = cli(str(frames), "-o", str(out), "--model", str(models / "color.onnx"), *flags)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines() == [f"error: {message}"], res.stderr
    assert not out.exists()


def test_threads_beyond_the_cores_are_capped_with_a_note(tmp_path, models):
    """--threads 100000 once hung: it runs with the machine's cores, and says so."""
    write_image(tmp_path / "in.exr", np.ones((16, 16, 3), np.float32))
    res = cli(str(tmp_path / "in.exr"), "-o", str(tmp_path / "out.exr"), "--model", str(models / "color.onnx"),
              "--threads", "100000")  # fmt: skip
    assert res.returncode == 0, res.stderr
    cores = os.cpu_count()
    assert f"warning: 100000 threads asked, this machine has {cores} cores: using {cores}" in res.stderr
    assert (tmp_path / "out.exr").is_file()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cut", "the EXR is cut short or damaged"),
        ("empty", "the file is empty (0 bytes), not an image"),
        ("png", "not an EXR file (it is a PNG, named .exr)"),
    ],
)
@pytest.mark.parametrize("temporal", [False, True])
def test_a_frame_that_cannot_be_read_whole_is_refused_by_name(tmp_path, models, case, message, temporal):
    """A Blender EXR cut at half once came out denoised with exit 0 (OpenEXR reads what is there);
    now it is refused by name, and the other frames are still written."""
    frames = sequence(tmp_path / "in", [1, 2, 3])  # multilayer, with Vector and Depth
    bad = frames / "shot_0002.exr"
    if case == "cut":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "empty":
        bad.write_bytes(b"")
    else:
        from PIL import Image

        Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
        bad.write_bytes((tmp_path / "x.png").read_bytes())
    out = tmp_path / "out"
    res = cli(str(frames), "-o", str(out), "--model", str(models / "aux.onnx"), *(["--temporal"] if temporal else []))
    assert res.returncode == 1, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert errors[0] == f"error: {bad}: {message}" or errors[0].startswith(f"error: {bad}: {message} "), res.stderr
    assert "Traceback" not in res.stderr and "Vector" not in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["shot_0001.exr", "shot_0003.exr"]


@pytest.mark.parametrize(
    ("patch", "temporal", "fmt", "reason"),
    [
        ("atomic.partial_path", True, "exr", "Permission denied"),
        ("atomic.partial_path", False, "exr", "Permission denied"),
        ("imageio._write_png", False, "png", "No space left on device"),
        ("imageio._write_exr", True, "exr", "No space left on device"),
    ],
)
def test_writes_that_fail_name_each_frame_and_leave_no_empty_folder(tmp_path, models, patch, temporal, fmt, reason):
    """An unwritable folder (once a KeyError with --temporal) and a full disk (once an uncaught
    RuntimeError): every frame is tried and named, one line each, and the folder made for them goes."""
    site = tmp_path / "site"
    site.mkdir()
    module, fn = patch.split(".")
    errno = 13 if "Permission" in reason else 28
    (site / "sitecustomize.py").write_text(
        f"from blender_denoise_addon.core import {module}\n"
        "def _fail(*a, **k):\n"
        f"    raise OSError({errno}, {reason!r})\n"
        f"{module}.{fn} = _fail\n"
    )
    frames = sequence(tmp_path / "frames", [1, 2, 3, 4])
    out = tmp_path / "out"
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    args = [str(frames), "-o", str(out), "--model", str(models / "aux.onnx"), "--format", fmt]
    res = cli(*args, *(["--temporal"] if temporal else []), env=env)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "KeyError" not in res.stderr, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert errors[-1] == "error: 4 of 4 images failed", res.stderr
    assert len(errors) == 5 and all(reason in ln for ln in errors[:4]), res.stderr
    assert [f"shot_{t:04d}" in ln for t, ln in zip(range(1, 5), errors, strict=False)] == [True] * 4
    assert not out.exists()


def test_an_empty_output_name_is_refused(tmp_path, models):
    write_image(tmp_path / "in.exr", np.ones((8, 8, 3), np.float32))
    res = cli(str(tmp_path / "in.exr"), "-o", "", "--model", str(models / "color.onnx"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == ["error: -o/--output is empty: name an output file or folder"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_mode_the_umask_allows(tmp_path, models, umask):
    """They were 0600 whatever the umask, also when replacing a 0644 file: farm services could not read them."""
    import stat

    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(2):
        write_image(frames / f"f_{i}.exr", np.ones((8, 8, 3), np.float32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "f_0.exr").write_bytes(b"old")
    os.chmod(out / "f_0.exr", 0o644)
    res = subprocess.run(
        [sys.executable, "-m", "blender_denoise_addon", "denoise-image", "--quiet", str(frames), "-o", str(out),
         "--model", str(models / "color.onnx")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for name in ("f_0.exr", "f_1.exr"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name
