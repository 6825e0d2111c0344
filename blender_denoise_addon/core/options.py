"""What a user chose for one denoise (the panel, the CLI, the render hook), in core terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .defaults import DEFAULT_QUALITY, QUALITY, TEMPORAL, TILING
from .errors import DenoiseError


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
    def denoise_args(self) -> dict[str, Any]:
        """The keyword arguments of core.denoise.denoise these options set."""
        if self.quality not in QUALITY:
            raise DenoiseError(f"quality must be one of {', '.join(QUALITY)}, got {self.quality!r}")
        preset = QUALITY[self.quality]
        return {"tiling": self.tiling, "tile": self.tile, "overlap": self.overlap, "batch": self.batch,
                "coarse": preset.coarse, "flips": preset.flips}  # fmt: skip
