"""The temporal core on synthetic sequences whose motion and clean frames are known exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from blender_denoise_addon.core.contract import ModelInfo
from blender_denoise_addon.core.defaults import TEMPORAL
from blender_denoise_addon.core.denoise import denoise
from blender_denoise_addon.core.errors import DenoiseError, MissingPassError
from blender_denoise_addon.core.imageio import Frame
from blender_denoise_addon.core.model import Model, load_model
from blender_denoise_addon.core.options import Options
from blender_denoise_addon.core.temporal import TemporalStream, sequence_number

H, W = 72, 96
CAMERA = (1.5, -0.75)  # the view moves this many pixels (x right, y down) a frame
OBJECT = (7.0, 2.0)  # the square moves this many pixels a frame on screen
BOX = 16


def identity_model(path: Path, inputs: tuple[str, ...] = ("color", "albedo", "normal")) -> Model:
    """Output = the color input, linear: what the stream feeds the network is what comes out."""
    import onnx

    cin = 3 * len(inputs)
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    node = helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])
    graph = helper.make_graph(
        [node],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", cin, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [starts, ends, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = ModelInfo(inputs=inputs, transfer="linear", alignment=1, receptive_field=1, name="identity")
    helper.set_model_props(model, info.metadata())
    onnx.save(model, str(path))
    return load_model(path, threads=1)


@pytest.fixture(scope="module")
def ident(tmp_path_factory) -> Model:
    return identity_model(tmp_path_factory.mktemp("m") / "identity.onnx")


@pytest.fixture(scope="module")
def ident_color(tmp_path_factory) -> Model:
    return identity_model(tmp_path_factory.mktemp("m") / "identity-color.onnx", ("color",))


def texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth, colourful world (so bilinear reprojection is nearly exact), greenish blue: no red."""
    g = 0.35 + 0.15 * np.sin(x / 5.0) * np.cos(y / 7.0)
    b = 0.45 + 0.2 * np.cos((x + y) / 9.0)
    return np.stack([np.full_like(g, 0.05), g, b], axis=-1).astype(np.float32)


