"""Training pairs from the generator's layout: discovery, scene split, loading, crops.

File names come from ``blender_denoise_addon.dataset.files``; input preparation
and the per-frame exposure from ``blender_denoise_addon.core.denoise``, so training
sees exactly what the core feeds the network. Frames stay linear here; the transfer
is applied to whole batches (``to_network``) with the core's functions and xp=torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blender_denoise_addon.core import transfer as tf
from blender_denoise_addon.core.contract import GUIDE_RANGES
from blender_denoise_addon.core.denoise import frame_exposure, prefilter, prepare_guide, sanitize_color
from blender_denoise_addon.core.errors import DenoiseError
from blender_denoise_addon.core.imageio import read_image
from blender_denoise_addon.dataset import files

from .config import SOURCES, TRAIN_INPUTS

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    """One noisy frame and its clean reference. ``scene`` is the split key."""

    scene: str
    spp: int | None
    noisy: Path
    clean: Path
    kind: str  # "exr" or "png"

    @property
    def label(self) -> str:
        return f"{self.scene}_{self.spp}spp" if self.spp is not None else self.scene


_NUMBERS = re.compile(r"\d+")


def _parse(name: str, build: Any) -> tuple[int, ...] | None:
    """Numbers in ``name`` such that ``build(*numbers)`` gives back ``name`` (layout from dataset.files)."""
    nums = tuple(int(n) for n in _NUMBERS.findall(name))
    for k in (1, 2):
        try:
            if len(nums) >= k and build(*nums[:k]) == name:
                return nums[:k]
        except TypeError:  # build takes the other count
            continue
    return None


def _sample_indices(root: Path) -> list[int]:
    """Complete samples: those with a record (written last). Without records, every exr/ folder."""
    if (root / files.RECORDS_DIR).is_dir():
        return sorted(files.complete_indices(root))
    exr_dir = root / files.EXR_DIR
    names = sorted(p.name for p in exr_dir.iterdir()) if exr_dir.is_dir() else []
    return sorted(i for n in names if (i := files.index_of(n)) is not None and files.sample_dir(root, i).name == n)


def exr_pairs(root: Path) -> list[Pair]:
    pairs = []
    for index in _sample_indices(root):
        folder = files.sample_dir(root, index)
        clean = files.clean_exr(root, index)
        if not folder.is_dir() or not clean.is_file():
            continue
        for p in sorted(folder.iterdir()):
            spp = _parse(p.name, lambda s, i=index: files.noisy_exr(root, i, s).name)
            if spp is not None:
                pairs.append(Pair(files.sample_name(index), spp[0], p, clean, "exr"))
    return sorted(pairs, key=lambda q: (q.scene, q.spp or 0))


def png_pairs(root: Path) -> list[Pair]:
    """The seed's noise/ + denoise/ pairs; generator names give scene and spp, other names are one scene each."""
    pairs = []
    for noisy, clean in files.png_pairs(root):
        nums = _parse(noisy.name, lambda i, s: files.noisy_png(root, i, s).name)
        if nums is not None:
            pairs.append(Pair(files.sample_name(nums[0]), nums[1], noisy, clean, "png"))
        else:
            pairs.append(Pair(noisy.stem, None, noisy, clean, "png"))
    return pairs


def find_pairs(root: str | Path, source: str = "auto", spp: list[int] | None = None) -> list[Pair]:
    """All pairs under ``root``: EXRs (linear, with albedo and normal) when present, else PNG pairs."""
    root = Path(root)
    if source not in SOURCES:
        raise DenoiseError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    pairs = exr_pairs(root) if source in ("auto", "exr") else []
    if not pairs and source in ("auto", "png"):
        pairs = png_pairs(root)
    if spp:
        pairs = [p for p in pairs if p.spp in spp]
    if not pairs:
        raise DenoiseError(
            f"no training pairs found in {root} (looked for {files.EXR_DIR}/<sample>/ EXRs with "
            f"{files.RECORDS_DIR}/ records, and {files.NOISE_DIR}/ + {files.DENOISE_DIR}/ PNG pairs)"
        )
    return pairs


