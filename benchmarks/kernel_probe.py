"""What a kernel-head model does, per test scene: its kernels, blends, post gain and refine correction.

    .venv/bin/python benchmarks/kernel_probe.py --model models/denoiser-v16-color.onnx \
        [--data data/test128] [--spp 4 16] [--scenes 000005 000012 000013]

Runs the exported model's weights through torch on whole frames (as ``training evaluate``
prepares them) and prints, per frame, the 10th/50th/90th percentiles over pixels of: the
full-resolution kernel's centre weight (1/9 is a box average, 1 keeps the pixel), the
coarse-to-fine blend weights at scales 0 and 1 (how much of the coarser estimate's low
frequencies replace the finer one's), the post kernel's gain (1: full smoothing by it, its
clamp), and the 99th percentile of the refine branch's absolute correction in the ``log``
transfer; for kernels larger than 3x3, the median weight outside their centre 3x3 at scales 0
and 1 (how much the larger support is used); with ``--up-kernel``, how far the scale-1-to-0
upsampling kernels moved from bilinear's weights (half the L1 distance: 0 is bilinear, 1 a
kernel on neighbours bilinear does not read), medians on the edges and the rest. Then the
medians of the centre weight and the scale-0 blend on the clean render's edges (the 10 % of
pixels with the largest gradient of its log values) and on the rest: a model that keeps edges
lowers the blend there. Where a model blurs texture, this says which part averages it away.
With ``--oracle SHARE ...`` it then denoises every frame of ``--data`` at those spp (full
frames, the core's path) with the scale-0 blend forced to 0 on that share of edge pixels, and
prints the mean display PSNR of the chosen scenes and of the rest: how much finding the edges
alone would give (not shippable: it reads the clean frame).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blender_denoise_addon.core.denoise import _network_input, frame_exposure  # noqa: E402
from blender_denoise_addon.core.imageio import read_image  # noqa: E402
from blender_denoise_addon.core.tiling import plan_tiles  # noqa: E402


def _pct(t, qs=(10, 50, 90)) -> str:  # noqa: ANN001 - a torch tensor; torch is imported lazily
    return " ".join(f"{v:.3f}" for v in np.percentile(t.numpy().ravel(), qs))


def _edge_mask(clean: np.ndarray, share: float = 0.1) -> np.ndarray:
    """The ``share`` of pixels with the largest gradient of the clean frame's log luminance."""
    lum = np.log1p(np.maximum(clean[..., :3], 0.0).mean(-1))
    gy, gx = np.gradient(lum)
    mag = np.hypot(gx, gy)
    return mag >= np.quantile(mag, 1.0 - share)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="an exported kernel-head model (.onnx) or a checkpoint (.pt)")
    p.add_argument("--data", default="data/test128")
    p.add_argument("--spp", type=int, nargs="+", default=[4, 16])
    p.add_argument("--scenes", nargs="+", default=["000005", "000012", "000013"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--oracle", type=float, nargs="*", default=[], metavar="SHARE", help="edge shares, e.g. 0 0.1")
    args = p.parse_args(argv)

    import torch

    from blender_denoise_addon.core.errors import DenoiseError
    from training.dataset import find_pairs
    from training.model import _bilinear_logits, _softmax_channels
    from training.train import load_network

    torch.set_num_threads(args.threads)
    try:
        net = load_network(args.model)
    except DenoiseError as e:
        raise SystemExit(str(e)) from None
    cfg = net.config
    if cfg.head != "kernel" or cfg.inputs != "color":
        raise SystemExit("the probe reads color-only kernel-head models")
    captured: dict[str, Any] = {}
    filter_ = net._filter

    def keep_features(inputs, features):  # noqa: ANN001, ANN202
        captured["features"] = features
        return filter_(inputs, features)

    net._filter = keep_features
    if cfg.refine_width:  # the branch's output before its tanh, as the forward pass computed it
        net.refine.register_forward_hook(lambda _m, _i, o: captured.__setitem__("refine", o))
    k2 = cfg.kernel_size**2
    print(
        "spp scene | centre weight p10 p50 p90 | blend s0 | blend s1 | post gain | |refine| p99 | outer s0 s1"
        " | edges / rest p50: centre weight, blend s0 | up s0 from bilinear, edges / rest"
    )
    for spp in args.spp:
        for pair in find_pairs(args.data, "exr", [spp]):
            if pair.scene not in args.scenes:
                continue
            frame = read_image(pair.noisy)
            h, w = frame.color.shape[:2]
            tile = plan_tiles(h, w, "full", 1, 0, cfg.alignment, 0)[0]
            exposure = frame_exposure(frame.color, "log")
            x = torch.from_numpy(_network_input(tile, frame.color, None, None, "log", exposure))[None]
            with torch.no_grad():
                net(x)
                f = captured["features"]
                l0 = net.kernel_heads[0](f[0])
                l1 = net.kernel_heads[1](f[1])
                w0, w1 = _softmax_channels(l0[:, :k2]), _softmax_channels(l1[:, :k2])
                row = [
                    _pct(w0[:, k2 // 2]),
                    _pct(torch.sigmoid(l0[:, k2 : k2 + 1])),
                    _pct(torch.sigmoid(l1[:, k2 : k2 + 1])),
                ]
                row.append(_pct(net.post_head(f[0])[:, cfg.post_kernel**2 :].clamp(-1, 1)) if cfg.post_kernel else "-")
                if cfg.refine_width:
                    r = cfg.refine_bound * torch.tanh(captured["refine"])
                    row.append(f"{float(np.percentile(r.abs().numpy(), 99)):.4f}")
                else:
                    row.append("-")
                row.append(
                    " ".join(f"{float(_outer_weight(w, cfg.kernel_size).median()):.3f}" for w in (w0, w1))
                    if cfg.kernel_size > 3
                    else "-"
                )
                edges = torch.from_numpy(_edge_mask(read_image(pair.clean).color))
                centre = w0[0, k2 // 2]
                blend = torch.sigmoid(l0[0, k2])
                row.append(" ".join(f"{float(t[m].median()):.3f}" for t in (centre, blend) for m in (edges, ~edges)))
                if cfg.up_kernel:
                    base = _bilinear_logits().repeat(1, 1, h // 2, w // 2)
                    moved = 0.5 * (_softmax_channels(net.up_heads[0](f[0]) + base) - _softmax_channels(base)).abs()
                    row.append(" ".join(f"{float(moved[0].sum(0)[m].median()):.3f}" for m in (edges, ~edges)))
                else:
                    row.append("-")
            print(f"{spp} {pair.scene} | " + " | ".join(row))
    if args.oracle:
        _oracle(net, args)
    return 0


def _outer_weight(weights, size: int):  # noqa: ANN001, ANN202 - torch tensors; torch is imported lazily
    """Per pixel, the weight of a size x size kernel (N x size*size x H x W) outside its centre 3x3."""
    r = size // 2
    outer = [i for i in range(size * size) if max(abs(i // size - r), abs(i % size - r)) > 1]
    return weights[:, outer].sum(1)


def _oracle(net, args: argparse.Namespace) -> None:  # noqa: ANN001 - a ModifiedUNet; torch is imported lazily
    """Mean PSNR with the scale-0 blend forced to 0 on each share of the clean frame's edge pixels."""
    import torch

    from blender_denoise_addon.core.denoise import denoise, sanitize_color
    from training.dataset import find_pairs
    from training.evaluate import TorchModel, image_metrics

    k2 = net.config.kernel_size**2
    mask: dict[str, Any] = {"edges": None}

    def no_blend_on_edges(_m, _i, out):  # noqa: ANN001, ANN202
        if mask["edges"] is None:
            return out
        out = out.clone()
        out[:, k2][mask["edges"][None]] = -30.0  # sigmoid: 0, the fine estimate alone
        return out

    hook = net.kernel_heads[0].register_forward_hook(no_blend_on_edges)

    oracle = TorchModel(net, net.config.model_info("log", name="oracle"), "oracle")

    # psnr[share, spp] -> (chosen scenes', the rest's); each frame is read once for all shares.
    psnr: dict[tuple[float, int], tuple[list[float], list[float]]] = {
        (share, spp): ([], []) for share in args.oracle for spp in args.spp
    }
    for spp in args.spp:
        for pair in find_pairs(args.data, "exr", [spp]):
            clean = read_image(pair.clean).color
            color = sanitize_color(read_image(pair.noisy).color[..., :3])
            for share in args.oracle:
                mask["edges"] = torch.from_numpy(_edge_mask(clean, share)) if share > 0 else None
                out = denoise(oracle, color, None, None, tiling="full").image[..., :3]
                chosen, rest = psnr[share, spp]
                value = image_metrics(out, sanitize_color(clean[..., :3]))["psnr"]
                (chosen if pair.scene in args.scenes else rest).append(value)
    hook.remove()
    print("oracle: edge share, spp | mean PSNR of the chosen scenes | of the rest")
    for (share, spp), (chosen, rest) in psnr.items():
        print(f"{share:g} {spp} | {np.mean(chosen):.2f} | {np.mean(rest):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
