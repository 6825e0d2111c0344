"""Training-pair generation, the pure side: settings validation, shards, seeds, and
the random scene *description* drawn from (seed, index). numpy only, never bpy.

The description is a plain JSON-able dict, so it goes into each sample's record
as is, and ``generator/scene.py`` turns it into a Blender scene. Everything random
is decided here; the bpy side only builds what it is told, so a sample is
reproducible from its record alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DenoiseError

# Bump when the scene description changes meaning: records carry it, and a
# resumed dataset refuses to mix versions.
SPEC_VERSION = 1

# Blender's bundled world HDRIs (datafiles/studiolights/world/*.exr, Blender 4.x/5.0).
# Listed here so the description stays pure; the bpy side checks they exist.
BUNDLED_HDRIS: tuple[str, ...] = (
    "city.exr",
    "courtyard.exr",
    "forest.exr",
    "interior.exr",
    "night.exr",
    "studio.exr",
    "sunrise.exr",
    "sunset.exr",
)

LAYOUTS: tuple[str, ...] = ("outdoor", "studio", "interior", "void", "night")
# How often each layout is drawn. "night" (a room lit only by small lamps and glowing shapes)
# is off by default so that existing seeds keep drawing the same scenes.
DEFAULT_LAYOUT_WEIGHTS: tuple[float, ...] = (0.35, 0.2, 0.3, 0.15, 0.0)
PRIMITIVES: tuple[str, ...] = ("cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "torus", "monkey", "plane")
TEXTURES: tuple[str, ...] = ("noise", "voronoi", "checker", "brick", "wave", "gradient", "magic")
LIGHT_TYPES: tuple[str, ...] = ("AREA", "POINT", "SPOT", "SUN")

MAX_SPP = 1 << 20
MAX_RESOLUTION = 16384


@dataclass(frozen=True)
class GenerateSettings:
    """What ``generate-dataset`` was asked for. ``identity()`` is what must match
    when a folder is resumed or extended (count and shard may change)."""

    out: Path
    count: int
    resolution: tuple[int, int] = (256, 256)
    noisy_spp: tuple[int, ...] = (1, 4, 16)
    clean_spp: int = 1024
    seed: int = 0
    shard: tuple[int, int] = (0, 1)
    # Clean render only: Cycles adaptive sampling with this noise threshold
    # (0 = plain clean_spp everywhere). See docs/dataset.md for the measurement.
    clean_adaptive_threshold: float = 0.005
    clean_adaptive_min_samples: int = 128
    # 0 = no clamping (unbiased clean target); Cycles' factory default clamps indirect at 10.
    # None (the artist's scenes only): each scene keeps its own clamps.
    clamp_direct: float | None = 0.0
    clamp_indirect: float | None = 0.0
    # The artist's .blend files instead of random scenes; ``resolution`` is then the crop size.
    scenes: tuple[str, ...] = ()
    frames: tuple[int, int] | None = None  # None: each scene's own frame range
    camera_jitter: float = 0.0  # degrees of random camera rotation (artist's scenes)
    strict: bool = False  # missing textures or libraries are an error, not a warning
    clean_chunks: int = 1  # the clean render as this many independent renders, averaged (resumable)
    layouts: tuple[float, ...] = DEFAULT_LAYOUT_WEIGHTS  # random scenes: weight of each of LAYOUTS

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out", "count", "shard", "strict"):
            d.pop(k)
        d["resolution"] = list(self.resolution)
        d["noisy_spp"] = list(self.noisy_spp)
        d["spec_version"] = SPEC_VERSION
        for k in ("scenes", "frames", "camera_jitter"):  # random datasets keep their old identity
            if not self.scenes:
                d.pop(k)
        if self.clean_chunks == 1:
            d.pop("clean_chunks")
        if tuple(self.layouts) == DEFAULT_LAYOUT_WEIGHTS:
            d.pop("layouts")
        else:
            d["layouts"] = dict(zip(LAYOUTS, self.layouts, strict=True))
        if self.scenes:
            # File names, not paths: shards on machines that mount the files elsewhere still merge.
            d["scenes"] = [Path(s).name for s in self.scenes]
            d["frames"] = list(self.frames) if self.frames else None
        return d


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise DenoiseError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise DenoiseError(f"--shard {text}: N must be at least 1")
    if i >= n:
        raise DenoiseError(f"--shard {text}: I must be in 0..{n - 1} (shards are numbered from 0)")
    return i, n


def parse_spp_list(text: str) -> list[int]:
    """``"1 4 16"`` or ``"1,4,16"`` -> [1, 4, 16] (range checks are :func:`validate`'s)."""
    parts = [p for p in re.split(r"[\s,;]+", str(text).strip()) if p]
    if not parts:
        raise DenoiseError("give at least one noisy spp, e.g. '1 4 16'")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise DenoiseError(f"noisy spp must be whole numbers separated by spaces, got {text!r}") from None


def parse_frames(text: str) -> tuple[int, int]:
    """``"A-B"`` (or a single frame ``"A"``) -> (A, B) with A <= B."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:(?:-|\.\.)\s*(-?\d+)\s*)?", str(text))
    if not m:
        raise DenoiseError(f"--frames must look like A-B (e.g. 1-250), got {text!r}")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise DenoiseError(f"--frames {text}: the first frame is after the last")
    return a, b


def parse_layouts(text: str) -> tuple[float, ...]:
    """``"interior=0.4,night=0.3,studio=0.3"`` -> a weight per layout of LAYOUTS (unnamed ones 0), summing to 1."""
    weights = dict.fromkeys(LAYOUTS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if name not in weights or not eq:
            raise DenoiseError(f"--layouts wants NAME=WEIGHT,... with NAME one of {', '.join(LAYOUTS)}; got {part!r}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise DenoiseError(f"--layouts: {value!r} is not a number (in {part!r})") from None
    return check_layouts(tuple(weights.values()))


def check_layouts(weights: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    w = tuple(float(x) for x in weights)
    if len(w) != len(LAYOUTS):
        raise DenoiseError(f"give a weight for each layout ({', '.join(LAYOUTS)}), got {list(w)}")
    if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise DenoiseError(f"layout weights must be >= 0 and not all 0, got {dict(zip(LAYOUTS, w, strict=True))}")
    if w == DEFAULT_LAYOUT_WEIGHTS:
        return w
    total = sum(w)
    return tuple(round(x / total, 6) for x in w)


def check_blend(path: str | Path) -> Path:
    """An existing .blend file, or a one-line error."""
    p = Path(path)
    if p.suffix.lower() != ".blend":
        raise DenoiseError(f"--scene {p}: not a .blend file")
    if not p.is_file():
        raise DenoiseError(f"--scene {p}: file not found")
    with open(p, "rb") as f:
        head = f.read(7)
    # Plain .blend files start with BLENDER; compressed ones with the gzip or zstd magic.
    if not (head == b"BLENDER" or head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd"):
        raise DenoiseError(f"--scene {p}: not a Blender file (its header is not a .blend header)")
    return p


def validate(
    out: str | Path,
    count: int,
    resolution: tuple[int, int] | list[int] = (256, 256),
    noisy_spp: tuple[int, ...] | list[int] = (1, 4, 16),
    clean_spp: int = 1024,
    seed: int = 0,
    shard: str | tuple[int, int] = (0, 1),
    clean_adaptive_threshold: float = 0.005,
    clean_adaptive_min_samples: int = 128,
    clamp_direct: float | None = 0.0,
    clamp_indirect: float | None = 0.0,
    scenes: tuple[str, ...] | list[str] = (),
    frames: tuple[int, int] | str | None = None,
    camera_jitter: float = 0.0,
    strict: bool = False,
    check_files: bool = True,
    clean_chunks: int = 1,
    layouts: str | tuple[float, ...] | list[float] = DEFAULT_LAYOUT_WEIGHTS,
) -> GenerateSettings:
    """Check every user-facing setting and say exactly what is wrong."""
    if not str(out).strip():
        raise DenoiseError("output folder is empty")
    outp = Path(out)
    if outp.exists() and not outp.is_dir():
        raise DenoiseError(f"output {outp} exists and is not a folder")
    if int(count) != count or count < 1:
        raise DenoiseError(f"count must be a positive whole number, got {count}")
    res = tuple(int(r) for r in resolution)
    if len(res) != 2 or any(r < 8 or r > MAX_RESOLUTION for r in res):
        raise DenoiseError(f"resolution must be two sizes between 8 and {MAX_RESOLUTION} (W H), got {list(resolution)}")
    spps = tuple(int(s) for s in noisy_spp)
    if not spps:
        raise DenoiseError("give at least one noisy spp")
    if any(s < 1 or s > MAX_SPP for s in spps):
        raise DenoiseError(f"noisy spp must be between 1 and {MAX_SPP}, got {list(noisy_spp)}")
    if len(set(spps)) != len(spps):
        raise DenoiseError(f"noisy spp values repeat: {list(noisy_spp)}")
    if clean_spp < 1 or clean_spp > MAX_SPP:
        raise DenoiseError(f"clean spp must be between 1 and {MAX_SPP}, got {clean_spp}")
    if clean_spp <= max(spps):
        raise DenoiseError(f"clean spp ({clean_spp}) must be higher than every noisy spp ({max(spps)})")
    if int(seed) != seed or not 0 <= seed < 2**31:
        raise DenoiseError(f"seed must be a whole number in 0..{2**31 - 1}, got {seed}")
    sh = parse_shard(shard) if isinstance(shard, str) else (int(shard[0]), int(shard[1]))
    if not 0 <= sh[0] < sh[1]:
        raise DenoiseError(f"shard {sh[0]}/{sh[1]}: I must be in 0..N-1")
    if not 0.0 <= clean_adaptive_threshold < 1.0:
        raise DenoiseError(f"adaptive threshold must be in [0, 1) (0 = off), got {clean_adaptive_threshold}")
    if clean_adaptive_min_samples < 0:
        raise DenoiseError(f"adaptive min samples must be >= 0, got {clean_adaptive_min_samples}")
    if clean_chunks < 1 or clean_spp % clean_chunks:
        raise DenoiseError(f"clean spp ({clean_spp}) must split evenly into --clean-chunks ({clean_chunks})")
    # A small clean spp with the default minimum just means "every pixel gets all samples".
    clean_adaptive_min_samples = min(clean_adaptive_min_samples, clean_spp)
    if not scenes:  # random scenes are always rendered unclamped unless asked
        clamp_direct = 0.0 if clamp_direct is None else clamp_direct
        clamp_indirect = 0.0 if clamp_indirect is None else clamp_indirect
        if frames is not None or camera_jitter:
            raise DenoiseError("--frames and --camera-jitter need --scene FILE.blend")
    lw = parse_layouts(layouts) if isinstance(layouts, str) else check_layouts(layouts)
    if scenes and lw != DEFAULT_LAYOUT_WEIGHTS:
        raise DenoiseError("--layouts is for random scenes; with --scene the files are the scenes")
    if (clamp_direct or 0) < 0 or (clamp_indirect or 0) < 0:
        raise DenoiseError("clamp values must be >= 0 (0 = no clamping)")
    blends = tuple(str(check_blend(p)) if check_files else str(p) for p in scenes)
    if len(set(blends)) != len(blends):
        raise DenoiseError(f"a --scene file is given twice: {list(scenes)}")
    fr = (
        parse_frames(frames)
        if isinstance(frames, str)
        else (None if frames is None else (int(frames[0]), int(frames[1])))
    )
    if fr is not None and fr[1] < fr[0]:
        raise DenoiseError(f"frames {fr[0]}-{fr[1]}: the first frame is after the last")
    if not 0.0 <= camera_jitter <= 45.0:
        raise DenoiseError(f"camera jitter must be between 0 and 45 degrees, got {camera_jitter}")
    return GenerateSettings(
        out=outp,
        count=int(count),
        resolution=(res[0], res[1]),
        noisy_spp=tuple(sorted(spps)),
        clean_spp=int(clean_spp),
        seed=int(seed),
        shard=sh,
        clean_adaptive_threshold=float(clean_adaptive_threshold),
        clean_adaptive_min_samples=int(clean_adaptive_min_samples),
        clamp_direct=None if clamp_direct is None else float(clamp_direct),
        clamp_indirect=None if clamp_indirect is None else float(clamp_indirect),
        scenes=blends,
        frames=fr,
        camera_jitter=float(camera_jitter),
        strict=bool(strict),
        clean_chunks=int(clean_chunks),
        layouts=lw,
    )


def shard_indices(count: int, shard: tuple[int, int] = (0, 1)) -> list[int]:
    """Global sample indices this shard owns: index % N == I. Disjoint, and their union is range(count)."""
    i, n = shard
    return list(range(i, count, n))


def render_seed(seed: int, index: int, spp: int, clean: bool = False, chunk: int = 0) -> int:
    """Cycles' sampling seed for one render: distinct per sample, spp, clean/noisy and clean chunk."""
    ss = np.random.SeedSequence([seed, index, spp, 1 if clean else 0, 0x5EED] + ([chunk] if chunk else []))
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def _rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index] + ([attempt] if attempt else [])))