def scene(
    t: int, *, vectors: bool = True, depth: bool = True, aux: bool = True, obj: bool = True
) -> tuple[Frame, np.ndarray]:
    """Frame t (noisy, gamma noise of mean 1) and its clean image: a textured wall seen by a moving
    camera, and a red square crossing it fast, nearer to the camera."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    clean = texture(xs + CAMERA[0] * t, ys + CAMERA[1] * t)
    albedo = clean.copy()
    d = np.full((H, W), 10.0, np.float32) + xs * 0.01  # a slanted wall
    vec = np.zeros((H, W, 4), np.float32)
    # Blender's convention (top-down rows): (x, y) was at (x + X, y - Y) in t-1, will be at (x - Z, y + W) in t+1.
    vec[...] = (CAMERA[0], -CAMERA[1], CAMERA[0], -CAMERA[1])
    inside = np.zeros((H, W), bool)
    if obj:
        x0, y0 = 4 + OBJECT[0] * t, 20 + OBJECT[1] * t
        inside = (xs >= x0) & (xs < x0 + BOX) & (ys >= y0) & (ys < y0 + BOX)
        clean[inside] = (0.9, 0.1, 0.05)
        albedo[inside] = (0.9, 0.1, 0.05)
        d[inside] = 3.0
        vec[inside] = (-OBJECT[0], OBJECT[1], -OBJECT[0], OBJECT[1])
    rng = np.random.default_rng(1000 + t)
    noisy = clean * rng.gamma(4.0, 0.25, size=(H, W, 1)).astype(np.float32)
    normal = np.zeros((H, W, 3), np.float32)
    normal[..., 2] = 1.0
    frame = Frame(
        color=noisy,
        albedo=albedo if aux else None,
        normal=normal if aux else None,
        vector=vec if vectors else None,
        depth=d if depth else None,
        source=f"shot_{t:04d}.exr",
    )
    return frame, clean


def run(model: Model, frames: dict[int, Frame], radius: int = 2, **kw) -> dict[int, object]:
    stream = TemporalStream(model, radius=radius, coarse=False, **kw)
    out = {}
    for n in sorted(frames):
        for r in stream.push(n, frames[n]):
            out[r.number] = r
    for r in stream.finish():
        out[r.number] = r
    assert sorted(out) == sorted(frames), "every frame gets an output"
    return out


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a[..., :3] - b[..., :3]) ** 2
    return float(d[mask].mean() if mask is not None else d.mean())


@pytest.mark.parametrize("guides", ["all", "no depth", "color only"])
def test_temporal_averages_the_window_and_beats_per_frame(ident, ident_color, guides):
    kw = {"depth": guides == "all", "aux": guides != "color only"}
    frames, cleans = {}, {}
    for t in range(1, 8):
        frames[t], cleans[t] = scene(t, **kw)
    model = ident_color if guides == "color only" else ident
    out = run(model, frames)
    t = 4
    per = mse(frames[t].color, cleans[t])
    tmp = mse(out[t].result.image, cleans[t])
    # 5 frames of independent noise where the wall stays in view: about a quarter of the error.
    assert tmp < 0.45 * per, (tmp, per)
    assert out[t].neighbours == 4 and out[t].reuse > 2.5
    assert out[1].neighbours == 2 and out[7].neighbours == 2  # the ends use the neighbours they have


def test_reprojection_follows_blenders_vector_convention(ident):
    """Noise-free frames: the window's average is the frame itself, up to the half pixel by which a
    whole sample can sit off (the texture is smooth); with the vectors' signs flipped the neighbours
    land elsewhere and are rejected or smear."""
    frames, cleans = {}, {}
    for t in range(1, 6):
        f, c = scene(t, obj=False)
        frames[t], cleans[t] = replace(f, color=c), c
    out = run(ident, frames)
    assert mse(out[3].result.image, cleans[3]) < 5e-5
    assert out[3].reuse > 3.5
    flipped = {t: replace(f, vector=-f.vector) for t, f in frames.items()}
    bad = run(ident, flipped)
    assert mse(bad[3].result.image, cleans[3]) > 10 * mse(out[3].result.image, cleans[3]) or bad[3].reuse < 2.0


@pytest.mark.parametrize("guides", ["all", "no depth", "color only"])
def test_the_area_a_fast_object_left_keeps_none_of_its_colour(ident, ident_color, guides):
    kw = {"depth": guides == "all", "aux": guides != "color only"}
    frames, cleans = {}, {}
    for t in range(1, 8):
        frames[t], cleans[t] = scene(t, **kw)
    model = ident_color if guides == "color only" else ident
    out = run(model, frames)
    t = 4
    ys, xs = np.mgrid[0:H, 0:W]
    was = np.zeros((H, W), bool)
    for s in (t - 2, t - 1, t + 1, t + 2):  # where the square is in the neighbours, not in frame t
        x0, y0 = 4 + OBJECT[0] * s, 20 + OBJECT[1] * s
        was |= (xs >= x0) & (xs < x0 + BOX) & (ys >= y0) & (ys < y0 + BOX)
    x0, y0 = 4 + OBJECT[0] * t, 20 + OBJECT[1] * t
    now = (xs >= x0 - 1) & (xs < x0 + BOX + 1) & (ys >= y0 - 1) & (ys < y0 + BOX + 1)
    left = was & ~now
    assert left.sum() > 200
    red = out[t].result.image[..., 0][left]
    # The wall has 0.05 red; the square 0.9. Noise alone gives the frame's own red back.
    assert red.mean() < 0.08, red.mean()
    assert np.percentile(red, 99) < 0.3


def test_a_gap_in_the_numbering_is_a_cut(ident):
    frames = {t: scene(t)[0] for t in (1, 2, 3, 4)}
    other = {t: replace(scene(t + 50)[0], color=scene(t + 50)[0].color[::-1].copy()) for t in (10, 11, 12)}
    out = run(ident, frames | other)
    assert out[4].neighbours == 2 and out[10].neighbours == 2  # nothing across the cut
    alone = run(ident, other)
    for t in other:
        np.testing.assert_array_equal(out[t].result.image, alone[t].result.image)


def test_a_camera_cut_with_continuous_numbers_is_rejected(ident):
    """Frames 1-3 and 4-6 show different walls (a cut the numbering does not show): the vectors
    point into the other shot, and the rejection keeps it out."""
    frames, cleans = {}, {}
    for t in range(1, 7):
        f, c = scene(t if t <= 3 else t + 40)
        if t > 3:  # another shot: a brighter, redder wall
            f, c = replace(f, color=f.color[..., ::-1] * 2, albedo=f.albedo[..., ::-1]), c[..., ::-1] * 2
        frames[t], cleans[t] = f, c
    out = run(ident, frames)
    first = run(ident, {t: frames[t] for t in (1, 2, 3)})
    second = run(ident, {t: frames[t] for t in (4, 5, 6)})
    for t, own in ((3, first[3]), (4, second[4])):
        assert out[t].neighbours == 4
        assert out[t].reuse < own.reuse + 0.05, (out[t].reuse, own.reuse)  # what it takes from the other shot: ~0
        assert mse(out[t].result.image, cleans[t]) < 1.05 * mse(own.result.image, cleans[t])


def test_a_rerun_gives_the_same_result(ident):
    frames = {t: scene(t)[0] for t in range(1, 6)}
    a, b = run(ident, frames), run(ident, frames)
    for t in frames:
        np.testing.assert_array_equal(a[t].result.image, b[t].result.image)


def test_zero_vectors_while_the_image_moves_are_not_blended(ident):
    """Motion blur on: Cycles writes zeros. The depth says the view moved, so each frame stands alone."""
    frames = {}
    for t in range(1, 6):
        f, _ = scene(t)
        ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
        frames[t] = replace(f, vector=np.zeros_like(f.vector), depth=10.0 + (xs + CAMERA[0] * t) * 0.05)
    out = run(ident, frames)
    assert all(r.reuse == 0.0 for r in out.values())
    assert sum("all zero" in w for w in out[3].warnings) == 1, out[3].warnings  # said once, not per direction
    alone = denoise(ident, frames[3].color, frames[3].albedo, frames[3].normal, coarse=False).image
    np.testing.assert_array_equal(out[3].result.image, alone)


def test_zero_vectors_on_a_still_shot_are_blended(ident):
    frames = {t: scene(0, obj=False)[0] for t in range(1, 6)}
    frames = {t: replace(f, color=scene(0, obj=False)[0].color * (1 + 0.01 * t)) for t, f in frames.items()}
    for f in frames.values():
        f.vector[...] = 0.0
    out = run(ident, frames)
    assert out[3].reuse > 3.5 and not out[3].warnings


def test_nan_vectors_are_named_and_those_pixels_stand_alone(ident):
    frames = {t: scene(t)[0] for t in range(1, 6)}
    frames[3].vector[10:20, 10:20] = np.nan
    frames[3].vector[0, 0, 2] = np.inf
    out = run(ident, frames)
    assert np.isfinite(out[3].result.image).all()
    assert any("101 pixels have NaN or Inf" in w for w in out[3].warnings), out[3].warnings
    np.testing.assert_array_equal(out[3].result.image[10:20, 10:20], frames[3].color[10:20, 10:20])


def test_gathering_keeps_the_noise_white(ident):
    """Sub-pixel motion (1.5, -0.75 px a frame): whole samples keep each pixel's noise its own, so
    neighbouring pixels' errors stay uncorrelated (interpolated samples would correlate them, and
    OIDN-type networks keep correlated noise as blotches)."""
    frames, cleans = {}, {}
    for t in range(1, 6):
        frames[t], cleans[t] = scene(t, obj=False)
    out = run(ident, frames, settings=replace(TEMPORAL, history=0.0))
    assert out[3].reuse > 3.0
    err = out[3].result.image[4:-4, 4:-4, 1] - cleans[3][4:-4, 4:-4, 1]
    err = err - err.mean()
    for a, b in ((err[:, 1:], err[:, :-1]), (err[1:], err[:-1])):
        corr = float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))
        assert abs(corr) < 0.1, corr


def test_history_steadies_what_stays_in_view(ident):
    """The previous result blended in: the static wall changes less from frame to frame than
    without history, and stays as close to the clean frame."""
    frames, cleans = {}, {}
    for t in range(1, 9):
        frames[t], cleans[t] = scene(t, obj=False)

    def change(out: dict) -> float:
        """Mean squared frame-to-frame change of the error against the clean frames (flicker)."""
        err = {t: out[t].result.image[2:-2, 2:-2, :3] - cleans[t][2:-2, 2:-2] for t in range(3, 8)}
        return float(np.mean([np.mean((err[t] - err[t - 1]) ** 2) for t in range(4, 8)]))

    off = run(ident, frames, settings=replace(TEMPORAL, history=0.0))
    on = run(ident, frames)
    assert on[5].history > 0.3 and off[5].history == 0.0
    assert change(on) < 0.8 * change(off), (change(on), change(off))
    assert mse(on[5].result.image, cleans[5]) < 1.1 * mse(off[5].result.image, cleans[5])


def test_from_options_owns_radius_passes_and_motion_blur(ident):
    opts = Options(radius=1, tiling="grid", tile=64, overlap=8)
    stream = TemporalStream.from_options(ident, opts)
    assert stream.radius == 1 and stream.denoise_args["tile"] == 64 and not stream.notes
    assert stream.guide_model is ident  # not a bundled network: its own guides
    blurred = TemporalStream.from_options(ident, opts, motion_blur=True)
    assert blurred.radius == 0 and "Motion Blur is on" in blurred.notes[0]
    with pytest.raises(DenoiseError, match="needs the albedo pass, but 'Use Albedo' is off"):
        TemporalStream.from_options(ident, replace(opts, use_albedo=False))


def test_nan_color_is_reported_as_the_frame_had_it(ident):
    """The window's average is clean; the report says what the frame itself held."""
    frames = {t: scene(t)[0] for t in range(1, 5)}
    frames[2].color[5:7, 5:8] = np.nan
    out = run(ident, frames)
    assert out[2].result.stats.input_report.nan == 18 and out[3].result.stats.input_report.nan == 0  # 6 pixels x RGB
    assert np.isfinite(out[2].result.image).all()


