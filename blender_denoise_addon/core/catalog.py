"""Finding the shipped models and picking the one that fits the passes at hand."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import ModelInfo, parse_metadata, read_metadata
from .defaults import DEFAULT_QUALITY
from .errors import ModelContractError
from .model import Model, load_model
from .options import Options

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def model_dirs() -> list[Path]:
    """Where bundled models live: inside the built extension, or the repo's models/."""
    dirs = [_PACKAGE_DIR / "models", _PACKAGE_DIR.parent / "models"]
    extra = os.environ.get("BLENDER_DENOISE_MODELS")
    if extra:
        dirs.insert(0, Path(extra))
    return [d for d in dirs if d.is_dir()]


def bundled_models() -> list[Path]:
    """The bundled denoisers (guide prefilters beside them are not listed: their model runs them)."""
    seen: dict[str, Path] = {}
    for d in model_dirs():
        for p in sorted(d.glob("*.onnx")):
            seen.setdefault(p.name, p)
    return [p for p in seen.values() if _role(p) != "prefilter"]


_infos: dict[tuple[str, float], ModelInfo | str] = {}


def _info(path: Path) -> ModelInfo | str:
    """A file's contract from its metadata (read once per file version, without onnxruntime), or
    why it cannot be read: such a file is listed, and refused with its reason when chosen."""
    key = (str(path), path.stat().st_mtime)
    if key not in _infos:
        try:
            _infos[key] = parse_metadata(read_metadata(path), where=path.name)
        except ModelContractError as e:
            _infos[key] = str(e)
        except (OSError, ValueError, UnicodeDecodeError):
            _infos[key] = f"{path.name}: not a readable ONNX model"
    return _infos[key]


def _role(path: Path) -> str:
    info = _info(path)
    return info.role if isinstance(info, ModelInfo) else ""


def pick_model(
    passes: Iterable[str],
    threads: int | None = None,
    candidates: Iterable[Path] | None = None,
    quality: str = DEFAULT_QUALITY,
) -> Model:
    """The bundled model for ``quality`` that uses the most of ``passes`` (e.g. {"color", "albedo"}).

    Ranked from each file's metadata (no session is built for that): the most passes used, then
    a model that names ``quality`` in ``denoiser.quality``, then ``denoiser.priority``; the best one
    that loads is returned."""
    available = set(passes)
    paths = list(candidates) if candidates is not None else bundled_models()
    if not paths:
        raise ModelContractError(
            "no bundled model found (looked in: " + ", ".join(str(d) for d in model_dirs()) + "); pass --model PATH"
        )
    problems = []
    ranked: list[tuple[tuple[int, bool, int], Path]] = []
    for p in paths:
        info = _info(p)
        if isinstance(info, str):
            problems.append(info)
            continue
        if info.role == "denoiser" and set(info.inputs) <= available:
            ranked.append(((len(info.inputs), quality in info.quality, info.priority), p))
    for _, p in sorted(ranked, key=lambda r: r[0], reverse=True):
        try:
            return load_model(p, threads=threads)
        except ModelContractError as e:
            problems.append(str(e))
    detail = f"; skipped: {'; '.join(problems)}" if problems else ""
    raise ModelContractError(
        f"no bundled model works with the passes available ({', '.join(sorted(available))}){detail}"
    )


# Sessions are expensive to build (0.1 to 1 s, more with prefilters): a process that
# denoises many frames (an animation, a Ray worker) builds each once. Keyed by what decides the
# pick: the file (and its mtime) or the passes at hand and the Quality preset, and the threads.
_cache: dict[tuple[object, ...], Model] = {}


def get_model(
    model_path: str | os.PathLike[str] | None,
    passes: Iterable[str],
    threads: int | None = None,
    quality: str = DEFAULT_QUALITY,
) -> Model:
    """The model at ``model_path``, or else the bundled model for ``passes`` and ``quality``; cached."""
    if model_path is not None:
        path = Path(model_path)
        key: tuple[object, ...] = (str(path), path.stat().st_mtime if path.is_file() else 0.0, threads)
    else:
        key = (frozenset(passes), threads, quality)
    if key not in _cache:
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = (
            load_model(model_path, threads) if model_path is not None else pick_model(passes, threads, quality=quality)
        )
    return _cache[key]


def model_for(opts: Options, passes: Iterable[str]) -> Model:
    """The model ``opts`` choose for a frame with ``passes``: its file, or the bundled model for
    the passes the user kept and the Quality preset."""
    from .denoise import usable_passes

    if opts.model_path is not None:
        return get_model(opts.model_path, (), opts.threads)
    return get_model(None, usable_passes(set(passes), opts), opts.threads, opts.quality)


def clear_cache() -> None:
    _cache.clear()


# -- models the artist added (fine-tuned ones): a folder of .onnx files, each with its card ----------

CARD_SUFFIX = ".card.json"


def card_path(model: str | os.PathLike[str]) -> Path:
    """Where a model's card lives: beside it, ``NAME.onnx`` -> ``NAME.card.json``."""
    p = Path(model)
    return p.with_name(p.stem + CARD_SUFFIX)


def read_card(model: str | os.PathLike[str]) -> dict[str, Any]:
    """The model's card, or {} when it has none (or it is not readable JSON)."""
    try:
        card = json.loads(card_path(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


@dataclass(frozen=True)
class Listed:
    """A model file in a folder: its name for menus, and what is wrong with it (None: usable)."""

    path: Path
    name: str
    inputs: tuple[str, ...]
    error: str | None
    tuned_from: str = ""  # ", tuned from BASE" from its card (``finetune`` writes it), or ""


def tuned_from(card: dict[str, Any]) -> str:
    """What a tuned model's card says it came from, for menus: ", tuned from BASE" or ""."""
    base = card.get("base_name") or card.get("base")
    if not base:
        return ""
    return f", {base} unchanged (tuning did not help)" if card.get("kept") == "base" else f", tuned from {base}"


def list_models(folder: str | os.PathLike[str]) -> list[Listed]:
    """Every ``.onnx`` in ``folder``, checked against the model contract. A broken one is listed
    with its error, never left out. Named from its card, else its metadata, else its file name."""
    d = Path(folder)
    if not d.is_dir():
        return []
    listed = []
    for p in sorted(d.glob("*.onnx")):
        card = read_card(p)
        try:
            m = load_model(p, threads=1)
        except ModelContractError as e:
            listed.append(Listed(p, str(card.get("name") or p.stem), (), str(e)))
            continue
        if m.info.role != "denoiser":  # a guide prefilter belongs to the model that names it
            continue
        listed.append(Listed(p, str(card.get("name") or m.info.name or p.stem), m.info.inputs, None, tuned_from(card)))
    return listed
