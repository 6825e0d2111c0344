"""training/train.py (and around it): training runs: files, resume, overfitting, loss settings,
validation PSNR, the CLI, recipes.

The tiny dataset and run are made once per session (tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import ROOT, bare, train_cli  # noqa: E402

from training.dataset import (  # noqa: E402
    PairCache,
    RandomCropDataset,
    find_pairs,
    to_network,
)
from training.model import (  # noqa: E402
    ModifiedUNet,
    UNetConfig,
)


def test_one_epoch_writes_checkpoints_config_and_log(run_dir):
    for name in ("config.json", "split.json", "log.csv", "last.pt", "best.pt"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["epochs"] == 1 and config["model"]["width"] == 8
    lines = (run_dir / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,train_loss,train_mse,train_ssim,train_l1,val_loss")
    assert len(lines) == 2
    state = torch.load(run_dir / "best.pt", weights_only=False)
    assert state["epoch"] == 0 and state["seed"] == 0 and np.isfinite(state["best_val"])
    split = json.loads((run_dir / "split.json").read_text())
    assert split["train"] and split["val"] and split["test"]


def test_freeze_encoder_trains_the_rest_from_the_init(dataset, exported, tmp_path):
    """--freeze encoder: the encoder's weights stay those of --init, the decoder's move."""
    from training.checkpoint import initial_weights

    out = tmp_path / "frozen"
    assert train_cli(dataset, out, "--epochs", "2", "--init", str(exported), "--freeze", "encoder", "--lr", "1e-2") == 0
    start, now = initial_weights(exported), torch.load(out / "last.pt", weights_only=False)["model"]
    encoder = [k for k in now if k.startswith("encoders.")]
    assert encoder and all(torch.equal(now[k], start[k]) for k in encoder)
    assert any(not torch.equal(now[k], start[k]) for k in now if k.startswith("decoders."))


def test_resume_continues_from_last_checkpoint(dataset, run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    from training.__main__ import main

    before = json.loads((run / "config.json").read_text())
    # Only the run folder and the new epoch count: every other setting comes from the checkpoint.
    assert main(["train", "--out", str(run), "--epochs", "2", "--resume", "auto", "--threads", "1", "--quiet"]) == 0
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and state["config"]["model"] == before["model"]
    assert json.loads((run / "config.json").read_text()) | {"epochs": 1, "resume": ""} == before | {"out": str(run)}
    # Settings that would change the run are refused by name.
    assert train_cli(dataset, run, "--epochs", "3", "--resume", "auto", "--width", "12") == 1


def test_overfits_a_fixed_batch(dataset):
    from training.losses import DenoiseLoss
    from training.train import seed_everything

    seed_everything(0)
    cache = PairCache(find_pairs(dataset)[:4], "color,albedo,normal", "log")
    ds = RandomCropDataset(cache, patch=32, patches_per_image=1, augment=False)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    x, y = to_network(batch, "log")
    net = ModifiedUNet(bare(width=16, growth=8, depth=2))
    loss_fn = DenoiseLoss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    first = loss_fn(net(x), y)[0].item()
    for _ in range(250):
        loss, _ = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # A kernel head only re-weights noisy neighbours, so it cannot fit the batch as closely as a
    # free output could; it still must learn it.
    assert loss.item() < first / 2, (first, loss.item())


def test_albedo_texture_reaches_a_run_or_fails_first(dataset, tmp_path):
    extra = ["--kernel-size", "3", "--kernel-scales", "3", "--epochs", "1"]
    # Painted crops ride along: the flag reaches the run's config.
    assert train_cli(dataset, tmp_path / "a", *extra, "--albedo-texture", "0.5") == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["albedo_texture"] == 0.5
    assert train_cli(dataset, tmp_path / "d", *extra, "--albedo-texture", "2") == 1
    assert not (tmp_path / "d").exists()  # nothing written


def test_every_loss_weight_flag_reaches_the_loss():
    from dataclasses import fields

    from training.config import TrainConfig
    from training.losses import LossWeights
    from training.train import loss_weights

    for i, f in enumerate(fields(LossWeights)):
        weights = loss_weights(TrainConfig(data="d", out="o", **{f"w_{f.name}": 0.25 + i}))  # type: ignore[arg-type]
        assert getattr(weights, f.name) == 0.25 + i, f.name


def test_validation_psnr_is_the_mean_display_psnr_that_evaluation_reports():
    from blender_denoise_addon.core import metrics
    from training.losses import DenoiseLoss, LossWeights
    from training.train import evaluate_loss

    rng = np.random.default_rng(4)
    target = rng.gamma(0.8, 0.4, (3, 3, 16, 16)).astype(np.float32)
    pred = (target * rng.uniform(0.5, 1.5, target.shape)).astype(np.float32)
    pred[2] = target[2]  # a frame equal to its target: inf PSNR, left out of the mean
    exposure = [0.7, 3.0, 1.0]
    batches = [
        {
            "color": torch.from_numpy(pred[i : i + 1]),
            "target": torch.from_numpy(target[i : i + 1]),
            "exposure": torch.tensor([exposure[i]]),
            "height": torch.tensor([16]),
            "width": torch.tensor([16]),
        }
        for i in range(3)
    ]

    class Identity(torch.nn.Module):  # the "denoiser" returns its input: the prediction is pred
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    # The loss weights do not change psnr_db: runs with other loss terms compare on it.
    for weights in (LossWeights(), LossWeights(mse=0, ssim=0, psnr=1)):
        val = evaluate_loss(Identity(), batches, DenoiseLoss(weights, "log"), "log")  # type: ignore[arg-type]
        want = np.mean(
            [
                metrics.psnr(metrics.to_display(p.transpose(1, 2, 0)), metrics.to_display(t.transpose(1, 2, 0)))
                for p, t in zip(pred[:2], target[:2], strict=True)
            ]
        )
        assert val["psnr_db"] == pytest.approx(want, abs=0.02)


def test_cli_help_explains_every_option():
    import argparse

    from training.__main__ import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"train", "evaluate", "export", "finetune", "summarize", "import-oidn"}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help and len(action.help) > 8, f"{name} {action.option_strings} has no help"
    # One trainer for every network and role stays readable: at most 50 options, in groups.
    train = sub.choices["train"]
    assert len([a for a in train._actions if a.option_strings and "-h" not in a.option_strings]) <= 50
    groups = {g.title: len(g._group_actions) for g in train._action_groups if g._group_actions}
    assert {"data", "model", "optimisation", "run"} <= set(groups) and max(groups.values()) <= 20, groups
    cmd = [sys.executable, "-m", "training", "train", "--help"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--patch" in proc.stdout and "(default: 64)" in proc.stdout


@pytest.mark.parametrize("name", ["v13-color-albedo-normal", "v16-color"])
def test_recipe_builds_the_shipped_model_shape_stage_by_stage(name):
    """Every stage's settings make a valid config, each stage's data is a listed dataset, and the last
    stage trains exactly the network the shipped model's metadata records."""
    import onnx

    from training.checkpoint import MODEL_CONFIG_KEY
    from training.config import config_from, load_recipe

    recipe = load_recipe(name)
    configs = [config_from(s["settings"]) for s in recipe["stages"]]
    assert all(s["data"] in recipe["datasets"] for s in recipe["stages"])
    assert all(s.get("init") == "previous" for s in recipe["stages"][1:]) and "init" not in recipe["stages"][0]
    assert all(d["generate"].startswith("--count") for d in recipe["datasets"].values())
    meta = {p.key: p.value for p in onnx.load(str(ROOT / "training" / "base" / recipe["model"])).metadata_props}
    assert configs[-1].model == UNetConfig.from_dict(json.loads(meta[MODEL_CONFIG_KEY]))
    assert meta["denoiser.name"] == recipe["name"]