# ---------------------------------------------------------------------------
# Samples from the artist's scenes


def user_scene_draw(
    seed: int,
    index: int,
    n_scenes: int,
    frames: tuple[int, int],
    frame_size: tuple[int, int],
    crop: tuple[int, int],
    jitter: float = 0.0,
) -> dict[str, Any]:
    """What sample ``index`` renders of the artist's scenes: which file (round robin, so each
    file gets its share), a frame in ``frames``, a crop of the full-resolution frame (pixels,
    Blender's border from the bottom-left; the whole frame when it is smaller than ``crop``)
    and the camera's rotation jitter in degrees. Deterministic."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0xB1E4D]))
    w, h = min(crop[0], frame_size[0]), min(crop[1], frame_size[1])
    draw: dict[str, Any] = {
        "file_index": index % n_scenes,
        "frame": int(rng.integers(frames[0], frames[1] + 1)),
        "crop": [int(rng.integers(0, frame_size[0] - w + 1)), int(rng.integers(0, frame_size[1] - h + 1)), w, h],
        "jitter_degrees": None,
    }
    if jitter > 0:
        draw["jitter_degrees"] = _vec(rng.uniform(-jitter, jitter, 2))  # pitch, yaw
    return draw


# ---------------------------------------------------------------------------
# Scene description


@dataclass
class _Ctx:
    rng: np.random.Generator
    scale: float
    materials: list[dict[str, Any]] = field(default_factory=list)


def _f(x: Any) -> float:
    # Plain Python floats, rounded so JSON records stay readable and stable.
    return round(float(x), 6)


def _vec(v: Any) -> list[float]:
    return [_f(x) for x in v]


def _color(
    rng: np.random.Generator, sat: tuple[float, float] = (0.0, 1.0), val: tuple[float, float] = (0.05, 0.9)
) -> list[float]:
    """Random linear RGB via HSV, so saturation and brightness are drawn separately."""
    h = rng.uniform(0, 1)
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return _vec(c**2.2 for c in rgb)  # perceptual -> linear-ish, favours darker albedos like real ones


def _light_color(rng: np.random.Generator) -> list[float]:
    """Mostly white-ish (warm to cool), sometimes saturated."""
    if rng.uniform() < 0.8:
        warm = rng.uniform(-1, 1)
        return _vec(
            [1.0 + 0.25 * max(warm, 0), 1.0 - 0.05 * abs(warm), 1.0 + 0.3 * max(-warm, 0) - 0.25 * max(warm, 0)]
        )
    return _color(rng, sat=(0.4, 1.0), val=(0.8, 1.0))


def _texture(rng: np.random.Generator) -> dict[str, Any]:
    kind = str(rng.choice(TEXTURES))
    return {
        "type": kind,
        # Texture-space frequency: from a few features per object to sub-pixel detail.
        "scale": _f(np.exp(rng.uniform(np.log(1.0), np.log(80.0)))),
        "detail": _f(rng.uniform(0, 10)),
        "distortion": _f(rng.uniform(0, 3) if rng.uniform() < 0.5 else 0.0),
        "roughness": _f(rng.uniform(0.3, 0.8)),
        "voronoi_feature": str(rng.choice(["F1", "F2", "DISTANCE_TO_EDGE"])),
        "wave_type": str(rng.choice(["BANDS", "RINGS"])),
        "gradient_type": str(rng.choice(["LINEAR", "QUADRATIC", "EASING", "DIAGONAL", "SPHERICAL", "RADIAL"])),
        "rotation": _vec(rng.uniform(0, 2 * math.pi, 3)),
    }


def material(rng: np.random.Generator, emissive: bool = False) -> dict[str, Any]:
    """A Principled BSDF description drawn from a few archetypes, then jittered."""
    archetype = str(
        rng.choice(
            ["diffuse", "plastic", "metal", "glass", "subsurface", "coated", "fabric", "emissive"],
            p=[0.2, 0.2, 0.15, 0.12, 0.08, 0.1, 0.1, 0.05],
        )
    )
    if emissive:
        archetype = "emissive"
    m: dict[str, Any] = {
        "archetype": archetype,
        "base_color": _color(rng),
        "roughness": _f(rng.uniform(0.2, 1.0)),
        "metallic": 0.0,
        "transmission": 0.0,
        "ior": _f(rng.uniform(1.3, 1.8)),
        "subsurface": 0.0,
        "subsurface_radius": _vec(rng.uniform(0.05, 1.0, 3)),
        "subsurface_scale": _f(rng.uniform(0.01, 0.2)),
        "coat": 0.0,
        "coat_roughness": _f(rng.uniform(0.0, 0.2)),
        "sheen": 0.0,
        "sheen_roughness": _f(rng.uniform(0.2, 0.8)),
        "specular": _f(rng.uniform(0.3, 0.7)),
        "anisotropic": 0.0,
        "emission_color": [0.0, 0.0, 0.0],
        "emission_strength": 0.0,
        "textures": [],
        "bump": None,
    }
    if archetype == "plastic":
        m["roughness"] = _f(rng.uniform(0.0, 0.5))
    elif archetype == "metal":
        m["metallic"] = 1.0
        m["roughness"] = _f(rng.uniform(0.0, 0.6) ** 1.5)
        m["base_color"] = _color(rng, sat=(0.0, 0.5), val=(0.6, 1.0))
        m["anisotropic"] = _f(rng.uniform(0, 0.8) if rng.uniform() < 0.2 else 0.0)
    elif archetype == "glass":
        m["transmission"] = 1.0
        m["roughness"] = _f(rng.uniform(0.0, 0.3) ** 2 if rng.uniform() < 0.7 else rng.uniform(0.1, 0.5))
        m["base_color"] = _color(rng, sat=(0.0, 0.4), val=(0.8, 1.0))
    elif archetype == "subsurface":
        m["subsurface"] = 1.0
        m["base_color"] = _color(rng, sat=(0.1, 0.7), val=(0.5, 1.0))
        m["roughness"] = _f(rng.uniform(0.2, 0.7))
    elif archetype == "coated":
        m["coat"] = 1.0
        m["metallic"] = _f(rng.uniform(0, 1) if rng.uniform() < 0.5 else 0.0)
    elif archetype == "fabric":
        m["sheen"] = _f(rng.uniform(0.5, 1.0))
        m["roughness"] = _f(rng.uniform(0.6, 1.0))
    elif archetype == "emissive":
        m["emission_color"] = _light_color(rng)
        m["emission_strength"] = _f(np.exp(rng.uniform(np.log(2.0), np.log(60.0))))
    # Procedural detail is common, on purpose: fine texture is what denoisers blur.
    if rng.uniform() < 0.65:
        tex = _texture(rng)
        tex["target"] = str(rng.choice(["base_color", "roughness", "base_color+roughness"], p=[0.6, 0.15, 0.25]))
        tex["color2"] = _color(rng)
        m["textures"].append(tex)
    if rng.uniform() < 0.4:
        tex = _texture(rng)
        tex["strength"] = _f(rng.uniform(0.1, 1.0))
        tex["distance"] = _f(rng.uniform(0.005, 0.1))
        m["bump"] = tex
    return m


def _primitive(ctx: _Ctx, loc: Any, size: float, mat: int, small: bool = False) -> dict[str, Any]:
    rng = ctx.rng
    shape = str(rng.choice(PRIMITIVES[:-1]))  # no plane as a free object
    obj: dict[str, Any] = {
        "kind": "primitive",
        "shape": shape,
        "location": _vec(loc),
        "rotation": _vec(
            rng.uniform(0, 2 * math.pi, 3) if rng.uniform() < 0.6 else [0, 0, rng.uniform(0, 2 * math.pi)]
        ),
        "scale": _vec(size * np.exp(rng.uniform(-0.4, 0.4, 3)) if rng.uniform() < 0.4 else [size] * 3),
        "material": mat,
        "smooth": bool(rng.uniform() < 0.7),
        "subdivision": 0,
        "displace": None,
        "bevel": 0.0,
    }
    if not small:
        if rng.uniform() < 0.3:
            obj["subdivision"] = int(rng.integers(1, 4))
        if rng.uniform() < 0.25:
            obj["subdivision"] = max(obj["subdivision"], 3)
            obj["displace"] = {
                "type": str(rng.choice(["CLOUDS", "VORONOI", "MUSGRAVE", "MARBLE", "WOOD"])),
                "noise_scale": _f(rng.uniform(0.1, 0.8)),
                "strength": _f(rng.uniform(0.05, 0.4)),
            }
        if shape == "cube" and rng.uniform() < 0.5:
            obj["bevel"] = _f(rng.uniform(0.02, 0.2))
    return obj


_WORDS = ("DENOISE", "Cycles", "Blender", "abc", "NOISE", "42", "Qx&", "render", "Light", "Hello", "SPP", "AaBbGg")


def _text(ctx: _Ctx, loc: Any, size: float, mat: int) -> dict[str, Any]:
    rng = ctx.rng
    upright = rng.uniform() < 0.7
    return {
        "kind": "text",
        "body": str(rng.choice(_WORDS)),
        "location": _vec(loc),
        "rotation": _vec([math.pi / 2 if upright else 0.0, 0.0, rng.uniform(0, 2 * math.pi)]),
        "scale": _vec([size] * 3),
        "extrude": _f(rng.uniform(0.0, 0.3)),
        "bevel": _f(rng.uniform(0.0, 0.03)),
        "material": mat,
    }


def _new_material(ctx: _Ctx, emissive: bool = False) -> int:
    ctx.materials.append(material(ctx.rng, emissive=emissive))
    return len(ctx.materials) - 1


def _look_rotation(direction: Any) -> list[float]:
    """Euler XYZ that points a Blender camera/light (-Z forward, +Y up) along ``direction``."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / (np.linalg.norm(d) + 1e-12)
    pitch = math.acos(max(-1.0, min(1.0, -d[2])))  # rotation about X from looking down
    yaw = math.atan2(-d[0], d[1]) if abs(d[2]) < 0.9999 else 0.0
    return _vec([pitch, 0.0, yaw])


