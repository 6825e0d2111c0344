"""training/dataset.py (and around it): data: finding and splitting pairs, crops, painted textures,
the network input, summaries.

The tiny dataset and run are made once per session (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import SPP  # noqa: E402

from blender_denoise_addon.core import read_image  # noqa: E402
from blender_denoise_addon.core import transfer as tf  # noqa: E402
from blender_denoise_addon.core.denoise import frame_exposure, sanitize_color  # noqa: E402
from blender_denoise_addon.core.errors import DenoiseError  # noqa: E402
from training.dataset import (  # noqa: E402
    FullImageDataset,
    Pair,
    PairCache,
    RandomCropDataset,
    albedo_texture,
    dihedral,
    find_pairs,
    split_pairs,
    texture_pattern,
    to_network,
)


def test_pairs_cover_every_sample_and_spp(dataset):
    pairs = find_pairs(dataset)
    assert pairs and all(p.kind == "exr" for p in pairs)
    scenes = {p.scene for p in pairs}
    assert len(pairs) == len(scenes) * len(SPP)
    assert {p.spp for p in pairs} == set(SPP)
    png = find_pairs(dataset, source="png")
    assert {(p.scene, p.spp) for p in png} == {(p.scene, p.spp) for p in pairs}
    assert find_pairs(dataset, spp=[4]) == [p for p in pairs if p.spp == 4]


def test_split_is_by_scene_deterministic_and_disjoint():
    pairs = [Pair(f"{i:06d}", s, Path("n"), Path("c"), "exr") for i in range(40) for s in (1, 4, 16)]
    a = split_pairs(pairs, 0.1, 0.2, seed=5)
    b = split_pairs(list(reversed(pairs)), 0.1, 0.2, seed=5)
    assert all({p.scene for p in a[k]} == {p.scene for p in b[k]} for k in a)
    scenes = {k: {p.scene for p in v} for k, v in a.items()}
    assert (len(scenes["train"]), len(scenes["val"]), len(scenes["test"])) == (28, 4, 8)
    assert not (scenes["train"] & scenes["val"]) and not (scenes["train"] & scenes["test"])
    assert not (scenes["val"] & scenes["test"])
    assert all(len(v) == 3 * len(scenes[k]) for k, v in a.items())  # every spp of a scene together
    other = split_pairs(pairs, 0.1, 0.2, seed=6)
    assert {p.scene for p in other["test"]} != scenes["test"]


def _heightfield_normals(h: np.ndarray) -> np.ndarray:
    """Camera-space normals (x right, y up) of a height field given in image rows/cols."""
    dx = np.gradient(h, axis=1)
    dy_up = -np.gradient(h, axis=0)  # rows go down, y goes up
    n = np.stack([-dx, -dy_up, np.ones_like(h)])
    return (n / np.linalg.norm(n, axis=0, keepdims=True)).astype(np.float32)


def test_dihedral_moves_every_pass_alike_and_turns_normals():
    rng = np.random.default_rng(1)
    h = np.cumsum(np.cumsum(rng.standard_normal((12, 10)), 0), 1) * 0.1
    color = rng.random((3, 12, 10)).astype(np.float32)
    item = {"color": color, "target": color.copy(), "albedo": color.copy(), "normal": _heightfield_normals(h)}
    seen = set()
    for k in range(8):
        out = dihedral(item, k)
        assert np.array_equal(out["color"], out["target"]) and np.array_equal(out["color"], out["albedo"])
        # Transform the surface itself, then take its normals: they must match the turned normals.
        moved_h = dihedral({"h": h[None]}, k)["h"][0]
        np.testing.assert_allclose(out["normal"], _heightfield_normals(moved_h), atol=1e-6)
        seen.add(out["color"].tobytes())
    assert len(seen) == 8


def test_crops_are_reproducible_and_carry_the_full_frame_exposure(dataset):
    pairs = find_pairs(dataset)[:2]
    cache = PairCache(pairs, "color,albedo,normal", "log")
    ds = RandomCropDataset(cache, patch=16, patches_per_image=3, seed=7)
    a, b = ds[4], ds[4]
    assert all(np.array_equal(a[k], b[k]) for k in ("color", "albedo", "normal", "target"))
    assert a["color"].shape == a["normal"].shape == (3, 16, 16)
    ds.set_epoch(1)
    assert not np.array_equal(ds[4]["color"], a["color"])
    full = sanitize_color(read_image(pairs[1].noisy).color)
    assert a["exposure"] == pytest.approx(frame_exposure(full, "log"))
    big = RandomCropDataset(cache, patch=48, patches_per_image=1, augment=False)  # larger than the frame: mirrored
    assert big[0]["color"].shape == (3, 48, 48)
    padded = FullImageDataset(cache, alignment=64)[0]
    assert padded["color"].shape[1:] == (64, 64) and (padded["height"], padded["width"]) == (32, 32)


def test_texture_pattern_is_anti_aliased_regions_up_to_one():
    for seed in range(12):
        t = texture_pattern(24, 40, np.random.default_rng(seed))
        assert t.shape == (3, 24, 40) and t.dtype == np.float32
        assert t.max() == pytest.approx(1.0) and t.min() > 0.0
        assert len(np.unique(t[1])) > 2  # at least two regions plus the blended pixels on their edges


def test_albedo_texture_keeps_color_over_albedo_and_spares_the_world():
    rng = np.random.default_rng(0)
    albedo = rng.uniform(0.1, 1.0, (3, 32, 32)).astype(np.float32)
    albedo[:, :, :8] = 0.0  # the world: Cycles' albedo is black there
    color = rng.uniform(0.05, 4.0, (3, 32, 32)).astype(np.float32)
    item = {"color": color, "albedo": albedo, "target": color * 0.9, "normal": albedo, "exposure": np.float32(1.5)}
    out = albedo_texture(item, np.random.default_rng(3), "log")
    lit = albedo > 0.02
    np.testing.assert_allclose(out["color"][lit] / out["albedo"][lit], color[lit] / albedo[lit], rtol=1e-5)
    np.testing.assert_allclose(out["target"], out["color"] * 0.9, rtol=1e-5)
    np.testing.assert_array_equal(out["color"][:, :, :8], color[:, :, :8])
    assert out["normal"] is albedo and not np.array_equal(out["albedo"], albedo)
    # The texture only darkens, so the exposure rises, by what the crop's own exposure says.
    ratio = tf.autoexposure(out["color"].transpose(1, 2, 0)) / tf.autoexposure(color.transpose(1, 2, 0))
    assert ratio > 1.0 and out["exposure"] == pytest.approx(1.5 * ratio)
    # A transfer without exposure keeps the crop's (the core's frame_exposure is 1 for it).
    assert albedo_texture(item, np.random.default_rng(3), "linear")["exposure"] == pytest.approx(1.5)


def test_textured_crops_are_the_same_crops_painted(dataset):
    cache = PairCache(find_pairs(dataset)[:2], "color,albedo,normal", "log")
    plain = RandomCropDataset(cache, patch=16, patches_per_image=3, seed=7)
    painted = RandomCropDataset(cache, patch=16, patches_per_image=3, seed=7, texture=1.0)
    for i in range(len(plain)):
        a, b = plain[i], painted[i]
        np.testing.assert_array_equal(a["normal"], b["normal"])  # same place, same flip: only paint differs
        lit = a["albedo"] > 0.02
        np.testing.assert_allclose(b["color"][lit] / b["albedo"][lit], a["color"][lit] / a["albedo"][lit], rtol=1e-4)
        assert not np.array_equal(a["color"], b["color"])
    with pytest.raises(DenoiseError, match="fraction"):
        RandomCropDataset(cache, texture=1.5)


def test_to_network_applies_the_core_transfer_with_each_exposure():
    color = torch.rand(2, 3, 4, 4) * 10
    batch = {"color": color, "target": color, "albedo": torch.rand(2, 3, 4, 4), "exposure": torch.tensor([0.5, 2.0])}
    x, y = to_network(batch, "log")
    assert x.shape == (2, 6, 4, 4)
    for i, e in enumerate((0.5, 2.0)):
        np.testing.assert_allclose(x[i, :3].numpy(), tf.forward(color[i].numpy(), "log", e), rtol=1e-5)
    assert torch.equal(x[:, 3:], batch["albedo"])


def test_summarize_counts_samples_and_render_time(dataset, capsys):
    from training.__main__ import main
    from training.dataset import summarize

    whole = summarize(dataset)
    assert whole["samples"] == 5 and whole["noisy_spp"] == list(SPP) and whole["resolution"] == [32, 32]
    assert (
        whole["render_seconds"]["clean"] > 0 and sum(v for k, v in whole["scenes_with"].items() if "layout" in k) == 5
    )
    first = summarize(dataset, count=2)
    assert first["samples"] == 2 and first["indices"] == [0, 1]
    assert first["total_render_hours"] < whole["total_render_hours"]
    assert main(["summarize", "--data", str(dataset), "--count", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2
    with pytest.raises(Exception, match="no complete samples"):
        summarize(dataset.parent / "nowhere")