def test_recipe_runs_its_stages_skips_finished_ones_and_names_missing_data(dataset, tmp_path, monkeypatch):
    from training import config
    from training.__main__ import main
    from training.checkpoint import build_model, load_checkpoint

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    tiny = {"width": 8, "growth": 4, "depth": 2, "patch": 16, "batch_size": 8, "patches_per_image": 2, "epochs": 1}
    recipe = {
        "model": "tiny.onnx",
        "name": "tiny",
        "datasets": {"tiny": {"generate": "--count 5 --resolution 32 32"}},
        "defaults": tiny,
        "stages": [
            {"name": "a", "data": "tiny", "settings": {"seed": 1}},
            {"name": "b", "data": "tiny", "init": "previous", "settings": {"growth": 8, "widen": True}},
        ],
    }
    (recipes / "tiny.json").write_text(json.dumps(recipe))
    monkeypatch.setattr(config, "RECIPES", recipes)
    root = tmp_path / "data"
    args = ["train", "--recipe", "tiny", "--data", str(root), "--out", str(tmp_path / "run"), "--threads", "1"]
    assert main([*args, "--quiet"]) == 1  # no dataset yet: the command to render it is printed
    root.mkdir()
    (root / "tiny").symlink_to(dataset)
    assert main([*args, "--quiet"]) == 0
    _, cfg, _ = build_model(load_checkpoint(tmp_path / "run" / "b" / "best.pt"))
    assert cfg.channels == [8, 16, 24]
    assert load_checkpoint(tmp_path / "run" / "b" / "best.pt")["config"]["init"].endswith("a/best.pt")
    stamp = (tmp_path / "run" / "a" / "last.pt").stat().st_mtime_ns
    assert main([*args, "--quiet"]) == 0  # both stages finished: nothing trains again
    assert (tmp_path / "run" / "a" / "last.pt").stat().st_mtime_ns == stamp
    assert main([*args, "--lr", "1"]) == 1  # a recipe sets its own training options
    # Begin at stage b with the weights stage a made: only b runs, from them.
    later = ["train", "--recipe", "tiny", "--data", str(root), "--out", str(tmp_path / "later"), "--quiet"]
    a_best = str(tmp_path / "run" / "a" / "best.pt")
    assert main([*later, "--start-at", "b"]) == 1  # without --init: an error, nothing trained
    assert main([*later, "--start-at", "c", "--init", a_best]) == 1
    assert not (tmp_path / "later").exists()
    assert main([*later, "--start-at", "b", "--init", a_best, "--threads", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "later").iterdir()) == ["b"]
    assert load_checkpoint(tmp_path / "later" / "b" / "best.pt")["config"]["init"] == a_best


