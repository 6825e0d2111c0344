"""The coarse pass (core/coarse.py): what it corrects, what it leaves alone, and how it runs inside denoise()."""

from __future__ import annotations

import numpy as np
import pytest

from blender_denoise_addon.core import DenoiseCancelled, denoise
from blender_denoise_addon.core import coarse as cp
from blender_denoise_addon.core.defaults import COARSE


def hdr_frame(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    color = (rng.random((h, w, 3)) * rng.exponential(2.0, (h, w, 1))).astype(np.float32)
    albedo = rng.random((h, w, 3), dtype=np.float32)
    normal = rng.uniform(-1, 1, (h, w, 3)).astype(np.float32)
    return color, albedo, normal


def test_halve_averages_2x2_and_repeats_the_last_odd_row_and_column():
    src = np.arange(5 * 7, dtype=np.float32).reshape(5, 7, 1).repeat(4, axis=2)  # 4 channels: alpha is dropped
    half = cp.halve(src)
    assert half.shape == (3, 4, 3)
    assert half[0, 0, 0] == (0 + 1 + 7 + 8) / 4
    assert half[0, 3, 0] == (6 + 6 + 13 + 13) / 4  # last column repeated
    assert half[2, 0, 0] == (28 + 29 + 28 + 29) / 4  # last row repeated
    assert half[2, 3, 0] == 34


def test_halve_cleans_each_chunk_before_averaging():
    src = np.ones((6, 6, 3), np.float32)
    src[0, 0, 0] = np.nan
    half = cp.halve(src, lambda b: np.nan_to_num(b, nan=0.0))
    assert half[0, 0, 0] == 0.75 and np.isfinite(half).all()


def test_a_uniform_ratio_scales_every_pixel_exactly():
    rng = np.random.default_rng(1)
    hi = rng.uniform(0.5, 2.0, (37, 52, 3)).astype(np.float32)
    lo = cp.halve(hi) * np.float32(1.1)
    out = hi.copy()
    cp.correct(out, lo, eps=0.0)
    np.testing.assert_allclose(out, hi * 1.1, rtol=1e-5)


def test_low_frequency_blotches_are_corrected_and_fine_detail_kept():
    h, w = 128, 160
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    smooth = 0.3 + 0.2 * x / w
    detail = 1 + 0.2 * ((x + y) % 2)  # a pixel-scale checkerboard: what the full-resolution pass resolves
    truth = np.repeat((smooth * detail)[..., None], 3, axis=2)
    blotch = 1 + 0.1 * np.sin(x / 9)[..., None] * np.cos(y / 7)[..., None]  # ~30 px, within the reject bound
    hi = (truth * blotch).astype(np.float32)
    out = hi.copy()
    cp.correct(out, cp.halve(truth), eps=0.01)
    err_before = np.abs(hi - truth).mean()
    err_after = np.abs(out - truth).mean()
    assert err_after < err_before / 4, (err_before, err_after)
    # The checkerboard survives: neighbouring pixels still differ by about 20 %.
    ratio = out[1:-1, 2:-1:2, 0] / out[1:-1, 1:-2:2, 0]
    assert np.all(np.abs(np.abs(np.log(ratio)) - np.log(1.2)) < 0.05)


def test_ratios_beyond_the_reject_bound_are_left_alone():
    hi = np.full((64, 64, 3), 0.5, np.float32)
    lo = cp.halve(hi)
    lo[10:12, 10:12] *= 3.0  # a light the half frame sees brighter: |log 3| > reject
    lo[20:22, 20:22] = np.nan  # a broken value is never applied
    out = hi.copy()
    cp.correct(out, lo, eps=0.01)
    np.testing.assert_array_equal(out, hi)


def test_constant_frame_is_unchanged(chain7):
    color = np.full((80, 96, 3), 0.37, np.float32)
    with_pass = denoise(chain7, color, tiling="full", coarse=True)
    assert with_pass.stats.coarse
    without = denoise(chain7, color, tiling="full", coarse=False).image
    # The toy model's zero-padded convolutions shade its own border; away from it both levels agree.
    b = 2 * chain7.info.receptive_field + 2
    np.testing.assert_allclose(with_pass.image[b:-b, b:-b], without[b:-b, b:-b], rtol=1e-5)


def test_result_scales_with_exposure(chain7):
    color, _, _ = hdr_frame(96, 128, seed=2)
    base = denoise(chain7, color, tiling="full", coarse=True).image
    for k in (1e-3, 40.0):
        scaled = denoise(chain7, color * np.float32(k), tiling="full", coarse=True)
        assert scaled.stats.coarse
        np.testing.assert_allclose(scaled.image / k, base, rtol=2e-3, atol=1e-6)


def test_the_pass_changes_the_result_when_on(chain7):
    color, _, _ = hdr_frame(96, 128, seed=3)
    on = denoise(chain7, color, tiling="full", coarse=True).image
    off = denoise(chain7, color, tiling="full", coarse=False).image
    assert np.abs(on - off).max() > 1e-3


@pytest.mark.parametrize("h,w", [(1, 1), (COARSE.min_side - 1, 300), (300, COARSE.min_side - 1)])
def test_small_frames_skip_the_pass(chain7, h, w):
    color, _, _ = hdr_frame(h, w, seed=4)
    r = denoise(chain7, color, tiling="full", coarse=True)
    assert not r.stats.coarse
    np.testing.assert_array_equal(r.image, denoise(chain7, color, tiling="full", coarse=False).image)


@pytest.mark.parametrize("h,w", [(COARSE.min_side, COARSE.min_side), (65, 99), (101, 64)])
def test_odd_and_edge_sizes_run_the_pass(chain13_aux, h, w):
    color, albedo, normal = hdr_frame(h, w, seed=5)
    r = denoise(chain13_aux, color, albedo, normal, tiling="sliding", coarse=True, tile=40)
    assert r.stats.coarse and r.image.shape == (h, w, 3) and np.isfinite(r.image).all()


def test_sliding_tiles_match_the_full_frame_on_both_levels(chain13_aux):
    color, albedo, normal = hdr_frame(100, 131, seed=6)
    full = denoise(chain13_aux, color, albedo, normal, tiling="full", coarse=True)
    tiled = denoise(chain13_aux, color, albedo, normal, tiling="sliding", coarse=True, tile=32, batch=2)
    assert full.stats.tiles == 2 and tiled.stats.tiles > 6  # one tile per level; many
    np.testing.assert_allclose(tiled.image, full.image, rtol=1e-4, atol=1e-5)


def test_nan_inf_negative_input_stays_finite_and_matches_the_clean_frame(chain13_aux):
    color, albedo, normal = hdr_frame(96, 96, seed=7)
    bad = color.copy()
    bad[5, 6, 0], bad[40, 41, 1], bad[70, 3, 2], bad[90, 90] = np.nan, np.inf, -np.inf, -3.0
    albedo, normal = albedo.copy(), normal.copy()
    albedo[1, 1], normal[2, 2] = np.nan, np.inf
    clean = np.where(np.isfinite(bad) & (bad >= 0), bad, 0).astype(np.float32)
    r = denoise(chain13_aux, bad, albedo, normal, tiling="full", coarse=True)
    assert r.stats.coarse and np.isfinite(r.image).all()
    np.testing.assert_allclose(
        r.image, denoise(chain13_aux, clean, albedo, normal, tiling="full", coarse=True).image, rtol=1e-5
    )


def test_progress_counts_both_levels_and_cancel_stops_the_first(chain7):
    color, _, _ = hdr_frame(80, 80, seed=8)
    seen: list[tuple[int, int]] = []
    r = denoise(chain7, color, tiling="grid", coarse=True, tile=20, progress=lambda d, t: seen.append((d, t)))
    assert r.stats.tiles == 16 + 4  # 4x4 at full resolution, 2x2 at half
    assert seen[0] == (0, 20) and seen[-1] == (20, 20)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(DenoiseCancelled, match="after 0 of 20"):
        denoise(chain7, color, tiling="grid", coarse=True, tile=20, cancel=lambda: True)
