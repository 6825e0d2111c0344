"""The Blender version matrix: the built linux-x64 zip in clean Blenders, as artists install it.

For each Blender line artists run, a venv holding only the ``bpy`` module and the numpy that
Blender bundles (nothing else: no onnxruntime, no OpenEXR); Blender's own installer puts the
zip in a temporary user folder, and ``in_blender.py`` uses every feature there. Then the
headless commands (``render-denoise``, ``--temporal`` too, and ``generate-dataset``) run from the
installed extension alone (its code and wheels, nothing from this checkout), and the extension is
uninstalled.

    python tests/blender_matrix.py [--zip ZIP] [--versions 4.2.23 5.3.0 ...]

prints a table; ``tests/test_blender_matrix.py`` runs the same per version under pytest.
The venvs are kept in build/blender-matrix/ and rebuilt when their pins change.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "build" / "blender-matrix"
IN_BLENDER = Path(__file__).resolve().parent / "in_blender.py"


@dataclass(frozen=True)
class Blender:
    bpy: str  # the bpy module's version on PyPI
    python: str  # the CPython that Blender embeds
    numpy: str  # the numpy that Blender bundles (bpy 4.2 on PyPI does not pin one)

    @property
    def label(self) -> str:
        return ".".join(self.bpy.split(".")[:2])


# The Blender lines artists run: 4.2 LTS, 4.5 LTS, 5.0, 5.2 LTS, 5.3 (latest patch releases).
MATRIX: tuple[Blender, ...] = (
    Blender("4.2.23", "3.11", "1.26.4"),
    Blender("4.5.15", "3.11", "1.26.4"),
    Blender("5.0.1", "3.11", "1.26.4"),
    Blender("5.2.4", "3.13", "2.5.5"),
    Blender("5.3.0", "3.13", "2.5.5"),
)


class MatrixError(Exception):
    pass


def find_python(version: str) -> str:
    """A CPython ``version`` (e.g. "3.13"): on PATH, else in pyenv's versions, else in /usr."""
    candidates = [shutil.which(f"python{version}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"), reverse=True)
    candidates += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    for exe in candidates:
        if not exe or not Path(exe).exists():
            continue
        # A pyenv shim exists for every installed version but fails outside its own; try it.
        res = subprocess.run([exe, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.startswith(version):
            return exe
    raise MatrixError(f"no Python {version} found (on PATH or in {pyenv_root}/versions): install it, e.g. with pyenv")


def _venv(name: str, python: str, pins: list[str]) -> Path:
    """build/blender-matrix/NAME with only ``pins`` installed; made once, remade when they change."""
    venv = VENVS / name
    bin_python = venv / "bin" / "python"
    stamp = venv / ".pins"
    if bin_python.exists() and stamp.is_file() and stamp.read_text() == " ".join(pins):
        return bin_python
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([find_python(python), "-m", "venv", str(venv)], check=True)
    pip = [str(bin_python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins]
    res = subprocess.run(pip, capture_output=True, text=True)
    if res.returncode != 0:
        raise MatrixError(f"pip could not install {' '.join(pins)}: {res.stderr.strip()[-2000:]}")
    stamp.write_text(" ".join(pins))
    return bin_python


def clean_venv(blender: Blender) -> Path:
    """A venv with only bpy and the numpy that Blender bundles."""
    return _venv(f"bpy-{blender.bpy}", blender.python, [f"bpy=={blender.bpy}", f"numpy=={blender.numpy}"])


def _env(user: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["BLENDER_USER_RESOURCES"] = str(user)  # a new user's Blender: nothing installed yet
    return env


def _in_blender(python: Path, step: str, zip_path: Path, work: Path) -> dict:
    result = work / f"{step}.json"
    res = subprocess.run(
        [str(python), str(IN_BLENDER), step, str(zip_path), str(result), str(work)],
        cwd=work,
        env=_env(work / "user"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = json.loads(result.read_text()) if result.is_file() else {}
    out[f"{step}_exit"] = res.returncode
    if "Traceback" in res.stdout + res.stderr or res.returncode != 0:  # a traceback is never fine
        out[f"{step}_log"] = (res.stdout + res.stderr)[-4000:]
    return out


# The headless commands as the installed extension runs them: its own code and wheels, nothing
# from this checkout (a file missing from the zip fails here).
RUNNER = (
    "import sys, bpy, addon_utils; addon_utils.enable('bl_ext.user_default.ai_denoiser', default_set=False); "
    "from bl_ext.user_default.ai_denoiser.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _headless(python: Path, work: Path) -> dict:
    """The commands of the extension installed in ``work/user``, with only its own code and wheels."""
    env = _env(work / "user")
    out: dict = {}
    blend = work / "cli_scene.blend"
    runs = {
        "python_m_render_denoise": (
            ["render-denoise", str(blend), "-o", str(work / "pym_render"), "--frames", "1-2"],
            work / "pym_render",
        ),
        "python_m_render_denoise_temporal": (
            ["render-denoise", str(blend), "-o", str(work / "pym_temporal"), "--frames", "1-3", "--temporal"],
            work / "pym_temporal",
        ),
        "python_m_generate_dataset": (
            ["generate-dataset", "--out", str(work / "pym_pairs"), "--count", "1", "--resolution", "16", "16"]
            + ["--noisy-spp", "1", "--clean-spp", "4", "--quiet"],
            work / "pym_pairs",
        ),
        "python_m_generate_dataset_scene": (  # the artist's file: crops of its frames, the file untouched
            ["generate-dataset", "--out", str(work / "pym_scene"), "--count", "2", "--scene", str(blend)]
            + ["--resolution", "16", "12", "--noisy-spp", "1", "--clean-spp", "4", "--quiet"],
            work / "pym_scene",
        ),
    }
    blend_bytes = blend.read_bytes() if blend.is_file() else b""
    for name, (args, folder) in runs.items():
        res = subprocess.run(
            [str(python), "-c", RUNNER, *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        out[name] = {"ok": res.returncode == 0 and bool(files), "exit": res.returncode, "files": files}
        if name.endswith("_scene"):
            out[name]["ok"] &= len([f for f in files if f.endswith(".exr")]) == 4 and blend.read_bytes() == blend_bytes
        if res.returncode != 0:
            out[name]["log"] = (res.stdout + res.stderr)[-3000:]
    return out


def run_one(blender: Blender, zip_path: Path, work: Path, foreign_zip: Path | None = None) -> dict:
    """Every check for one Blender; each value with "ok". ``foreign_zip``: another platform's
    zip, which Blender's installer must refuse (checked first, in the same user folder)."""
    python = clean_venv(blender)
    result = _in_blender(python, "foreign", foreign_zip, work) if foreign_zip else {}
    result.update(_in_blender(python, "features", zip_path, work))
    if "site_packages" in result:  # installed, and its wheels import
        result.update(_headless(python, work))
    result.update(_in_blender(python, "uninstall", zip_path, work))
    return result


def failures(result: dict) -> dict:
    """The checks that failed, and the exit codes that were not 0."""
    bad = {k: v for k, v in result.items() if isinstance(v, dict) and not v.get("ok")}
    bad |= {k: v for k, v in result.items() if k.endswith(("_exit", "_log")) and v}
    return bad


def pinned_version(requirement: str, python: str) -> str:
    """The version requirements/runtime.txt pins for ``python`` (build_addon.py's reading)."""
    from build_addon import pinned

    return pinned(requirement, python).split("==")[1]


# The pure core's tests (no bpy), run again on Blender 5.1+'s Python and numpy 2: every
# test_core_*.py (a new one is not forgotten), and the bpy-free commands and data.
CORE_TESTS = (
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_core_*.py")),
    "tests/test_cli_denoise_image.py",
    "tests/test_dataset_spec.py",
    "tests/test_shipped_models.py",
)


def core_venv(python: str = "3.13") -> Path:
    """A venv with the runtime pins for ``python`` (numpy 2 on 3.13), pytest and onnx, without bpy."""
    from build_addon import pinned

    pins = [pinned(r, python) for r in ("numpy", "onnxruntime", "openexr", "pillow", "tqdm")]
    pins += [pinned(r, python, "dev.txt") for r in ("pytest", "onnx")]
    return _venv(f"core-py{python}", python, pins)


def build_linux_zip(out: Path) -> Path:
    res = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--platforms", "linux-x64", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise MatrixError(f"build_addon.py failed: {res.stderr.strip()[-2000:]}")
    return next(out.glob("*linux_x64.zip"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zip", type=Path, help="the linux-x64 zip (default: build one now)")
    p.add_argument("--versions", nargs="+", default=[b.bpy for b in MATRIX], help="bpy versions (default: all)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="blender_matrix_") as tmp:
        zip_path = args.zip or build_linux_zip(Path(tmp) / "dist")
        code = 0
        for blender in [b for b in MATRIX if b.bpy in args.versions]:
            work = Path(tmp) / blender.bpy
            work.mkdir()
            result = run_one(blender, zip_path, work)
            bad = failures(result)
            checks = [k for k, v in result.items() if isinstance(v, dict) and "ok" in v]
            print(
                f"Blender {blender.bpy} (Python {result.get('python', '?')}): {len(checks) - len(bad)}/{len(checks)} ok"
            )
            for name, what in bad.items():
                print(f"  FAILED {name}: {json.dumps(what)[:1500]}")
            code |= bool(bad)
    return code


if __name__ == "__main__":
    sys.exit(main())