def split_scenes(scenes: list[str], val: float, test: float, seed: int) -> dict[str, str]:
    """scene -> split. Deterministic: scenes are ordered by a seeded hash, then cut.

    With 3 or more scenes, val and test get at least one scene each when their share
    is above zero; train always keeps at least one.
    """
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise DenoiseError(f"val ({val}) and test ({test}) shares must be in [0, 1) and sum below 1")
    unique = sorted(set(scenes))
    order = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(order)
    n_test = round(n * test)
    n_val = round(n * val)
    if n >= 3:
        n_test = max(n_test, 1 if test > 0 else 0)
        n_val = max(n_val, 1 if val > 0 else 0)
    while n_test + n_val > n - 1 and (n_test or n_val):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    out = {s: "test" for s in order[:n_test]}
    out |= {s: "val" for s in order[n_test : n_test + n_val]}
    out |= {s: "train" for s in order[n_test + n_val :]}
    return out


def split_pairs(pairs: list[Pair], val: float, test: float, seed: int) -> dict[str, list[Pair]]:
    """Split by scene, never by frame or patch: every spp of a scene lands in one split."""
    which = split_scenes([p.scene for p in pairs], val, test, seed)
    return {name: [p for p in pairs if which[p.scene] == name] for name in SPLITS}


@dataclass
class Loaded:
    """A prepared pair, C x H x W float32, linear. ``exposure`` comes from the full noisy frame.
    A guide prefilter's pair has no color: its targets are the clean render's guides (``clean``)."""

    color: np.ndarray | None
    albedo: np.ndarray | None
    normal: np.ndarray | None
    target: np.ndarray | None
    exposure: float
    clean: dict[str, np.ndarray] | None = None


def load_pair(
    pair: Pair, inputs: str, transfer: str, guides: str = "noisy", prefilters: tuple[Any, ...] = ()
) -> Loaded:
    """Read and prepare one pair the way the core prepares a frame for inference. ``guides``
    (config.GUIDES) says whose albedo and normal: the noisy render's, the clean render's, or the
    noisy ones cleaned by ``prefilters`` (loaded prefilter Models)."""
    passes = TRAIN_INPUTS[inputs]
    noisy = read_image(pair.noisy)
    clean = read_image(pair.clean)
    if noisy.color.shape != clean.color.shape:
        raise DenoiseError(f"{pair.noisy} and {pair.clean} differ in size")
    aux: dict[str, np.ndarray | None] = {}
    source = clean if guides == "clean" else noisy
    raw = {name: getattr(source, name) for name in ("albedo", "normal") if name in passes}
    for name, arr in raw.items():
        if arr is None:
            raise DenoiseError(f"{pair.noisy}: no {name} pass, but the model takes {inputs}")
    if guides == "prefiltered":
        if not prefilters:
            raise DenoiseError("--guides prefiltered needs --prefilter: the prefilter models to run")
        for pre in prefilters:
            if set(pre.info.inputs) <= set(raw):
                raw |= prefilter(pre, {g: raw[g] for g in pre.info.inputs})
    for name in GUIDE_RANGES:
        arr = raw.get(name)
        aux[name] = prepare_guide(name, arr[..., :3]).transpose(2, 0, 1).copy() if arr is not None else None

    def chw(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(2, 0, 1))

    if "color" not in passes:  # a guide prefilter: the clean render's guides are the target
        targets = {}
        for name in passes:
            arr = getattr(clean, name)
            if arr is None:
                raise DenoiseError(f"{pair.clean}: no {name} pass to train the {inputs} prefilter on")
            targets[name] = chw(prepare_guide(name, arr[..., :3]))
        return Loaded(None, aux["albedo"], aux["normal"], None, 1.0, targets)
    color = sanitize_color(noisy.color[..., :3])
    return Loaded(
        color=chw(color),
        albedo=aux["albedo"],
        normal=aux["normal"],
        target=chw(sanitize_color(clean.color[..., :3])),
        exposure=frame_exposure(color, transfer),
    )