def _light(ctx: _Ctx, kind: str, target: Any, radius: float, dim: float) -> dict[str, Any]:
    rng = ctx.rng
    s = ctx.scale
    direction = rng.normal(size=3)
    direction[2] = abs(direction[2]) + 0.3
    direction /= np.linalg.norm(direction)
    dist = radius * rng.uniform(0.8, 2.5)
    loc = np.asarray(target) + direction * dist
    light: dict[str, Any] = {
        "type": kind,
        "location": _vec(loc),
        "rotation": _look_rotation(np.asarray(target) - loc),
        "color": _light_color(rng),
        "size": _f(s * rng.uniform(0.05, 2.0)),  # area size / point and spot radius
        "shape": str(rng.choice(["SQUARE", "RECTANGLE", "DISK", "ELLIPSE"])),
        "size_y": _f(s * rng.uniform(0.05, 2.0)),
        "spot_size": _f(rng.uniform(0.3, 1.8)),
        "spot_blend": _f(rng.uniform(0.0, 1.0)),
        "sun_angle": _f(rng.uniform(0.002, 0.3)),
    }
    if kind == "SUN":
        light["energy"] = _f(dim * rng.uniform(1.0, 6.0))  # W/m^2
    else:
        # Watts scaled by distance^2 so the irradiance at the target is roughly comparable.
        light["energy"] = _f(dim * rng.uniform(2.0, 20.0) * 4 * math.pi**2 * dist**2 / (1.0 if kind != "SPOT" else 2.0))
    return light