def test_a_firefly_is_not_smeared_over_the_window(ident):
    frames, cleans = {}, {}
    for t in range(1, 6):
        frames[t], cleans[t] = scene(t, obj=False)
    frames[2].color[30, 40] = 5000.0
    out = run(ident, frames)
    for t in (1, 3, 4):
        assert out[t].result.image[..., :3].max() < 20 * cleans[t].max(), t


def test_bad_sequences_fail_in_one_line(ident):
    stream = TemporalStream(ident, coarse=False)
    with pytest.raises(MissingPassError, match="no Vector pass"):
        stream.push(1, replace(scene(1)[0], vector=None))
    stream.push(1, scene(1)[0])
    small = scene(2)[0]
    small = replace(small, color=small.color[:40], albedo=small.albedo[:40], normal=small.normal[:40],
                    vector=small.vector[:40], depth=small.depth[:40])  # fmt: skip
    with pytest.raises(DenoiseError, match=r"frame is 96x40, the frames before it 96x72"):
        stream.push(2, small)
    assert [r.number for r in stream.push(2, scene(2)[0]) + stream.finish()] == [1, 2]  # it goes on
    stream.push(1, scene(1)[0])
    assert [r.number for r in stream.push(5, small)] == [1]  # after a cut, another size is another shot
    assert [r.number for r in stream.finish()] == [5]


