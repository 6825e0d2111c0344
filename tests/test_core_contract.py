"""Models that break the contract are refused with an error naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from blender_denoise_addon.core import MissingPassError, ModelContractError, denoise, load_model
from blender_denoise_addon.core.contract import ModelInfo
from training.onnx_builders import conv_chain


def test_valid_model_loads_with_its_metadata(tmp_path):
    m = load_model(conv_chain(tmp_path / "m.onnx", layers=4, inputs=("color", "albedo")), threads=1)
    assert m.info == ModelInfo(("color", "albedo"), "log", 1, 9, "chain4")
    assert m.info.default_overlap() == 8
    assert "CPUExecutionProvider" in m.providers


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"meta": {"denoiser.inputs": "color,albedo,normal"}},
            "has 3 channels but denoiser.inputs=color,albedo,normal needs 9",
        ),
        ({"meta": {"denoiser.transfer": None}}, "missing metadata_props denoiser.transfer"),
        ({"meta": {"denoiser.transfer": "gamma"}}, "denoiser.transfer='gamma' is not one of"),
        ({"meta": {"denoiser.inputs": "albedo"}}, "denoiser.inputs='albedo' is not one of"),
        ({"meta": {"denoiser.alignment": "zero"}}, "denoiser.alignment='zero' is not an integer"),
        ({"meta": {"denoiser.receptive_field": "0"}}, "denoiser.receptive_field=0 must be at least 1"),
        ({"input_name": "image"}, "needs exactly one input named 'input'"),
        ({"hw": (64, 64)}, "fixed H/W"),
    ],
)
def test_contract_violations_are_named(tmp_path, kwargs, message):
    path = conv_chain(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelContractError, match="bad.onnx") as e:
        load_model(path)
    assert message in str(e.value)


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelContractError, match="model file not found"):
        load_model(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelContractError, match="corrupt.onnx: not a valid ONNX model"):
        load_model(corrupt)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(conv_chain(tmp_path / "ok.onnx").read_bytes()[:300])
    with pytest.raises(ModelContractError, match="not a valid ONNX model"):
        load_model(truncated)


def test_missing_aux_pass_is_named(tmp_path):
    m = load_model(conv_chain(tmp_path / "m.onnx", inputs=("color", "albedo", "normal")))
    color = np.ones((8, 8, 3), np.float32)
    with pytest.raises(MissingPassError, match="needs the albedo pass"):
        denoise(m, color)
    with pytest.raises(MissingPassError, match="needs the normal pass"):
        denoise(m, color, albedo=color)


def test_color_only_model_ignores_extra_passes(tmp_path):
    m = load_model(conv_chain(tmp_path / "m.onnx"))
    color = np.random.default_rng(0).random((9, 9, 3), dtype=np.float32)
    a = denoise(m, color).image
    b = denoise(m, color, albedo=np.zeros_like(color), normal=np.zeros_like(color)).image
    assert np.array_equal(a, b)
