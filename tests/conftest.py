import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension zips, built once per test run by build_addon.py (all four platforms)."""
    if not list((ROOT / "models").glob("*.onnx")):
        pytest.fail("models/ has no .onnx model: the extension must ship one")
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [sys.executable, "build_addon.py", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


# --- core: small conv-chain models with a known receptive field -------------------------------


@pytest.fixture(scope="session")
def chain7(tmp_path_factory: pytest.TempPathFactory):
    """Color only, three 3x3 convs: receptive field 7."""
    from blender_denoise_addon.core.model import load_model
    from training.onnx_builders import conv_chain

    return load_model(conv_chain(tmp_path_factory.mktemp("m") / "chain7.onnx", layers=3))


@pytest.fixture(scope="session")
def chain13_aux(tmp_path_factory: pytest.TempPathFactory):
    """Color, albedo and normal, three 5x5 convs: receptive field 13."""
    from blender_denoise_addon.core.model import load_model
    from training.onnx_builders import conv_chain

    path = tmp_path_factory.mktemp("m") / "chain13.onnx"
    return load_model(conv_chain(path, layers=3, kernel=5, inputs=("color", "albedo", "normal")))


# --- training: a tiny dataset, run and export, made once per session --------------------------


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: tiny tensors gain nothing from two, and OpenMP spinning on a busy 2-core machine costs 10x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 32x32 scenes at 1 and 4 spp, 16 spp references, from the real generator (~10 s)."""
    from training_support import SPP

    root = tmp_path_factory.mktemp("tiny_dataset")
    cmd = [sys.executable, "-m", "blender_denoise_addon", "generate-dataset", "--out", str(root)]
    cmd += ["--count", "5", "--resolution", "32", "32", "--noisy-spp", *map(str, SPP), "--clean-spp", "16"]
    cmd += ["--seed", "3"]
    # A death of bpy by a signal (seen once in CI) is survived by the generator itself.
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def run_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training_support import train_cli

    out = tmp_path_factory.mktemp("run")
    assert train_cli(dataset, out, "--epochs", "1") == 0
    return out


@pytest.fixture(scope="session")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.__main__ import main

    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "-o", str(path)]) == 0
    return path
