import numpy as np

from blender_denoise_addon.core.metrics import lowfreq_psnr, psnr, relmse, report, ssim


def test_metrics_known_values():
    rng = np.random.default_rng(0)
    a = rng.random((32, 40, 3))
    assert psnr(a, np.clip(a, 0, 1)) == float("inf")
    assert abs(psnr(np.zeros((8, 8, 3)), np.full((8, 8, 3), 0.1)) - 20.0) < 1e-9
    assert ssim(a, a) > 0.999999
    noisy = [np.clip(a + rng.normal(0, s, a.shape), 0, 1) for s in (0.02, 0.1, 0.3)]
    scores = [ssim(a, n) for n in noisy]
    assert scores[0] > scores[1] > scores[2]
    assert relmse(a * 1.1, a) > relmse(a * 1.01, a) > 0


def test_report_uses_display_space_for_psnr():
    ref = np.full((16, 16, 3), 4.0, np.float32)  # HDR values above 1 clip to white on display
    r = report(ref * 2, ref)
    assert r["psnr"] == float("inf") and r["relmse"] > 0.9


def test_lowfreq_psnr_scores_blotches_not_pixel_noise():
    rng = np.random.default_rng(1)
    ref = np.full((128, 128, 3), 0.4)
    noise = ref + rng.normal(0, 0.05, ref.shape)  # pixel noise: the blur averages it away
    yy, xx = np.mgrid[:128, :128]
    bump = 0.05 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / (2 * 15.0**2))  # a 30 px blotch
    blotch = ref + bump[..., None]
    assert lowfreq_psnr(noise, ref) > psnr(noise, ref) + 15
    assert lowfreq_psnr(blotch, ref) < psnr(blotch, ref) + 1.5
    assert lowfreq_psnr(blotch, ref) < lowfreq_psnr(noise, ref)
    assert report(noise, ref)["psnr_lf"] > report(blotch, ref)["psnr_lf"]