def to_network(batch: dict[str, Any], transfer: str) -> tuple[Any, Any]:
    """(network input, target) in the transfer space, from a collated torch batch.

    Uses the core's ``forward`` with xp=torch and each frame's own exposure.
    """
    import torch

    if "color" not in batch:  # a guide prefilter: noisy guides in, the clean render's out
        names = [k for k in GUIDE_RANGES if k in batch]
        return torch.cat([batch[k] for k in names], dim=1), torch.cat([batch[f"clean_{k}"] for k in names], dim=1)
    exposure = batch["exposure"].to(torch.float32).view(-1, 1, 1, 1)
    parts = [tf.forward(batch["color"], transfer, exposure, xp=torch)]
    parts += [batch[k] for k in ("albedo", "normal") if k in batch]
    target = tf.forward(batch["target"], transfer, exposure, xp=torch)
    return torch.cat(parts, dim=1), target


def _item(lo: Loaded) -> dict[str, Any]:
    item: dict[str, Any] = {"exposure": np.float32(lo.exposure)}
    if lo.color is not None:
        item |= {"color": lo.color, "target": lo.target}
    # keys ending in "normal" turn with the image (dihedral)
    item |= {f"clean_{k}": v for k, v in (lo.clean or {}).items()}
    if lo.albedo is not None:
        item["albedo"] = lo.albedo
    if lo.normal is not None:
        item["normal"] = lo.normal
    return item


def dihedral(item: dict[str, Any], k: int) -> dict[str, Any]:
    """One of the 8 flips/rotations (k in 0..7), applied alike to every image in ``item``.

    Normals are vectors in camera space (x right, y up), so their x/y components
    turn with the image; otherwise a flipped crop would show surfaces facing the
    wrong way next to their shading.
    """
    transpose, flip_x, flip_y = bool(k & 4), bool(k & 2), bool(k & 1)
    out = dict(item)
    for key, a in item.items():
        if not isinstance(a, np.ndarray) or a.ndim != 3:
            continue
        if transpose:
            a = a.transpose(0, 2, 1)
        if flip_x:
            a = a[:, :, ::-1]
        if flip_y:
            a = a[:, ::-1, :]
        a = np.ascontiguousarray(a)
        if key.endswith("normal"):
            a = a.copy()
            if transpose:  # image (x, y) -> (-y, -x) with y up and rows down
                a[[0, 1]] = -a[[1, 0]]
            if flip_x:
                a[0] = -a[0]
            if flip_y:
                a[1] = -a[1]
        out[key] = a
    return out


# Supersampling per pixel edge for the texture of ``albedo_texture`` (anti-aliased like a render).
_TEXTURE_SS = 4
TEXTURE_KINDS = ("checker", "stripes", "blobs")


