"""Defaults in one place. Frozen so nobody mutates a shared default by accident."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

TilingMode = Literal["full", "grid", "sliding"]
TILING_MODES: tuple[str, ...] = ("full", "grid", "sliding")


@dataclass(frozen=True)
class TilingDefaults:
    mode: TilingMode = "sliding"
    # The smallest automatic tile: 512 keeps per-tile activations of a base-sized U-Net
    # around 0.5 GB while the overlap (from the receptive field) stays a small fraction.
    tile: int = 512
    # Automatic tiles hold at most this frame's (padded) pixels: a 1920x1080 frame, padded to
    # 1920x1088, is one tile. Every overlapping pixel is computed twice, so fewer, larger
    # tiles are faster (the shipped model: 1.5x at 1080p); this bounds the memory instead
    # (about 3.1 GB peak with the shipped models, 3.3 GB with an OIDN-base-sized U-Net).
    max_tile_frame: tuple[int, int] = (1920, 1088)
    batch: int = 1

    @property
    def max_tile_pixels(self) -> int:
        return self.max_tile_frame[0] * self.max_tile_frame[1]

    @property
    def auto_tile_text(self) -> str:
        """What the automatic tile does, for help texts and tooltips."""
        w, h = self.max_tile_frame
        return f"automatic: the whole frame up to {w}x{h} pixels, else tiles of at most that area"


@dataclass(frozen=True)
class ExposureDefaults:
    # Autoexposure maps the frame's log-average luminance to this key value.
    key: float = 0.18
    block: int = 16
    eps: float = 1e-8


@dataclass(frozen=True)
class CoarseDefaults:
    # The coarse pass (core/coarse.py): denoising a 2x2-averaged copy of the frame as well
    # (4x the samples per pixel) and correcting the frame's low frequencies by it took v13
    # +0.5 dB at 4 spp on the evaluation suite. No preset runs it with OIDN's networks; it stays
    # an ablation (``denoise(coarse=True)``, ``evaluate --coarse``) and the temporal guide's halving.
    # Frames with a shorter side skip it: the half frame would be too small to help.
    min_side: int = 64
    # A log ratio beyond this is a light or a hard edge, where the half frame is no better: kept as is.
    reject: float = 0.25
    # Offset of the ratio, as a fraction of the frame's log-average luminance: no amplified black noise,
    # and the result does not change with exposure.
    eps: float = 0.05
    # Work in row chunks of about this many pixels (0.8 MB of RGB float32): small temporaries at any size.
    chunk_pixels: int = 1 << 16


@dataclass(frozen=True)
class TemporalDefaults:
    # Frames on each side of the one being denoised (the window holds 2 * radius + 1 frames).
    radius: int = 2
    # A neighbour's pixel counts fully up to each tolerance and fades out to nothing at twice it.
    # Depth: relative difference, plus this much per frame of distance (the camera moves).
    depth: float = 0.02
    depth_per_frame: float = 0.02
    normal: float = 0.2  # mean absolute difference of camera-space normals
    albedo: float = 0.1  # largest channel difference
    # Light test: the log ratio of the two frames' guides (each frame denoised alone by the fast
    # network for the same passes, from a 2x2-averaged copy: 4x the samples a pixel at a quarter of
    # the cost; box-blurred over 2 * guide_blur + 1 pixels so their leftover noise does not read as
    # change): a reflection, a refraction or a light that does not follow the motion vectors, which
    # albedo, normal and depth cannot see. On the animated suite a tolerance of 0.5 gained on the dim
    # interior and lost 0.7 dB on the fast pan; full-resolution guides scored the same.
    color: float = 0.35
    # The tolerance follows the noise: this many times the median change between a frame's guide
    # and its neighbours' on matching surfaces, within color_min .. color (0: always ``color``).
    noise_sigmas: float = 3.0
    color_min: float = 0.2
    guide_blur: int = 1
    guide_half: bool = True
    guide_quality: str = "fast"
    # History: the previous denoised frame, reprojected, clamped to this frame's 3x3 range and
    # blended in with this weight where it passes the same tests (0: off). Steadier frames, no ghosts.
    history: float = 0.5
    # Vectors all zero (motion blur on) while this fraction of the depth changes: the image moves
    # and the vectors say nothing, so the frames are not blended.
    still_changed: float = 0.01
    chunk_pixels: int = 1 << 16


@dataclass(frozen=True)
class QualityPreset:
    """What one Quality setting (panel, hook, ``--quality``) runs. Which network runs is the bundled
    models' own fact (their ``denoiser.quality``, set by ``python -m training import-oidn``)."""

    coarse: bool  # the coarse pass (core/coarse.py)
    flips: int  # test-time flips averaged (1, 2 or 4)
    description: str

    @property
    def denoise_args(self) -> dict[str, Any]:
        """The keyword arguments of core.denoise.denoise this preset sets (the one list of them)."""
        return {"coarse": self.coarse, "flips": self.flips}


QUALITY: dict[str, QualityPreset] = {
    "fast": QualityPreset(False, 1, "OIDN's small networks, what OIDN runs at Fast"),
    "balanced": QualityPreset(
        False, 1, "OIDN's base networks on the raw passes, what OIDN runs at Balanced (the default)"
    ),
    "high": QualityPreset(
        False,
        1,
        "what Blender's own denoiser runs at High with the Accurate prefilter: OIDN's large networks clean "
        "the albedo and normal first",
    ),
}
DEFAULT_QUALITY = "balanced"

TILING = TilingDefaults()
TEMPORAL = TemporalDefaults()
EXPOSURE = ExposureDefaults()
COARSE = CoarseDefaults()
