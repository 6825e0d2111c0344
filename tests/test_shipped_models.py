"""The models in models/: OIDN's networks for every set of passes and every Quality preset,
credited, within the size budget, picked by the passes
and the preset, and they actually denoise. The base models ``finetune`` starts from (training/base)
keep their pinned results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blender_denoise_addon.core import catalog
from blender_denoise_addon.core.contract import read_metadata
from blender_denoise_addon.core.defaults import QUALITY
from blender_denoise_addon.core.denoise import denoise
from blender_denoise_addon.core.model import load_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BASE = ROOT / "training" / "base"
MAX_BYTES = 10 * 1024 * 1024
FULL = ("color", "albedo", "normal")


def _shipped() -> list[Path]:
    paths = sorted(MODELS.glob("*.onnx"))
    if not paths:
        pytest.fail(f"no shipped model in {MODELS}: the product needs its default models")
    return paths


def test_every_preset_and_pass_set_ships_credited_and_documented():
    card = (MODELS / "README.md").read_text()
    notice = (MODELS / "NOTICE").read_text()
    assert "Apache License" in (MODELS / "LICENSE-OIDN.txt").read_text() and "Intel" in notice
    served = set()
    for path in _shipped():
        assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
        assert path.name in card, f"{path.name} has no model card in models/README.md"
        meta = read_metadata(path)
        assert meta["denoiser.license"] == "Apache-2.0" and "weights unchanged" in meta["denoiser.source"]
        model = load_model(path)
        assert model.info.receptive_field > 100 and model.info.alignment == 16 and model.info.padding == "zero"
        served |= {(q, model.info.inputs) for q in model.info.quality}
    for q in QUALITY:
        for inputs in (("color",), ("color", "albedo"), FULL):
            assert (q, inputs) in served, f"no model for {q} with {inputs}"


@pytest.mark.parametrize(
    ("passes", "quality", "expected"),
    [
        ({"color"}, "balanced", "oidn-rt-hdr"),
        ({"color", "albedo"}, "high", "oidn-rt-hdr-alb"),
        ({"color", "albedo"}, "fast", "oidn-rt-hdr-alb-small"),
        (set(FULL), "fast", "oidn-rt-hdr-alb-nrm-small"),
        (set(FULL), "balanced", "oidn-rt-hdr-alb-nrm"),
        (set(FULL), "high", "oidn-rt-hdr-calb-cnrm-large"),
    ],
)
def test_pick_follows_passes_and_quality(passes, quality, expected):
    _shipped()
    model = catalog.pick_model(passes, quality=quality)
    assert model.path.stem == expected
    if quality == "high" and "normal" in passes:  # Blender's accurate pipeline: the guides cleaned first
        assert [p.info.inputs for p in model.prefilters] == [("albedo",), ("normal",)]


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
        if model.info.role == "prefilter":  # its denoiser runs it
            continue
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
def test_base_model_psnr_is_pinned(name: str, coarse: bool) -> None:
    """A refactor cannot silently change what a base model computes: its PSNR on a stored
    96x96 frame (tests/data/make_pin_frame.py) stays within 0.05 dB of the value measured then."""
    from blender_denoise_addon.core.metrics import report

    pinned = json.loads((PIN / "pin_frame.json").read_text())
    frame = _pin_frame()
    assert report(frame["noisy"], frame["reference"])["psnr"] == pytest.approx(pinned["noisy"], abs=1e-3)
    model = load_model(BASE / name)
    passes = {p: frame[p] for p in ("albedo", "normal") if p in model.info.inputs}
    out = denoise(model, frame["noisy"], passes.get("albedo"), passes.get("normal"), coarse=coarse).image
    got = report(out, frame["reference"])["psnr"]
    key = f"{name} coarse" if coarse else name
    assert abs(got - pinned[key]) <= 0.05, f"{key}: {got:.4f} dB, pinned {pinned[key]:.4f}"
    assert got > pinned["noisy"] + 5  # and it denoises


def test_automatic_pick_builds_its_sessions_once(monkeypatch):
    """The render hook asks for the model on every frame: the pick must run once per passes,
    threads and quality, not per frame."""
    catalog.clear_cache()
    loads = []
    real = catalog.load_model
    monkeypatch.setattr(catalog, "load_model", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    first = catalog.get_model(None, {"color", "albedo", "normal"}, 1)
    n = len(loads)
    assert n == 1  # the pick ranks by metadata and builds the chosen model's session only
    for _ in range(5):
        assert catalog.get_model(None, {"normal", "albedo", "color"}, 1) is first
    assert len(loads) == n
    assert catalog.get_model(None, {"color"}, 1) is not first  # other passes: another pick
    assert catalog.get_model(None, {"color", "albedo", "normal"}, 1, "high") is not first  # another preset
    catalog.clear_cache()
