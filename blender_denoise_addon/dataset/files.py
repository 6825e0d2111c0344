"""One home for the training-pair dataset layout, shared by the generator (writes)
and the training loader (reads). Pure: no bpy, no torch.

    DIR/
      exr/<sample>/noisy_<spp>spp.exr   multilayer EXR: Combined, Denoising Albedo, Denoising Normal
      exr/<sample>/clean.exr            same passes, clean (reference spp; with --clean-chunks N the
                                        mean of N renders, each kept as clean_chunk_<k>.exr until then)
      noise/<sample>_<spp>spp.png       8-bit sRGB quick look (the seed's layout) ...
      denoise/<sample>_<spp>spp.png     ... and its clean partner under the same name
      samples/<sample>.json             the sample's record (seed, scene parameters, spp,
                                        render times, Blender version); written last, so
                                        its presence means the sample is complete
      manifest.jsonl                    optional compiled view: one record per line
      dataset.json                      the settings every sample shares (seed, resolution,
                                        spp, render settings); a resumed run must match it

``<sample>`` is the zero-padded global index, so shards (index % N == I) write
disjoint names and their folders merge by plain copying.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.atomic import PARTIAL, atomic_path

EXR_DIR = "exr"
NOISE_DIR = "noise"
DENOISE_DIR = "denoise"
RECORDS_DIR = "samples"
MANIFEST = "manifest.jsonl"
CLEAN_EXR = "clean.exr"
DATASET_CONFIG = "dataset.json"


def sample_name(index: int) -> str:
    return f"{index:06d}"


def spp_tag(spp: int) -> str:
    return f"{spp:04d}spp"


def sample_dir(root: Path, index: int) -> Path:
    return Path(root) / EXR_DIR / sample_name(index)


def noisy_exr(root: Path, index: int, spp: int) -> Path:
    return sample_dir(root, index) / f"noisy_{spp_tag(spp)}.exr"


def clean_exr(root: Path, index: int) -> Path:
    return sample_dir(root, index) / CLEAN_EXR


def clean_chunk_exr(root: Path, index: int, chunk: int) -> Path:
    """One of the independent renders a chunked clean render averages (deleted once clean.exr exists)."""
    return sample_dir(root, index) / f"clean_chunk_{chunk:03d}.exr"


def noisy_png(root: Path, index: int, spp: int) -> Path:
    return Path(root) / NOISE_DIR / f"{sample_name(index)}_{spp_tag(spp)}.png"


def clean_png(root: Path, index: int, spp: int) -> Path:
    """The clean partner of ``noisy_png(root, index, spp)``: same file name, other folder."""
    return Path(root) / DENOISE_DIR / f"{sample_name(index)}_{spp_tag(spp)}.png"


def record_path(root: Path, index: int) -> Path:
    return Path(root) / RECORDS_DIR / f"{sample_name(index)}.json"


def iter_records(root: Path) -> Iterator[dict[str, Any]]:
    """Records of complete samples, in index order."""
    folder = Path(root) / RECORDS_DIR
    if not folder.is_dir():
        return
    for p in sorted(folder.glob("*.json")):
        with open(p, encoding="utf-8") as f:
            yield json.load(f)


def png_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(noisy, clean) PNG pairs matched by file name, the seed's layout."""
    noise = Path(root) / NOISE_DIR
    clean = Path(root) / DENOISE_DIR
    if not noise.is_dir():
        return []
    return [(p, clean / p.name) for p in sorted(noise.glob("*.png")) if (clean / p.name).is_file()]


def index_of(name: str) -> int | None:
    """Inverse of :func:`sample_name` for a record/sample name; None if it is not one."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else None


def complete_indices(root: Path) -> set[int]:
    """Indices whose record exists, i.e. finished samples."""
    folder = Path(root) / RECORDS_DIR
    if not folder.is_dir():
        return set()
    return {i for p in folder.glob("*.json") if (i := index_of(p.name)) is not None}


def partial_files(root: Path, index: int) -> list[Path]:
    """Temporary files a killed run left for sample ``index`` (never real names)."""
    root = Path(root)
    name = sample_name(index)
    found: list[Path] = []
    sdir = sample_dir(root, index)
    if sdir.is_dir():
        found += [p for p in sdir.iterdir() if p.name.startswith(".") and PARTIAL in p.name]
    for folder in (NOISE_DIR, DENOISE_DIR, RECORDS_DIR):
        d = root / folder
        if d.is_dir():
            found += [p for p in d.glob(f".{name}*") if PARTIAL in p.name]
    return sorted(found)


def write_json_atomic(path: Path, obj: Any) -> Path:
    """JSON to a temporary name in the same folder, then renamed: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_manifest(root: Path) -> Path:
    """Compile ``manifest.jsonl`` (one record per line, index order) from samples/*.json."""
    root = Path(root)
    lines = [json.dumps(r, sort_keys=True) for r in iter_records(root)]
    path = root / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
