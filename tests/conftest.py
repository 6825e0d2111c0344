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
