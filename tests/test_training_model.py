"""training/model.py (and around it): the network: exact receptive fields, the default shape,
multiply-adds, what the kernel head computes.

The tiny dataset and run are made once per session (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import ROOT, bare  # noqa: E402

from blender_denoise_addon.core import transfer as tf  # noqa: E402
from training.model import (  # noqa: E402
    UPSAMPLES,
    ModifiedUNet,
    UNetConfig,
    count_parameters,
)

_EVERY_BRANCH = bare(
    inputs="color,albedo",
    width=4,
    growth=2,
    depth=2,
    kernel_size=3,
    kernel_scales=3,
    kernel_space="both",
    demodulate=True,
    picker_width=2,
    post_kernel=3,
    refine_width=3,
)


def _linearized(cfg: UNetConfig) -> torch.nn.Module:
    """The network with ReLUs removed, so every weight path carries gradient."""
    net = ModifiedUNet(cfg).double()

    def strip(m: torch.nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(m, name, torch.nn.Identity())
            else:
                strip(child)

    strip(net)
    with torch.no_grad():  # branches that start at zero (picker, post kernel, refine) must carry gradient too
        for param in net.parameters():
            if not param.abs().sum():
                param.normal_(0.0, 0.1)
    return net


@pytest.mark.parametrize(
    "cfg",
    [
        bare(inputs="color", width=4, growth=2, depth=1),
        bare(inputs="color", width=4, growth=2, depth=2),
        bare(inputs="color", width=4, growth=2, depth=3),
        bare(inputs="color", width=4, growth=2, depth=3, upsample="transpose"),
        bare(inputs="color", width=4, growth=2, depth=2, kernel_scales=1),
        bare(inputs="color", width=4, growth=2, depth=2, kernel_scales=3, kernel_size=3),
        bare(inputs="color,albedo", width=4, growth=2, depth=2, kernel_scales=2, demodulate=True),
        bare(inputs="color", width=4, growth=2, depth=2, kernel_scales=2, kernel_space="both"),
        bare(
            inputs="color,albedo",
            width=4,
            growth=2,
            depth=2,
            kernel_scales=2,
            kernel_space="both",
            demodulate=True,
            picker_width=2,
        ),
        _EVERY_BRANCH,
    ],
    ids=[
        "d1",
        "d2",
        "d3",
        "d3-transpose",
        "kernel-1scale",
        "kernel-3scales",
        "kernel-demodulate",
        "kernel-both",
        "kernel-both-demodulate",
        "kernel-refine-post-picker",
    ],
)
def test_receptive_field_is_exact_for_every_phase(cfg):
    torch.manual_seed(0)
    net = _linearized(cfg)
    size, radius = 128, 0
    for phase in range(cfg.alignment):
        # Mid-range inputs keep the kernel head's final clamp from cutting gradients.
        x = (torch.rand(1, cfg.in_channels, size, size, dtype=torch.double) * 0.5 + 0.25).requires_grad_(True)
        c = 48 + phase
        net(x)[0, :, c, c].sum().backward()
        ys, xs = torch.nonzero(x.grad.abs().sum((0, 1)), as_tuple=True)
        radius = max(radius, c - int(ys.min()), int(ys.max()) - c, c - int(xs.min()), int(xs.max()) - c)
    assert cfg.receptive_field == 2 * radius + 1
    assert cfg.alignment == 2**cfg.depth


def test_default_model_is_the_shipped_v13_shape_and_macs_match_the_layers():
    """Plain ``train`` trains the recommended architecture: the shipped color + albedo + normal model's."""
    import onnx

    from training.checkpoint import MODEL_CONFIG_KEY

    cfg = UNetConfig()
    shipped = ROOT / "training" / "base" / "denoiser-v13-color-albedo-normal.onnx"
    meta = {p.key: p.value for p in onnx.load(str(shipped), load_external_data=False).metadata_props}
    assert UNetConfig.from_dict(json.loads(meta[MODEL_CONFIG_KEY])) == cfg
    assert count_parameters(ModifiedUNet(cfg)) == 455_215  # the v13 model card's count
    assert (cfg.alignment, cfg.receptive_field) == (16, 219)
    color = UNetConfig(inputs="color")  # no albedo: no demodulation, no picker
    assert (color.demodulate, color.picker_width) == (False, 0)
    for up in UPSAMPLES:
        _check_macs(bare(width=6, growth=4, depth=2, upsample=up))
    _check_macs(bare(width=6, growth=4, depth=2, kernel_size=3, kernel_scales=2))
    _check_macs(dataclasses.replace(_EVERY_BRANCH, width=6, growth=4, kernel_scales=2, picker_width=3, refine_width=5))


