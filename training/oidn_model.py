"""OIDN's U-Nets in PyTorch, so its published weights run (and train) here.

Our own code after the layer sizes OIDN documents in its Apache-2.0 ``training/model.py``
(RenderKit/oidn): 3x3 convolutions with ReLU, 2x2 max pooling, nearest 2x upsampling, each
decoder level the upsampled features then the encoder's pooled ones (the last level: the
input itself), no activation on the output.

- ``base`` (``UNet``): encoder 32, 32, 48, 64, 80, 96; decoder 112, 96, 64/64, 64/32.
- ``small`` (``UNet(small=True)``): every encoder conv 32; decoder 64, 64, 64/32, 32/32.
- ``large`` (``UNetLarge``): two convs per encoder level (64, 96, 128, 192, 256); decoder 192,
  128, 96, then 64, 64 and a third conv to the output.

The ``width`` argument divides every hidden width (never the input or output): the same spatial
operations with a fraction of the work, for measuring the receptive field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Arch:
    name: str
    # Encoder levels, full resolution first; each but the last ends in a 2x2 max pool.
    encoder: tuple[tuple[tuple[str, int], ...], ...]
    # Decoder levels, the deepest first: upsample, concatenate the skip, then these convs.
    decoder: tuple[tuple[tuple[str, int], ...], ...]


ARCHS: dict[str, Arch] = {
    "base": Arch(
        "base",
        encoder=(
            (("enc_conv0", 32), ("enc_conv1", 32)),
            (("enc_conv2", 48),),
            (("enc_conv3", 64),),
            (("enc_conv4", 80),),
            (("enc_conv5a", 96), ("enc_conv5b", 96)),
        ),
        decoder=(
            (("dec_conv4a", 112), ("dec_conv4b", 112)),
            (("dec_conv3a", 96), ("dec_conv3b", 96)),
            (("dec_conv2a", 64), ("dec_conv2b", 64)),
            (("dec_conv1a", 64), ("dec_conv1b", 32), ("dec_conv0", 0)),
        ),
    ),  # fmt: skip
    "small": Arch(
        "small",
        encoder=(
            (("enc_conv0", 32), ("enc_conv1", 32)),
            (("enc_conv2", 32),),
            (("enc_conv3", 32),),
            (("enc_conv4", 32),),
            (("enc_conv5a", 32), ("enc_conv5b", 32)),
        ),
        decoder=(
            (("dec_conv4a", 64), ("dec_conv4b", 64)),
            (("dec_conv3a", 64), ("dec_conv3b", 64)),
            (("dec_conv2a", 64), ("dec_conv2b", 32)),
            (("dec_conv1a", 32), ("dec_conv1b", 32), ("dec_conv0", 0)),
        ),
    ),  # fmt: skip
    "large": Arch(
        "large",
        encoder=(
            (("enc_conv1a", 64), ("enc_conv1b", 64)),
            (("enc_conv2a", 96), ("enc_conv2b", 96)),
            (("enc_conv3a", 128), ("enc_conv3b", 128)),
            (("enc_conv4a", 192), ("enc_conv4b", 192)),
            (("enc_conv5a", 256), ("enc_conv5b", 256)),
        ),
        decoder=(
            (("dec_conv4a", 192), ("dec_conv4b", 192)),
            (("dec_conv3a", 128), ("dec_conv3b", 128)),
            (("dec_conv2a", 96), ("dec_conv2b", 96)),
            (("dec_conv1a", 64), ("dec_conv1b", 64), ("dec_conv1c", 0)),
        ),
    ),  # fmt: skip
}
ALIGNMENT = 16  # four 2x2 poolings


class OidnUNet(nn.Module):
    """One of :data:`ARCHS` with ``in_channels`` inputs and ``out_channels`` outputs (0 in a
    decoder entry above stands for ``out_channels``)."""

    def __init__(self, arch: str, in_channels: int, out_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        self.arch = ARCHS[arch]
        self.in_channels, self.out_channels, self.width = in_channels, out_channels, width

        def w(c: int) -> int:
            return out_channels if c == 0 else max(1, c // width)

        convs: dict[str, nn.Conv2d] = {}
        cin = in_channels
        skips = [in_channels]  # what each decoder level concatenates, the shallowest first
        for i, level in enumerate(self.arch.encoder):
            for name, cout in level:
                convs[name] = nn.Conv2d(cin, w(cout), 3, padding=1)
                cin = w(cout)
            if i < len(self.arch.encoder) - 2:  # pooled outputs of all but the two deepest levels are skips
                skips.append(cin)
        for level, skip in zip(self.arch.decoder, reversed(skips), strict=True):
            cin += skip
            for name, cout in level:
                convs[name] = nn.Conv2d(cin, w(cout), 3, padding=1)
                cin = w(cout)
        self.convs = nn.ModuleDict(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for i, level in enumerate(self.arch.encoder):
            for name, _ in level:
                x = F.relu(self.convs[name](x))
            if i < len(self.arch.encoder) - 1:
                x = F.max_pool2d(x, 2, 2)
                if i < len(self.arch.encoder) - 2:
                    skips.append(x)
        last = self.arch.decoder[-1][-1][0]
        for level in self.arch.decoder:
            x = torch.cat((F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()), dim=1)
            for name, _ in level:
                x = self.convs[name](x)
                if name != last:
                    x = F.relu(x)
        return x

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """OIDN's tensor names (``enc_conv0.weight``...) and the shapes this network needs for them."""
        return {f"{name}.{kind}": tuple(getattr(conv, kind).shape)
                for name, conv in self.convs.items() for kind in ("weight", "bias")}  # fmt: skip

    def padded(self, multiple: int = 16) -> OidnUNet:
        """The same network taking its input with zero channels appended up to a multiple of
        ``multiple`` (their weights zero), as OIDN pads its input: onnxruntime's blocked layout then
        keeps the first convolution and the last concatenation blocked (a third less time)."""
        cin = -(-self.in_channels // multiple) * multiple
        out = OidnUNet(self.arch.name, cin, self.out_channels, self.width)
        first, last_level = self.arch.encoder[0][0][0], self.arch.decoder[-1][0][0]
        state = {}
        for key, value in self.state_dict().items():
            name = key.split(".")[1]
            if key.endswith("weight") and name in (first, last_level):
                extra = torch.zeros(value.shape[0], cin - self.in_channels, *value.shape[2:], dtype=value.dtype)
                value = torch.cat((value, extra), dim=1)  # the input is the last part of both concatenations
            state[key] = value
        out.load_state_dict(state)
        return out.eval()

    def load_named(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, value in tensors.items():
                name, kind = key.rsplit(".", 1)
                getattr(self.convs[name], kind).copy_(value)


def receptive_field(arch: str, in_channels: int) -> int:
    """Measured: the widest input span any output pixel depends on, over every offset on the
    alignment grid, by the gradients of a narrow copy (the same spatial operations) in float64 with
    positive weights (no ReLU is dead, no path cancels)."""
    torch.manual_seed(0)
    net = OidnUNet(arch, in_channels, 1, width=16).double()
    for prm in net.parameters():
        torch.nn.init.uniform_(prm, 0.002, 0.02)
    a, size = ALIGNMENT, 40 * ALIGNMENT
    widest = 1
    for off in range(a):
        x = torch.rand(1, in_channels, a, size, dtype=torch.float64, requires_grad=True)
        c = size // 2 + off
        net(x)[0, :, :, c].sum().backward()
        assert x.grad is not None
        cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
        lo, hi = int(cols.min()), int(cols.max())
        if lo == 0 or hi == size - 1:
            raise RuntimeError("receptive field wider than the probe")
        widest = max(widest, 2 * max(c - lo, hi - c) + 1)
    return widest
