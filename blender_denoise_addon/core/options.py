"""What a user chose for one denoise (the panel, the CLI, the render hook), in core terms."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from .defaults import DEFAULT_QUALITY, QUALITY, TEMPORAL, TILING, TILING_MODES
from .errors import DenoiseError


def check_tiling(tiling: str, tile: int | None, overlap: int | None, batch: int) -> None:
    """Raise for tiling settings no frame can run with (the one home of these rules)."""
    if tiling not in TILING_MODES:
        raise DenoiseError(f"unknown tiling {tiling!r}; choose one of {', '.join(TILING_MODES)}")
    if batch < 1:
        raise DenoiseError(f"batch must be at least 1, got {batch}")
    if overlap is not None and overlap < 0:
        raise DenoiseError(f"overlap must be 0 or more, got {overlap}")
    if tile is not None and tile < 1:
        raise DenoiseError(f"tile size must be at least 1, got {tile}")
    if tiling == "sliding" and tile is not None and overlap is not None and overlap >= tile:
        raise DenoiseError(f"overlap {overlap} must be smaller than the tile size {tile}")


@dataclass(frozen=True)
class Options:
    """What the panel/CLI chose, in core terms. Plain data: it travels to Ray workers."""

    tiling: str = TILING.mode
    tile: int | None = None
    overlap: int | None = None
    batch: int = TILING.batch
    threads: int | None = None
    use_albedo: bool = True
    use_normal: bool = True
    quality: str = DEFAULT_QUALITY  # a key of defaults.QUALITY
    model_path: str | None = None  # None: the bundled model that fits the passes
    temporal: bool = False  # each frame of a sequence with its neighbours (core/temporal.py)
    radius: int = TEMPORAL.radius

    @property
    def guides_off(self) -> set[str]:
        """The guide passes the user turned off (not fed, not picked for)."""
        return {name for name, on in (("albedo", self.use_albedo), ("normal", self.use_normal)) if not on}

    def checked(self) -> tuple[Options, list[str]]:
        """Every setting checked once, before any frame (a bad one raises, in one line), and the
        threads capped at this machine's cores (more only slows onnxruntime down, by minutes when
        they are thousands); returns the options to use and notes on what was changed."""
        check_tiling(self.tiling, self.tile, self.overlap, self.batch)
        if self.quality not in QUALITY:
            raise DenoiseError(f"quality must be one of {', '.join(QUALITY)}, got {self.quality!r}")
        if self.radius < 0:
            raise DenoiseError(f"the temporal radius must be 0 or more, got {self.radius}")
        if self.threads is None:
            return self, []
        if self.threads < 1:
            raise DenoiseError(f"threads must be at least 1, got {self.threads}")
        cores = os.cpu_count() or 1
        if self.threads > cores:
            return replace(self, threads=cores), [
                f"{self.threads} threads asked, this machine has {cores} cores: using {cores}"
            ]
        return self, []

    @property
    def denoise_args(self) -> dict[str, Any]:
        """The keyword arguments of core.denoise.denoise these options set."""
        if self.quality not in QUALITY:
            raise DenoiseError(f"quality must be one of {', '.join(QUALITY)}, got {self.quality!r}")
        return self.tiling_args | QUALITY[self.quality].denoise_args

    @property
    def tiling_args(self) -> dict[str, Any]:
        """The tiling keyword arguments of core.denoise.denoise (also what a temporal guide uses)."""
        return {"tiling": self.tiling, "tile": self.tile, "overlap": self.overlap, "batch": self.batch}
