"""The Modified U-Net: conv encoder, transposed-conv decoder, concat skips, and one of two heads.

- ``direct``: a 1x1 conv and a sigmoid predict the clean image itself.
- ``kernel``: kernel prediction (Bako et al. 2017) at several scales, combined coarse to
  fine (Vogels et al. 2018). Each pixel's output is a softmax-weighted average of its
  noisy neighbours, so it can never leave the range of the input: no invented highlights,
  and it learns from little data. With ``demodulate`` the same kernels also filter the
  irradiance (color / albedo), which keeps textures sharp, and a learnt per-pixel weight
  picks between the two. ``kernel_space`` says whether kernels average the network's log
  values, linear radiance (unbiased block means) or both, blended per pixel.

The output is the clean image in the transfer space named in the model's metadata
(see ``blender_denoise_addon.core.transfer``), in [0, 1].
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from blender_denoise_addon.core import transfer as tf
from blender_denoise_addon.core.contract import INPUT_SETS, ModelInfo

HEADS = ("direct", "kernel")
# 'transpose': a learnt 2x2 stride-2 transposed conv (v1/v2 models). 'nearest': pixel
# repetition, as OIDN does; the decoder conv after it learns the rest, and onnxruntime keeps
# the whole U-Net in its blocked (NCHWc) layout, which ConvTranspose breaks.
UPSAMPLES = ("transpose", "nearest")
KERNEL_SPACES = ("log", "linear", "both")
# Settings saved before their option existed (configs without the key) meant these values.
LEGACY_DEFAULTS: dict[str, Any] = {"upsample": "transpose"}
# Added to the albedo before dividing by it, so black albedo does not blow up irradiance.
DEMODULATE_EPS = 0.01
# Default largest correction of the refine branch, in the log transfer's units (1/24 is one stop).
REFINE_BOUND = 0.05
# Parameter prefixes of the branches after the kernel head that start as no change, so
# ``train --init`` can add them to a model without them (and restart them when widening).
LATE_BRANCHES = ("refine.", "post_head.", "up_heads.")
# --up-kernel: how far below the smallest bilinear weight (1/16) the logits of the coarse
# neighbours that bilinear upsampling does not read start: e^-8, so together they hold 0.01 % of
# each kernel and a grown model starts nearly at its source's function (exact zeros never learn).
UP_FAR_LOGIT = 8.0


@dataclass(frozen=True)
class UNetConfig:
    """Level i (0 = full resolution) has ``width + growth * i`` channels; ``depth`` poolings.

    The default (32, 48, 64, 80, 96) matches OIDN's 'base' encoder widths.
    """

    inputs: str = "color,albedo,normal"
    width: int = 32
    growth: int = 16
    depth: int = 4
    # Channels at full resolution instead of ``width`` (0: width): the level whose features place
    # edges for the full-resolution kernels, widened alone.
    first_width: int = 0
    # Add logit(noisy color) before the sigmoid: at initialisation the network returns its
    # input, so short CPU runs learn to remove noise instead of re-learning the image.
    residual: bool = False
    head: str = "direct"
    kernel_size: int = 5  # per scale, odd
    kernel_scales: int = 4  # full resolution plus this many - 1 halvings, at most depth + 1
    # Kernel head with albedo: the same kernels also filter irradiance (color / albedo), multiplied
    # back by the albedo afterwards, with a learnt per-pixel weight; in kernel_space 'log' the
    # irradiance is averaged in log, otherwise linearly. Needs the log transfer.
    demodulate: bool = False
    # With demodulate: channels of a small two-layer 3x3 conv branch on the inputs whose output
    # adds to the demodulated-vs-plain logit: it sees pixel-level albedo noise directly (0: none).
    picker_width: int = 0
    # With picker_width: the branch also sees the plain and remodulated results (in the log
    # transfer), so it can compare them: where the plain one is blurred across an albedo edge
    # that the remodulated one keeps sharp, for instance.
    picker_results: bool = False
    upsample: str = "nearest"
    # Kernel head: channels of a two-layer 3x3 conv branch on the last decoder features and the
    # filtered result that adds a bounded correction (REFINE_BOUND) to it (0: none). A weighted
    # average of noisy neighbours cannot rebuild an edge the coarse scales blurred; the
    # correction can, and its bound keeps it from inventing highlights.
    refine_width: int = 0
    # With refine_width: the largest correction (tanh times this). It also scales how strongly the
    # branch's loss gradient reaches the shared features, next to the kernel head's.
    refine_bound: float = REFINE_BOUND
    # Kernel head: size of one more per-pixel softmax kernel at full resolution, run over the
    # combined result and blended in by a learnt gain in [-1, 1] (0: none). The finest scale's
    # 3x3 average leaves pixel-level noise in flat areas that the coarse scales cannot replace
    # (they swap in low frequencies only); a negative gain sharpens (unsharp masking) instead.
    post_kernel: int = 0
    # Kernel head: the coarse-to-fine combination upsamples each coarser estimate with a per-pixel
    # softmax kernel over its 3x3 coarse neighbours, predicted from the finer scale's features
    # and started at bilinear's weights, instead of fixed bilinear upsampling. Bilinear takes
    # the low frequencies from the coarse pixels on both sides of an edge, which leaves a band
    # several pixels wide along it (test scene 12's checker); a pixel can now take them from
    # the coarse pixels on its own side.
    up_kernel: bool = False
    # Where the kernel head averages: 'log' (the network space), 'linear' (exposure-scaled
    # radiance), or 'both' with a learnt per-pixel blend. A mean of log values is a biased, too
    # dark estimate of noisy radiance (at 4 spp by 10-94 % over 4x4 blocks on the test scenes),
    # which makes the coarse scales useless; a linear mean spreads fireflies.
    kernel_space: str = "log"

    def __post_init__(self) -> None:
        if self.inputs not in INPUT_SETS:
            raise ValueError(f"inputs must be one of {', '.join(INPUT_SETS)}, got {self.inputs!r}")
        if self.width < 1 or self.growth < 0 or self.depth < 1 or self.first_width < 0:
            raise ValueError(f"need width >= 1, growth >= 0, depth >= 1, first_width >= 0; got {self}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.head == "kernel":
            if self.residual:
                raise ValueError("residual applies to the direct head only")
            if self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
            if not 1 <= self.kernel_scales <= self.depth + 1:
                raise ValueError(f"kernel_scales must be in 1..{self.depth + 1}, got {self.kernel_scales}")
        if self.demodulate and (self.head != "kernel" or "albedo" not in INPUT_SETS[self.inputs]):
            raise ValueError("demodulate needs the kernel head and an albedo input")
        if self.picker_width and not self.demodulate:
            raise ValueError("picker_width needs demodulate")
        if self.picker_results and not self.picker_width:
            raise ValueError("picker_results needs picker_width")
        if (self.refine_width or self.post_kernel or self.up_kernel) and self.head != "kernel":
            raise ValueError("refine_width, post_kernel and up_kernel need the kernel head")
        if not self.refine_bound > 0:
            raise ValueError(f"refine_bound must be > 0, got {self.refine_bound}")
        if self.post_kernel < 0 or (self.post_kernel and self.post_kernel % 2 == 0):
            raise ValueError(f"post_kernel must be odd (or 0: none), got {self.post_kernel}")
        if self.kernel_space not in KERNEL_SPACES:
            raise ValueError(f"kernel_space must be one of {', '.join(KERNEL_SPACES)}, got {self.kernel_space!r}")
        if self.kernel_space != "log" and self.head != "kernel":
            raise ValueError(f"kernel_space {self.kernel_space!r} needs the kernel head")

    @property
    def in_channels(self) -> int:
        return 3 * len(INPUT_SETS[self.inputs])

    @property
    def channels(self) -> list[int]:
        ch = [self.width + self.growth * i for i in range(self.depth + 1)]
        return [self.first_width or ch[0], *ch[1:]]

    @property
    def planes(self) -> int:
        """Channels the kernel head filters: log and/or linear color, then demodulated irradiance."""
        return 3 * ((2 if self.kernel_space == "both" else 1) + self.demodulate)

    @property
    def blend_channels(self) -> int:
        """Per-scale blend logits: coarse-to-fine, then the pickers (linear vs log, then demodulated).

        Always at least two, so models saved before 'both' and 'demodulate' combined keep their shapes.
        """
        return 1 + max(1, (self.kernel_space == "both") + self.demodulate)

    @property
    def picker_in_channels(self) -> int:
        """The picker branch reads the inputs, and with picker_results the two results (3 + 3)."""
        return self.in_channels + 6 * self.picker_results

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
        """Receptive field (pixels) for inputs whose origin is on the alignment grid.

        Walks the ops backwards with interval arithmetic for every output phase
        modulo the alignment (2x2 pooling and stride-2 upsampling are not centred,
        so the window depends on the phase) and returns the widest symmetric window.
        The deepest path bounds every skip path, so following it is exact.
        """
        radius = 0
        # The picker on the results, the post kernel and the refine branch read the combined result further out.
        r = (2 if self.refine_width else 0) + self.post_kernel // 2 + (2 if self.picker_results else 0)
        for x in range(self.alignment):
            lo, hi = self._kernel_deps(0, x - r, x + r) if self.head == "kernel" else _walk(self._ops(), x, x)
            radius = max(radius, x - lo, hi - x)
        return 2 * radius + 1

    def _feature_ops(self, level: int) -> list[str]:
        """Ops along the deepest path to the decoder output at ``level``."""
        return self._ops()[: 2 + 3 * self.depth + 3 * (self.depth - level)]

    def _kernel_deps(self, level: int, lo: int, hi: int) -> tuple[int, int]:
        """Input pixels that the kernel head's output at ``level`` pixels [lo, hi] reads."""

        def filtered(lo: int, hi: int) -> tuple[int, int]:  # kernels (features) and the pooled planes
            f = _walk(self._feature_ops(level), lo, hi)
            r, step = self.kernel_size // 2, 2**level
            return min(f[0], (lo - r) * step), max(f[1], (hi + r) * step + step - 1)

        out = filtered(lo, hi)
        if level + 1 < self.kernel_scales:
            if self.up_kernel:  # the 3x3 coarse neighbours of each pixel's coarse pixel
                clo, chi = lo // 2 - 1, hi // 2 + 1
            else:  # bilinear upsampling reads one coarse pixel further
                clo, chi = (lo - 1) // 2, (hi + 1) // 2
            for dep in (self._kernel_deps(level + 1, clo, chi), filtered(2 * clo, 2 * chi + 1)):
                out = (min(out[0], dep[0]), max(out[1], dep[1]))
        return out

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
            if self.upsample == "transpose":
                total += 4.0 ** -(i + 1) * 4 * ch[i + 1] ** 2  # 2x2 transposed conv, per coarse pixel
            total += 4.0**-i * 9 * ((ch[i + 1] + ch[i]) * ch[i] + ch[i] * ch[i])
        if self.head == "direct":
            return total + ch[0] * 3
        # 1x1 convs to kernel logits (+ blend weights) per scale, then the weighted sums.
        k2 = self.kernel_size**2
        for s in range(self.kernel_scales):
            total += 4.0**-s * (ch[s] * (k2 + self.blend_channels) + k2 * self.planes)
            if self.up_kernel and s + 1 < self.kernel_scales:  # its logits, then the weighted sum
                total += 4.0**-s * 9 * (ch[s] + self.planes)
        total += 9 * (self.picker_in_channels * self.picker_width + self.picker_width)
        total += 9 * ((self.channels[0] + 3) * self.refine_width + self.refine_width * 3)
        p2 = self.post_kernel**2
        return total + (self.channels[0] * (p2 + 1) + p2 * 3 if self.post_kernel else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Pick(NamedTuple):
    """A demodulating model's choice at full resolution: ``beta`` (N x 1 x H x W) weighs the
    remodulated result over the plain one; both results are in the network's (log) space."""

    beta: torch.Tensor
    plain: torch.Tensor
    remod: torch.Tensor


def _walk(ops: list[str], lo: int, hi: int) -> tuple[int, int]:
    """The input interval that output pixels [lo, hi] of ``ops`` (in forward order) read."""
    for op in reversed(ops):
        if op == "conv3":
            lo, hi = lo - 1, hi + 1
        elif op == "up":  # output pixel p reads coarse pixel p // 2
            lo, hi = lo // 2, hi // 2
        elif op == "pool":  # coarse pixel p reads fine pixels 2p, 2p + 1
            lo, hi = 2 * lo, 2 * hi + 1
    return lo, hi


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
        # With keep_pick (training --w-picker), forward in training mode leaves the remodulation
        # choice in pick; validation and export skip that work.
        self.keep_pick = False
        self.pick: Pick | None = None
        # With keep_features (training --w-guides), forward in training mode leaves the
        # full-resolution decoder features in features, for a training-only head to read.
        self.keep_features = False
        self.features: torch.Tensor | None = None
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
            if config.upsample == "transpose":
                up = nn.Sequential(nn.ConvTranspose2d(ch[i + 1], ch[i + 1], 2, stride=2), nn.ReLU(inplace=True))
            else:
                up = nn.Upsample(scale_factor=2.0, mode="nearest")
            self.ups.append(up)
            self.decoders.append(_block(ch[i + 1] + ch[i], ch[i]))
        if config.head == "kernel":
            # Per scale s: k*k kernel logits, a coarse-to-fine blend weight and (used at s = 0)
            # the weights that pick between the filtered planes.
            k2 = config.kernel_size**2
            self.kernel_heads = nn.ModuleList(
                nn.Conv2d(ch[s], k2 + config.blend_channels, 1) for s in range(config.kernel_scales)
            )
            if config.picker_width:
                pw = config.picker_width
                self.picker = nn.Sequential(
                    nn.Conv2d(config.picker_in_channels, pw, 3, padding=1),
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
            if config.up_kernel:
                # Zero: the kernels start at the bilinear logits alone (_kernel_upsample).
                self.up_heads = nn.ModuleList(nn.Conv2d(ch[s], 9, 1) for s in range(config.kernel_scales - 1))
                for head in self.up_heads:
                    nn.init.zeros_(head.weight)
                    nn.init.zeros_(head.bias)
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
        else:
            self.head = nn.Conv2d(ch[0], 3, 1)
            if config.residual:
                nn.init.zeros_(self.head.weight)
                nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x
        color = x[:, :3]
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
        if self.keep_features and self.training:
            self.features = x
        if self.config.head == "kernel":
            return self._filter(inputs, features[::-1])
        out = self.head(x)
        if self.config.residual:
            c = color.clamp(1e-4, 1 - 1e-4)
            out = out + torch.log(c / (1 - c))
        return torch.sigmoid(out)

    def _filter(self, inputs: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Multi-scale kernel prediction; ``features[s]`` is the decoder output at scale s."""
        cfg = self.config
        k2 = cfg.kernel_size**2
        planes = inputs[:, :3]
        # The inputs already carry the frame's exposure.
        linear = tf.inverse(planes, "log", xp=torch) if cfg.kernel_space != "log" or cfg.demodulate else planes
        if cfg.kernel_space == "linear":
            planes = linear
        elif cfg.kernel_space == "both":  # the same kernels on both; channels 3-5 are linear
            planes = torch.cat([planes, linear], dim=1)
        if cfg.demodulate:  # the last three channels: irradiance
            albedo = inputs[:, 3:6] + DEMODULATE_EPS
            irradiance = linear / albedo
            if cfg.kernel_space == "log":
                irradiance = tf.forward(irradiance, "log", xp=torch)
            planes = torch.cat([planes, irradiance], dim=1)
        filtered, blends = [], []
        picker_logit: torch.Tensor | None = None  # scale 0's, when the picker reads the results
        for s in range(cfg.kernel_scales):
            if s > 0:
                planes = F.avg_pool2d(planes, 2)
            logits = self.kernel_heads[s](features[s])
            if s == 0 and cfg.picker_results:
                picker_logit = logits[:, -1:]  # the branch is added once both results exist
            elif s == 0 and cfg.picker_width:
                logits = torch.cat([logits[:, :-1], logits[:, -1:] + self.picker(inputs)], dim=1)
            filtered.append(apply_kernels(planes, _softmax_channels(logits[:, :k2]), cfg.kernel_size))
            blends.append(torch.sigmoid(logits[:, k2:]))
        out = filtered[-1]
        for s in reversed(range(cfg.kernel_scales - 1)):
            # Replace the fine estimate's low frequencies with the coarse estimate's, by a learnt amount.
            fine, alpha = filtered[s], blends[s][:, :1]
            # up() is linear, so up(coarse) - up(down(fine)) is one upsampling of the difference.
            diff = out - F.avg_pool2d(fine, 2)
            if cfg.up_kernel:
                out = fine + alpha * _kernel_upsample(diff, self.up_heads[s](features[s]))
            else:
                out = fine + alpha * _upsample(diff)
        if cfg.demodulate:  # scale 0's last blend weight picks remodulated over plain
            beta = blends[0][:, -1:]
            if cfg.kernel_space == "log":
                remodulated = tf.inverse(out[:, -3:], "log", xp=torch).clamp(min=0) * albedo
                remodulated = tf.forward(remodulated, "log", xp=torch)
            else:
                remodulated = out[:, -3:].clamp(min=0) * albedo
            keep = self.keep_pick and self.training
            if cfg.picker_results or keep:
                plain, remod = out[:, -6:-3], remodulated  # in the network's (log) space
                if cfg.kernel_space != "log":
                    plain = tf.forward(plain.clamp(min=0.0), "log", xp=torch)
                    remod = tf.forward(remod, "log", xp=torch)
            if cfg.picker_results:
                assert picker_logit is not None
                beta = torch.sigmoid(picker_logit + self.picker(torch.cat([inputs, plain, remod], dim=1)))
            if keep:
                self.pick = Pick(beta, plain, remod)
            out = torch.cat([out[:, :-6], beta * remodulated + (1 - beta) * out[:, -6:-3]], dim=1)
        if cfg.kernel_space == "linear":
            out = tf.forward(out.clamp(min=0.0), "log", xp=torch)
        elif cfg.kernel_space == "both":  # scale 0's second blend weight picks linear over log
            gamma = blends[0][:, 1:2]
            out = gamma * tf.forward(out[:, 3:].clamp(min=0.0), "log", xp=torch) + (1 - gamma) * out[:, :3]
        if cfg.post_kernel:
            logits = self.post_head(features[0])
            p2 = cfg.post_kernel**2
            gain = logits[:, p2:].clamp(-1.0, 1.0)
            out = out + gain * (apply_kernels(out, _softmax_channels(logits[:, :p2]), cfg.post_kernel) - out)
        if cfg.refine_width:
            out = out + cfg.refine_bound * torch.tanh(self.refine(torch.cat([features[0], out], dim=1)))
        return out.clamp(0.0, 1.0)


class GuideHead(nn.Module):
    """Training only (``--w-guides``): albedo and normal from the full-resolution decoder features.

    A color-only network never sees the passes that mark surface and texture edges; asking
    its features to predict them (multi-task) teaches the features those edges, which the
    kernel head's blend weights and kernels then read. Export never sees this head.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 6, 1)
        # Zero out: the features first get a gradient once the head has learnt a little.
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def loss(self, features: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        target = torch.cat([batch["guide_albedo"], batch["guide_normal"]], dim=1).to(features.dtype)
        return torch.mean(torch.abs(self.conv(features) - target))


def _softmax_channels(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, spelt out: onnxruntime's Softmax on axis 1 of NCHW is ~5x slower."""
    e = torch.exp(logits - logits.amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


@functools.cache  # built once, not on every forward pass; callers only read it
def _bilinear_logits(far: float = UP_FAR_LOGIT) -> torch.Tensor:
    """1 x 9 x 2 x 2: the log weights that 2x bilinear upsampling (align_corners False) gives the
    3x3 coarse neighbours (row-major offsets) of a pixel at each row and column parity; the
    neighbours it does not read get ``far`` below its smallest weight."""
    rows = ((0.25, 0.75, 0.0), (0.0, 0.75, 0.25))  # parity 0 reads the coarse row above, 1 below
    table = torch.empty(1, 9, 2, 2)
    for py in range(2):
        for px in range(2):
            for i in range(9):
                w = rows[py][i // 3] * rows[px][i % 3]
                table[0, i, py, px] = math.log(w) if w else math.log(1 / 16) - far
    return table


def _kernel_upsample(coarse: torch.Tensor, logits: torch.Tensor, far: float = UP_FAR_LOGIT) -> torch.Tensor:
    """2x upsampling of ``coarse`` where each pixel averages its coarse pixel's 3x3 neighbours
    (edges replicated) with softmax(``logits`` + the bilinear logits of its parity); zero
    ``logits`` give bilinear upsampling, up to the e^-``far`` weights."""
    h, w = logits.shape[-2:]
    weights = _softmax_channels(logits + _bilinear_logits(far).to(logits).repeat(1, 1, h // 2, w // 2))
    # Pixel y's coarse row is y // 2; in the padded, repeated frame its offset d lies at y + 2 + 2d.
    up = F.interpolate(F.pad(coarse, (1, 1, 1, 1), mode="replicate"), scale_factor=2.0, mode="nearest")
    out = weights[:, :1] * up[:, :, :h, :w]
    for i in range(1, 9):
        dy, dx = divmod(i, 3)
        out = out + weights[:, i : i + 1] * up[:, :, 2 * dy : 2 * dy + h, 2 * dx : 2 * dx + w]
    return out


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
