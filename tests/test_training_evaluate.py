"""training/evaluate.py (and around it): evaluation: metrics, tables and plots against the noisy input and OIDN.

The tiny dataset and run are made once per session (tests/conftest.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import SPP  # noqa: E402


def test_evaluate_writes_metrics_table_and_plots(run_dir, dataset, tmp_path):
    from training.__main__ import main

    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(dataset), "--checkpoint", str(run_dir / "best.pt"), "--out", str(out)]
    assert main([*args, "--grids", "2", "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    test_scenes = set(json.loads((run_dir / "split.json").read_text())["test"])
    assert {r["scene"] for r in result["per_image"]} == test_scenes
    for key in [*map(str, SPP), "all"]:
        assert set(result["metrics"][key]) == {"noisy", "ours", "oidn_high", "oidn_balanced", "oidn_blender"}
        for m in result["metrics"][key].values():
            assert all(np.isfinite(v) for v in m.values())
    # OIDN must clearly beat the noisy input; otherwise its inputs are wrong.
    allm = result["metrics"]["all"]
    assert allm["oidn_high"]["psnr"] > allm["noisy"]["psnr"] + 3
    assert allm["oidn_blender"]["psnr"] > allm["noisy"]["psnr"] + 3  # prefiltered aux, as Blender runs it
    assert allm["oidn_high"]["flip"] < allm["noisy"]["flip"]
    assert (out / "curves.png").stat().st_size > 1000
    grids = sorted(out.glob("grid_*.png"))
    assert len(grids) == 2 and all(g.stat().st_size > 1000 for g in grids)
    assert result["plots"]["comparison"] and (out / "comparison.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert "| 1 | noisy |" in table and "| all | oidn_high |" in table


def test_evaluate_means_leave_out_frames_equal_to_their_reference():
    from training.evaluate import aggregate, table_markdown

    def row(spp: int, psnr: float) -> dict:
        m = {
            "mse": 0.0 if psnr == np.inf else 10 ** (-psnr / 10),
            "psnr": psnr,
            "ssim": 1.0,
            "relmse": 0.0,
            "flip": 0.0,
            "psnr_lf": psnr,
        }
        return {"spp": spp} | {f"{k}_{n}": v for k in ("noisy", "ours") for n, v in m.items()}

    # An all-black render: noisy and denoised both equal the black reference.
    agg = aggregate([row(1, 20.0), row(1, 30.0), row(1, np.inf), row(4, np.inf)])
    assert agg["1"]["ours"]["psnr"] == pytest.approx(25.0)
    assert agg["1"]["ours"]["exact"] == 1 and agg["all"]["ours"]["exact"] == 2
    assert agg["4"]["ours"]["psnr"] == np.inf  # nothing to average
    assert "left out of the PSNR means): noisy 2, ours 2" in table_markdown(agg)


def test_evaluate_an_exported_model_on_png_pairs(exported, dataset, tmp_path, capsys):
    from training.__main__ import main

    out = tmp_path / "eval_png"
    args = ["evaluate", "--data", str(dataset), "--model", str(exported), "--out", str(out), "--source", "png"]
    # PNG pairs have no albedo/normal: the 9-channel model must refuse them with a clear error.
    assert main([*args, "--quiet", "--grids", "0", "--split", "all"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "albedo pass" in err[0], err


def test_evaluate_an_exported_model_runs_it_through_the_core(exported, dataset, tmp_path):
    """evaluate --model (an ONNX file, as users hold them): its scores are the core's denoise of each pair."""
    from blender_denoise_addon.core import metrics
    from blender_denoise_addon.core.denoise import denoise
    from blender_denoise_addon.core.imageio import read_image
    from blender_denoise_addon.core.model import load_model
    from training.__main__ import main
    from training.dataset import find_pairs

    out = tmp_path / "eval_model"
    args = ["evaluate", "--data", str(dataset), "--model", str(exported), "--out", str(out)]
    assert main([*args, "--quiet", "--grids", "0", "--split", "all", "--no-oidn"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    rows = result["per_image"]
    assert rows and all(np.isfinite(r["ours_psnr"]) for r in rows)
    assert result["metrics"]["all"]["ours"]["psnr"] > result["metrics"]["all"]["noisy"]["psnr"] - 10
    pair = next(p for p in find_pairs(dataset, "exr") if p.label == rows[0]["frame"])
    noisy, clean = read_image(pair.noisy), read_image(pair.clean)
    ours = denoise(load_model(exported), noisy.color, noisy.albedo, noisy.normal, tiling="full").image
    assert rows[0]["ours_psnr"] == pytest.approx(metrics.report(ours[..., :3], clean.color[..., :3])["psnr"], abs=1e-3)