def test_recipe_with_render_makes_the_model_from_the_dataset_command_on(tmp_path, monkeypatch):
    """--render: the one command renders the data with the real generator, trains and exports."""
    from blender_denoise_addon.core.model import load_model
    from training import config
    from training.__main__ import main

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    tiny = {"width": 8, "growth": 4, "depth": 2, "patch": 16, "batch_size": 8, "patches_per_image": 2, "epochs": 1}
    generate = "--count 3 --resolution 32 32 --noisy-spp 1 4 --clean-spp 16 --seed 4"
    recipe = {
        "model": "tiny-rendered.onnx",
        "name": "tiny-rendered",
        "datasets": {"small": {"generate": generate}, "unused": {"generate": "--count 1"}},
        "defaults": tiny,
        "stages": [{"name": "a", "data": "small", "settings": {"seed": 1, "inputs": "color"}}],
    }
    (recipes / "tiny.json").write_text(json.dumps(recipe))
    monkeypatch.setattr(config, "RECIPES", recipes)
    root, out = tmp_path / "data", tmp_path / "run"
    args = ["train", "--recipe", "tiny", "--data", str(root), "--out", str(out), "--threads", "1", "--quiet"]
    assert main([*args, "--render"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["small"]  # only the datasets its stages use
    model = load_model(out / "tiny-rendered.onnx")
    assert model.info.name == "tiny-rendered" and model.info.inputs == ("color",)
    stamp = (out / "a" / "last.pt").stat().st_mtime_ns
    assert main([*args, "--render"]) == 0  # all done: the data is only checked, nothing trains again
    assert (out / "a" / "last.pt").stat().st_mtime_ns == stamp
    assert main(["train", "--render", "--out", str(tmp_path / "x")]) == 1  # --render needs --recipe


def test_a_recipe_that_extends_another_runs_its_stages_after_the_others(tmp_path, monkeypatch):
    from blender_denoise_addon.core.errors import DenoiseError
    from training import config

    base = {
        "model": "a.onnx",
        "datasets": {"d1": {"generate": "--count 5"}},
        "defaults": {"width": 8, "patch": 16},
        "stages": [{"name": "a", "data": "d1", "settings": {"seed": 1}}],
    }
    more = {
        "model": "b.onnx",
        "extends": "base",
        "datasets": {"d2": {"generate": "--count 3"}},
        "defaults": {"width": 8, "patch": 32},
        "stages": [{"name": "b", "data": "d2", "init": "previous", "settings": {"lr": 0.5}}],
    }
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "more.json").write_text(json.dumps(more))
    (tmp_path / "loop.json").write_text(json.dumps(more | {"extends": "loop"}))
    (tmp_path / "clash.json").write_text(json.dumps(more | {"stages": base["stages"]}))
    monkeypatch.setattr(config, "RECIPES", tmp_path)
    r = config.load_recipe("more")
    assert r["model"] == "b.onnx" and set(r["datasets"]) == {"d1", "d2"} and r["defaults"] == {}
    assert [(s["name"], s["data"]) for s in r["stages"]] == [("a", "d1"), ("b", "d2")]
    assert r["stages"][0]["settings"] == {"width": 8, "patch": 16, "seed": 1}  # the base's own defaults
    assert r["stages"][1]["settings"] == {"width": 8, "patch": 32, "seed": 1, "lr": 0.5}  # a's, then its own
    with pytest.raises(DenoiseError, match="extends itself"):
        config.load_recipe("loop")
    with pytest.raises(DenoiseError, match="stage names repeat"):
        config.load_recipe("clash")