def _check_macs(small: UNetConfig) -> None:
    macs = 0.0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            macs += out[0].numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            macs += inp[0][0].numel() * mod.out_channels * 4

    model = ModifiedUNet(small)
    for m in model.modules():
        m.register_forward_hook(hook)
    model(torch.rand(1, small.in_channels, 32, 32))
    conv_macs = small.macs_per_pixel()
    k2 = small.kernel_size**2  # the per-pixel weighted sums are not convolutions
    conv_macs -= sum(4.0**-s * k2 * small.planes for s in range(small.kernel_scales))
    conv_macs -= small.post_kernel**2 * 3
    assert macs / (32 * 32) == pytest.approx(conv_macs)


def _uniform_kernels(net: ModifiedUNet, picker: float) -> None:
    """Zero kernel logits (box filters), coarse blends 0.5, and every picker logit at ``picker``."""
    k2 = net.config.kernel_size**2
    with torch.no_grad():
        for head in net.kernel_heads:
            head.weight.zero_()
            head.bias.zero_()
            head.bias[k2 + 1 :] = picker


def test_demodulation_keeps_albedo_texture():
    """Noisy flat light on a checkerboard albedo: box kernels blur it; demodulated, the texture comes back."""
    cfg = dataclasses.replace(_EVERY_BRANCH, picker_width=0, post_kernel=0, refine_width=0)
    torch.manual_seed(0)
    albedo = torch.full((1, 3, 32, 32), 0.2)
    albedo[..., ::2, ::2] = albedo[..., 1::2, 1::2] = 0.8
    light = 1.0 + 0.3 * torch.randn(1, 1, 32, 32)  # noisy irradiance, mean 1
    x = torch.cat([tf.forward(albedo * light, "log", xp=torch), albedo], dim=1)
    truth = albedo  # clean radiance: albedo x irradiance 1
    errors = {}
    for name, picker in (("plain", -30.0), ("demodulated", 30.0)):
        net = ModifiedUNet(cfg).eval()
        _uniform_kernels(net, picker)
        with torch.no_grad():
            out = tf.inverse(net(x), "log", xp=torch)[..., 4:-4, 4:-4]
        errors[name] = float((out - truth[..., 4:-4, 4:-4]).abs().mean())
    assert errors["demodulated"] < 0.1 < errors["plain"]


def test_kernel_weights_average_neighbours():
    from training.model import apply_kernels

    torch.manual_seed(0)
    planes = torch.rand(2, 3, 9, 11)
    logits = torch.randn(2, 25, 9, 11) * 3
    out = apply_kernels(planes, torch.softmax(logits, dim=1), 5)
    # A convex combination of the 5x5 neighbourhood (edges replicated) stays within its range.
    padded = torch.nn.functional.pad(planes, (2, 2, 2, 2), mode="replicate")
    windows = padded.unfold(2, 5, 1).unfold(3, 5, 1)  # N x C x H x W x 5 x 5
    assert (out >= windows.amin((-2, -1)) - 1e-6).all() and (out <= windows.amax((-2, -1)) + 1e-6).all()
    # A one-hot kernel on offset (dy, dx) = (+1, -2) is a shift.
    onehot = torch.zeros(2, 25, 9, 11)
    onehot[:, 3 * 5 + 0] = 1
    shifted = apply_kernels(planes, onehot, 5)
    torch.testing.assert_close(shifted[:, :, 2:-1, 2:], planes[:, :, 3:, :-2])
