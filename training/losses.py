"""The training loss: w_mse * MSE + w_ssim * (1 - SSIM) + w_l1 * L1 + w_psnr * a display-PSNR term.

MSE, SSIM and L1 are computed in the network's transfer space, where the values lie in
[0, 1], so SSIM uses data_range=1. SSIM is pytorch-msssim's.

The psnr term works on the display images (linear color clipped to [0, 1], sRGB-encoded:
``core.metrics.to_display``), the image that display PSNR scores: each frame's display PSNR
shortfall, ``10 log10(1 + MSE / 1e-5)`` (about 50 dB minus the frame's PSNR, softly capped at
50 dB), averaged over the batch. Evaluation
averages PSNR in dB over frames, which weighs a frame's error relative to how clean it
already is: a pooled MSE lets the worst frames dominate, this term does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from pytorch_msssim import ssim
from torch import nn

from blender_denoise_addon.core import transfer as tf


@dataclass(frozen=True)
class LossWeights:
    mse: float = 1.0
    ssim: float = 1.0
    l1: float = 0.0
    psnr: float = 0.0

    def __post_init__(self) -> None:
        if min(asdict(self).values()) < 0 or not any(asdict(self).values()):
            raise ValueError(f"loss weights must be >= 0 and not all zero, got {self}")


def ssim_window(h: int, w: int, default: int = 11) -> int:
    """The SSIM window for an image: 11 (Wang et al.) or the largest odd size that fits."""
    side = min(h, w, default)
    return max(1, side if side % 2 else side - 1)


def ssim_value(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ssim(pred, target, data_range=1.0, size_average=True, win_size=ssim_window(*pred.shape[-2:]))


# Display MSE of a 50 dB frame: the psnr term stops rewarding frames cleaner than that.
PSNR_FLOOR = 1e-5


class DenoiseLoss(nn.Module):
    """Returns (total, {term: value}) so the log can show each term.

    ``transfer`` is the space ``pred`` and ``target`` are in; the psnr term maps them back
    to linear with each frame's ``exposure`` (N values, or one for all).
    """

    def __init__(self, weights: LossWeights | None = None, transfer: str = "log") -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.transfer = transfer

    def display(self, y: torch.Tensor, exposure: torch.Tensor | float) -> torch.Tensor:
        return tf.srgb_encode(tf.inverse(y, self.transfer, exposure, xp=torch), xp=torch)

    def frame_display_mse(
        self, pred: torch.Tensor, target: torch.Tensor, exposure: torch.Tensor | float
    ) -> torch.Tensor:
        """Each frame's display MSE (N values): what display PSNR scores."""
        if isinstance(exposure, torch.Tensor):
            exposure = exposure.to(pred.dtype).view(-1, 1, 1, 1)
        return torch.mean((self.display(pred, exposure) - self.display(target, exposure)) ** 2, dim=(1, 2, 3))

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, exposure: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if w.mse:
            terms["mse"] = torch.mean((pred - target) ** 2)
        if w.ssim:
            terms["ssim"] = 1.0 - ssim_value(pred, target)
        if w.l1:
            terms["l1"] = torch.mean(torch.abs(pred - target))
        if w.psnr:
            if exposure is None:
                raise ValueError("the psnr loss term needs each frame's exposure")
            frame_mse = self.frame_display_mse(pred, target, exposure)
            terms["psnr"] = torch.mean(10.0 * torch.log10(1.0 + frame_mse / PSNR_FLOOR))
        total = sum((getattr(w, k) * v for k, v in terms.items()), torch.zeros((), device=pred.device))
        return total, {k: float(v.detach()) for k, v in terms.items()}
