"""The ONNX model contract, parsed and checked in one place.

A denoiser model is an ONNX file with one input ``input`` (float32, N x C x H x W)
and one output ``output`` (N x 3 x H x W), N/H/W dynamic, and these
``metadata_props``:

- ``denoiser.inputs``: ``color``, ``color,albedo`` or ``color,albedo,normal``
- ``denoiser.transfer``: one of :data:`transfer.TRANSFERS`
- ``denoiser.alignment``: H and W must be multiples of it (the core pads/crops)
- ``denoiser.receptive_field``: pixels; the default sliding overlap derives from it

Optional: ``denoiser.name``, ``denoiser.version``, ``denoiser.description``, and

- ``denoiser.role``: ``denoiser`` (the default) or ``prefilter``: a guide prefilter takes guides
  (``denoiser.inputs`` = ``albedo``, ``normal`` or ``albedo,normal``; 3 channels each) and returns
  them cleaned, in the same units and order (albedo in [0, 1], normal in [-1, 1]); Automatic never
  picks one as the denoiser;
- ``denoiser.prefilter``: ``FILE.onnx[,FILE.onnx]``: this denoiser was trained on clean or
  prefiltered guides, so the core first runs those prefilter models (beside it in its folder) on
  the guides they take, with the same tiling;
- ``denoiser.priority``: an integer (default 0); among models that take the same passes,
  Automatic picks the highest;
- ``denoiser.quality``: the Quality presets (``fast``, ``balanced``, ``high``, comma-separated)
  Automatic picks this model for: among bundled models that use as many passes, one that names
  the preset comes first;
- ``denoiser.padding``: ``mirror`` (the default) or ``zero``: how the core fills the pixels past the
  image's right and bottom edges up to the alignment. ``zero`` fills each pass with its lowest
  value (color 0, albedo 0, normal -1), which OIDN's networks see as zeros, as OIDN pads;
- ``denoiser.source`` and ``denoiser.license``: where the weights come from and their license.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .defaults import QUALITY
from .errors import ModelContractError
from .transfer import TRANSFERS

INPUT_NAME = "input"
OUTPUT_NAME = "output"
KEY_INPUTS = "denoiser.inputs"
KEY_TRANSFER = "denoiser.transfer"
KEY_ALIGNMENT = "denoiser.alignment"
KEY_RECEPTIVE_FIELD = "denoiser.receptive_field"
KEY_NAME = "denoiser.name"
KEY_ROLE = "denoiser.role"
KEY_PREFILTER = "denoiser.prefilter"
KEY_PRIORITY = "denoiser.priority"
KEY_QUALITY = "denoiser.quality"
KEY_PADDING = "denoiser.padding"
PADDINGS = ("mirror", "zero")
KEY_SOURCE = "denoiser.source"
KEY_LICENSE = "denoiser.license"
ROLES = ("denoiser", "prefilter")
REQUIRED_KEYS = (KEY_INPUTS, KEY_TRANSFER, KEY_ALIGNMENT, KEY_RECEPTIVE_FIELD)

# Passes a model may take, in the order they are stacked along C.
INPUT_SETS: dict[str, tuple[str, ...]] = {
    "color": ("color",),
    "color,albedo": ("color", "albedo"),
    "color,albedo,normal": ("color", "albedo", "normal"),
}
# The range each guide pass is kept in, wherever it is prepared (tiles, prefilters, the coarse pass,
# the temporal window, training): albedo is a reflectance, normals are unit vectors.
GUIDE_RANGES: dict[str, tuple[float, float]] = {"albedo": (0.0, 1.0), "normal": (-1.0, 1.0)}
# What a guide prefilter (role ``prefilter``) takes and returns.
PREFILTER_INPUTS: dict[str, tuple[str, ...]] = {
    "albedo": ("albedo",),
    "normal": ("normal",),
    "albedo,normal": ("albedo", "normal"),
}


@dataclass(frozen=True)
class ModelInfo:
    inputs: tuple[str, ...]
    transfer: str
    alignment: int
    receptive_field: int
    name: str = ""
    role: str = "denoiser"
    # File names of the prefilter models the core runs on the guides first (beside the model).
    prefilter: tuple[str, ...] = ()
    priority: int = 0
    quality: tuple[str, ...] = ()  # the presets Automatic picks it for; () names none
    padding: str = "mirror"  # how pixels past the right/bottom edge are filled (a key of PADDINGS)

    @property
    def channels(self) -> int:
        return 3 * len(self.inputs)

    @property
    def halo(self) -> int:
        """Pixels each side a kept pixel needs for its whole receptive field."""
        return max(0, math.ceil((self.receptive_field - 1) / 2))

    def default_overlap(self) -> int:
        """Smallest overlap (a multiple of the alignment) that makes sliding exact."""
        a = self.alignment
        return -(-max(0, self.receptive_field - 1) // a) * a

    def metadata(self) -> dict[str, str]:
        """The metadata_props that describe this model (used by exporters)."""
        meta = {
            KEY_INPUTS: ",".join(self.inputs),
            KEY_TRANSFER: self.transfer,
            KEY_ALIGNMENT: str(self.alignment),
            KEY_RECEPTIVE_FIELD: str(self.receptive_field),
        }
        if self.name:
            meta[KEY_NAME] = self.name
        if self.role != "denoiser":
            meta[KEY_ROLE] = self.role
        if self.prefilter:
            meta[KEY_PREFILTER] = ",".join(self.prefilter)
        if self.priority:
            meta[KEY_PRIORITY] = str(self.priority)
        if self.quality:
            meta[KEY_QUALITY] = ",".join(self.quality)
        if self.padding != "mirror":
            meta[KEY_PADDING] = self.padding
        return meta


def _positive_int(meta: Mapping[str, str], key: str, where: str) -> int:
    raw = meta[key]
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ModelContractError(f"{where}: metadata {key}={raw!r} is not an integer") from None
    if value < 1:
        raise ModelContractError(f"{where}: metadata {key}={value} must be at least 1")
    return value


def parse_metadata(meta: Mapping[str, str], where: str = "model") -> ModelInfo:
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelContractError(
            f"{where}: missing metadata_props {', '.join(missing)} (see the model contract in docs/model-contract.md)"
        )
    role = str(meta.get(KEY_ROLE, "denoiser")).strip()
    if role not in ROLES:
        raise ModelContractError(f"{where}: {KEY_ROLE}={role!r} is not one of {', '.join(ROLES)}")
    sets = INPUT_SETS if role == "denoiser" else PREFILTER_INPUTS
    inputs_raw = ",".join(p.strip() for p in str(meta[KEY_INPUTS]).split(","))
    if inputs_raw not in sets:
        raise ModelContractError(
            f"{where}: {KEY_INPUTS}={meta[KEY_INPUTS]!r} is not one of {', '.join(sets)} (role {role})"
        )
    transfer = str(meta[KEY_TRANSFER]).strip()
    if transfer not in TRANSFERS:
        raise ModelContractError(f"{where}: {KEY_TRANSFER}={transfer!r} is not one of {', '.join(TRANSFERS)}")
    prefilter = _prefilter_files(str(meta.get(KEY_PREFILTER, "")), sets[inputs_raw], role, where)
    priority = 0
    if KEY_PRIORITY in meta:
        try:
            priority = int(str(meta[KEY_PRIORITY]).strip())
        except ValueError:
            raise ModelContractError(
                f"{where}: metadata {KEY_PRIORITY}={meta[KEY_PRIORITY]!r} is not an integer"
            ) from None
    quality = tuple(filter(None, (q.strip() for q in str(meta.get(KEY_QUALITY, "")).split(","))))
    unknown = [q for q in quality if q not in QUALITY]
    if unknown:
        raise ModelContractError(f"{where}: {KEY_QUALITY} names {unknown[0]!r}, not one of {', '.join(QUALITY)}")
    padding = str(meta.get(KEY_PADDING, "mirror")).strip()
    if padding not in PADDINGS:
        raise ModelContractError(f"{where}: {KEY_PADDING}={padding!r} is not one of {', '.join(PADDINGS)}")
    return ModelInfo(
        inputs=sets[inputs_raw],
        transfer=transfer,
        alignment=_positive_int(meta, KEY_ALIGNMENT, where),
        receptive_field=_positive_int(meta, KEY_RECEPTIVE_FIELD, where),
        name=str(meta.get(KEY_NAME, "")),
        role=role,
        prefilter=prefilter,
        priority=priority,
        quality=quality,
        padding=padding,
    )


def _prefilter_files(raw: str, inputs: tuple[str, ...], role: str, where: str) -> tuple[str, ...]:
    """``a.onnx,b.onnx`` -> ("a.onnx", "b.onnx"), checked (which guides each cleans, its own metadata says)."""
    files = tuple(filter(None, (p.strip() for p in raw.split(","))))
    if files and role != "denoiser":
        raise ModelContractError(f"{where}: a {role} model cannot have {KEY_PREFILTER}")
    if files and not set(inputs) & set(PREFILTER_INPUTS):
        raise ModelContractError(f"{where}: {KEY_PREFILTER} is set, but the model takes no albedo or normal")
    for f in files:
        if not f.endswith(".onnx") or "/" in f or "\\" in f:
            raise ModelContractError(f"{where}: {KEY_PREFILTER} entry {f!r} must be a FILE.onnx beside the model")
    if len(set(files)) != len(files):
        raise ModelContractError(f"{where}: {KEY_PREFILTER} names a file twice")
    return files


def _dims(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def check_io(info: ModelInfo, inputs: Sequence[Any], outputs: Sequence[Any], where: str = "model") -> None:
    """Check onnxruntime NodeArg lists (name, type, shape) against the contract."""
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = ", ".join(i.name for i in inputs)
        raise ModelContractError(f"{where}: needs exactly one input named {INPUT_NAME!r}, has: {names}")
    if len(outputs) < 1 or outputs[0].name != OUTPUT_NAME:
        names = ", ".join(o.name for o in outputs)
        raise ModelContractError(f"{where}: first output must be named {OUTPUT_NAME!r}, has: {names}")
    out_channels = info.channels if info.role == "prefilter" else 3  # a prefilter returns its guides
    for arg, channels in ((inputs[0], info.channels), (outputs[0], out_channels)):
        if arg.type != "tensor(float)":
            raise ModelContractError(f"{where}: {arg.name!r} is {arg.type}, must be tensor(float) (float32)")
        dims = _dims(arg.shape)
        if len(dims) != 4:
            raise ModelContractError(f"{where}: {arg.name!r} has rank {len(dims)}, must be 4 (N x C x H x W)")
        if dims[1] is not None and dims[1] != channels:
            raise ModelContractError(
                f"{where}: {arg.name!r} has {dims[1]} channels but {KEY_INPUTS}="
                f"{','.join(info.inputs)} needs {channels}"
                if arg.name == INPUT_NAME
                else f"{where}: {arg.name!r} has {dims[1]} channels, must be {out_channels}"
            )
        if dims[2] is not None or dims[3] is not None:
            raise ModelContractError(f"{where}: {arg.name!r} has fixed H/W {arg.shape[2:]}; they must be dynamic")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) of one protobuf message's top level; length-delimited values as bytes."""
    out: list[tuple[int, bytes | int]] = []
    i = 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        wire = tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((tag >> 3, value))
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated protobuf")
            out.append((tag >> 3, buf[i : i + n]))
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not one an ONNX model uses at its top level")
    return out


METADATA_FIELD = 14  # ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}


def read_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` without onnxruntime (menus list models on a panel draw):
    the model's top-level fields are walked, the graph skipped by its length. Raises ValueError
    (or OSError) on what is not an ONNX file."""
    meta: dict[str, str] = {}
    try:
        for number, value in _fields(Path(path).read_bytes()):
            if number == METADATA_FIELD and isinstance(value, bytes):
                entry = {n: v for n, v in _fields(value) if isinstance(v, bytes)}
                meta[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    except IndexError:
        raise ValueError(f"{Path(path).name}: truncated protobuf") from None
    return meta
