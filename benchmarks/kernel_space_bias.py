"""How biased are block means of noisy renders in the kernel head's two spaces?

    .venv/bin/python benchmarks/kernel_space_bias.py [--data data/test128] [--spp 4] [--scenes 000012 000006 ...]

For each scene: the noisy and the clean frame, each exposed like the network's input
(``frame_exposure`` of the noisy one), box-averaged over 2^s x 2^s blocks for scales
s = 1..4 (what the kernel head's coarse scales start from), either on the ``log``
transfer's values or on linear radiance. The bias is the mean of the noisy block means
over the mean of the clean ones, minus 1, both taken back to linear radiance. An
unbiased space gives about 0; the ``log`` space is negative (a mean of logs is the log
of a geometric mean, and noisy radiance is skewed).

With ``--model`` (an exported kernel-head model) it also prints, per scene, the median
coarse-to-fine blend weight the model uses at each scale (0: that scale's coarser estimate
is ignored). Exports without ``training.model_config`` metadata (v1, v2) need the shape
flags; the defaults are the v2 shape.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blender_denoise_addon.core import transfer as tf  # noqa: E402
from blender_denoise_addon.core.denoise import (  # noqa: E402
    frame_exposure,
    prepare_albedo,
    prepare_normal,
    sanitize_color,
)
from blender_denoise_addon.core.imageio import read_exr  # noqa: E402


def block_means(x: np.ndarray, k: int) -> np.ndarray:
    h, w = (x.shape[0] // k) * k, (x.shape[1] // k) * k
    return x[:h, :w].reshape(h // k, k, w // k, k, -1).mean((1, 3))


def bias(noisy: np.ndarray, clean: np.ndarray, space: str, k: int) -> float:
    e = frame_exposure(noisy, "log")
    if space == "log":
        means = [tf.inverse(block_means(tf.forward(x, "log", e), k), "log", e) for x in (noisy, clean)]
    else:
        means = [block_means(x, k) for x in (noisy, clean)]
    return float(means[0].mean() / means[1].mean() - 1.0)


def blend_medians(model: str, shape: dict, scene_input: np.ndarray) -> list[float]:
    import torch

    from training.model import ModifiedUNet, UNetConfig
    from training.train import initial_config, initial_weights

    saved = initial_config(model)  # exports since v3 carry their config; older ones need the flags
    cfg = UNetConfig(**saved) if saved else UNetConfig(head="kernel", kernel_size=3, kernel_scales=5, depth=4, **shape)
    net = ModifiedUNet(cfg).eval()
    net.load_state_dict(initial_weights(model))
    feats: list[torch.Tensor] = []
    for dec in net.decoders:
        dec.register_forward_hook(lambda _m, _i, out: feats.append(out))
    x = torch.from_numpy(np.ascontiguousarray(scene_input.transpose(2, 0, 1)[None], np.float32))
    with torch.no_grad():
        net(x)
        # Decoder outputs come coarse to fine: reversed, index s is the one at 1/2^s. The coarsest
        # scale (the bottleneck) has no coarser one to blend in.
        heads = [net.kernel_heads[s](f) for s, f in enumerate(feats[::-1][: cfg.kernel_scales - 1])]
    k2 = cfg.kernel_size**2
    return [float(torch.sigmoid(h[:, k2]).median()) for h in heads]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/test128", help="a generated dataset (exr/<scene>/...)")
    ap.add_argument("--spp", type=int, default=4, help="noisy spp level")
    ap.add_argument("--scenes", nargs="+", default=["000012", "000006", "000001", "000003"])
    ap.add_argument("--model", default="", help="an exported kernel-head .onnx: also print its blend weights")
    ap.add_argument("--inputs", default="color,albedo,normal", help="with --model: its inputs")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--growth", type=int, default=8)
    ap.add_argument("--upsample", default="transpose")
    ap.add_argument("--kernel-space", default="log")
    args = ap.parse_args()
    shape = {"inputs": args.inputs, "width": args.width, "growth": args.growth, "upsample": args.upsample}
    shape["kernel_space"] = args.kernel_space
    scales = (1, 2, 3, 4)
    print(f"{'scene':8s} {'space':7s} " + " ".join(f"{2**s}x{2**s} blocks".rjust(14) for s in scales))
    for scene in args.scenes:
        folder = Path(args.data) / "exr" / scene
        noisy = sanitize_color(read_exr(folder / f"noisy_{args.spp:04d}spp.exr").color[..., :3])
        clean = read_exr(folder / "clean.exr").color[..., :3].astype(np.float64)
        for space in ("log", "linear"):
            row = " ".join(f"{bias(noisy.astype(np.float64), clean, space, 2**s):+14.1%}" for s in scales)
            print(f"{scene:8s} {space:7s} {row}")
        if args.model:
            frame = read_exr(folder / f"noisy_{args.spp:04d}spp.exr")
            parts = [tf.forward(noisy, "log", frame_exposure(noisy, "log"))]
            if "albedo" in args.inputs:
                parts.append(prepare_albedo(frame.albedo))
            if "normal" in args.inputs:
                parts.append(prepare_normal(frame.normal))
            medians = blend_medians(args.model, shape, np.concatenate(parts, -1))
            print(
                f"{scene:8s} blend weight medians, scale 0..{len(medians) - 1}: "
                + ", ".join(f"{m:.2g}" for m in medians)
            )


if __name__ == "__main__":
    main()
