"""What a user chose for one denoise (the panel, the CLI, the render hook), in core terms."""

from __future__ import annotations

from dataclasses import dataclass

from .defaults import COARSE


@dataclass(frozen=True)
class Options:
    """What the panel/CLI chose, in core terms."""

    tiling: str = "sliding"
    tile: int | None = None
    overlap: int | None = None
    threads: int | None = None
    use_albedo: bool = True
    use_normal: bool = True
    coarse: bool = COARSE.enabled
    model_path: str | None = None  # None: the bundled model that fits the passes
