"""The models in models/: both input sets present, within the size budget, honest metadata,
picked by the passes a frame has, and they actually denoise a noisy frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_denoise_addon.core import catalog
from blender_denoise_addon.core.denoise import denoise
from blender_denoise_addon.core.model import load_model

MODELS = Path(__file__).resolve().parent.parent / "models"
MAX_BYTES = 10 * 1024 * 1024


def _shipped() -> list[Path]:
    paths = sorted(MODELS.glob("*.onnx"))
    if not paths:
        pytest.fail(f"no shipped model in {MODELS}: the product needs its default models")
    return paths


def test_both_input_sets_ship_small_and_documented():
    card = (MODELS / "README.md").read_text()
    inputs = set()
    for path in _shipped():
        assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
        model = load_model(path)
        inputs.add(tuple(model.info.inputs))
        assert path.name in card, f"{path.name} has no model card in models/README.md"
        assert model.info.receptive_field > 1 and model.info.alignment >= 1
    assert ("color",) in inputs and ("color", "albedo", "normal") in inputs, inputs


@pytest.mark.parametrize(
    ("passes", "expected"),
    [({"color"}, ("color",)), ({"color", "albedo", "normal"}, ("color", "albedo", "normal"))],
)
def test_pick_matches_available_passes(passes, expected):
    _shipped()
    assert tuple(catalog.pick_model(passes).info.inputs) == expected


def test_shipped_models_reduce_noise():
    """A smooth lit gradient with Monte-Carlo-like noise: every shipped model gets closer to it."""
    rng = np.random.default_rng(5)
    h, w = 96, 80
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    clean = np.stack([0.2 + 0.6 * x / w, 0.3 + 0.4 * y / h, 0.5 * np.ones_like(x)], axis=-1).astype(np.float32)
    # 4-sample mean of exponential samples: mean = clean, heavy relative noise.
    noisy = (clean * rng.gamma(4.0, 0.25, size=clean.shape)).astype(np.float32)
    albedo = np.full_like(clean, 0.8)
    normal = np.zeros_like(clean)
    normal[..., 2] = 1.0
    err_noisy = float(np.mean((noisy - clean) ** 2))
    for path in _shipped():
        model = load_model(path)
        out = denoise(model, noisy, albedo, normal, tiling="full").image[..., :3]
        err_out = float(np.mean((out - clean) ** 2))
        assert np.isfinite(out).all()
        assert err_out < 0.25 * err_noisy, f"{path.name}: MSE {err_out:.4g} vs noisy {err_noisy:.4g}"
