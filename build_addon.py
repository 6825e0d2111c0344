#!/usr/bin/env python3
"""Build the installable Blender extension, one zip per platform, into dist/.

    python build_addon.py                      # all platforms
    python build_addon.py --platforms linux-x64

Each zip holds the add-on, the bundled models from models/, and the wheels the add-on
imports at run time (onnxruntime with its dependencies, and openexr, the EXR reader) for
both Pythons Blender embeds: 3.11 (Blender 4.2 to 5.0) and 3.13 (5.1 and later), at the
versions requirements/runtime.txt pins for each, downloaded unmodified with pip.
Blender's installer installs only the wheels that match the running Python. numpy is left
out: Blender ships it. The zips are made and then checked by Blender's own tool
(blender_ext.py build --split-platforms / validate, found inside the bpy package).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "blender_denoise_addon"
MODELS = ROOT / "models"
# The CPython each Blender line embeds, and the platforms Blender builds for it
# (Blender 5 has no Intel Mac build: 4.5 LTS was the last).
PYTHONS: dict[str, tuple[str, ...]] = {
    "3.11": ("linux-x64", "windows-x64", "macos-arm64", "macos-x64"),  # Blender 4.2 LTS to 5.0
    "3.13": ("linux-x64", "windows-x64", "macos-arm64"),  # Blender 5.1 and later
}
# What the add-on imports that Blender lacks: inference, EXR and PNG files, the CLI's progress bar.
BUNDLED = ("onnxruntime", "openexr", "pillow", "tqdm")
# Wheel platform tags pip may pick for each Blender platform, best first.
PLATFORM_TAGS: dict[str, list[str]] = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": [
        "macosx_13_0_arm64",
        "macosx_13_0_universal2",
        "macosx_11_0_arm64",
        "macosx_11_0_universal2",
        "macosx_10_15_universal2",
    ],
    "macos-x64": ["macosx_11_0_x86_64", "macosx_10_15_x86_64", "macosx_11_0_universal2", "macosx_10_15_universal2"],
}
SKIP_DISTRIBUTIONS = {"numpy"}  # Blender ships numpy; a second copy would shadow it
# pip evaluates environment markers for the machine it runs on, not for --platform, so
# dependencies behind a Windows marker (humanfriendly -> pyreadline3) are named here.
PLATFORM_EXTRAS: dict[str, list[str]] = {"windows-x64": ["pyreadline3"]}


class BuildError(Exception):
    pass


_MARKER = re.compile(r'python_version\s*(<=|>=|==|<|>)\s*"(\d+)\.(\d+)"')
_COMPARE = {
    "<": tuple.__lt__,
    "<=": tuple.__le__,
    "==": tuple.__eq__,
    ">=": tuple.__ge__,
    ">": tuple.__gt__,
}


def pinned(requirement: str, python: str, file: str = "runtime.txt") -> str:
    """The exact pin from requirements/FILE for one Python: one home for the version.
    A pin may carry a ``python_version`` marker (the only marker read here)."""
    text = (ROOT / "requirements" / file).read_text()
    have = tuple(int(x) for x in python.split("."))
    for m in re.finditer(rf"^{re.escape(requirement)}==([^\s;#]+)\s*(?:;([^#\n]*))?", text, re.M):
        marker = (m.group(2) or "").strip()
        if marker:
            mm = _MARKER.fullmatch(marker)
            if not mm:
                raise BuildError(f"requirements/runtime.txt: cannot read the marker {marker!r} of {requirement}")
            if not _COMPARE[mm.group(1)](have, (int(mm.group(2)), int(mm.group(3)))):
                continue
        return f"{requirement}=={m.group(1)}"
    raise BuildError(f"requirements/{file} has no exact pin for {requirement} on Python {python}")


def blender_ext() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is needed for Blender's extension builder (pip install bpy==5.0.1)")
    base = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(glob.glob(str(base / "*" / "scripts" / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py")))
    if not found:
        raise BuildError(f"blender_ext.py not found inside {base}")
    return Path(found[-1])


def _pip_platform_args(platform: str, python: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in PLATFORM_TAGS[platform]:
        args += ["--platform", tag]
    return args


def resolve(platform: str, python: str, requirements: list[str], cache: Path) -> list[tuple[str, str]]:
    """(name, version) of the requirements and their dependencies for one platform and Python,
    via pip's resolver."""
    report = cache / f"resolve-{platform}-{python}.json"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
    ]
    cmd += ["--target", str(cache / "unused-target"), *_pip_platform_args(platform, python), *requirements]
    cmd += PLATFORM_EXTRAS.get(platform, [])
    subprocess.run(cmd, check=True)
    items = json.loads(report.read_text())["install"]
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in items]


