"""Reading and writing frames: Blender multilayer EXRs, plain EXRs and PNGs.

Arrays are H x W x C float32, top row first. EXR holds linear values; PNG is
sRGB-encoded on disk and decoded to linear on read. Writes go to a temporary
name in the target folder and are renamed into place, so a crash or a bad frame
never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import DenoiseError
from .transfer import srgb_decode, srgb_encode

EXR_SUFFIXES = (".exr",)
PNG_SUFFIXES = (".png",)
IMAGE_SUFFIXES = EXR_SUFFIXES + PNG_SUFFIXES

# Blender's pass names (with Denoising Data on) and the channel suffixes they use.
PASS_COMBINED = "Combined"
PASS_ALBEDO = "Denoising Albedo"
PASS_NORMAL = "Denoising Normal"
PASS_VECTOR = "Vector"  # motion to the previous (X, Y) and the next frame (Z, W), in pixels
PASS_DEPTH = "Depth"
PASS_DENOISING_DEPTH = "Denoising Depth"
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
    vector: np.ndarray | None = None  # H x W x 4, Cycles' Vector pass (temporal denoising)
    depth: np.ndarray | None = None  # H x W, camera distance (the Depth or Denoising Depth pass)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.color.shape[1], self.color.shape[0]

    @property
    def passes(self) -> set[str]:
        return {"color"} | {p for p in ("albedo", "normal") if getattr(self, p) is not None}

    @property
    def rgba(self) -> np.ndarray:
        if self.alpha is None:
            return self.color
        return np.concatenate([self.color, self.alpha[..., None]], axis=-1)


COMPOSITE_LAYER = "Composite"  # where Blender puts the compositor's output in a multilayer EXR


EXR_MAGIC = b"\x76\x2f\x31\x01"
_SIGNATURES = {b"\x89PNG": "a PNG", b"\xff\xd8\xff": "a JPEG", b"II*\x00": "a TIFF", b"MM\x00*": "a TIFF"}
# Scanlines per chunk by EXR compression (NONE, RLE, ZIPS, ZIP, PIZ, PXR24, B44, B44A, DWAA, DWAB).
_LINES_PER_CHUNK = (1, 1, 1, 16, 32, 16, 32, 32, 32, 256)


def _exr_headers(f: Any) -> tuple[list[dict[str, bytes]], bool]:
    """The attribute values of each part's header (raw bytes) and whether the file is multi-part."""
    version = int.from_bytes(f.read(4), "little")
    multipart = bool(version & 0x1000)
    parts: list[dict[str, bytes]] = []
    while True:
        attrs: dict[str, bytes] = {}
        while True:
            name = _cstring(f)
            if not name:
                break
            _cstring(f)  # the type
            size = int.from_bytes(f.read(4), "little")
            attrs[name] = f.read(size)
        if not attrs or not multipart:
            if attrs:
                parts.append(attrs)
            return parts, multipart
        parts.append(attrs)


def _cstring(f: Any) -> str:
    out = bytearray()
    while (c := f.read(1)) not in (b"", b"\x00"):
        out += c
        if len(out) > 255:
            raise ValueError("attribute name too long")
    return out.decode("latin-1")


def check_exr_whole(path: Path) -> None:
    """Raise unless ``path`` is a whole EXR: an empty file, another format under an .exr name, and a
    file cut short (a copy or render that stopped) each get their own message. OpenEXR itself reads
    a cut file as far as it goes, with the rest missing, and says so only on stderr."""
    size = path.stat().st_size
    if size == 0:
        raise DenoiseError(f"{path}: the file is empty (0 bytes), not an image")
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic != EXR_MAGIC:
            kind = next((k for sig, k in _SIGNATURES.items() if magic.startswith(sig)), None)
            what = f"it is {kind}, named .exr" if kind else "no EXR signature"
            raise DenoiseError(f"{path}: not an EXR file ({what})")
        try:
            parts, multipart = _exr_headers(f)
            for attrs in parts:
                if attrs.get("type", b"scanlineimage\x00").rstrip(b"\x00") != b"scanlineimage":
                    return  # tiled or deep: left to OpenEXR
                if "chunkCount" in attrs:
                    chunks = int.from_bytes(attrs["chunkCount"], "little")
                else:
                    y0, y1 = (int.from_bytes(attrs["dataWindow"][i : i + 4], "little", signed=True) for i in (4, 12))
                    compression = attrs["compression"][0]
                    if compression >= len(_LINES_PER_CHUNK):
                        return  # a newer compression: left to OpenEXR
                    chunks = -(-(y1 - y0 + 1) // _LINES_PER_CHUNK[compression])
                table = f.read(8 * chunks)
                offsets = [int.from_bytes(table[i : i + 8], "little") for i in range(0, len(table), 8)]
                if len(offsets) < chunks or not all(0 < o < size for o in offsets):
                    raise EOFError
                last = max(offsets)
                pos = f.tell()
                f.seek(last + (4 if multipart else 0) + 4)
                packed = int.from_bytes(f.read(4), "little")
                if last + (12 if multipart else 8) + packed > size:
                    raise EOFError
                f.seek(pos)
        except (EOFError, KeyError, IndexError, ValueError):
            raise DenoiseError(
                f"{path}: the EXR is cut short or damaged ({size} bytes); render or copy it again"
            ) from None


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) from the file's header alone; None when it cannot be told (reading the
    frame then says why)."""
    path = Path(path)
    try:
        if path.suffix.lower() in EXR_SUFFIXES:
            with open(path, "rb") as f:
                if f.read(4) != EXR_MAGIC:
                    return None
                parts, _ = _exr_headers(f)
            box = [int.from_bytes(parts[0]["dataWindow"][i : i + 4], "little", signed=True) for i in (0, 4, 8, 12)]
            return box[2] - box[0] + 1, box[3] - box[1] + 1
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:
        return None


def exr_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {"Pass.Channel": pixels}}`` of an EXR, across all its parts.

    Blender names multilayer channels ``<view layer>.<pass>.<channel>``; view layer
    names may contain dots, pass names do not, so the split is from the right. Plain
    channels (``R``, ``G``, ``B``, ``A``) land in layer ``""`` under their own names.
    """
    import OpenEXR

    check_exr_whole(path)
    try:
        f = OpenEXR.File(str(path), separate_channels=True)
        layers: dict[str, dict[str, np.ndarray]] = {}
        for part in f.parts:
            for name, ch in part.channels.items():
                parts = name.rsplit(".", 2)
                layer, key = (parts[0], f"{parts[1]}.{parts[2]}") if len(parts) == 3 else ("", name)
                layers.setdefault(layer, {})[key] = np.asarray(ch.pixels, dtype=np.float32)
    except Exception as e:
        raise DenoiseError(f"{path}: cannot read EXR ({str(e).strip() or type(e).__name__})") from None
    return layers


