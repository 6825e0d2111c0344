"""Every network the trainer builds, picked by name (``UNetConfig.network``), and how a trained
model file is recognised as one of them.

- ``kpn`` with a denoiser's passes: the Modified U-Net (:mod:`.model`);
- ``kpn`` with guides alone (``albedo``, ``normal``, ``albedo,normal``): the guide prefilter, a
  small kernel-predicting U-Net on 2x2 pixel blocks (:class:`GuideNet`);
- ``oidn-base``, ``oidn-small``, ``oidn-large``: OIDN's UNet, UNetSmall and UNetLarge
  (:mod:`.oidn_model`) behind the model contract (:class:`ContractNet`), denoisers or prefilters,
  so the published weights ``import-oidn`` exports fine-tune like our own.

Each is a torch module from the contract's network-space input to its output, so one training
loop, one export and one scoring path serve them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from blender_denoise_addon.core import transfer as tf
from blender_denoise_addon.core.contract import INPUT_SETS, KEY_INPUTS, KEY_ROLE, PREFILTER_INPUTS
from blender_denoise_addon.core.errors import DenoiseError

from .config import UNetConfig
from .model import ModifiedUNet, apply_kernels, block, softmax_channels, upsample_bilinear
from .oidn_model import ALIGNMENT as OIDN_ALIGNMENT
from .oidn_model import ARCHS, OidnUNet
from .oidn_model import receptive_field as oidn_receptive_field

MODEL_CONFIG_KEY = "training.model_config"  # export metadata: the UNetConfig, as JSON
SUPPORTED = (
    "models exported by python -m training (training.model_config metadata: the Modified U-Net, a guide "
    "prefilter, a tuned OIDN network) and OIDN's UNet, UNetSmall and UNetLarge as import-oidn writes them"
)


class GuideNet(nn.Module):
    """Guides in their own units (N x 3k x H x W) -> cleaned, the same units: a small U-Net on 2x2
    pixel blocks that predicts per-pixel 3x3 kernels, so each output pixel is a weighted average of
    its noisy neighbours, at full resolution and at the 2x and 4x averaged levels, blended coarse to
    fine (the Modified U-Net's head). A guide stays in its range and flat areas stay flat. The blocks
    keep the convolutions at half resolution with 4x the channels: on a CPU, 8-channel convolutions
    at full resolution ran at a third of the speed per operation. Normals work in [0, 1] inside."""

    K = 3

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.names, ch, planes = config.passes, config.channels, config.in_channels
        self.encoders = nn.ModuleList(block(4 * planes if i == 0 else ch[i - 1], c) for i, c in enumerate(ch))
        self.decoders = nn.ModuleList(block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(config.depth)))
        k2 = self.K**2
        # Per level: k*k kernel logits and the weight of the coarser level's low frequencies. Full
        # resolution's come in 2x2 blocks from the half-resolution features.
        self.full_head = nn.Conv2d(ch[0], 4 * (k2 + 1), 1)
        self.heads = nn.ModuleList(nn.Conv2d(ch[s], k2 + 1, 1) for s in range(min(2, config.depth + 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = 3 * self.names.index("normal") if "normal" in self.names else -1
        if n >= 0:  # [-1, 1] <-> [0, 1], the albedo's range
            x = torch.cat([x[:, :n], x[:, n : n + 3] * 0.5 + 0.5, x[:, n + 3 :]], dim=1)
        skips, y = [], F.pixel_unshuffle(x, 2)
        for i, enc in enumerate(self.encoders):
            y = enc(F.max_pool2d(y, 2) if i else y)
            skips.append(y)
        features = [y]
        skips.pop()
        for dec in self.decoders:
            y = dec(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1))
            features.append(y)
        features = features[::-1]  # half resolution, quarter, ...
        k, k2 = self.K, self.K**2
        logits = [F.pixel_shuffle(self.full_head(features[0]), 2)]
        logits += [h(f) for h, f in zip(self.heads, features, strict=False)]
        levels, planes = [], x
        for s, lg in enumerate(logits):
            planes = F.avg_pool2d(planes, 2) if s else planes
            levels.append(apply_kernels(planes, softmax_channels(lg[:, :k2]), k))
        out = levels[-1]
        for s in reversed(range(len(levels) - 1)):  # each finer level takes the coarser one's low frequencies
            fine = levels[s]
            out = fine + torch.sigmoid(logits[s][:, k2:]) * upsample_bilinear(out - F.avg_pool2d(fine, 2))
        if n >= 0:
            out = torch.cat([out[:, :n], out[:, n : n + 3] * 2.0 - 1.0, out[:, n + 3 :]], dim=1)
        return out


class ContractNet(nn.Module):
    """An OIDN network behind the model contract, with OIDN's own input and output processing:
    normals in [-1, 1] to [0, 1] on the way in; the output clamped at 0; the albedo prefilter works
    in sRGB (OIDN's transfer for it), the normal prefilter's output goes back to [-1, 1]. The input
    gets zero channels up to a multiple of 16, as OIDN pads it (their weights zero): onnxruntime's
    blocked layout then keeps the first convolution and the last concatenation blocked."""

    def __init__(self, net: OidnUNet, inputs: tuple[str, ...], role: str) -> None:
        super().__init__()
        self.net, self.role = net.padded(16), role
        self.pad = self.net.in_channels - net.in_channels
        self.normal_at = 3 * inputs.index("normal") if "normal" in inputs else -1
        self.srgb = role == "prefilter" and inputs == ("albedo",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.normal_at
        if n >= 0:
            x = torch.cat((x[:, :n], x[:, n : n + 3] * 0.5 + 0.5, x[:, n + 3 :]), dim=1)
        if self.srgb:
            x = tf.srgb_encode(x, torch)
        if self.pad:  # zero channels up to the network's padded input, as OIDN does
            x = torch.cat((x, torch.zeros_like(x[:, :1]).expand(-1, self.pad, -1, -1)), dim=1)
        y = torch.relu(self.net(x))
        if self.srgb:
            return tf.srgb_decode(y, torch)
        if self.role == "prefilter" and n >= 0:
            return y * 2.0 - 1.0
        return y


def build(config: UNetConfig) -> nn.Module:
    """The network ``config`` names, with fresh weights."""
    if config.kpn_denoiser:
        return ModifiedUNet(config)
    if config.network == "kpn":
        return GuideNet(config)
    out = config.in_channels if config.role == "prefilter" else 3
    net = ContractNet(OidnUNet(config.oidn_arch, config.in_channels, out), config.passes, config.role)
    net.config = config
    return net


def alignment(config: UNetConfig) -> int:
    if config.oidn_arch:
        return OIDN_ALIGNMENT
    return 2 ** (config.depth + 1) if config.role == "prefilter" else 2**config.depth


def receptive_field(config: UNetConfig) -> int:
    """OIDN's and the guide network's: measured from gradients (the Modified U-Net's is computed)."""
    if config.oidn_arch:
        return oidn_receptive_field(config.oidn_arch, config.in_channels)
    torch.manual_seed(0)
    net = GuideNet(config).double()
    for prm in net.parameters():
        torch.nn.init.uniform_(prm, 0.002, 0.02)  # positive: no ReLU is dead, no path cancels, no softmax saturates
    a = alignment(config)
    size, widest = 16 * a, 1
    for off in range(a):
        x = torch.rand(1, config.in_channels, size, size, dtype=torch.float64, requires_grad=True)
        c = size // 2 + off
        net(x)[0, :, c, c].sum().backward()
        assert x.grad is not None
        cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
        widest = max(widest, int(cols.max() - cols.min()) + 1, 2 * max(c - int(cols.min()), int(cols.max()) - c) + 1)
    return widest


def frozen_prefixes(config: UNetConfig, freeze: str) -> tuple[str, ...]:
    """Parameter-name prefixes ``--freeze`` keeps as they are."""
    if freeze != "encoder":
        return ()
    if config.oidn_arch:
        return tuple(f"net.convs.{name}." for level in ARCHS[config.oidn_arch].encoder for name, _ in level)
    return ("encoders.",)


# -- recognising a model file ---------------------------------------------------------------------


def read_onnx_weights(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """An exported model's metadata and its initializers by PyTorch parameter name, float32
    (weights stored as float16 are named ``NAME_fp16``: export.store_fp16)."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - onnx raises several types for a bad file
        raise DenoiseError(f"cannot read {path} as an ONNX model: {e}") from e
    meta = {p.key: p.value for p in proto.metadata_props}
    weights = {
        t.name.removesuffix("_fp16"): torch.from_numpy(numpy_helper.to_array(t).astype("float32"))
        for t in proto.graph.initializer
    }
    return meta, weights


def onnx_config(path: Path, meta: dict[str, str], weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The network an exported model holds: its saved config, else OIDN's architecture whose every
    tensor name and shape it carries (import-oidn's exports); else an error naming what is supported."""
    if MODEL_CONFIG_KEY in meta:
        return json.loads(meta[MODEL_CONFIG_KEY])
    inputs = meta.get(KEY_INPUTS, "")
    role = meta.get(KEY_ROLE, "denoiser")
    if inputs in (PREFILTER_INPUTS if role == "prefilter" else INPUT_SETS):
        for arch in ARCHS:
            config = UNetConfig(network=f"oidn-{arch}", inputs=inputs)
            shapes = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
            if shapes == {k: tuple(v.shape) for k, v in weights.items() if k in shapes} and set(shapes) <= set(weights):
                return {"network": config.network, "inputs": inputs}
    raise DenoiseError(f"{path.name} is not a network we can train; supported: {SUPPORTED}")
