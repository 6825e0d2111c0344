"""The stills path (issue 36): guide prefilters named by a model, test-time flips, the Quality presets."""

from __future__ import annotations

import numpy as np
import pytest

from blender_denoise_addon.core import catalog
from blender_denoise_addon.core.contract import ModelInfo, parse_metadata
from blender_denoise_addon.core.denoise import denoise, prefilter
from blender_denoise_addon.core.errors import DenoiseError, ModelContractError
from blender_denoise_addon.core.model import load_model
from blender_denoise_addon.core.options import Options
from training.onnx_builders import conv_chain, fixed_conv


def _box(k: int = 3) -> np.ndarray:
    w = np.zeros((3, 3, k, k), np.float32)
    for c in range(3):
        w[c, c] = 1.0 / (k * k)
    return w


def _pick(channels: int, first: int, sign: tuple[float, float, float] = (1, 1, 1)) -> np.ndarray:
    """1x1 weights: output channel c = sign[c] * input channel first + c."""
    w = np.zeros((3, channels, 1, 1), np.float32)
    for c in range(3):
        w[c, first + c] = sign[c]
    return w


def _zero_padded_box(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    p = np.pad(a, ((1, 1), (1, 1), (0, 0)))
    return sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0


@pytest.fixture
def folder(tmp_path):
    """box-albedo.onnx: a 3x3 box prefilter for albedo; shows-albedo.onnx: a denoiser whose output is its
    albedo input, naming that prefilter; identity-normal.onnx: a normal prefilter that changes nothing."""
    fixed_conv(tmp_path / "box-albedo.onnx", _box(), ModelInfo(("albedo",), "linear", 1, 3, "box", role="prefilter"))
    fixed_conv(tmp_path / "identity-normal.onnx", _pick(3, 0),
               ModelInfo(("normal",), "linear", 1, 1, "same", role="prefilter"))  # fmt: skip
    info = ModelInfo(("color", "albedo"), "linear", 1, 1, "shows-albedo", prefilter=("box-albedo.onnx",))
    fixed_conv(tmp_path / "shows-albedo.onnx", _pick(6, 3), info)
    return tmp_path


def test_contract_reads_role_prefilter_and_priority():
    meta = {"denoiser.inputs": "color,albedo,normal", "denoiser.transfer": "log", "denoiser.alignment": "16",
            "denoiser.receptive_field": "9", "denoiser.prefilter": "a.onnx, n.onnx",
            "denoiser.priority": "2"}  # fmt: skip
    info = parse_metadata(meta)
    assert info.prefilter == ("a.onnx", "n.onnx") and info.priority == 2
    assert parse_metadata(info.metadata()) == info
    pre = parse_metadata(meta | {"denoiser.inputs": "normal", "denoiser.role": "prefilter", "denoiser.prefilter": ""})
    assert pre.role == "prefilter" and pre.inputs == ("normal",)
    both = parse_metadata(
        meta | {"denoiser.inputs": "albedo,normal", "denoiser.role": "prefilter", "denoiser.prefilter": ""}
    )
    assert both.inputs == ("albedo", "normal") and both.channels == 6
    bad = [
        {"denoiser.role": "upscaler"},
        {"denoiser.inputs": "albedo"},  # a denoiser must take color
        {"denoiser.prefilter": "d.txt"},
        {"denoiser.prefilter": "../a.onnx"},
        {"denoiser.prefilter": "a.onnx,a.onnx"},
        {"denoiser.inputs": "color", "denoiser.prefilter": "a.onnx"},  # no guide to clean
        {"denoiser.priority": "high"},
        {"denoiser.role": "prefilter", "denoiser.inputs": "color"},
    ]
    for change in bad:
        with pytest.raises(ModelContractError):
            parse_metadata(meta | change)


def test_denoiser_sees_its_prefiltered_guide_on_any_tiling(folder):
    model = load_model(folder / "shows-albedo.onnx")
    assert [p.info.inputs for p in model.prefilters] == [("albedo",)]
    rng = np.random.default_rng(0)
    albedo = rng.random((40, 70, 3), dtype=np.float32)
    color = rng.random((40, 70, 3), dtype=np.float32)
    expected = _zero_padded_box(albedo)
    for tiling, tile in (("full", None), ("sliding", 16), ("sliding", 24)):  # grid has seams by design
        res = denoise(model, color, albedo, tiling=tiling, tile=tile, coarse=0)
        assert res.stats.prefiltered == ("albedo",)
        np.testing.assert_allclose(res.image, expected, atol=1e-5, err_msg=tiling)
    np.testing.assert_allclose(prefilter(model.prefilters[0], {"albedo": albedo})["albedo"], expected, atol=1e-6)


def test_a_missing_or_wrong_prefilter_is_one_clear_error(folder):
    (folder / "box-albedo.onnx").rename(folder / "elsewhere.onnx")
    with pytest.raises(ModelContractError, match="prefilter box-albedo.onnx is not beside it"):
        load_model(folder / "shows-albedo.onnx")
    # A denoiser where the prefilter should be.
    conv_chain(folder / "box-albedo.onnx", layers=1, inputs=("color", "albedo"))
    with pytest.raises(ModelContractError, match="is not a prefilter for guides it takes"):
        load_model(folder / "shows-albedo.onnx")
    with pytest.raises(DenoiseError, match="is a guide prefilter"):
        denoise(load_model(folder / "identity-normal.onnx"), np.ones((8, 8, 3), np.float32))


def test_one_prefilter_for_both_guides(folder):
    """A 6-channel prefilter: the albedo comes back boxed, the normal as it was, and the denoiser
    that shows its normal input (output = normal) gets the normal the prefilter returned."""
    w = np.zeros((6, 6, 3, 3), np.float32)
    w[:3, :3] = _box()
    for c in range(3):
        w[3 + c, 3 + c, 1, 1] = 1.0
    fixed_conv(folder / "both.onnx", w, ModelInfo(("albedo", "normal"), "linear", 1, 3, "both", role="prefilter"))
    info = ModelInfo(("color", "albedo", "normal"), "linear", 1, 1, "shows-normal", prefilter=("both.onnx",))
    fixed_conv(folder / "shows-normal.onnx", _pick(9, 6), info)
    model = load_model(folder / "shows-normal.onnx")
    rng = np.random.default_rng(5)
    albedo, color = rng.random((30, 40, 3), dtype=np.float32), rng.random((30, 40, 3), dtype=np.float32)
    normal = rng.uniform(-1, 1, (30, 40, 3)).astype(np.float32)
    out = prefilter(model.prefilters[0], {"albedo": albedo, "normal": normal}, flips=4)
    np.testing.assert_allclose(out["albedo"], _zero_padded_box(albedo), atol=1e-5)
    np.testing.assert_allclose(out["normal"], normal, atol=1e-6)
    res = denoise(model, color, albedo, normal, tile=16, coarse=0)  # (flips would mirror its "color")
    assert res.stats.prefiltered == ("albedo", "normal")
    np.testing.assert_allclose(res.image, normal, atol=1e-5)
    # A second prefilter for a guide the first already cleans is refused.
    info2 = ModelInfo(
        ("color", "albedo", "normal"), "linear", 1, 1, "twice", prefilter=("both.onnx", "box-albedo.onnx")
    )
    fixed_conv(folder / "twice.onnx", _pick(9, 6), info2)
    with pytest.raises(ModelContractError, match="no other prefilter cleans"):
        load_model(folder / "twice.onnx")


def test_flips_average_mirrored_runs_and_turn_normals(folder):
    rng = np.random.default_rng(1)
    normal = rng.uniform(-1, 1, (33, 47, 3)).astype(np.float32)
    same = load_model(folder / "identity-normal.onnx")
    for flips in (1, 2, 4):  # a normal through an identity prefilter comes back as it was, mirrored or not
        np.testing.assert_allclose(prefilter(same, {"normal": normal}, flips=flips)["normal"], normal, atol=1e-6)
    # Output = the input shifted one pixel right; its mirror image shifts left: 2 flips average both.
    shift = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        shift[c, c, 1, 0] = 1.0
    path = fixed_conv(folder / "shift.onnx", shift, ModelInfo(("color",), "linear", 1, 3, "shift"))
    color = rng.random((20, 30, 3), dtype=np.float32)
    got = denoise(load_model(path), color, tiling="full", coarse=0, flips=2).image
    right = np.pad(color, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    left = np.pad(color, ((0, 0), (0, 1), (0, 0)))[:, 1:]
    np.testing.assert_allclose(got, (right + left) / 2, atol=1e-6)
    with pytest.raises(DenoiseError, match="flips must be one of"):
        denoise(load_model(path), color, flips=3)


def test_automatic_follows_the_quality_presets(tmp_path, chain7):
    """Each preset runs the bundled model that names it (``denoiser.quality``) for the passes at
    hand; more passes come first; a model that names no preset serves where none names it."""
    d = tmp_path / "bundled"
    d.mkdir()
    full = ("color", "albedo", "normal")
    for name, inputs, quality in (("fast3", full, "fast"), ("bal3", full, "balanced"), ("high3", full, "high"),
                                  ("bal1", ("color",), "balanced,high"), ("any1", ("color",), None)):  # fmt: skip
        conv_chain(d / f"{name}.onnx", layers=1, inputs=inputs, meta={"denoiser.quality": quality} if quality else {})
    candidates = sorted(d.glob("*.onnx"))
    for quality, three, one in (("fast", "fast3", "any1"), ("balanced", "bal3", "bal1"), ("high", "high3", "bal1")):
        picked = catalog.pick_model(set(full), candidates=candidates, quality=quality)
        assert (picked.path.stem, picked.info.quality) == (three, (quality,))
        assert catalog.pick_model({"color", "albedo"}, candidates=candidates, quality=quality).path.stem == one
    with pytest.raises(DenoiseError, match="quality must be one of fast, balanced, high"):
        denoise(chain7, np.ones((8, 8, 3), np.float32), **Options(quality="ultra").denoise_args)
    conv_chain(d / "bad.onnx", layers=1, meta={"denoiser.quality": "ultra"})
    with pytest.raises(DenoiseError, match="denoiser.quality names 'ultra'"):
        load_model(d / "bad.onnx")


def test_automatic_skips_prefilters_and_prefers_priority(folder):
    for priority in (0, 3):
        conv_chain(folder / f"p{priority}.onnx", layers=1, meta={"denoiser.priority": str(priority)})
    model = catalog.pick_model({"color"}, candidates=sorted(folder.glob("*.onnx")))
    assert model.path.name == "p3.onnx"
    both = catalog.pick_model({"color", "albedo"}, candidates=sorted(folder.glob("*.onnx")))
    assert both.path.name == "shows-albedo.onnx"  # more passes first
    listed = {m.path.name for m in catalog.list_models(folder)}
    assert listed == {"p0.onnx", "p3.onnx", "shows-albedo.onnx"}


def test_bundled_models_leave_prefilters_out(folder, monkeypatch):
    monkeypatch.setenv("BLENDER_DENOISE_MODELS", str(folder))
    names = {p.name for p in catalog.bundled_models()}
    assert "shows-albedo.onnx" in names
    assert not names & {"box-albedo.onnx", "identity-normal.onnx"}


def test_metadata_read_without_onnxruntime_matches_onnx(folder, tmp_path):
    import onnx

    from blender_denoise_addon.core.contract import read_metadata

    for path in [*sorted(folder.glob("*.onnx")), *catalog.bundled_models()]:
        expected = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert read_metadata(path) == expected, path.name
    (tmp_path / "cut.onnx").write_bytes((folder / "shows-albedo.onnx").read_bytes()[:100])
    with pytest.raises(ValueError):
        read_metadata(tmp_path / "cut.onnx")