def pass_array(chans: dict[str, np.ndarray], pass_name: str, suffixes: tuple[str, ...] | str) -> np.ndarray | None:
    """H x W x len(suffixes) of ``<pass>.<suffix>`` channels (bare suffixes for plain Combined)."""
    for names in ([f"{pass_name}.{s}" for s in suffixes], list(suffixes) if pass_name == PASS_COMBINED else None):
        if names and all(n in chans for n in names):
            return np.stack([chans[n] for n in names], axis=-1)
    return None


def frame_from_layer(chans: dict[str, np.ndarray], source: str = "", color_pass: str = PASS_COMBINED) -> Frame | None:
    """A Frame from one layer's channels, or None when it has no color."""
    color = pass_array(chans, color_pass, _PASS_CHANNELS["color"][1])
    if color is None:
        return None
    alpha = chans.get(f"{color_pass}.A", chans.get("A") if color_pass == PASS_COMBINED else None)
    aux = {k: pass_array(chans, p, s) for k, (p, s) in _PASS_CHANNELS.items() if k != "color"}
    depth = pass_array(chans, PASS_DEPTH, ("Z",))
    if depth is None:
        depth = pass_array(chans, PASS_DENOISING_DEPTH, ("Z",))
    return Frame(
        color=color,
        alpha=alpha,
        albedo=aux["albedo"],
        normal=aux["normal"],
        source=source,
        vector=pass_array(chans, PASS_VECTOR, ("X", "Y", "Z", "W")),
        depth=None if depth is None else depth[..., 0],
    )


def read_exr(path: Path, layer: str | None = None) -> Frame:
    """Read one layer of an EXR: ``layer`` by name, or else the first layer with color,
    view layers before the compositor's ``Composite`` layer."""
    layers = exr_layers(path)
    if layer is not None:
        if layer not in layers:
            raise DenoiseError(f"{path}: no layer {layer!r}; layers: {', '.join(sorted(layers)) or '(none)'}")
        order = [layer]
    else:
        order = sorted(layers, key=lambda n: (n == COMPOSITE_LAYER, n))
    for name in order:
        frame = frame_from_layer(layers[name], source=str(path))
        if frame is not None:
            return frame
    channels = sorted(f"{n}.{c}" if n else c for n, chans in layers.items() for c in chans)
    raise DenoiseError(
        f"{path}: no color found (expected R,G,B channels or a '{PASS_COMBINED}' pass); "
        f"channels present: {', '.join(channels[:12])}"
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


def read_image(path: str | os.PathLike[str], layer: str | None = None) -> Frame:
    """Read an EXR (``layer``: which view layer of a multilayer file) or a PNG."""
    path = Path(path)
    if not path.is_file():
        raise DenoiseError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in EXR_SUFFIXES:
        return read_exr(path, layer)
    if suffix in PNG_SUFFIXES:
        return read_png(path)
    raise DenoiseError(f"{path}: unsupported format {suffix!r} (use .exr or .png)")


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
        with atomic_path(path) as tmp:
            if suffix in EXR_SUFFIXES:
                _write_exr(tmp, image)
            else:
                _write_png(tmp, image)
    except OSError as e:
        raise DenoiseError(f"cannot write {path}: {e.strerror or e}") from None
    except RuntimeError as e:  # OpenEXR's writer: a full disk, a vanished folder
        raise DenoiseError(f"cannot write {path}: {str(e).splitlines()[0] if str(e) else 'write failed'}") from None
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
