"""Finding the shipped models and picking the one that fits the passes at hand."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import ModelContractError
from .model import Model, load_model

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def model_dirs() -> list[Path]:
    """Where bundled models live: inside the built extension, or the repo's models/."""
    dirs = [_PACKAGE_DIR / "models", _PACKAGE_DIR.parent / "models"]
    extra = os.environ.get("BLENDER_DENOISE_MODELS")
    if extra:
        dirs.insert(0, Path(extra))
    return [d for d in dirs if d.is_dir()]


def bundled_models() -> list[Path]:
    seen: dict[str, Path] = {}
    for d in model_dirs():
        for p in sorted(d.glob("*.onnx")):
            seen.setdefault(p.name, p)
    return list(seen.values())


def pick_model(passes: Iterable[str], threads: int | None = None, candidates: Iterable[Path] | None = None) -> Model:
    """The bundled model that uses the most of ``passes`` (e.g. {"color", "albedo"})."""
    available = set(passes)
    paths = list(candidates) if candidates is not None else bundled_models()
    if not paths:
        raise ModelContractError(
            "no bundled model found (looked in: "
            + ", ".join(str(d) for d in [_PACKAGE_DIR / "models", _PACKAGE_DIR.parent / "models"])
            + "); pass --model PATH"
        )
    best: Model | None = None
    problems = []
    for p in paths:
        try:
            m = load_model(p, threads=threads)
        except ModelContractError as e:
            problems.append(str(e))
            continue
        if set(m.info.inputs) <= available and (best is None or len(m.info.inputs) > len(best.info.inputs)):
            best = m
    if best is None:
        detail = f"; skipped: {'; '.join(problems)}" if problems else ""
        raise ModelContractError(
            f"no bundled model works with the passes available ({', '.join(sorted(available))}){detail}"
        )
    return best
