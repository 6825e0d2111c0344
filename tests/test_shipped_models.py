"""The models in models/: both input sets present, within the size budget, honest metadata,
picked by the passes a frame has, and they actually denoise a noisy frame."""

from __future__ import annotations

import json
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


PIN = Path(__file__).resolve().parent / "data"


def _pin_frame() -> dict[str, np.ndarray]:
    import OpenEXR

    with OpenEXR.File(str(PIN / "pin_frame.exr"), separate_channels=True) as f:
        ch = {n: np.array(c.pixels) for p in f.parts for n, c in p.channels.items()}
    return {
        name: np.stack([ch[f"{name}.{c}"] for c in comps], -1)
        for name, comps in (("noisy", "RGBA"), ("albedo", "RGB"), ("normal", "XYZ"), ("reference", "RGB"))
    }


@pytest.mark.parametrize("coarse", [False, True])
@pytest.mark.parametrize("name", ["denoiser-v13-color-albedo-normal.onnx", "denoiser-v16-color.onnx"])
def test_shipped_model_psnr_is_pinned(name: str, coarse: bool) -> None:
    """A refactor cannot silently change what a shipped model computes: its PSNR on a stored
    96x96 frame (tests/data/make_pin_frame.py) stays within 0.05 dB of the value measured then."""
    from blender_denoise_addon.core.metrics import report

    pinned = json.loads((PIN / "pin_frame.json").read_text())
    frame = _pin_frame()
    assert report(frame["noisy"], frame["reference"])["psnr"] == pytest.approx(pinned["noisy"], abs=1e-3)
    model = load_model(MODELS / name)
    passes = {p: frame[p] for p in ("albedo", "normal") if p in model.info.inputs}
    out = denoise(model, frame["noisy"], passes.get("albedo"), passes.get("normal"), coarse=coarse).image
    got = report(out, frame["reference"])["psnr"]
    key = f"{name} coarse" if coarse else name
    assert abs(got - pinned[key]) <= 0.05, f"{key}: {got:.4f} dB, pinned {pinned[key]:.4f}"
    assert got > pinned["noisy"] + 5  # and it denoises


def test_automatic_pick_builds_its_sessions_once(monkeypatch):
    """The render hook asks for the model on every frame: the pick (which loads every bundled
    model) must run once per passes and threads, not per frame."""
    catalog.clear_cache()
    loads = []
    real = catalog.load_model
    monkeypatch.setattr(catalog, "load_model", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    first = catalog.get_model(None, {"color", "albedo", "normal"}, 1)
    n = len(loads)
    assert n >= 2  # the pick looked at every bundled model
    for _ in range(5):
        assert catalog.get_model(None, {"normal", "albedo", "color"}, 1) is first
    assert len(loads) == n
    assert catalog.get_model(None, {"color"}, 1) is not first  # other passes: another pick
    catalog.clear_cache()
