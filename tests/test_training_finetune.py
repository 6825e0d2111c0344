"""``python -m training finetune``: the base it picks for a Quality preset, OIDN's networks tuned on
the guides their prefilters make, the better model kept, the card, and the one-line errors. Runs on
the session's tiny dataset and model (tests/conftest.py) and on the shipped OIDN networks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import ROOT  # noqa: E402

from blender_denoise_addon.core import catalog, load_model  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.dataset import find_pairs, split_pairs  # noqa: E402
from training.finetune import FinetuneConfig, data_passes, pick_base  # noqa: E402
from training.scoring import mean_psnr  # noqa: E402

MODELS = ROOT / "models"


def holdout_psnr(model: Path, pairs: list) -> dict[str, float]:
    return mean_psnr(pairs, load_model(model), quality="high")


def finetune_args(dataset: Path, exported: Path, out: Path) -> list[str]:
    args = ["finetune", "--data", str(dataset), "--base", str(exported), "--minutes", "0.05", "-o", str(out)]
    return [*args, "--holdout", "0.4", "--threads", "1", "--quiet", "--name", "My shot"]


@pytest.fixture(scope="module")
def tuned(dataset: Path, exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tuned") / "my_shot.onnx"
    assert main(finetune_args(dataset, exported, out)) == 0
    return out


def test_a_rerun_continues_the_finished_run(tuned: Path, dataset: Path, exported: Path) -> None:
    """The same command again finds OUT.run/ spent and does not train more."""
    card = json.loads(catalog.card_path(tuned).read_text())
    assert (tuned.parent / "my_shot.run" / "last.pt").is_file()
    assert main(finetune_args(dataset, exported, tuned)) == 0
    again = json.loads(catalog.card_path(tuned).read_text())
    assert (again["steps"], again["minutes"], again["kept"]) == (card["steps"], card["minutes"], card["kept"])


def test_tuned_model_and_its_card(tuned: Path, dataset: Path, exported: Path) -> None:
    card = json.loads(catalog.card_path(tuned).read_text())
    assert catalog.read_card(tuned) == card
    assert card["name"] == "My shot" and card["base"] == exported.name
    assert card["settings"]["lr"] == FinetuneConfig().lr and card["quality"] == ""  # --base, not a preset
    assert card["data"]["samples"] == 5 and card["data"]["pairs"] == len(find_pairs(dataset))
    assert card["minutes_budget"] == 0.05 and card["steps"] >= 1 and card["parity_max_abs_diff"] <= 1e-4
    model = load_model(tuned)
    assert model.info.name == "My shot" and model.info.inputs == ("color", "albedo", "normal")
    # Never worse than where it started, on the held-out samples, measured again here.
    held = split_pairs(find_pairs(dataset), 0.4, 0.0, 0)["val"]
    assert sorted({p.scene for p in held}) == card["held_out"]
    before, now = holdout_psnr(exported, held), holdout_psnr(tuned, held)
    assert before == card["psnr_before"]
    assert now["all"] >= before["all"]
    assert card["kept"] == ("tuned" if card["psnr_tuned"]["all"] > card["psnr_before"]["all"] else "base")
    if card["kept"] == "base":  # the base's weights under the new name
        import onnx
        from onnx import numpy_helper

        a, b = ([numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer] for p in (tuned, exported))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not [p for p in tuned.parent.iterdir() if "partial" in p.name]


def test_listed_in_a_models_folder_by_its_card_name(tuned: Path, tmp_path: Path) -> None:
    shutil.copy(tuned, tmp_path / tuned.name)
    shutil.copy(catalog.card_path(tuned), catalog.card_path(tmp_path / tuned.name))
    (tmp_path / "broken.onnx").write_bytes(b"\x00not onnx")
    listed = {m.path.name: m for m in catalog.list_models(tmp_path)}
    assert listed["my_shot.onnx"].name == "My shot" and listed["my_shot.onnx"].error is None
    assert listed["broken.onnx"].error and "broken.onnx" in listed["broken.onnx"].error


def test_the_base_is_the_network_behind_the_quality_preset(dataset: Path, tmp_path: Path) -> None:
    exr = find_pairs(dataset)
    assert data_passes(exr) == {"color", "albedo", "normal"}
    every = {"color", "albedo", "normal"}
    for quality, want in (("high", "calb-cnrm-large"), ("balanced", "hdr-alb-nrm.onnx"), ("fast", "nrm-small")):
        assert want in pick_base(FinetuneConfig(quality=quality), every).path.name
    png = tmp_path / "png_only"
    for sub in ("noise", "denoise"):
        shutil.copytree(dataset / sub, png / sub)
    assert data_passes(find_pairs(png)) == {"color"}
    assert pick_base(FinetuneConfig(quality="high"), {"color"}).path.name == "oidn-rt-hdr.onnx"


def test_high_tunes_oidns_large_network_on_the_guides_its_prefilters_make(dataset: Path, tmp_path: Path) -> None:
    """--quality high on EXR pairs: OIDN's large cleanAux network, trained on prefiltered guides with
    its prefilters fixed; the export says where it comes from, keeps the Apache-2.0 license, and its
    prefilters are copied beside it; the card records what was kept."""
    import onnx

    from training.checkpoint import load_checkpoint

    out = tmp_path / "shot" / "high.onnx"
    args = ["finetune", "--data", str(dataset), "--quality", "high", "--minutes", "0.4", "-o", str(out)]
    assert main([*args, "--holdout", "0.4", "--patch", "32", "--batch-size", "2", "--threads", "1", "--quiet"]) == 0
    base = MODELS / "oidn-rt-hdr-calb-cnrm-large.onnx"
    config = load_checkpoint(out.with_name("high.run") / "best.pt")["config"]
    assert config["model"]["network"] == "oidn-large" and config["init"] == str(base)
    assert config["guides"] == "prefiltered" and config["transfer"] == "pu"
    assert config["prefilter"] == f"{MODELS / 'oidn-rt-alb-large.onnx'},{MODELS / 'oidn-rt-nrm-large.onnx'}"
    model = load_model(out)
    assert model.info.prefilter == ("oidn-rt-alb-large.onnx", "oidn-rt-nrm-large.onnx") and len(model.prefilters) == 2
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["denoiser.license"] == "Apache-2.0" and "rt_hdr_calb_cnrm_large" in meta["denoiser.source"]
    card = json.loads(catalog.card_path(out).read_text())
    assert card["base"] == base.name and card["quality"] == "high" and card["steps"] >= 1
    # Apache-2.0 carried on: the license text beside it, and a notice of what was changed.
    assert card["license_files"] == ["high.NOTICE.txt", "LICENSE-OIDN.txt"]
    notice = (out.parent / "high.NOTICE.txt").read_text()
    assert "Apache License, Version 2.0" in notice and "Intel" in notice and "OIDN rt_hdr_calb_cnrm_large" in notice
    assert (out.parent / "LICENSE-OIDN.txt").read_bytes() == (MODELS / "LICENSE-OIDN.txt").read_bytes()
    kind = "fine-tuned from OIDN rt_hdr_calb_cnrm_large" if card["kept"] == "tuned" else "unchanged"
    assert kind in meta["denoiser.source"]
    held = split_pairs(find_pairs(dataset), 0.4, 0.0, 0)["val"]
    assert holdout_psnr(out, held) == card["psnr_tuned" if card["kept"] == "tuned" else "psnr_before"]


def test_our_own_v13_still_tunes_from_its_old_saved_config(dataset: Path, tmp_path: Path) -> None:
    """training/base/ holds v13 with a config saved before options were removed: --base takes it."""
    from training.config import config_from
    from training.finetune import training_settings

    v13 = ROOT / "training" / "base" / "denoiser-v13-color-albedo-normal.onnx"
    cfg = FinetuneConfig(data=str(dataset), output=str(tmp_path / "t.onnx"), base=str(v13))
    settings = training_settings(cfg, pick_base(cfg, {"color", "albedo", "normal"}), tmp_path / "t.run")
    train = config_from(settings)
    assert train.model.network == "kpn" and train.model.demodulate and train.transfer == "log"
    assert train.init == str(v13) and train.freeze == "encoder" and train.guides == "noisy"


def test_the_trainer_fine_tunes_oidn_weights_exactly_where_they_start(dataset: Path, tmp_path: Path) -> None:
    """An OIDN export read back as a trainable network computes what the shipped file computes."""
    import torch

    from training.checkpoint import initial_config, initial_weights
    from training.config import UNetConfig
    from training.networks import build

    path = MODELS / "oidn-rt-hdr-alb-nrm-small.onnx"
    config = UNetConfig(**initial_config(path))
    assert config.network == "oidn-small" and config.role == "denoiser"
    net = build(config)
    net.load_state_dict(initial_weights(path))
    x = torch.rand(1, 9, 32, 48)
    x[:, 6:] = x[:, 6:] * 2 - 1
    with torch.no_grad():
        want = load_model(path).run(x.numpy())
        np.testing.assert_allclose(net(x).numpy(), want, atol=1e-4)


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("png_aux", "needs color,albedo,normal but the pairs in"),
        ("not_onnx", "must be an .onnx file"),
        ("no_data", "no training pairs found"),
        ("same", "would overwrite the model it starts from"),
        ("too_few", "too few to hold some out"),
        ("unknown_network", "is not a network we can train; supported: models exported by"),
        ("out_of_time", "ran out before the first evaluation"),
    ],
)
def test_bad_input_is_one_line(case: str, expect: str, dataset: Path, exported: Path, tmp_path: Path, capsys) -> None:
    data, base, out = dataset, exported, tmp_path / "out.onnx"
    if case == "png_aux":
        data = tmp_path / "png_only"
        for sub in ("noise", "denoise"):
            shutil.copytree(dataset / sub, data / sub)
    elif case == "not_onnx":
        out = tmp_path / "out.pt"
    elif case == "no_data":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "same":
        base = tmp_path / "base.onnx"
        shutil.copy(exported, base)
        out = base
    elif case == "too_few":
        from blender_denoise_addon.dataset import files

        data, one = tmp_path / "one", files.sample_dir(dataset, 0).relative_to(dataset)  # no records: exr/ alone
        shutil.copytree(dataset / one, data / one)
    elif case == "unknown_network":  # a bring-your-own ONNX: contract metadata, no known architecture
        from training.onnx_builders import conv_chain

        base = conv_chain(tmp_path / "mine.onnx", inputs=("color", "albedo", "normal"))
    minutes = "0.0002" if case == "out_of_time" else "0.05"
    args = ["finetune", "--data", str(data), "--base", str(base), "-o", str(out), "--minutes", minutes, "--quiet"]
    assert main([*args, "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expect in err[0], err
    assert not out.exists() or case == "same"
    assert not out.with_name(out.stem + ".run").exists() and not catalog.card_path(out).exists()


def test_when_the_tuned_model_scores_higher_it_is_the_one_written(
    dataset: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keep-the-tuned-model branch, forced: the base's held-out score is made 100 dB lower, so
    the tuned model wins; its own weights (not the base's) are written, and the card says so."""
    import onnx
    from onnx import numpy_helper

    from training import scoring

    real = scoring.mean_psnr

    def base_scores_lower(pairs, model, quality="balanced"):  # type: ignore[no-untyped-def]
        score = real(pairs, model, quality)
        return {k: v - 100 for k, v in score.items()} if Path(model.path) == exported else score

    monkeypatch.setattr(scoring, "mean_psnr", base_scores_lower)
    out = tmp_path / "tuned.onnx"
    assert main(finetune_args(dataset, exported, out)) == 0
    card = json.loads(catalog.card_path(out).read_text())
    assert card["kept"] == "tuned", card
    assert card["psnr_tuned"]["all"] > card["psnr_before"]["all"]
    weights = [[numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer] for p in (out, exported)]
    assert not all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))  # trained, not the base renamed
    assert load_model(out).info.name == "My shot"
