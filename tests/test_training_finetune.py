"""``python -m training finetune``: the base it picks, the recipe it follows, the better model kept,
the card, and the one-line errors. Runs on the session's tiny dataset and model (tests/conftest.py)."""

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
from training.finetune import data_passes, holdout_psnr, pick_base, recipe_for  # noqa: E402

V13 = ROOT / "training" / "base" / "denoiser-v13-color-albedo-normal.onnx"
V16 = ROOT / "training" / "base" / "denoiser-v16-color.onnx"


def finetune_args(dataset: Path, exported: Path, out: Path) -> list[str]:
    args = ["finetune", "--data", str(dataset), "--from", str(exported), "--minutes", "0.05", "-o", str(out)]
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
    assert card["recipe"] == "v13-color-albedo-normal"  # the tiny model takes all three passes
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


def test_base_and_recipe_follow_the_data(dataset: Path, tmp_path: Path, exported: Path) -> None:
    exr = find_pairs(dataset)
    assert data_passes(exr) == {"color", "albedo", "normal"}
    assert pick_base("", data_passes(exr)).name == V13.name
    png = tmp_path / "png_only"
    for sub in ("noise", "denoise"):
        shutil.copytree(dataset / sub, png / sub)
    assert data_passes(find_pairs(png)) == {"color"}
    assert pick_base("", {"color"}).name == V16.name
    assert recipe_for(V13, ("color", "albedo", "normal")) == "v13-color-albedo-normal"
    assert recipe_for(V16, ("color",)) == "v16-color"
    # A tuned color model names its recipe on its card.
    mine = tmp_path / "mine.onnx"
    shutil.copy(V16, mine)
    catalog.card_path(mine).write_text(json.dumps({"recipe": "v16-color"}))
    assert recipe_for(mine, ("color",)) == "v16-color"


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("png_aux", "takes color,albedo,normal but the data has only color"),
        ("not_onnx", "must be an .onnx file"),
        ("no_data", "no training pairs found"),
        ("same", "would overwrite the model it starts from"),
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
    args = ["finetune", "--data", str(data), "--from", str(base), "-o", str(out), "--minutes", "0.01", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expect in err[0], err
    assert not out.exists() or case == "same"


def test_when_the_tuned_model_scores_higher_it_is_the_one_written(
    dataset: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keep-the-tuned-model branch, forced: the base's held-out score is made 100 dB lower, so
    the tuned model wins; its own weights (not the base's) are written, and the card says so."""
    import onnx
    from onnx import numpy_helper

    from training import finetune as ft

    real = ft.holdout_psnr

    def base_scores_lower(model_path, pairs, threads=0):  # type: ignore[no-untyped-def]
        score = real(model_path, pairs, threads)
        return {k: v - 100 for k, v in score.items()} if Path(model_path) == exported else score

    monkeypatch.setattr(ft, "holdout_psnr", base_scores_lower)
    out = tmp_path / "tuned.onnx"
    assert main(finetune_args(dataset, exported, out)) == 0
    card = json.loads(catalog.card_path(out).read_text())
    assert card["kept"] == "tuned", card
    assert card["psnr_tuned"]["all"] > card["psnr_before"]["all"]
    weights = [[numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer] for p in (out, exported)]
    assert not all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))  # trained, not the base renamed
    assert load_model(out).info.name == "My shot"
