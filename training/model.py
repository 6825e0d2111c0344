"""The Modified U-Net: conv encoder, decoder, concat skips, and a kernel-prediction head.

The head predicts per-pixel kernels (Bako et al. 2017) at several scales, combined coarse to
fine (Vogels et al. 2018). Each pixel's output is a softmax-weighted average of its noisy
neighbours, so it can never leave the range of the input: no invented highlights, and it
learns from little data. With ``demodulate`` the same kernels also filter the irradiance
(color / albedo), which keeps textures sharp, and a learnt per-pixel weight picks between
the two. ``kernel_space`` says whether kernels average the network's log values or both log
values and linear radiance (unbiased block means), blended per pixel.

The output is the clean image in the transfer space named in the model's metadata
(see ``blender_denoise_addon.core.transfer``), in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blender_denoise_addon.core import transfer as tf

from .config import KERNEL_SPACES, LEGACY_DEFAULTS, REFINE_BOUND, UPSAMPLES, UNetConfig

__all__ = ["KERNEL_SPACES", "LEGACY_DEFAULTS", "REFINE_BOUND", "UPSAMPLES", "ModifiedUNet", "UNetConfig"]

# Added to the albedo before dividing by it, so black albedo does not blow up irradiance.
DEMODULATE_EPS = 0.01
# Parameter prefixes of the branches after the kernel head that start as no change, so
# ``train --init`` can add them to a model without them (and restart them when widening).
LATE_BRANCHES = ("refine.", "post_head.")


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class ModifiedUNet(nn.Module):
    """N x C x H x W (network space) -> N x 3 x H x W in [0, 1]; H, W multiples of the alignment."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        self.encoders = nn.ModuleList()
        cin = config.in_channels
        for c in ch:
            self.encoders.append(block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(config.depth)):
            if config.upsample == "transpose":
                up = nn.Sequential(nn.ConvTranspose2d(ch[i + 1], ch[i + 1], 2, stride=2), nn.ReLU(inplace=True))
            else:
                up = nn.Upsample(scale_factor=2.0, mode="nearest")
            self.ups.append(up)
            self.decoders.append(block(ch[i + 1] + ch[i], ch[i]))
        # Per scale s: k*k kernel logits, a coarse-to-fine blend weight and (used at s = 0)
        # the weights that pick between the filtered planes.
        k2 = config.kernel_size**2
        self.kernel_heads = nn.ModuleList(
            nn.Conv2d(ch[s], k2 + config.blend_channels, 1) for s in range(config.kernel_scales)
        )
        if config.picker_width:
            pw = config.picker_width
            self.picker = nn.Sequential(
                nn.Conv2d(config.in_channels, pw, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(pw, 1, 3, padding=1),
            )
            # Zero out: adding the branch to a trained model starts from what it computed.
            nn.init.zeros_(self.picker[2].weight)
            nn.init.zeros_(self.picker[2].bias)
        if config.post_kernel:
            # Kernel logits and the gain; all zero: a box kernel blended in at gain 0 (no change).
            self.post_head = nn.Conv2d(ch[0], config.post_kernel**2 + 1, 1)
            nn.init.zeros_(self.post_head.weight)
            nn.init.zeros_(self.post_head.bias)
        if config.refine_width:
            rw = config.refine_width
            self.refine = nn.Sequential(
                nn.Conv2d(ch[0] + 3, rw, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(rw, 3, 3, padding=1),
            )
            # Zero out, as the picker: a refined model starts from what it was grown from.
            nn.init.zeros_(self.refine[2].weight)
            nn.init.zeros_(self.refine[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = enc(x)
            skips.append(x)
        features = [x]  # decoder outputs, coarsest first
        skips.pop()  # the bottleneck output is x itself
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
            features.append(x)
        return self._filter(inputs, features[::-1])

    def _filter(self, inputs: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Multi-scale kernel prediction; ``features[s]`` is the decoder output at scale s."""
        cfg = self.config
        k2 = cfg.kernel_size**2
        planes = inputs[:, :3]
        # The inputs already carry the frame's exposure.
        linear = tf.inverse(planes, "log", xp=torch) if cfg.kernel_space != "log" or cfg.demodulate else planes
        if cfg.kernel_space == "both":  # the same kernels on both; channels 3-5 are linear
            planes = torch.cat([planes, linear], dim=1)
        if cfg.demodulate:  # the last three channels: irradiance
            albedo = inputs[:, 3:6] + DEMODULATE_EPS
            irradiance = linear / albedo
            if cfg.kernel_space == "log":
                irradiance = tf.forward(irradiance, "log", xp=torch)
            planes = torch.cat([planes, irradiance], dim=1)
        filtered, blends = [], []
        for s in range(cfg.kernel_scales):
            if s > 0:
                planes = F.avg_pool2d(planes, 2)
            logits = self.kernel_heads[s](features[s])
            if s == 0 and cfg.picker_width:
                logits = torch.cat([logits[:, :-1], logits[:, -1:] + self.picker(inputs)], dim=1)
            filtered.append(apply_kernels(planes, softmax_channels(logits[:, :k2]), cfg.kernel_size))
            blends.append(torch.sigmoid(logits[:, k2:]))
        out = filtered[-1]
        for s in reversed(range(cfg.kernel_scales - 1)):
            # Replace the fine estimate's low frequencies with the coarse estimate's, by a learnt amount.
            fine, alpha = filtered[s], blends[s][:, :1]
            # up() is linear, so up(coarse) - up(down(fine)) is one upsampling of the difference.
            diff = out - F.avg_pool2d(fine, 2)
            out = fine + alpha * upsample_bilinear(diff)
        if cfg.demodulate:  # scale 0's last blend weight picks remodulated over plain
            beta = blends[0][:, -1:]
            if cfg.kernel_space == "log":
                remodulated = tf.inverse(out[:, -3:], "log", xp=torch).clamp(min=0) * albedo
                remodulated = tf.forward(remodulated, "log", xp=torch)
            else:
                remodulated = out[:, -3:].clamp(min=0) * albedo
            out = torch.cat([out[:, :-6], beta * remodulated + (1 - beta) * out[:, -6:-3]], dim=1)
        if cfg.kernel_space == "both":  # scale 0's second blend weight picks linear over log
            gamma = blends[0][:, 1:2]
            out = gamma * tf.forward(out[:, 3:].clamp(min=0.0), "log", xp=torch) + (1 - gamma) * out[:, :3]
        if cfg.post_kernel:
            logits = self.post_head(features[0])
            p2 = cfg.post_kernel**2
            gain = logits[:, p2:].clamp(-1.0, 1.0)
            out = out + gain * (apply_kernels(out, softmax_channels(logits[:, :p2]), cfg.post_kernel) - out)
        if cfg.refine_width:
            out = out + cfg.refine_bound * torch.tanh(self.refine(torch.cat([features[0], out], dim=1)))
        return out.clamp(0.0, 1.0)


def softmax_channels(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, spelt out: onnxruntime's Softmax on axis 1 of NCHW is ~5x slower."""
    e = torch.exp(logits - logits.amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


def upsample_bilinear(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def apply_kernels(planes: torch.Tensor, weights: torch.Tensor, size: int) -> torch.Tensor:
    """Per-pixel weighted sum over the ``size`` x ``size`` neighbourhood (edges replicated).

    ``weights`` is N x size*size x H x W, row-major offsets; a loop of shifted slices keeps
    memory at one extra frame instead of size*size (and exports to plain Slice/Mul/Add).
    """
    r = size // 2
    h, w = planes.shape[-2:]
    padded = F.pad(planes, (r, r, r, r), mode="replicate") if r else planes
    out = weights[:, :1] * padded[:, :, :h, :w]
    for i in range(1, size * size):
        dy, dx = divmod(i, size)
        out = out + weights[:, i : i + 1] * padded[:, :, dy : dy + h, dx : dx + w]
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