def _room(ctx: _Ctx, radius: float) -> dict[str, Any]:
    rng = ctx.rng
    w, d = radius * rng.uniform(2.0, 3.5, 2)
    h = ctx.scale * rng.uniform(2.5, 4.0) + 0.3 * radius
    walls = []
    n_open = int(rng.integers(1, 4))
    open_walls = set(rng.choice(["x+", "x-", "y+", "y-", "ceiling"], size=n_open, replace=False).tolist())
    for wall in ("x+", "x-", "y+", "y-", "ceiling"):
        opening = None
        if wall in open_walls:
            u0, v0 = rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.5)
            opening = _vec([u0, min(0.95, u0 + rng.uniform(0.15, 0.5)), v0, min(0.95, v0 + rng.uniform(0.2, 0.5))])
        walls.append({"wall": wall, "opening": opening})
    return {
        "size": _vec([w, d, h]),
        "walls": walls,
        "material": _new_material(ctx),
        "floor_material": _new_material(ctx),
    }


# Draws per sample: the generator re-draws a scene whose probe render is black (see ``is_lit``).
MAX_ATTEMPTS = 4


def is_lit(probe_rgb: np.ndarray, min_fraction: float = 0.01) -> bool:
    """Whether a probe render shows anything: at least ``min_fraction`` of its pixels not black.

    About 1.4 % of random scenes render entirely black (a camera inside an object, or daylight
    that no opening lets into a room with a black world): nothing to learn, and their metrics
    are meaningless, so the generator draws another scene for that sample instead.
    """
    rgb = np.nan_to_num(np.asarray(probe_rgb, np.float32)[..., :3], nan=0.0, posinf=0.0, neginf=0.0)
    return bool(np.mean(rgb.max(axis=-1) > 1e-6) >= min_fraction)


