"""Tiling strategies against the full-frame result, on tiny ONNX models with known receptive fields."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from blender_denoise_addon.core import DenoiseCancelled, denoise, load_model
from blender_denoise_addon.core.tiling import plan_tiles
from training.onnx_builders import conv_chain, unet


def frame(h: int, w: int, seed: int = 0, hdr: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    color = rng.random((h, w, 3), dtype=np.float32)
    if hdr:
        color *= rng.exponential(2.0, (h, w, 1)).astype(np.float32)
    albedo = rng.random((h, w, 3), dtype=np.float32)
    normal = rng.uniform(-1, 1, (h, w, 3)).astype(np.float32)
    return color, albedo, normal


@pytest.fixture(scope="module")
def pointwise(tmp_path_factory):
    return load_model(conv_chain(tmp_path_factory.mktemp("m") / "pw.onnx", layers=2, kernel=1))


@pytest.fixture(scope="module")
def small_unet(tmp_path_factory):
    path, _ = unet(tmp_path_factory.mktemp("m") / "unet.onnx", enc=(8, 8, 8, 8, 8), dec=(8, 8, 8, 8))
    return load_model(path)


@pytest.mark.parametrize(
    "h,w,tile", [(64, 64, 16), (7, 301, 32), (45, 37, 20), (1, 1, 16), (5, 9, 64), (33, 70, 9), (3, 16384, 512)]
)
def test_sliding_equals_full_alignment_1(chain7, h, w, tile):
    color, _, _ = frame(h, w)
    full = denoise(chain7, color, tiling="full").image
    r = denoise(chain7, color, tiling="sliding", tile=tile)  # default overlap: receptive field - 1
    assert r.stats.overlap == chain7.info.receptive_field - 1
    assert np.abs(r.image - full).max() <= 1e-4


def test_sliding_equals_full_with_aux_and_batching(chain13_aux):
    color, albedo, normal = frame(50, 83, seed=1)
    full = denoise(chain13_aux, color, albedo, normal, tiling="full").image
    for batch in (1, 3):
        r = denoise(chain13_aux, color, albedo, normal, tiling="sliding", tile=30, overlap=14, batch=batch)
        assert r.stats.tiles > 4
        assert np.abs(r.image - full).max() <= 1e-4


def test_sliding_equals_full_unet_alignment_16(small_unet):
    # Tile origins stay on the alignment grid, so a U-Net with pooling is exact too.
    color, albedo, normal = frame(100, 260, seed=2)
    full = denoise(small_unet, color, albedo, normal, tiling="full").image
    r = denoise(small_unet, color, albedo, normal, tiling="sliding", tile=224)
    assert r.stats.tiles >= 2
    assert np.abs(r.image - full).max() <= 1e-4 * max(1.0, float(np.abs(full).max()))


def test_grid_equals_full_for_pointwise_model(pointwise):
    color, _, _ = frame(45, 70, seed=3)
    full = denoise(pointwise, color, tiling="full").image
    grid = denoise(pointwise, color, tiling="grid", tile=16)
    assert grid.stats.tiles == 3 * 5
    assert np.abs(grid.image - full).max() <= 1e-5


def test_grid_shows_seams_that_small_overlap_sliding_hides(chain13_aux):
    color, albedo, normal = frame(96, 96, seed=4)
    full = denoise(chain13_aux, color, albedo, normal, tiling="full").image
    grid = denoise(chain13_aux, color, albedo, normal, tiling="grid", tile=32).image
    # Overlap 4 < receptive field - 1 = 12: not exact, but cross-faded.
    slide = denoise(chain13_aux, color, albedo, normal, tiling="sliding", tile=32, overlap=4).image
    err_grid = np.abs(grid - full).max()
    err_slide = np.abs(slide - full).max()
    assert err_grid > 0
    assert err_slide < err_grid


@pytest.mark.parametrize("mode", ["full", "grid", "sliding"])
@pytest.mark.parametrize("h,w", [(1, 1), (7, 301), (37, 53), (16, 17)])
def test_odd_sizes_with_alignment(small_unet, mode, h, w):
    color, albedo, normal = frame(h, w, seed=5)
    r = denoise(small_unet, color, albedo, normal, tiling=mode, tile=32, overlap=16)
    assert r.image.shape == (h, w, 3)
    assert r.image.dtype == np.float32
    assert np.isfinite(r.image).all()


@pytest.mark.parametrize("mode", ["grid", "sliding"])
@pytest.mark.parametrize(
    "h,w,tile,overlap,align,halo", [(100, 37, 16, 4, 1, 3), (300, 411, 64, 32, 16, 20), (50, 50, 48, 40, 8, 10)]
)
def test_tile_weights_are_a_partition_of_unity(mode, h, w, tile, overlap, align, halo):
    acc = np.zeros((h, w))
    for t in plan_tiles(h, w, mode, tile, overlap, align, halo):
        assert t.y.origin % align == 0 and t.x.origin % align == 0
        assert t.y.keep0 >= t.y.origin and t.y.keep1 <= t.y.origin + t.y.size
        wgt = t.weights
        acc[t.y.keep0 : t.y.keep1, t.x.keep0 : t.x.keep1] += 1.0 if wgt is None else wgt
    np.testing.assert_allclose(acc, 1.0, atol=1e-6)


def test_alpha_passes_through(chain7):
    color, _, _ = frame(20, 30, seed=6)
    alpha = np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30, 1)
    r = denoise(chain7, np.concatenate([color, alpha], axis=-1), tiling="sliding", tile=8)
    assert r.image.shape == (20, 30, 4)
    assert np.array_equal(r.image[..., 3:], alpha)
    np.testing.assert_allclose(r.image[..., :3], denoise(chain7, color, tiling="full").image, atol=1e-4)


def test_nan_inf_negative_become_zero_and_are_counted(chain7):
    color, _, _ = frame(24, 24, seed=7)
    bad = color.copy()
    bad[3, 4, 0] = np.nan
    bad[10, 10, 1] = np.inf
    bad[11, 12, 2] = -np.inf
    bad[20, 2, :] = -5.0
    clean = bad.copy()
    clean[~np.isfinite(clean) | (clean < 0)] = 0.0
    r = denoise(chain7, bad, tiling="sliding", tile=8)
    assert np.isfinite(r.image).all()
    # -inf counts as Inf only, not also as negative.
    assert (r.stats.input_report.nan, r.stats.input_report.inf, r.stats.input_report.negative) == (1, 2, 3)
    np.testing.assert_allclose(r.image, denoise(chain7, clean, tiling="full").image, atol=1e-4)


def test_progress_and_cancel(chain7):
    color, _, _ = frame(40, 40)
    seen: list[tuple[int, int]] = []
    r = denoise(chain7, color, tiling="grid", tile=10, batch=3, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 16) and seen[-1] == (16, 16)
    assert r.stats.batches == 6
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(DenoiseCancelled, match="after 6 of 16"):
        denoise(chain7, color, tiling="grid", tile=10, batch=3, cancel=cancel)


def test_memory_is_bounded_by_tiles_not_frame(chain7):
    # Beyond the output frame, numpy memory must stay at the scale of the tiles in flight.
    color, _, _ = frame(1024, 1024, seed=8)
    frame_bytes = color.nbytes
    tracemalloc.start()
    denoise(chain7, color, tiling="sliding", tile=128, batch=2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < frame_bytes * 1.5, f"peak {peak / 1e6:.1f} MB for a {frame_bytes / 1e6:.1f} MB frame"


@pytest.mark.parametrize(
    "h,w,tiles",
    [(1080, 1920, 1), (1920, 1080, 1), (1088, 1920, 1), (2160, 3840, 5), (1, 1, 1), (16384, 16384, 182)],
)
def test_auto_tile_is_the_whole_frame_up_to_1080p_then_the_fewest_pixels_within_the_budget(h, w, tiles):
    from blender_denoise_addon.core.defaults import TILING
    from blender_denoise_addon.core.tiling import auto_tile

    # The shipped models' overlap (224) and alignment (16).
    tile = auto_tile(h, w, 224, 16)
    plan = plan_tiles(h, w, "sliding", tile, 224, 16, 108)
    assert len(plan) == tiles
    assert all(t.y.size * t.x.size <= TILING.max_tile_pixels for t in plan)
    # Fewer pixels computed than the largest square tile within the budget (the former choice).
    square = plan_tiles(h, w, "sliding", math.isqrt(TILING.max_tile_pixels) // 16 * 16, 224, 16, 108)
    computed = [sum(t.y.size * t.x.size for t in p) for p in (plan, square)]
    assert computed[0] <= computed[1]
    if (h, w) == (2160, 3840):  # 5 tiles of 2160x960: 10.4 M pixels, against 6 squares of 1440: 12.4 M
        assert computed[0] < 0.85 * computed[1]
    # A wider overlap raises the floor so it stays a modest share of the tile.
    assert min(auto_tile(4000, 4000, 600, 16)) >= 4 * 600


def test_default_tile_denoises_a_small_frame_in_one_tile_like_full(small_unet):
    color, albedo, normal = frame(40, 72, seed=5)
    auto = denoise(small_unet, color, albedo, normal)
    assert auto.stats.tiling == "sliding" and auto.stats.tiles == 1
    full = denoise(small_unet, color, albedo, normal, tiling="full").image
    np.testing.assert_allclose(auto.image, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "origin_y, origin_x, size", [(0, 0, 16), (-5, 3, 16), (7, -9, 24), (20, 25, 16), (-40, -40, 96), (30, 0, 8)]
)
def test_tile_input_mirrors_outside_the_image_like_reflect_index(origin_y, origin_x, size):
    """The network input is copied from views inside the image and mirrored outside it, as ``reflect_index`` says."""
    from blender_denoise_addon.core import transfer as tf
    from blender_denoise_addon.core.denoise import _network_input
    from blender_denoise_addon.core.tiling import AxisTile, Tile, reflect_index

    rng = np.random.default_rng(1)
    h, w = 33, 31
    color = rng.standard_normal((h, w, 4)).astype(np.float32) * 3
    color[2, 3, 1] = np.nan
    color[5, 0, 0] = np.inf
    albedo = rng.random((h, w, 3), dtype=np.float32) * 1.5
    normal = rng.standard_normal((h, w, 3)).astype(np.float32)
    tile = Tile(AxisTile(origin_y, size, 0, 1, None), AxisTile(origin_x, size, 0, 1, None))
    x = _network_input(tile, color, albedo, normal, "log", 0.7)
    rows = reflect_index(np.arange(origin_y, origin_y + size), h)[:, None]
    cols = reflect_index(np.arange(origin_x, origin_x + size), w)[None, :]
    c = color[rows, cols, :3]
    c = np.where(np.isfinite(c) & (c > 0), c, 0)
    want = np.concatenate(
        [tf.forward(c, "log", 0.7), np.clip(albedo[rows, cols], 0, 1), np.clip(normal[rows, cols], -1, 1)], axis=-1
    )
    np.testing.assert_array_equal(x, want.transpose(2, 0, 1))
