"""Image quality metrics, numpy only, shared by the demo, tests and evaluation.

Display metrics (PSNR, SSIM) are computed on the image as a viewer sees it: linear
color clipped to [0, 1] and sRGB-encoded. relMSE works on linear HDR values.
"""

from __future__ import annotations

import numpy as np

from .transfer import srgb_encode


def to_display(linear: np.ndarray) -> np.ndarray:
    return srgb_encode(np.nan_to_num(np.asarray(linear, np.float64)[..., :3], nan=0.0, posinf=1.0, neginf=0.0))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two display images in [0, 1]."""
    err = mse(a, b)
    return float("inf") if err == 0 else float(10 * np.log10(1.0 / err))


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, valid region only (summed-area table)."""
    k = 2 * r + 1
    s = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0)) + ((0, 0),) * (x.ndim - 2)), 0), 1)
    return (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray, radius: int = 3) -> float:
    """Mean SSIM (7x7 uniform window, data range 1) of two display images, averaged over channels."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if min(a.shape[:2]) < 2 * radius + 1:
        radius = max(0, (min(a.shape[:2]) - 1) // 2)
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _box(a, radius), _box(b, radius)
    var_a = _box(a * a, radius) - mu_a**2
    var_b = _box(b * b, radius) - mu_b**2
    cov = _box(a * b, radius) - mu_a * mu_b
    n = (2 * radius + 1) ** 2
    if n > 1:  # unbiased (co)variances, as skimage does by default
        var_a, var_b, cov = (v * n / (n - 1) for v in (var_a, var_b, cov))
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def relmse(x: np.ndarray, ref: np.ndarray, eps: float = 1e-2) -> float:
    """Relative MSE on linear values: mean((x - ref)^2 / (ref^2 + eps))."""
    x = np.asarray(x, np.float64)[..., :3]
    ref = np.asarray(ref, np.float64)[..., :3]
    return float(np.mean((x - ref) ** 2 / (ref**2 + eps)))


LOW_FREQUENCY_RADIUS = 8


def lowfreq_psnr(a: np.ndarray, b: np.ndarray, radius: int = LOW_FREQUENCY_RADIUS) -> float:
    """PSNR of two display images after a box blur of ``radius`` px (a 17x17 mean by default).

    Pixel noise averages out under the blur; blotches 10 to 40 px wide, which a denoiser leaves
    on dim flat walls, do not. So this scores low-frequency error alone.
    """
    r = max(0, min(radius, (min(a.shape[:2]) - 1) // 2))
    return psnr(_box(np.asarray(a, np.float64), r), _box(np.asarray(b, np.float64), r))


def report(result: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and low-frequency PSNR on the display image, relMSE on linear values."""
    da, db = to_display(result), to_display(reference)
    return {
        "psnr": psnr(da, db),
        "ssim": ssim(da, db),
        "relmse": relmse(result, reference),
        "psnr_lf": lowfreq_psnr(da, db),
    }