def scene_spec(
    seed: int, index: int, attempt: int = 0, layouts: tuple[float, ...] = DEFAULT_LAYOUT_WEIGHTS
) -> dict[str, Any]:
    """The random scene for sample ``index`` of a dataset with ``seed``. Deterministic.

    ``attempt`` > 0 draws another scene for the same sample (when an earlier draw rendered black).
    ``layouts`` weighs LAYOUTS; a zero weight leaves the draws of the others unchanged.
    """
    rng = _rng(seed, index, attempt)
    p = np.asarray(layouts, np.float64)
    layout = str(rng.choice(LAYOUTS, p=p / p.sum()))
    indoor = layout in ("interior", "night")
    # Scene scale spans two orders of magnitude: matters for SSS radii, fog density, DOF.
    scale = _f(np.exp(rng.uniform(np.log(0.2), np.log(8.0))))
    ctx = _Ctx(rng=rng, scale=scale)
    radius = scale * rng.uniform(1.5, 4.0)  # region the objects occupy

    objects: list[dict[str, Any]] = []
    n_main = int(rng.integers(1, 9))
    for _ in range(n_main):
        size = scale * np.exp(rng.uniform(np.log(0.15), np.log(1.0)))
        ang, r = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.uniform()) * 0.8
        z = size if layout != "void" else rng.uniform(-radius, radius) * 0.5
        if layout != "void" and rng.uniform() < 0.15:
            z += rng.uniform(0, 2) * size  # some float or stack
        loc = [r * math.cos(ang), r * math.sin(ang), z]
        mat = _new_material(ctx) if not ctx.materials or rng.uniform() < 0.7 else int(rng.integers(len(ctx.materials)))
        objects.append(_text(ctx, loc, size * 1.5, mat) if rng.uniform() < 0.12 else _primitive(ctx, loc, size, mat))

    if rng.uniform() < 0.35:  # scattered small objects, sharing a few materials
        mats = [_new_material(ctx) for _ in range(int(rng.integers(1, 4)))]
        n_small = int(rng.integers(10, 60))
        small = scale * np.exp(rng.uniform(np.log(0.02), np.log(0.12)))
        spread = radius * rng.uniform(0.3, 1.0)
        for _ in range(n_small):
            sz = small * rng.uniform(0.5, 1.5)
            ang, r = rng.uniform(0, 2 * math.pi), spread * math.sqrt(rng.uniform())
            z = sz if layout != "void" else rng.uniform(-spread, spread) * 0.5
            objects.append(_primitive(ctx, [r * math.cos(ang), r * math.sin(ang), z], sz, int(rng.choice(mats)), True))

    ground = None
    room = None
    if layout in ("outdoor", "studio"):
        ground = {"size": _f(radius * (30 if layout == "outdoor" else 6)), "material": _new_material(ctx)}
        if layout == "studio":
            ground["backdrop"] = True  # floor curving up into a back wall
            ground["rotation"] = _f(rng.uniform(0, 2 * math.pi))
    elif indoor:
        room = _room(ctx, radius)

    # World: HDRI, flat colour, or black; interiors see it only through openings.
    hdri_p = {"outdoor": 0.75, "studio": 0.7, "interior": 0.6, "void": 0.5, "night": 0.0}[layout]
    u = rng.uniform()
    world: dict[str, Any]
    if layout == "night":  # a night sky through the openings, or nothing
        world = {"type": "black"}
        if u < 0.5:
            world = {
                "type": "hdri",
                "hdri": "night.exr",
                "rotation": _f(rng.uniform(0, 2 * math.pi)),
                "strength": _f(np.exp(rng.uniform(np.log(0.01), np.log(0.3)))),
            }
    elif u < hdri_p:
        world = {
            "type": "hdri",
            "hdri": str(rng.choice(BUNDLED_HDRIS)),
            "rotation": _f(rng.uniform(0, 2 * math.pi)),
            "strength": _f(np.exp(rng.uniform(np.log(0.3), np.log(3.0)))),
        }
    elif u < hdri_p + (1 - hdri_p) * 0.6:
        world = {
            "type": "color",
            "color": _color(rng, sat=(0.0, 0.6), val=(0.3, 1.0)),
            "strength": _f(np.exp(rng.uniform(np.log(0.05), np.log(2.0)))),
        }
    else:
        world = {"type": "black"}

    lights: list[dict[str, Any]] = []
    target = np.array([0.0, 0.0, scale * 0.5])
    if layout == "interior":
        # Dim interiors: daylight through the openings, sometimes a lamp inside.
        if world["type"] == "hdri":
            world["strength"] = _f(world["strength"] * rng.uniform(1.0, 4.0))
        lights.append(_light(ctx, "SUN", target, radius, dim=rng.uniform(0.5, 3.0)))
        if rng.uniform() < 0.5:
            kind = str(rng.choice(["AREA", "POINT", "SPOT"]))
            lt = _light(ctx, kind, target, radius, dim=rng.uniform(0.02, 0.3))
            w, d, h = room["size"]  # type: ignore[index]
            lt["location"] = _vec([rng.uniform(-0.4, 0.4) * w, rng.uniform(-0.4, 0.4) * d, h * rng.uniform(0.6, 0.95)])
            lt["rotation"] = _look_rotation(target - np.asarray(lt["location"]))
            lights.append(lt)
    elif layout == "night":
        # Small lamps inside; most of the room sees only their bounce light.
        w, d, h = room["size"]  # type: ignore[index]
        for _ in range(int(rng.integers(1, 5))):
            kind = str(rng.choice(["POINT", "POINT", "AREA", "SPOT"]))
            lt = _light(ctx, kind, target, radius, dim=rng.uniform(0.05, 0.6))
            lt["size"] = _f(ctx.scale * rng.uniform(0.02, 0.3))
            lt["size_y"] = _f(ctx.scale * rng.uniform(0.02, 0.3))
            x, y = rng.uniform(-0.45, 0.45) * w, rng.uniform(-0.45, 0.45) * d
            lt["location"] = _vec([x, y, h * rng.uniform(0.2, 0.95)])
            lt["rotation"] = _look_rotation(
                np.asarray([rng.uniform(-0.5, 0.5) * w, rng.uniform(-0.5, 0.5) * d, 0.0]) - np.asarray(lt["location"])
            )
            lights.append(lt)
    else:
        n_lights = int(rng.integers(0 if world["type"] != "black" else 1, 4))
        for _ in range(n_lights):
            kind = str(rng.choice(LIGHT_TYPES, p=[0.4, 0.2, 0.2, 0.2]))
            lights.append(_light(ctx, kind, target, radius, dim=rng.uniform(0.1, 1.0)))
    if rng.uniform() < (0.6 if layout == "night" else 0.25) or (world["type"] == "black" and not lights):
        # Emissive panels and shapes (at night: glowing screens, bulbs, signs).
        for _ in range(int(rng.integers(1, 3))):
            size = scale * rng.uniform(0.1, 0.6)
            ang, r = rng.uniform(0, 2 * math.pi), radius * rng.uniform(0.5, 1.2)
            loc = [r * math.cos(ang), r * math.sin(ang), size + rng.uniform(0, 1) * scale]
            objects.append(_primitive(ctx, loc, size, _new_material(ctx, emissive=True), small=True))

    # Camera: aim at an object (or the middle), from outside the cluster; inside the room for interiors.
    focus = np.asarray(objects[int(rng.integers(len(objects)))]["location"]) if rng.uniform() < 0.6 else target
    lens = _f(np.exp(rng.uniform(np.log(16.0), np.log(135.0))))
    if indoor:
        w, d, h = room["size"]  # type: ignore[index]
        cam_loc = np.array([rng.uniform(-0.45, 0.45) * w, rng.uniform(-0.45, 0.45) * d, rng.uniform(0.15, 0.8) * h])
        lens = _f(min(lens, 50.0))
    else:
        # Distance so the cluster roughly fills the frame for this lens.
        fov = 2 * math.atan(18.0 / lens)
        dist = radius * rng.uniform(0.6, 1.6) / math.tan(fov / 2)
        elev = rng.uniform(math.radians(3), math.radians(65))
        az = rng.uniform(0, 2 * math.pi)
        cam_loc = focus + dist * np.array(
            [math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev)]
        )
        if layout != "void":
            cam_loc[2] = max(cam_loc[2], 0.1 * scale)
    aim = focus + rng.normal(size=3) * scale * 0.2
    camera: dict[str, Any] = {
        "location": _vec(cam_loc),
        "rotation": _look_rotation(aim - cam_loc),
        "roll": _f(rng.normal(0, 0.08)),
        "lens": lens,
        "dof": None,
    }
    if rng.uniform() < 0.3:
        focus_dist = float(np.linalg.norm(focus - cam_loc)) * rng.uniform(0.7, 1.3)
        camera["dof"] = {
            "focus_distance": _f(max(focus_dist, 0.01)),
            "fstop": _f(np.exp(rng.uniform(np.log(0.5), np.log(8.0)))),
        }

    volume = None
    if rng.uniform() < 0.2:
        extent = room["size"] if room else [radius * 4, radius * 4, radius * 2]
        volume = {
            "size": _vec(extent),
            # Optical depth across the scene of about 0.1..2: visible haze, not a wall.
            "density": _f(rng.uniform(0.1, 2.0) / max(extent)),
            "color": _color(rng, sat=(0.0, 0.3), val=(0.7, 1.0)),
            "anisotropy": _f(rng.uniform(-0.3, 0.8)),
        }

    spec = {
        "spec_version": SPEC_VERSION,
        "seed": int(seed),
        "index": int(index),
        "layout": layout,
        "scale": scale,
        "world": world,
        "ground": ground,
        "room": room,
        "objects": objects,
        "materials": ctx.materials,
        "lights": lights,
        "camera": camera,
        "volume": volume,
    }
    if attempt:
        spec["attempt"] = int(attempt)
    return spec


def spec_summary(spec: dict[str, Any]) -> dict[str, Any]:
    """A few headline parameters for quick filtering in manifest.jsonl."""
    archetypes = sorted({m["archetype"] for m in spec["materials"]})
    return {
        "layout": spec["layout"],
        "world": spec["world"]["type"] + (f":{spec['world']['hdri']}" if spec["world"]["type"] == "hdri" else ""),
        "objects": len(spec["objects"]),
        "lights": sorted(lt["type"] for lt in spec["lights"]),
        "materials": archetypes,
        "dof": spec["camera"]["dof"] is not None,
        "volume": spec["volume"] is not None,
    }