def download(platform: str, python: str, cache: Path) -> list[Path]:
    folder = cache / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    requirements = [pinned(r, python) for r in BUNDLED]
    for name, version in resolve(platform, python, requirements, cache):
        if name.lower() in SKIP_DISTRIBUTIONS:
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(folder)]
        subprocess.run([*cmd, *_pip_platform_args(platform, python), f"{name}=={version}"], check=True)
        norm = re.sub(r"[-_.]+", "_", name).lower()
        hits = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{norm}-{version}-")]
        hits = [p for p in hits if _fits(p.name, platform) and _fits_python(p.name, python)]
        if not hits:
            raise BuildError(f"pip downloaded no wheel for {name}=={version} ({platform})")
        wheels += hits
    return sorted(set(wheels))


_TAG_RULES = {  # (prefix, suffixes) a wheel platform tag must match, per Blender platform
    "linux-x64": (("manylinux", "linux"), ("x86_64",)),
    "windows-x64": (("win",), ("amd64",)),
    "macos-arm64": (("macosx",), ("arm64", "universal2")),
    "macos-x64": (("macosx",), ("x86_64", "universal2", "intel")),
}


def _fits(wheel: str, platform: str) -> bool:
    prefixes, suffixes = _TAG_RULES[platform]
    tags = wheel[:-4].split("-")[-1].split(".")
    return any(t == "any" or (t.startswith(prefixes) and t.endswith(suffixes)) for t in tags)


def _fits_python(wheel: str, python: str) -> bool:
    """cp311 (or an abi3 wheel for an older CPython, or pure Python) for Python 3.11."""
    py_tags, abi = wheel[:-4].split("-")[-3:-1]
    minor = int(python.split(".")[1])
    for tag in py_tags.split("."):
        if tag in ("py3", "py2") or tag == f"cp3{minor}":
            return True
        if abi == "abi3" and tag.startswith("cp3") and int(tag[3:]) <= minor:
            return True
    return False


def manifest_text(platforms: list[str], wheels: list[str]) -> str:
    text = (PACKAGE / "blender_manifest.toml").read_text()
    extra = "platforms = [{}]\nwheels = [\n{}]\n\n".format(
        ", ".join(f'"{p}"' for p in platforms), "".join(f'  "./wheels/{w}",\n' for w in wheels)
    )
    build = '\n[build]\npaths_exclude_pattern = ["__pycache__/", "*.pyc", "/.*"]\n'
    return text.replace("[permissions]", extra + "[permissions]", 1) + build


def stage(platforms: list[str], wheels: list[Path], stage_dir: Path) -> Path:
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    shutil.copytree(PACKAGE, stage_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    models = sorted(MODELS.glob("*.onnx"))
    if not models:
        raise BuildError(f"no .onnx models in {MODELS}: the extension must ship a default model")
    (stage_dir / "models").mkdir(exist_ok=True)
    # The cards, and the license and notice of the OIDN weights the models carry.
    for p in [*models, *MODELS.glob("*.md"), *MODELS.glob("LICENSE*"), MODELS / "NOTICE"]:
        shutil.copy2(p, stage_dir / "models" / p.name)
    (stage_dir / "wheels").mkdir()
    for w in wheels:
        shutil.copy2(w, stage_dir / "wheels" / w.name)
    (stage_dir / "blender_manifest.toml").write_text(manifest_text(platforms, sorted(w.name for w in wheels)))
    return stage_dir


def build(platforms: list[str], out: Path, cache: Path) -> list[Path]:
    wheels: dict[str, set[Path]] = {p: set() for p in platforms}
    for python, python_platforms in PYTHONS.items():
        for platform in [p for p in platforms if p in python_platforms]:
            print(f"resolving {', '.join(BUNDLED)} for {platform}, Python {python} ...", file=sys.stderr)
            wheels[platform].update(download(platform, python, cache))
    out.mkdir(parents=True, exist_ok=True)
    tool = blender_ext()
    for old in out.glob("*.zip"):
        old.unlink()
    # One staging per platform: a universal2 macOS wheel fetched for one Mac platform and
    # Python must not land in the other's zip (Blender's splitter goes by platform tag only).
    for platform in platforms:
        source = stage([platform], sorted(wheels[platform]), cache / "stage" / platform / "ai_denoiser")
        cmd = [sys.executable, str(tool), "build", "--source-dir", str(source), "--output-dir", str(out)]
        res = subprocess.run([*cmd, "--split-platforms"], capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"Blender's builder failed: {(res.stdout + res.stderr).strip()[-1000:]}")
    zips = sorted(out.glob("*.zip"))
    for z in zips:
        res = subprocess.run([sys.executable, str(tool), "validate", str(z)], capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"Blender's validator rejected {z.name}: {res.stdout.strip()} {res.stderr.strip()}")
        print(f"{z.name}: {z.stat().st_size / 1e6:.1f} MB, validated", file=sys.stderr)
    return zips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--platforms", nargs="+", choices=sorted(PLATFORM_TAGS), default=sorted(PLATFORM_TAGS))
    p.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    p.add_argument("--cache", type=Path, default=ROOT / "build", help="wheel cache and staging (default build/)")
    args = p.parse_args(argv)
    try:
        build(args.platforms, args.out, args.cache)
    except (BuildError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
