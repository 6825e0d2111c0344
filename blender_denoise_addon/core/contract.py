"""The ONNX model contract, parsed and checked in one place.

A denoiser model is an ONNX file with one input ``input`` (float32, N x C x H x W)
and one output ``output`` (N x 3 x H x W), N/H/W dynamic, and these
``metadata_props``:

- ``denoiser.inputs``: ``color``, ``color,albedo`` or ``color,albedo,normal``
- ``denoiser.transfer``: one of :data:`transfer.TRANSFERS`
- ``denoiser.alignment``: H and W must be multiples of it (the core pads/crops)
- ``denoiser.receptive_field``: pixels; the default sliding overlap derives from it

Optional: ``denoiser.name``, ``denoiser.version``, ``denoiser.description``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ModelContractError
from .transfer import TRANSFERS

INPUT_NAME = "input"
OUTPUT_NAME = "output"
KEY_INPUTS = "denoiser.inputs"
KEY_TRANSFER = "denoiser.transfer"
KEY_ALIGNMENT = "denoiser.alignment"
KEY_RECEPTIVE_FIELD = "denoiser.receptive_field"
KEY_NAME = "denoiser.name"
REQUIRED_KEYS = (KEY_INPUTS, KEY_TRANSFER, KEY_ALIGNMENT, KEY_RECEPTIVE_FIELD)

# Passes a model may take, in the order they are stacked along C.
INPUT_SETS: dict[str, tuple[str, ...]] = {
    "color": ("color",),
    "color,albedo": ("color", "albedo"),
    "color,albedo,normal": ("color", "albedo", "normal"),
}


@dataclass(frozen=True)
class ModelInfo:
    inputs: tuple[str, ...]
    transfer: str
    alignment: int
    receptive_field: int
    name: str = ""

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
    inputs_raw = ",".join(p.strip() for p in str(meta[KEY_INPUTS]).split(","))
    if inputs_raw not in INPUT_SETS:
        raise ModelContractError(f"{where}: {KEY_INPUTS}={meta[KEY_INPUTS]!r} is not one of {', '.join(INPUT_SETS)}")
    transfer = str(meta[KEY_TRANSFER]).strip()
    if transfer not in TRANSFERS:
        raise ModelContractError(f"{where}: {KEY_TRANSFER}={transfer!r} is not one of {', '.join(TRANSFERS)}")
    return ModelInfo(
        inputs=INPUT_SETS[inputs_raw],
        transfer=transfer,
        alignment=_positive_int(meta, KEY_ALIGNMENT, where),
        receptive_field=_positive_int(meta, KEY_RECEPTIVE_FIELD, where),
        name=str(meta.get(KEY_NAME, "")),
    )


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
    for arg, channels in ((inputs[0], info.channels), (outputs[0], 3)):
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
                else f"{where}: {arg.name!r} has {dims[1]} channels, must be 3 (RGB)"
            )
        if dims[2] is not None or dims[3] is not None:
            raise ModelContractError(f"{where}: {arg.name!r} has fixed H/W {arg.shape[2:]}; they must be dynamic")
