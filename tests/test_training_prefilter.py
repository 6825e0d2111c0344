"""Guide prefilters (trained by the one trainer: `train --inputs albedo,normal`) and training on
clean or prefiltered guides, on the real generator's tiny dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_denoise_addon.core.denoise import _Plan, _prefilter_guides, _Runner, denoise, prefilter
from blender_denoise_addon.core.imageio import read_image
from blender_denoise_addon.core.model import load_model
from training.__main__ import main
from training.dataset import find_pairs, load_pair

# A guide prefilter: guides alone as the inputs, L1 against the clean render's guides.
PREFILTER = ["--inputs", "albedo,normal", "--width", "16", "--growth", "8", "--depth", "2", "--w-mse", "0"]
PREFILTER += ["--w-ssim", "0", "--w-l1", "1", "--patch", "16", "--batch-size", "8", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def prefilter_model(dataset, tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("prefilter")
    args = ["train", "--data", str(dataset), "--out", str(out / "run"), "--epochs", "12", *PREFILTER]
    assert main(args) == 0
    assert main(["export", "--checkpoint", str(out / "run" / "best.pt"), "-o", str(out / "pre.onnx")]) == 0
    return out


def test_prefilter_run_saves_its_config_and_exports_a_contract_prefilter(dataset, prefilter_model):
    from training.train import read_log

    run = prefilter_model / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["inputs"] == "albedo,normal" and config["seed"] == 0 and config["transfer"] == "linear"
    log = read_log(run / "log.csv")
    assert len(log) == 12 and all(np.isfinite(r["val_loss"]) for r in log)
    # Better than the noisy guides on the validation scenes (L1 against the clean render's).
    val = set(json.loads((run / "split.json").read_text())["val"])
    noisy = [load_pair(p, "albedo,normal", "linear") for p in find_pairs(dataset) if p.scene in val]
    errors = [np.concatenate([lo.albedo, lo.normal]) - np.concatenate(list(lo.clean.values())) for lo in noisy]
    noisy_l1 = np.mean([np.mean(np.abs(e)) for e in errors])
    assert min(r["val_loss"] for r in log) < noisy_l1
    model = load_model(prefilter_model / "pre.onnx")
    assert model.info.role == "prefilter" and model.info.inputs == ("albedo", "normal")
    # Sliding tiles give the whole-frame result: the measured receptive field is wide enough.
    rng = np.random.default_rng(0)
    guides = {"albedo": rng.random((90, 150, 3), dtype=np.float32),
              "normal": rng.uniform(-1, 1, (90, 150, 3)).astype(np.float32)}  # fmt: skip
    whole = prefilter(model, guides)
    tiles = _Plan("sliding", 120, None).tiles(model, 90, 150)
    assert len(tiles) > 1
    tiled = _prefilter_guides(model, guides, tiles, _Runner(1, 1, len(tiles)))
    for g in guides:
        np.testing.assert_allclose(tiled[g], whole[g], atol=1e-5)
        assert whole[g].min() >= (0 if g == "albedo" else -1) and whole[g].max() <= 1


@pytest.mark.parametrize("guides", ["clean", "prefiltered"])
def test_training_on_other_guides_and_the_export_names_its_prefilter(
    dataset, prefilter_model, tmp_path, guides, one_thread
):
    from training_support import train_cli

    pre = prefilter_model / "pre.onnx"
    run = tmp_path / "run"
    assert train_cli(dataset, run, "--epochs", "1", "--guides", guides, "--prefilter", str(pre)) == 0
    out = tmp_path / "model" / "m.onnx"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "-o", str(out), "--priority", "2"]) == 0
    model = load_model(out)  # the prefilter was copied beside it
    assert model.info.prefilter == ("pre.onnx",) and model.info.priority == 2
    assert (tmp_path / "model" / "pre.onnx").is_file() and len(model.prefilters) == 1
    frame = read_image(find_pairs(dataset)[0].noisy)
    res = denoise(model, frame.color, frame.albedo, frame.normal)
    assert res.stats.prefiltered == ("albedo", "normal") and np.isfinite(res.image).all()


def test_the_guides_training_sees(dataset, prefilter_model):
    pair = find_pairs(dataset)[0]
    noisy, clean = read_image(pair.noisy), read_image(pair.clean)
    pre = load_model(prefilter_model / "pre.onnx")
    as_noisy = load_pair(pair, "color,albedo,normal", "log")
    as_clean = load_pair(pair, "color,albedo,normal", "log", "clean")
    as_pre = load_pair(pair, "color,albedo,normal", "log", "prefiltered", (pre,))
    np.testing.assert_allclose(as_noisy.albedo, np.clip(noisy.albedo[..., :3], 0, 1).transpose(2, 0, 1))
    np.testing.assert_allclose(as_clean.normal, np.clip(clean.normal[..., :3], -1, 1).transpose(2, 0, 1))
    expected = prefilter(pre, {"albedo": noisy.albedo, "normal": noisy.normal})
    np.testing.assert_allclose(as_pre.albedo, expected["albedo"].transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(as_clean.target, as_noisy.target)  # the target never changes
