"""The training loss: w_mse * MSE + w_ssim * (1 - SSIM), plus optional L1, gradient, display and psnr terms.

Computed in the network's transfer space (the sigmoid output's space), where the
values lie in [0, 1], so SSIM uses data_range=1. SSIM is pytorch-msssim's.

The display term is the MSE of the display images (linear color clipped to [0, 1],
sRGB-encoded: ``core.metrics.to_display``), the image that display PSNR scores. The
transfer-space terms weigh every stop of brightness alike, up to highlights far above
1, where the display clips; this term weighs errors as the display shows them.

The psnr term is each frame's display PSNR shortfall, ``10 log10(1 + MSE / 1e-5)`` (about
50 dB minus the frame's PSNR, softly capped at 50 dB), averaged over the batch. Evaluation
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
    gradient: float = 0.0
    display: float = 0.0
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


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


# Display MSE of a 50 dB frame: the psnr term stops rewarding frames cleaner than that.
PSNR_FLOOR = 1e-5


class DenoiseLoss(nn.Module):
    """Returns (total, {term: value}) so the log can show each term.

    ``transfer`` is the space ``pred`` and ``target`` are in; the display term maps them back
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
        if w.gradient:
            (px, py), (tx, ty) = _gradients(pred), _gradients(target)
            terms["gradient"] = torch.mean(torch.abs(px - tx)) + torch.mean(torch.abs(py - ty))
        if w.display or w.psnr:
            if exposure is None:
                raise ValueError("the display and psnr loss terms need each frame's exposure")
            frame_mse = self.frame_display_mse(pred, target, exposure)
            if w.display:
                terms["display"] = torch.mean(frame_mse)
            if w.psnr:
                terms["psnr"] = torch.mean(10.0 * torch.log10(1.0 + frame_mse / PSNR_FLOOR))
        total = sum((getattr(w, k) * v for k, v in terms.items()), torch.zeros((), device=pred.device))
        return total, {k: float(v.detach()) for k, v in terms.items()}


def picker_loss(
    beta: torch.Tensor, plain: torch.Tensor, remod: torch.Tensor, target: torch.Tensor, block: int
) -> torch.Tensor:
    """Teaches a demodulating model's remodulation weight the best blend, block by block.

    The image loss's gradient on the weight ``beta`` is each pixel's ``(remod - plain) * (out - target)``:
    noisy, and near zero wherever the two results agree, so a picker fitted by it alone can stay
    unsure on surfaces where remodulating is plainly right. Per ``block`` x ``block`` block this
    term's label is the blend weight with the least squared error against the target,
    ``<target - plain, remod - plain> / |remod - plain|^2`` clipped to [0, 1], and its weight is
    ``|remod - plain|^2 / (e_plain + e_remod)`` (at most 1): how much the choice matters next to
    the errors, so blocks count alike whatever their brightness or texture, and blocks where
    the two results agree not at all. The block's mean weight is scored against the label
    (binary cross-entropy), which leaves pixels within a block free to differ.
    """
    pool = torch.nn.functional.avg_pool2d
    d = remod - plain
    gap = pool((d**2).sum(1, keepdim=True), block)
    e_sum = pool(((plain - target) ** 2 + (remod - target) ** 2).sum(1, keepdim=True), block)
    label = (pool(((target - plain) * d).sum(1, keepdim=True), block) / gap.clamp(min=1e-12)).clamp(0.0, 1.0)
    weight = (gap / e_sum.clamp(min=1e-12)).clamp(max=1.0)
    label, weight = label.detach(), weight.detach()
    b = pool(beta, block).clamp(1e-6, 1 - 1e-6)
    bce = -(label * torch.log(b) + (1 - label) * torch.log(1 - b))
    return (weight * bce).sum() / weight.sum().clamp(min=1e-12)
