"""training/export.py (and around it): export: ONNX parity with torch, the model in the core, seamless tiles.

The tiny dataset and run are made once per session (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import ROOT, train_cli  # noqa: E402

from blender_denoise_addon.core import load_model, read_image  # noqa: E402
from blender_denoise_addon.core.denoise import denoise  # noqa: E402
from training.dataset import (  # noqa: E402
    find_pairs,
)
from training.model import (  # noqa: E402
    UNetConfig,
)


def test_export_matches_torch_and_loads_in_the_core(exported, run_dir):
    import onnx

    from training.checkpoint import build_model, load_checkpoint
    from training.export import check_parity

    model = load_model(exported)
    cfg = UNetConfig(inputs="color,albedo,normal", width=8, growth=8, depth=2)
    assert model.info.inputs == ("color", "albedo", "normal")
    assert (model.info.transfer, model.info.alignment, model.info.receptive_field) == ("log", 4, cfg.receptive_field)
    assert exported.stat().st_size < 10 * 2**20
    net, _, _ = build_model(load_checkpoint(run_dir / "best.pt"))
    assert check_parity(net.eval(), exported, model.info, 1e-4) <= 1e-4
    dims = onnx.load(str(exported)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N", "", "H", "W"]
    # Different weights must break parity: the check is not vacuous.
    with torch.no_grad():
        net.kernel_heads[0].bias += 0.5
    with pytest.raises(Exception, match="differ"):
        check_parity(net, exported, model.info, 1e-4)


def test_exported_model_tiles_seamlessly_and_runs_in_denoise_image(exported, dataset, tmp_path):
    pair = find_pairs(dataset)[0]
    frame = read_image(pair.noisy)
    model = load_model(exported)
    # 3x3 copies of the frame: large enough for several sliding tiles with overlap >= RF - 1.
    big = [np.tile(a, (3, 3, 1)) for a in (frame.color, frame.albedo, frame.normal)]
    whole = denoise(model, *big, tiling="full")
    sliding = denoise(model, *big, tiling="sliding", tile=64)
    assert sliding.stats.tiles > 1 and sliding.stats.overlap >= model.info.receptive_field - 1
    np.testing.assert_allclose(sliding.image, whole.image, atol=1e-5)
    full = denoise(model, frame.color, frame.albedo, frame.normal, tiling="full").image
    out = tmp_path / "out.exr"
    cmd = [sys.executable, "-m", "blender_denoise_addon", "denoise-image", str(pair.noisy), "-o", str(out)]
    proc = subprocess.run([*cmd, "--model", str(exported), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = read_image(out).color
    assert result.shape == frame.color.shape and np.isfinite(result).all()
    np.testing.assert_allclose(result, full[..., :3], atol=1e-4)


@pytest.mark.parametrize(
    "variant",
    [
        ["--demodulate"],
        ["--kernel-space", "log", "--upsample", "transpose", "--no-demodulate"],
        ["--kernel-space", "both"],
        ["--kernel-space", "both", "--demodulate", "--picker-width", "4"],
        ["--kernel-space", "both", "--refine-width", "4", "--post-kernel", "0"],
    ],
)
def test_kernel_head_trains_exports_and_tiles_seamlessly(dataset, tmp_path, variant):
    """The kernel head, in the shapes the recipes use: train, export (parity), sliding == full."""
    from training.__main__ import main
    from training.checkpoint import build_model, load_checkpoint
    from training.export import check_parity

    run = tmp_path / "run"
    extra = ["--kernel-size", "3", "--kernel-scales", "3", *variant, "--epochs", "1"]
    assert train_cli(dataset, run, *extra) == 0
    path = tmp_path / "kernel.onnx"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "-o", str(path)]) == 0
    model = load_model(path)
    net, cfg, _ = build_model(load_checkpoint(run / "best.pt"))
    assert model.info.receptive_field == cfg.receptive_field
    space = variant[variant.index("--kernel-space") + 1] if "--kernel-space" in variant else "both"
    assert (cfg.demodulate, cfg.kernel_space) == ("--no-demodulate" not in variant, space)
    assert check_parity(net.eval(), path, model.info, 1e-4) <= 1e-4
    frame = read_image(find_pairs(dataset)[0].noisy)
    big = [np.tile(a, (3, 3, 1)) for a in (frame.color, frame.albedo, frame.normal)]
    whole = denoise(model, *big, tiling="full")
    sliding = denoise(model, *big, tiling="sliding", tile=64)
    assert sliding.stats.tiles > 1
    np.testing.assert_allclose(sliding.image, whole.image, atol=1e-5)
