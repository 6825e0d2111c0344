"""Where does remodulating with the albedo help, and does the model's learnt weight find it?

    .venv/bin/python benchmarks/demodulation_pick.py --model M.onnx|--checkpoint C.pt [--data data/test128]
        [--spp 4] [--block 8] [--scenes 000012 000013 ...]

For a demodulating kernel-head model (``training train --demodulate``), per test scene at
one spp: display PSNR against the clean frame with the model's own per-pixel weight
(``learnt``), with that weight forced to 0 (``plain``: the kernels on color only) and to 1
(``remod``: filtered irradiance times the albedo everywhere), and an ``oracle`` that takes
remod or plain per ``--block`` x ``--block`` block, whichever is closer to the clean
frame there (it peeks at the answer: an upper bound for a block-wise picker, not a
method). ``w50``/``w90`` are the median and 90th percentile of the learnt weight.
Full frames through the PyTorch model, as ``evaluate`` does through ONNX.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blender_denoise_addon.core import metrics  # noqa: E402
from blender_denoise_addon.core import transfer as tf  # noqa: E402
from blender_denoise_addon.core.denoise import _network_input, frame_exposure, sanitize_color  # noqa: E402
from blender_denoise_addon.core.imageio import read_image  # noqa: E402
from blender_denoise_addon.core.tiling import plan_tiles  # noqa: E402


def load(args: argparse.Namespace):  # -> (ModifiedUNet, UNetConfig)
    from blender_denoise_addon.core.errors import DenoiseError
    from training.train import load_network

    path = args.checkpoint or args.model
    try:
        net = load_network(path)
    except DenoiseError as e:
        sys.exit(str(e))
    if not net.config.demodulate:
        sys.exit(f"{path} does not demodulate (trained without --demodulate)")
    return net, net.config


def main() -> None:
    import torch

    from training.dataset import find_pairs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="an exported .onnx (v3 or later: it carries its config)")
    which.add_argument("--checkpoint", help="a training checkpoint (.pt)")
    ap.add_argument("--data", default="data/test128")
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--block", type=int, default=8, help="oracle block edge in pixels")
    ap.add_argument("--scenes", nargs="*", default=[], help="only these scenes (default: all)")
    args = ap.parse_args()

    net, cfg = load(args)
    head = net.kernel_heads[0]
    caught: dict[str, torch.Tensor] = {}
    head.register_forward_hook(lambda m, i, o: caught.__setitem__("head", o))
    if cfg.picker_width:
        net.picker.register_forward_hook(lambda m, i, o: caught.__setitem__("picker", o))
    pairs = [p for p in find_pairs(args.data, "exr", [args.spp]) if not args.scenes or p.scene in args.scenes]
    if not pairs:
        sys.exit(f"no {args.spp} spp EXR pairs in {args.data}")
    names = ("learnt", "plain", "remod", "oracle")
    totals: dict[str, list[float]] = {n: [] for n in names}
    print(f"{'scene':8s} " + " ".join(f"{n:>7s}" for n in names) + f" {'w50':>6s} {'w90':>6s}")
    for pair in pairs:
        frame = read_image(pair.noisy)
        h, w = frame.color.shape[:2]
        clean = metrics.to_display(sanitize_color(read_image(pair.clean).color[..., :3]))
        e = frame_exposure(frame.color, "log")
        tile = plan_tiles(h, w, "full", 1, 0, cfg.alignment, 0)[0]
        x = torch.from_numpy(_network_input(tile, frame.color, frame.albedo, frame.normal, "log", e))[None]
        shown: dict[str, np.ndarray] = {}
        bias = head.bias.data.clone()
        for name, forced in (("learnt", None), ("plain", -30.0), ("remod", 30.0)):
            # A logit of +-30 saturates the sigmoid whatever the features and the branch add.
            if forced is not None:
                head.bias.data[-1] = forced
            with torch.no_grad():
                y = net(x)[0, :, :h, :w].permute(1, 2, 0).numpy()
            head.bias.data.copy_(bias)
            shown[name] = metrics.to_display(tf.inverse(y, "log", e))
            if name == "learnt":
                logit = caught["head"][0, -1] + (caught["picker"][0, 0] if "picker" in caught else 0)
                weight = torch.sigmoid(logit)[:h, :w].flatten()
        err = {n: ((shown[n] - clean) ** 2).sum(-1) for n in ("plain", "remod")}
        b = args.block
        pick = np.zeros((h, w), bool)
        for y0 in range(0, h, b):
            for x0 in range(0, w, b):
                blk = (slice(y0, y0 + b), slice(x0, x0 + b))
                pick[blk] = err["remod"][blk].sum() < err["plain"][blk].sum()
        shown["oracle"] = np.where(pick[..., None], shown["remod"], shown["plain"])
        row = {n: metrics.psnr(shown[n], clean) for n in names}
        for n in names:
            totals[n].append(row[n])
        q = torch.quantile(weight, torch.tensor([0.5, 0.9])).tolist()
        print(f"{pair.scene:8s} " + " ".join(f"{row[n]:7.2f}" for n in names) + f" {q[0]:6.3f} {q[1]:6.3f}")
    print(f"{'mean':8s} " + " ".join(f"{np.mean(totals[n]):7.2f}" for n in names))


if __name__ == "__main__":
    main()
