"""Defaults in one place. Frozen so nobody mutates a shared default by accident."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TilingMode = Literal["full", "grid", "sliding"]
TILING_MODES: tuple[str, ...] = ("full", "grid", "sliding")


@dataclass(frozen=True)
class TilingDefaults:
    mode: TilingMode = "sliding"
    # 512 keeps per-tile activations of a base-sized U-Net around 0.5 GB while
    # the overlap (derived from the receptive field) stays a small fraction.
    tile: int = 512
    batch: int = 1


@dataclass(frozen=True)
class ExposureDefaults:
    # Autoexposure maps the frame's log-average luminance to this key value.
    key: float = 0.18
    block: int = 16
    eps: float = 1e-8


TILING = TilingDefaults()
EXPOSURE = ExposureDefaults()