def test_frame_numbers_from_names():
    assert sequence_number("shot_0042") == ("shot_", 42)
    assert sequence_number("a1b7") == ("a1b", 7)
    assert sequence_number("render") is None


@pytest.mark.parametrize("model_name", ["ident", "ident_color"])
def test_a_light_switching_on_is_not_averaged_with_the_dark_frames(request, model_name):
    """Same geometry, albedo, normal and depth in every frame; the light triples at frame 4. Only the
    frames' half-resolution denoises can tell, and they must."""
    model = request.getfixturevalue(model_name)
    frames, cleans = {}, {}
    for t in range(1, 8):
        f, c = scene(t, obj=False, aux=model_name == "ident")
        gain = 3.0 if t >= 4 else 1.0
        frames[t], cleans[t] = replace(f, color=f.color * gain), c * gain
    out = run(model, frames)
    for t in (3, 4):
        level = out[t].result.image[..., :3].mean() / cleans[t].mean()
        assert 0.93 < level < 1.07, (t, level)  # averaged blindly: 2.2 / 3 at frame 4, 1.4 at frame 3
    assert 2.0 < out[5].reuse < 3.05  # its three lit neighbours help; the dark frame 3 does not


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (3, 2)])
def test_tiny_frames(ident, size):
    h, w = size
    frames = {}
    for t in range(1, 5):
        f, _ = scene(t)
        frames[t] = Frame(color=f.color[:h, :w].copy(), albedo=f.albedo[:h, :w].copy(), normal=f.normal[:h, :w].copy(),
                          vector=f.vector[:h, :w].copy(), depth=f.depth[:h, :w].copy())  # fmt: skip
    out = run(ident, frames)
    for r in out.values():
        assert r.result.image.shape == (h, w, 3) and np.isfinite(r.result.image).all()
