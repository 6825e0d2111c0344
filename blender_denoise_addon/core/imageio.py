"""Reading and writing frames: Blender multilayer EXRs, plain EXRs and PNGs.

Arrays are H x W x C float32, top row first. EXR holds linear values; PNG is
sRGB-encoded on disk and decoded to linear on read. Writes go to a temporary
name in the target folder and are renamed into place, so a crash or a bad frame
never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DenoiseError
from .transfer import srgb_decode, srgb_encode

EXR_SUFFIXES = (".exr",)
PNG_SUFFIXES = (".png",)
IMAGE_SUFFIXES = EXR_SUFFIXES + PNG_SUFFIXES

# Blender's pass names (with Denoising Data on) and the channel suffixes they use.
PASS_COMBINED = "Combined"
PASS_ALBEDO = "Denoising Albedo"
PASS_NORMAL = "Denoising Normal"
_PASS_CHANNELS = {
    "color": (PASS_COMBINED, ("R", "G", "B")),
    "albedo": (PASS_ALBEDO, ("R", "G", "B")),
    "normal": (PASS_NORMAL, ("X", "Y", "Z")),
}


@dataclass
class Frame:
    """One frame's passes as float32 arrays (H x W x 3), top row first."""

    color: np.ndarray
    alpha: np.ndarray | None = None
    albedo: np.ndarray | None = None
    normal: np.ndarray | None = None
    source: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def passes(self) -> set[str]:
        return {"color"} | {p for p in ("albedo", "normal") if getattr(self, p) is not None}

    @property
    def rgba(self) -> np.ndarray:
        if self.alpha is None:
            return self.color
        return np.concatenate([self.color, self.alpha[..., None]], axis=-1)


def _exr_channels(path: Path) -> dict[str, np.ndarray]:
    import OpenEXR

    try:
        f = OpenEXR.File(str(path), separate_channels=True)
        chans: dict[str, np.ndarray] = {}
        for part in f.parts:
            for name, ch in part.channels.items():
                chans[name] = np.asarray(ch.pixels, dtype=np.float32)
    except Exception as e:
        raise DenoiseError(f"{path}: cannot read EXR ({str(e).strip() or type(e).__name__})") from None
    return chans


def _find_pass(chans: dict[str, np.ndarray], pass_name: str, suffixes: tuple[str, ...]) -> np.ndarray | None:
    """Find ``<anything>.<pass>.<X>`` (multilayer) or bare ``X`` (plain, Combined only)."""
    for name in sorted(chans):
        head, _, last = name.rpartition(".")
        if last != suffixes[0] or not (head == pass_name or head.endswith("." + pass_name)):
            continue
        names = [f"{head}.{s}" for s in suffixes]
        if all(n in chans for n in names):
            return np.stack([chans[n] for n in names], axis=-1)
    if pass_name == PASS_COMBINED and all(s in chans for s in suffixes):
        return np.stack([chans[s] for s in suffixes], axis=-1)
    return None


def _find_alpha(chans: dict[str, np.ndarray]) -> np.ndarray | None:
    for name in sorted(chans):
        if name == "A" or name.endswith(f".{PASS_COMBINED}.A"):
            return chans[name]
    return None


def read_exr(path: Path) -> Frame:
    chans = _exr_channels(path)
    found = {k: _find_pass(chans, p, s) for k, (p, s) in _PASS_CHANNELS.items()}
    color = found["color"]
    if color is None:
        raise DenoiseError(
            f"{path}: no color found (expected R,G,B channels or a '{PASS_COMBINED}' layer); "
            f"channels present: {', '.join(sorted(chans)[:12])}"
        )
    return Frame(
        color=color, alpha=_find_alpha(chans), albedo=found["albedo"], normal=found["normal"], source=str(path)
    )


def read_png(path: Path) -> Frame:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            has_alpha = "A" in im.getbands()
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                arr = np.repeat(arr[..., None], 3, axis=-1)
            else:
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except Exception as e:
        raise DenoiseError(f"{path}: cannot read PNG ({str(e).strip() or type(e).__name__})") from None
    color = srgb_decode(arr[..., :3]).astype(np.float32)
    alpha = arr[..., 3].copy() if arr.shape[-1] == 4 else None
    return Frame(color=color, alpha=alpha, source=str(path))


def read_image(path: str | os.PathLike[str]) -> Frame:
    path = Path(path)
    if not path.is_file():
        raise DenoiseError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in EXR_SUFFIXES:
        return read_exr(path)
    if suffix in PNG_SUFFIXES:
        return read_png(path)
    raise DenoiseError(f"{path}: unsupported format {suffix!r} (use .exr or .png)")


def _temp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial" + path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write H x W x 3|4 linear float32: EXR stays linear, PNG gets sRGB 8-bit. Atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DenoiseError(f"{path}: unsupported output format {suffix!r} (use .exr or .png)")
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise DenoiseError(f"cannot write array of shape {image.shape}: need H x W x 3 or 4")
    if not path.parent.is_dir():
        raise DenoiseError(f"output folder does not exist: {path.parent}")
    try:
        tmp = _temp_path(path)
    except OSError as e:
        raise DenoiseError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    try:
        if suffix in EXR_SUFFIXES:
            _write_exr(tmp, image)
        else:
            _write_png(tmp, image)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DenoiseError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    return path


def _write_exr(path: Path, image: np.ndarray) -> None:
    import OpenEXR

    names = "RGBA"[: image.shape[-1]]
    channels = {n: np.ascontiguousarray(image[..., i], dtype=np.float32) for i, n in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as f:
        f.write(str(path))


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    rgb = srgb_encode(np.nan_to_num(image[..., :3], nan=0.0, posinf=1.0, neginf=0.0))
    chans = [rgb]
    if image.shape[-1] == 4:
        chans.append(np.clip(np.nan_to_num(image[..., 3:4]), 0.0, 1.0))
    arr = np.clip(np.round(np.concatenate(chans, axis=-1) * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG")
