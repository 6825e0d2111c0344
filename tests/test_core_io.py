"""Image I/O: EXR/PNG round trips, atomic writes, and a multilayer EXR written by real Blender."""

from __future__ import annotations

import numpy as np
import pytest

from blender_denoise_addon.core import DenoiseError, read_image, write_image
from blender_denoise_addon.core.imageio import Frame


def test_exr_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    for c in (3, 4):
        img = (rng.random((13, 17, c)) * 50).astype(np.float32)
        write_image(tmp_path / f"a{c}.exr", img)
        back = read_image(tmp_path / f"a{c}.exr")
        assert np.array_equal(back.rgba, img)
        assert back.albedo is None and back.normal is None


def test_png_round_trip_decodes_srgb(tmp_path):
    lin = np.linspace(0, 1, 256 * 3, dtype=np.float32).reshape(16, 16, 3)
    write_image(tmp_path / "a.png", lin)
    back = read_image(tmp_path / "a.png").color
    # 8-bit sRGB quantisation: at most half a code value in display space.
    from blender_denoise_addon.core.transfer import srgb_encode

    assert np.abs(srgb_encode(back) - srgb_encode(lin)).max() <= 0.5 / 255 + 1e-6
    assert back[0, 0, 0] == 0.0


def test_write_to_unwritable_place_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DenoiseError, match="output folder does not exist"):
        write_image(blocker / "x.exr", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(DenoiseError, match="unsupported output format"):
        write_image(tmp_path / "x.tif", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(DenoiseError, match="need H x W x 3 or 4"):
        write_image(tmp_path / "x.exr", np.zeros((2, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    # A crash in the middle of encoding must not leave a file under either name.
    from blender_denoise_addon.core import imageio

    def boom(path, image):
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(imageio, "_write_exr", boom)
    with pytest.raises(DenoiseError, match=r"cannot write .*x.exr: disk full"):  # one line, not a traceback
        write_image(tmp_path / "x.exr", np.zeros((2, 2, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_get_the_mode_the_umask_allows(tmp_path, umask):
    """Not the 0600 of a temporary file: other users and farm services read the results."""
    import os
    import stat

    old = os.umask(umask)
    try:
        for name in ("a.exr", "b.png"):
            path = tmp_path / name
            path.write_bytes(b"old")
            os.chmod(path, 0o644)
            write_image(path, np.zeros((2, 2, 3), np.float32))  # replaces a 0644 file
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (name, oct(path.stat().st_mode))
            write_image(tmp_path / f"new_{name}", np.zeros((2, 2, 3), np.float32))
            assert stat.S_IMODE((tmp_path / f"new_{name}").stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_corrupt_and_foreign_inputs(tmp_path):
    (tmp_path / "bad.exr").write_bytes(b"\x76\x2f\x31\x01junk")
    with pytest.raises(DenoiseError, match="cannot read EXR"):
        read_image(tmp_path / "bad.exr")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(DenoiseError, match="cannot read PNG"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DenoiseError, match="unsupported format"):
        (tmp_path / "a.jpg").write_bytes(b"x")
        read_image(tmp_path / "a.jpg")
    with pytest.raises(DenoiseError, match="input not found"):
        read_image(tmp_path / "missing.exr")


def test_exr_without_color_is_refused(tmp_path):
    import OpenEXR

    chans = {"Z": np.zeros((4, 4), np.float32)}
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, chans) as f:
        f.write(str(tmp_path / "depth.exr"))
    with pytest.raises(DenoiseError, match="no color found"):
        read_image(tmp_path / "depth.exr")


@pytest.mark.bpy
def test_blender_multilayer_exr_reads_back(tmp_path):
    """Render with real bpy: red emitter at the top of the frame, blue at the bottom."""
    from blender_helpers import render_multilayer

    frame: Frame = render_multilayer(tmp_path / "ml.exr", width=32, height=24)
    assert frame.color.shape == (24, 32, 3)
    assert frame.albedo is not None and frame.normal is not None and frame.alpha is not None
    top, bottom = frame.color[2, 16], frame.color[-3, 16]
    np.testing.assert_allclose(top, [0.8, 0.1, 0.05], atol=0.02)
    np.testing.assert_allclose(bottom, [0.05, 0.1, 0.8], atol=0.02)
    # Cycles' denoising albedo adds the emission on top of the base color (0.6 grey).
    np.testing.assert_allclose(frame.albedo[2, 16] - top, [0.6, 0.6, 0.6], atol=0.03)
    np.testing.assert_allclose(frame.albedo[-3, 16] - bottom, [0.6, 0.6, 0.6], atol=0.03)
    # Planes face the camera; Blender's Denoising Normal (camera space) reads -Z for that.
    np.testing.assert_allclose(frame.normal[2, 16], [0, 0, -1], atol=0.02)
    np.testing.assert_allclose(frame.alpha, 1.0)


def test_multilayer_layers_are_chosen_explicitly(tmp_path):
    """Dotted view layer names, a Composite layer, and `layer=` picking one of several."""
    import OpenEXR

    def layer(name: str, value: float, aux: bool) -> dict[str, np.ndarray]:
        chans = {f"{name}.Combined.{c}": np.full((4, 5), value, np.float32) for c in "RGBA"}
        if aux:
            chans |= {f"{name}.Denoising Albedo.{c}": np.full((4, 5), 0.5, np.float32) for c in "RGB"}
            chans |= {f"{name}.Denoising Normal.{c}": np.full((4, 5), -1.0, np.float32) for c in "XYZ"}
        return chans

    chans = layer("Composite", 9.0, False) | layer("View Layer.001", 1.0, True) | layer("Zebra", 2.0, False)
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, chans) as f:
        f.write(str(tmp_path / "ml.exr"))
    first = read_image(tmp_path / "ml.exr")  # view layers come before the compositor's output
    assert first.color[0, 0, 0] == 1.0 and first.albedo is not None and first.normal[0, 0, 2] == -1.0
    assert read_image(tmp_path / "ml.exr", layer="Composite").color[0, 0, 0] == 9.0
    zebra = read_image(tmp_path / "ml.exr", layer="Zebra")
    assert zebra.color[0, 0, 0] == 2.0 and zebra.albedo is None
    with pytest.raises(DenoiseError, match="no layer 'Nope'; layers: Composite, View Layer.001, Zebra"):
        read_image(tmp_path / "ml.exr", layer="Nope")


def test_a_stop_while_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM right after the hidden temporary file exists, before atomic_path has its name back:
    it is not left behind (CI once saw one), the stop still stops, the old file stays. Another
    thread runs meanwhile, as onnxruntime's do: a signal may land on any thread."""
    import os
    import signal
    import threading

    from blender_denoise_addon.core import atomic

    made = atomic.partial_path

    def made_then_stopped(*args, **kwargs):  # type: ignore[no-untyped-def]
        path = made(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(atomic, "partial_path", made_then_stopped)
    dst = tmp_path / "frame.exr"
    dst.write_bytes(b"old")
    done = threading.Event()
    other = threading.Thread(target=done.wait, daemon=True)
    other.start()
    try:
        with atomic.stop_on_signals(), pytest.raises(KeyboardInterrupt), atomic.atomic_path(dst) as tmp:
            tmp.write_bytes(b"new")
    finally:
        done.set()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.exr"] and dst.read_bytes() == b"old"
