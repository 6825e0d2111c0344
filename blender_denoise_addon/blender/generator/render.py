"""Render settings and rendering one pass set to a file, deterministically.

Blender 5.0 cannot hand render pixels to Python, so Cycles writes a multilayer
EXR to a temporary name; we read it back and write our own EXR with only the
three passes and no time-dependent header fields (Blender stamps render and
sync times into its EXR header, which would break byte-identical reruns).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...core.atomic import PARTIAL, atomic_path
from ...core.errors import DenoiseCancelled, DenoiseError
from ...dataset.spec import GenerateSettings
from .. import compat

# Channel names exactly as Blender writes them, so anything that reads Blender's
# multilayer EXRs (core.imageio included) reads ours.
LAYER = "ViewLayer"
COLOR_CHANNELS = tuple(f"{LAYER}.Combined.{c}" for c in "RGBA")
ALBEDO_CHANNELS = tuple(f"{LAYER}.Denoising Albedo.{c}" for c in "RGB")
NORMAL_CHANNELS = tuple(f"{LAYER}.Denoising Normal.{c}" for c in "XYZ")


def configure(scene: bpy.types.Scene, settings: GenerateSettings) -> dict[str, Any]:
    """Settings shared by the noisy and clean renders; returns them for the record."""
    r = scene.render
    c = scene.cycles
    r.engine = "CYCLES"
    c.device = "CPU"
    r.resolution_x, r.resolution_y = settings.resolution
    r.resolution_percentage = 100
    r.use_border = False
    r.film_transparent = False
    r.use_motion_blur = False
    # Keeps BVH, images and the HDRI light distribution between the renders of a
    # sample (measured: pixels bit-identical to a fresh session, HDRI scenes ~1 s faster per render).
    r.use_persistent_data = True
    r.threads_mode = "AUTO"  # thread count does not change Cycles' output (measured)
    c.use_denoising = False  # the noisy render must stay noisy; we only want the aux passes
    c.use_animated_seed = False
    c.sample_clamp_direct = settings.clamp_direct
    c.sample_clamp_indirect = settings.clamp_indirect
    c.use_light_tree = True
    c.time_limit = 0.0
    scene.view_layers[0].name = LAYER
    vl = scene.view_layers[LAYER]
    vl.cycles.denoising_store_passes = True
    vl.use_pass_combined = True
    # The EXR is linear regardless; Standard only matters for anything viewing the scene.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    configure_output(scene)
    return {
        "engine": "CYCLES",
        "device": "CPU",
        "clamp_direct": c.sample_clamp_direct,
        "clamp_indirect": c.sample_clamp_indirect,
        "light_tree": c.use_light_tree,
        "sampling_pattern": str(c.sampling_pattern),
        "max_bounces": c.max_bounces,
        "diffuse_bounces": c.diffuse_bounces,
        "glossy_bounces": c.glossy_bounces,
        "transmission_bounces": c.transmission_bounces,
        "volume_bounces": c.volume_bounces,
        "transparent_max_bounces": c.transparent_max_bounces,
        "caustics_reflective": c.caustics_reflective,
        "caustics_refractive": c.caustics_refractive,
        "filter_type": str(c.pixel_filter_type),
        "filter_width": r.filter_size,
        "light_sampling_threshold": c.light_sampling_threshold,
    }


def configure_output(scene: bpy.types.Scene) -> None:
    """Renders go to a 32-bit multilayer EXR without stamps (``render_exr`` reads it back)."""
    r = scene.render
    im = r.image_settings
    compat.set_file_format(im, compat.MULTILAYER_EXR)
    im.color_depth = "32"
    im.exr_codec = "ZIP"
    r.use_file_extension = False
    r.use_stamp = False
    for prop in dir(r):
        if prop.startswith("use_stamp_"):
            setattr(r, prop, False)


def _read_channels(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    """Pixels by channel name, and the sample count Cycles reports having finished."""
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as f:
        chans = {name: np.array(ch.pixels) for part in f.parts for name, ch in part.channels.items()}
        samples = next((str(p.header[k]) for p in f.parts for k in p.header if k.endswith(".samples")), None)
    return chans, samples


def write_passes_exr(path: Path, channels: dict[str, np.ndarray]) -> None:
    """Single-part EXR, ZIP, no time stamps: color float32; albedo/normal half
    (values in [-1, 1], half is plenty and halves their size). Atomic."""
    import OpenEXR

    out: dict[str, np.ndarray] = {}
    for name in COLOR_CHANNELS:
        out[name] = np.ascontiguousarray(channels[name], dtype=np.float32)
    for name in ALBEDO_CHANNELS + NORMAL_CHANNELS:
        out[name] = np.ascontiguousarray(channels[name], dtype=np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp, OpenEXR.File(header, out) as f:
        f.write(str(tmp))


def average_exrs(paths: list[Path], out: Path) -> None:
    """The per-channel mean of renders written by ``render_exr`` (independent seeds), written like them."""
    total: dict[str, np.ndarray] = {}
    for p in paths:
        chans, _ = _read_channels(p)
        for name in COLOR_CHANNELS + ALBEDO_CHANNELS + NORMAL_CHANNELS:
            total[name] = total.get(name, 0.0) + chans[name].astype(np.float64)
    write_passes_exr(out, {k: v / len(paths) for k, v in total.items()})


@contextlib.contextmanager
def silence_stdout() -> Iterator[None]:
    """Cycles prints a line per tile and sample to fd 1 in background mode; the CLI's
    progress bar is the better view. Errors still reach stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def render_exr(
    scene: bpy.types.Scene,
    path: Path,
    spp: int,
    seed: int,
    adaptive_threshold: float = 0.0,
    adaptive_min_samples: int = 0,
    quiet: bool = False,
) -> float:
    """Render ``scene`` at ``spp`` with sampling ``seed`` into ``path``; returns render seconds."""
    c = scene.cycles
    c.samples = spp
    c.seed = seed
    c.use_adaptive_sampling = adaptive_threshold > 0
    c.adaptive_threshold = adaptive_threshold
    c.adaptive_min_samples = adaptive_min_samples
    path = Path(path)
    blender_tmp = path.with_name(f".{path.stem}.blender{PARTIAL}.exr")
    scene.render.filepath = str(blender_tmp)
    t0 = time.perf_counter()
    try:
        with silence_stdout() if quiet else contextlib.nullcontext():
            result = bpy.ops.render.render(write_still=True, scene=scene.name)
        seconds = time.perf_counter() - t0
        if "FINISHED" not in result or not blender_tmp.is_file():
            raise DenoiseError(f"Cycles did not finish rendering {path.name} (result {set(result or ())})")
        chans, done = _read_channels(blender_tmp)
        if done is not None and done != str(spp):
            # Esc (or a stop request) ends a Cycles render early but still writes it.
            raise DenoiseCancelled(f"render of {path.name} stopped after {done} of {spp} samples; nothing kept")
        missing = [n for n in COLOR_CHANNELS + ALBEDO_CHANNELS + NORMAL_CHANNELS if n not in chans]
        if missing:
            raise DenoiseError(f"render of {path.name} lacks passes: {', '.join(missing)}")
        write_passes_exr(path, chans)
    finally:
        blender_tmp.unlink(missing_ok=True)
    return seconds
