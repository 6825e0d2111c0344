"""The Modified U-Net: conv encoder, transposed-conv decoder, concat skips, sigmoid output.

The output is the clean image in the transfer space named in the model's metadata
(see ``blender_denoise_addon.core.transfer``); the sigmoid keeps it in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from blender_denoise_addon.core.contract import INPUT_SETS, ModelInfo


@dataclass(frozen=True)
class UNetConfig:
    """Level i (0 = full resolution) has ``width + growth * i`` channels; ``depth`` poolings.

    The default (32, 48, 64, 80, 96) matches OIDN's 'base' encoder widths.
    """

    inputs: str = "color,albedo,normal"
    width: int = 32
    growth: int = 16
    depth: int = 4
    # Add logit(noisy color) before the sigmoid: at initialisation the network returns its
    # input, so short CPU runs learn to remove noise instead of re-learning the image.
    residual: bool = False

    def __post_init__(self) -> None:
        if self.inputs not in INPUT_SETS:
            raise ValueError(f"inputs must be one of {', '.join(INPUT_SETS)}, got {self.inputs!r}")
        if self.width < 1 or self.growth < 0 or self.depth < 1:
            raise ValueError(f"need width >= 1, growth >= 0, depth >= 1; got {self}")

    @property
    def in_channels(self) -> int:
        return 3 * len(INPUT_SETS[self.inputs])

    @property
    def channels(self) -> list[int]:
        return [self.width + self.growth * i for i in range(self.depth + 1)]

    @property
    def alignment(self) -> int:
        return 2**self.depth

    def _ops(self) -> list[str]:
        """Spatial ops in forward order along the deepest path (skips see a subset of it)."""
        ops = ["conv3", "conv3"]
        for _ in range(self.depth):
            ops += ["pool", "conv3", "conv3"]
        for _ in range(self.depth):
            ops += ["up", "conv3", "conv3"]
        return ops + ["conv1"]

    @property
    def receptive_field(self) -> int:
        """Exact receptive field (pixels) for inputs whose origin is on the alignment grid.

        Walks the ops backwards with interval arithmetic for every output phase
        modulo the alignment (2x2 pooling and stride-2 upsampling are not centred,
        so the window depends on the phase) and returns the widest symmetric window.
        """
        ops = self._ops()
        radius = 0
        for x in range(self.alignment):
            lo, hi = x, x
            for op in reversed(ops):
                if op == "conv3":
                    lo, hi = lo - 1, hi + 1
                elif op == "up":  # output pixel p reads coarse pixel p // 2
                    lo, hi = lo // 2, hi // 2
                elif op == "pool":  # coarse pixel p reads fine pixels 2p, 2p + 1
                    lo, hi = 2 * lo, 2 * hi + 1
            radius = max(radius, x - lo, hi - x)
        return 2 * radius + 1

    def model_info(self, transfer: str, name: str = "") -> ModelInfo:
        return ModelInfo(
            inputs=INPUT_SETS[self.inputs],
            transfer=transfer,
            alignment=self.alignment,
            receptive_field=self.receptive_field,
            name=name,
        )

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per full-resolution pixel (convolutions only)."""
        ch = self.channels
        total = 0.0
        cin = self.in_channels
        for i, c in enumerate(ch):
            scale = 4.0**-i
            total += scale * 9 * (cin * c + c * c)
            cin = c
        for i in reversed(range(self.depth)):
            total += 4.0 ** -(i + 1) * 4 * ch[i + 1] ** 2  # 2x2 transposed conv, per coarse pixel
            total += 4.0**-i * 9 * ((ch[i + 1] + ch[i]) * ch[i] + ch[i] * ch[i])
        return total + ch[0] * 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _block(cin: int, cout: int) -> nn.Sequential:
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
            self.encoders.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(config.depth)):
            self.ups.append(nn.Sequential(nn.ConvTranspose2d(ch[i + 1], ch[i + 1], 2, stride=2), nn.ReLU(inplace=True)))
            self.decoders.append(_block(ch[i + 1] + ch[i], ch[i]))
        self.head = nn.Conv2d(ch[0], 3, 1)
        if config.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        color = x[:, :3]
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = enc(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        out = self.head(x)
        if self.config.residual:
            c = color.clamp(1e-4, 1 - 1e-4)
            out = out + torch.log(c / (1 - c))
        return torch.sigmoid(out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