def texture_pattern(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random piecewise-constant colour texture, 3 x h x w in (0, 1], anti-aliased, max 1.

    A rotated checker, stripes or thresholded smooth noise with a period of 3 to 48 pixels,
    its regions in 2-3 random colours (log-uniform brightness down to 1/20, some tint).
    """
    ss = _TEXTURE_SS
    kind = str(rng.choice(list(TEXTURE_KINDS)))
    period = float(np.exp(rng.uniform(np.log(3.0), np.log(48.0))))
    ys, xs = np.mgrid[0 : h * ss, 0 : w * ss].astype(np.float32) / ss
    ang = rng.uniform(0, np.pi)
    u = (xs * np.cos(ang) + ys * np.sin(ang) + rng.uniform(0, period)) / period
    v = (-xs * np.sin(ang) + ys * np.cos(ang) + rng.uniform(0, period)) / period
    if kind == "checker":
        label = (np.floor(u) + np.floor(v)).astype(np.int64) % 2
    elif kind == "stripes":
        label = np.floor(u).astype(np.int64) % 2
    else:  # blobs: bilinear noise on a grid of the period, cut at 1-2 levels
        gh, gw = int(h / period) + 3, int(w / period) + 3
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        gy, gx = ys / period, xs / period
        y0, x0 = np.floor(gy).astype(np.int64), np.floor(gx).astype(np.int64)
        fy, fx = gy - y0, gx - x0
        field = (
            grid[y0, x0] * (1 - fy) * (1 - fx)
            + grid[y0 + 1, x0] * fy * (1 - fx)
            + grid[y0, x0 + 1] * (1 - fy) * fx
            + grid[y0 + 1, x0 + 1] * fy * fx
        )
        cuts = np.sort(rng.uniform(-0.5, 0.5, int(rng.integers(1, 3))))
        label = np.searchsorted(cuts, field).astype(np.int64)
    n = int(label.max()) + 1
    bright = np.exp(rng.uniform(np.log(0.05), 0.0, n))
    tint = rng.uniform(0.6, 1.0, (n, 3)) if rng.uniform() < 0.7 else rng.uniform(0.1, 1.0, (n, 3))
    palette = (bright[:, None] * tint / tint.max(1, keepdims=True)).astype(np.float32)
    fine = palette[label]  # (h*ss) x (w*ss) x 3
    out = fine.reshape(h, ss, w, ss, 3).mean((1, 3)).transpose(2, 0, 1)
    return np.ascontiguousarray(out / out.max())


def check_texture_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise DenoiseError(f"--albedo-texture is a fraction, in [0, 1]; got {fraction}")


def albedo_texture(item: dict[str, Any], rng: np.random.Generator, transfer: str) -> dict[str, Any]:
    """Paint a random texture into a crop: noisy colour, target and albedo times the same pattern.

    Renders show surfaces whose colour follows their albedo's texture, and the denoiser
    should keep those edges (remodulating); the generator frames large textured areas too
    rarely to teach it (in 3 of 546 seed-5000 scenes did remodulating everywhere beat v10's
    learnt blend by 0.5 dB). Colour / albedo is unchanged, so the crop stays a consistent
    frame: one where even reflections carry the texture. Where the albedo is black (the
    world, for Cycles) the pattern fades out. The exposure (``transfer``'s, from the core's
    ``frame_exposure``) moves as the crop's would.
    """
    out = dict(item)
    color = item["color"]
    _, h, w = color.shape
    pattern = texture_pattern(h, w, rng)
    albedo = item.get("albedo")
    if albedo is not None:
        cover = np.clip(albedo.max(0, keepdims=True) / 0.02, 0.0, 1.0)
        pattern = 1.0 + cover * (pattern - 1.0)
        out["albedo"] = albedo * pattern
    out["color"] = color * pattern
    out["target"] = item["target"] * pattern
    before = frame_exposure(color.transpose(1, 2, 0), transfer)
    after = frame_exposure(out["color"].transpose(1, 2, 0), transfer)
    out["exposure"] = np.float32(item["exposure"] * after / before)
    return out


def _pad_to(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mirror-pad (edge repeated, as the core's tiling does) up to h x w."""
    ph, pw = max(0, h - a.shape[1]), max(0, w - a.shape[2])
    if not ph and not pw:
        return a
    return np.pad(a, ((0, 0), (0, ph), (0, pw)), mode="symmetric")


class PairCache:
    """Loads pairs on first use and keeps them in memory (per process)."""

    def __init__(
        self,
        pairs: list[Pair],
        inputs: str,
        transfer: str,
        guides: str = "noisy",
        prefilters: tuple[Any, ...] = (),
    ) -> None:
        self.pairs = pairs
        self.inputs = inputs
        self.transfer = transfer
        self.guides = guides
        self.prefilters = prefilters
        self._loaded: dict[int, Loaded] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Loaded:
        if i not in self._loaded:
            self._loaded[i] = load_pair(self.pairs[i], self.inputs, self.transfer, self.guides, self.prefilters)
        return self._loaded[i]

    def preload(self, progress: bool = True) -> None:
        """Load everything now, so DataLoader workers share it (fork) instead of each reading it."""
        from tqdm import tqdm

        for i in tqdm(range(len(self)), desc="loading", unit="pair", disable=not progress, leave=False):
            self[i]


class RandomCropDataset:
    """``patches_per_image`` random crops of every pair per epoch, with random flips/rotations.

    With ``texture`` > 0, that fraction of the crops gets a painted texture (``albedo_texture``).

    Crops are reproducible: item i of epoch e always draws from the same seeded
    generator, whatever the number of workers.
    """

    def __init__(
        self,
        cache: PairCache,
        patch: int = 64,
        patches_per_image: int = 8,
        augment: bool = True,
        seed: int = 0,
        texture: float = 0.0,
    ):
        if patch < 1 or patches_per_image < 1:
            raise DenoiseError("patch size and patches per image must be at least 1")
        check_texture_fraction(texture)
        self.texture = texture
        self.cache = cache
        self.patch = patch
        self.per_image = patches_per_image
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache) * self.per_image

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        item = _item(self.cache[i // self.per_image])
        p = self.patch
        _, h, w = next(a for a in item.values() if isinstance(a, np.ndarray) and a.ndim == 3).shape
        y0 = int(rng.integers(0, max(1, h - p + 1)))
        x0 = int(rng.integers(0, max(1, w - p + 1)))
        for k, a in item.items():
            if isinstance(a, np.ndarray) and a.ndim == 3:
                item[k] = _pad_to(a[:, y0 : y0 + p, x0 : x0 + p], p, p)
        k = int(rng.integers(0, 8)) if self.augment else 0
        # Drawn only when asked for, so runs without it see the crops they always did.
        if self.texture and rng.uniform() < self.texture:
            item = albedo_texture(item, rng, self.cache.transfer)
        return dihedral(item, k) if self.augment else item


class FullImageDataset:
    """Whole frames, mirror-padded to a multiple of ``alignment``; ``height``/``width`` give the real size."""

    def __init__(self, cache: PairCache, alignment: int = 1) -> None:
        self.cache = cache
        self.alignment = alignment

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = _item(self.cache[i])
        _, h, w = next(v for v in item.values() if isinstance(v, np.ndarray) and v.ndim == 3).shape
        a = self.alignment
        ha, wa = -(-h // a) * a, -(-w // a) * a
        for k, v in item.items():
            if isinstance(v, np.ndarray) and v.ndim == 3:
                item[k] = _pad_to(v, ha, wa)
        item["height"], item["width"] = h, w
        return item


def summarize(root: str | Path, count: int = 0) -> dict[str, Any]:
    """What a dataset holds, from its sample records: scene variety and render time.

    ``count`` > 0 limits it to samples with index < count (what ``--count`` rendered).
    """
    from collections import Counter

    records = [r for r in files.iter_records(Path(root)) if not count or r["index"] < count]
    if not records:
        raise DenoiseError(f"no complete samples in {root}")
    noisy_s: dict[int, float] = {}
    tally: Counter[str] = Counter()
    clean_s = 0.0
    for r in records:
        for n in r["noisy"]:
            noisy_s[int(n["spp"])] = noisy_s.get(int(n["spp"]), 0.0) + (n["seconds"] or 0.0)
        clean_s += r["clean"]["seconds"] or 0.0
        scene = r["scene"]
        tally[f"layout {scene['layout']}"] += 1
        tally["HDRI world" if str(scene.get("world", "")).startswith("hdri") else "sky/plain world"] += 1
        tally.update(name for name in ("dof", "volume") if scene.get(name))
        tally.update(f"material {m}" for m in set(scene.get("materials", [])))
    return {
        "samples": len(records),
        "indices": [min(r["index"] for r in records), max(r["index"] for r in records)],
        "resolution": records[0]["resolution"],
        "noisy_spp": sorted(noisy_s),
        "clean_spp": records[0]["clean"]["spp"],
        "render_seconds": {"noisy": dict(sorted(noisy_s.items())), "clean": clean_s},
        "total_render_hours": (sum(noisy_s.values()) + clean_s) / 3600,
        "scenes_with": dict(sorted(tally.items())),
    }
