"""Where is our error against OIDN's: near albedo or normal edges, or on flat regions?

    .venv/bin/python benchmarks/edge_error.py [--model models/denoiser-v13-color-albedo-normal.onnx]
        [--data data/test128] [--spp 4] [--radius 2] [--threshold 0.05]

Per test scene at one spp: an edge mask marks pixels within ``--radius`` pixels of an edge in
the clean frame's albedo or normal pass (a neighbour differs by more than ``--threshold``
summed over channels: texture edges, silhouettes, creases); then the squared display error
against the clean frame, summed over the edge pixels and over the rest, for our model and for
OIDN 2.5 (balanced, the same passes).
``gap@edge`` and ``gap@flat`` split ours-minus-OIDN error between the two regions (their sum is
the whole gap; negative: we are ahead there). Read it as where the difference lives, not as a
metric: the reference's own passes still carry some noise (depth of field, volumes, glass), which
marks edges that are not there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blender_denoise_addon.core import load_model, metrics  # noqa: E402
from blender_denoise_addon.core.denoise import denoise, prepare_albedo, prepare_normal, sanitize_color  # noqa: E402
from blender_denoise_addon.core.imageio import read_image  # noqa: E402


def edge_mask(passes: list[np.ndarray], threshold: float, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of a step above ``threshold`` in any of ``passes`` (H x W x C)."""
    h, w = passes[0].shape[:2]
    edge = np.zeros((h, w), bool)
    for p in passes:
        dx = np.abs(np.diff(p, axis=1)).sum(-1) > threshold
        dy = np.abs(np.diff(p, axis=0)).sum(-1) > threshold
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
        edge[1:] |= dy
        edge[:-1] |= dy
    grown = edge.copy()
    for _ in range(radius):  # a square neighbourhood, one pixel per pass
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    return grown


def main() -> None:
    from training.dataset import find_pairs
    from training.evaluate import oidn_denoise

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/denoiser-v13-color-albedo-normal.onnx")
    ap.add_argument("--data", default="data/test128")
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--radius", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.05)
    args = ap.parse_args()

    model = load_model(args.model)
    if "albedo" not in model.info.inputs:
        sys.exit(f"{args.model} does not read albedo: the edges come from its albedo and normal passes")
    pairs = find_pairs(args.data, "exr", [args.spp])
    if not pairs:
        sys.exit(f"no {args.spp} spp EXR pairs in {args.data}")
    print(f"{'scene':8s} {'edge%':>6s} {'ours dB':>8s} {'OIDN dB':>8s} {'gap@edge':>9s} {'gap@flat':>9s}")
    n_pixels, gap_edge, gap_flat = 0, 0.0, 0.0
    for pair in pairs:
        frame = read_image(pair.noisy)
        color = sanitize_color(frame.color[..., :3])
        albedo, normal = prepare_albedo(frame.albedo[..., :3]), prepare_normal(frame.normal[..., :3])
        reference = read_image(pair.clean)
        if reference.albedo is None or reference.normal is None:
            sys.exit(f"{pair.clean} has no albedo or normal pass to find edges in")
        clean = metrics.to_display(sanitize_color(reference.color[..., :3]))
        ours = metrics.to_display(denoise(model, color, albedo, normal, tiling="full").image[..., :3])
        oidn = metrics.to_display(oidn_denoise(color, albedo, normal, hdr=True, quality="balanced"))
        mask = edge_mask(
            [prepare_albedo(reference.albedo[..., :3]), prepare_normal(reference.normal[..., :3])],
            args.threshold,
            args.radius,
        )
        diff = ((ours - clean) ** 2).sum(-1) - ((oidn - clean) ** 2).sum(-1)
        # Per-pixel mean over channels, as PSNR's MSE: sum / (pixels * 3).
        scale = 1.0 / (diff.size * 3)
        e, f = float(diff[mask].sum() * scale), float(diff[~mask].sum() * scale)
        n_pixels += 1
        gap_edge, gap_flat = gap_edge + e, gap_flat + f
        print(
            f"{pair.scene:8s} {100 * mask.mean():6.1f} {metrics.psnr(ours, clean):8.2f} "
            f"{metrics.psnr(oidn, clean):8.2f} {e:9.2e} {f:9.2e}"
        )
    total = gap_edge + gap_flat
    print(
        f"mean MSE gap over {n_pixels} frames: {total / n_pixels:.2e}, of it near edges "
        f"{gap_edge / n_pixels:.2e} ({100 * gap_edge / total if total else 0:.0f} %), elsewhere "
        f"{gap_flat / n_pixels:.2e}"
    )


if __name__ == "__main__":
    main()
