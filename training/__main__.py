"""``python -m training train|evaluate|export``. Each stage is imported only when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from blender_denoise_addon.core.contract import INPUT_SETS
from blender_denoise_addon.core.transfer import TRANSFERS

SOURCES = ("auto", "exr", "png")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="dataset folder written by generate-dataset (exr/ + samples/, or noise/ + denoise/ PNGs)",
    )
    p.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="pairs to read: linear multilayer EXRs, PNG pairs, or auto (EXRs when present) (default %(default)s)",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of scenes held out for validation (default %(default)s)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.1, help="share of scenes held out for testing (default %(default)s)"
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the deterministic split by scene (default %(default)s)"
    )


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from .dataset import DEFAULT_TEXTURE_KINDS, TEXTURE_KINDS  # numpy only, no torch

    p = sub.add_parser(
        "train",
        help="train the Modified U-Net on random crops",
        description="Train the Modified U-Net (MSE + SSIM, Adam). The run folder gets config.json, split.json, "
        "log.csv, last.pt and best.pt (lowest validation loss).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _data_args(p)
    p.add_argument("--out", required=True, help="run folder for the config, log and checkpoints")
    p.add_argument(
        "--spp", type=int, nargs="*", default=[], help="train only on these noisy spp levels (default: all found)"
    )
    g = p.add_argument_group("model")
    g.add_argument("--inputs", choices=list(INPUT_SETS), default="color,albedo,normal", help="passes the network takes")
    g.add_argument("--transfer", choices=TRANSFERS, default="log", help="network space for color (core/transfer.py)")
    g.add_argument("--width", type=int, default=32, help="channels at full resolution")
    g.add_argument("--growth", type=int, default=16, help="channels added per level down")
    g.add_argument("--depth", type=int, default=4, help="number of 2x poolings (alignment = 2**depth)")
    g.add_argument(
        "--first-width", type=int, default=0, help="channels at full resolution alone (0: --width); --widen grows it"
    )
    g.add_argument(
        "--residual",
        action="store_true",
        help="add logit(noisy color) before the output sigmoid, so the untrained network returns its input",
    )
    g.add_argument(
        "--head",
        default="direct",
        help="'direct': predict the image; 'kernel': predict per-pixel filter kernels at several scales",
    )
    g.add_argument("--kernel-size", type=int, default=5, help="kernel head: odd kernel width per scale")
    g.add_argument("--kernel-scales", type=int, default=4, help="kernel head: scales, full resolution included")
    g.add_argument(
        "--demodulate",
        action="store_true",
        help="kernel head: also filter color / albedo, multiply back by albedo and blend with the plain result "
        "per pixel (needs albedo); with --kernel-space linear or both the irradiance is averaged linearly",
    )
    g.add_argument(
        "--picker-width",
        type=int,
        default=0,
        help="with --demodulate: channels of a small 3x3 conv branch on the inputs that helps pick the "
        "demodulated or the plain result per pixel (0: none; --widen adds it to a model without it)",
    )
    g.add_argument(
        "--picker-results",
        action="store_true",
        help="with --picker-width: the branch also sees the plain and the remodulated result, to compare them "
        "(--init adds their inputs, with zero weights, to a model without them)",
    )
    g.add_argument(
        "--refine-width",
        type=int,
        default=0,
        help="kernel head: channels of a small 3x3 conv branch on the last decoder features and the filtered "
        "result that adds a bounded correction to it, to rebuild edges the coarse scales blurred (0: none; "
        "--init adds it, starting at zero, to a model without it)",
    )
    g.add_argument(
        "--refine-bound",
        type=float,
        default=argparse.SUPPRESS,  # absent unless given: TrainConfig holds the default
        help="with --refine-width: the largest correction, in the log transfer's units (1/24 is one stop; "
        "default 0.05, training.model.REFINE_BOUND); --init from a model with another bound rescales the "
        "branch so it starts adding what it did",
    )
    g.add_argument(
        "--post-kernel",
        type=int,
        default=0,
        help="kernel head: size of one more per-pixel kernel at full resolution over the combined result, blended "
        "in by a learnt gain, to smooth the pixel-level noise the finest scale leaves (0: none; --init adds it, "
        "starting as no change, to a model without it)",
    )
    g.add_argument(
        "--up-kernel",
        action="store_true",
        help="kernel head: combine the scales through per-pixel 3x3 upsampling kernels over the coarse "
        "neighbours, started at bilinear's weights, so a pixel beside an edge can take the coarse estimate "
        "from its own side (--init adds them to a model without them)",
    )
    g.add_argument(
        "--upsample",
        choices=("nearest", "transpose"),  # training.model.UPSAMPLES (not imported: it loads torch)
        default="nearest",
        help="decoder upsampling: 'nearest' (fast in onnxruntime) or 'transpose' (a learnt 2x2 transposed conv; "
        "the v1/v2 models)",
    )
    g.add_argument(
        "--kernel-space",
        choices=("log", "linear", "both"),  # training.model.KERNEL_SPACES
        default="log",
        help="kernel head: average in the network's log space, on linear (exposure-scaled) radiance, which "
        "keeps block means unbiased, or both with a learnt per-pixel blend",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=30, help="passes over the training crops")
    g.add_argument("--batch-size", type=int, default=16, help="crops per step")
    g.add_argument("--patch", type=int, default=64, help="random crop size in pixels")
    g.add_argument("--patches-per-image", type=int, default=8, help="random crops taken from each pair per epoch")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="no random flips/rotations of crops")
    g.add_argument(
        "--albedo-texture",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="paint a random texture (of --texture-kinds) into this fraction of the crops: noisy colour, "
        "target and albedo times the same pattern, so color edges that follow albedo edges are kept",
    )
    g.add_argument(
        "--texture-kinds",
        type=lambda s: [k.strip() for k in s.split(",") if k.strip()],
        default=list(DEFAULT_TEXTURE_KINDS),
        metavar="KINDS",
        help=f"the painted textures to draw from, comma-separated, of {','.join(TEXTURE_KINDS)} "
        "(mortar: tiles and bricks with thin grout lines)",
    )
    g.add_argument(
        "--texture-hue",
        type=float,
        default=argparse.SUPPRESS,  # absent unless given: TrainConfig holds the default
        metavar="FRACTION",
        help="this fraction of the painted textures have regions of one luminance that differ in hue (default 0)",
    )
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate after warmup")
    g.add_argument("--min-lr", type=float, default=1e-5, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup-steps", type=int, default=100, help="steps of linear learning-rate warmup")
    g.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    g.add_argument("--w-mse", type=float, default=1.0, help="weight of the MSE term")
    g.add_argument("--w-ssim", type=float, default=1.0, help="weight of the (1 - SSIM) term")
    g.add_argument("--w-l1", type=float, default=0.0, help="weight of an L1 term")
    g.add_argument("--w-gradient", type=float, default=0.0, help="weight of an image-gradient L1 term")
    g.add_argument(
        "--w-display",
        type=float,
        default=0.0,
        help="weight of an MSE term on the display image (clipped, sRGB-encoded linear color: what PSNR scores)",
    )
    g.add_argument(
        "--w-psnr",
        type=float,
        default=0.0,
        help="weight of a term that is each frame's display PSNR below 50 dB, averaged (evaluation averages PSNR)",
    )
    g.add_argument(
        "--w-picker",
        type=float,
        default=0.0,
        help="with --demodulate: weight of a term that teaches the remodulation weight, per block, which of the "
        "remodulated and the plain result is closer to the target (training only)",
    )
    g.add_argument("--picker-block", type=int, default=8, help="block edge in pixels for --w-picker (divides --patch)")
    g.add_argument(
        "--w-guides",
        type=float,
        default=0.0,
        help="weight of an L1 term on the clean albedo and normal, predicted from the full-resolution decoder "
        "features by a training-only 1x1 conv that export leaves out (multi-task: a color-only network's features "
        "learn where surfaces and textures change)",
    )
    g.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no cap; for smoke runs)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="seed for weights, crops and shuffling (saved in config.json)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0: load in the main process)")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    g.add_argument(
        "--resume",
        default="",
        metavar="CKPT",
        help="continue from a checkpoint (use 'auto' for OUT/last.pt); the model and split must match",
    )
    g.add_argument(
        "--init",
        default="",
        metavar="WEIGHTS",
        help="fine-tune: start from the weights of a .pt checkpoint or an exported .onnx model of the same "
        "architecture (the optimizer and learning-rate schedule start fresh)",
    )
    g.add_argument(
        "--widen",
        action="store_true",
        help="with --init: the weights may come from a narrower network (smaller --width/--growth, otherwise the "
        "same); they fill the first channels, the new ones start with no influence, so training starts from the "
        "old model's output; with --demodulate (kernel space linear or both) the weights may come from a model "
        "without it, whose remodulated result then starts blended in at 0.5; with --upsample nearest from a "
        "'transpose' model, whose transposed convs are dropped (not function-preserving: fine-tune); with a larger "
        "--post-kernel (or --kernel-size) the old kernels fill the centre and the new offsets start at a small weight "
        "(--grown-offset-logit)",
    )
    g.add_argument(
        "--grown-offset-logit",
        type=float,
        default=argparse.SUPPRESS,  # absent unless given: TrainConfig holds the default
        metavar="L",
        help="with --widen and a larger --post-kernel or --kernel-size: each new outer offset starts at its nearest "
        "old offset's logit minus L, a weight of e^-L relative to it (default 4: nearly the old function, but "
        "small weights learn slowly)",
    )
    g.add_argument(
        "--branch-lr",
        type=float,
        default=argparse.SUPPRESS,  # absent unless given: TrainConfig holds the default
        metavar="LR",
        help="learning rate of the branches after the kernel head (refine branch, post kernel, upsampling "
        "kernels; default: --lr), for growing them onto a trained model with --init",
    )
    g.add_argument(
        "--reset-blends",
        action="store_true",
        help="with --init: the kernel head's coarse-to-fine blend weights restart at 0.5 (e.g. when changing "
        "--kernel-space: blends learnt towards 0 have almost no gradient left)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(_run=_run_train)


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics and plots on the test split: noisy vs ours vs OIDN",
        description="Evaluate a checkpoint or an exported ONNX model through the core's denoise path. Writes "
        "metrics.json, metrics.csv, table.md (per spp), curves.png and grid_*.png into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _data_args(p)
    p.add_argument("--out", required=True, help="folder for metrics and plots")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a .pt checkpoint (its saved split settings override the split options)")
    which.add_argument("--model", help="an exported .onnx model (the split options pick the frames)")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test", help="frames to evaluate")
    p.add_argument("--no-oidn", dest="oidn", action="store_false", help="skip OIDN 2.5")
    p.add_argument("--grids", type=int, default=8, help="comparison grids to draw (first N frames)")
    p.add_argument("--figure-spp", type=int, default=4, help="comparison.png shows frames at this spp (0: none)")
    p.add_argument("--figure-rows", type=int, default=6, help="scenes in comparison.png")
    p.add_argument(
        "--run", default="", help="run folder whose log.csv gives the training curves (default: the checkpoint's)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch / onnxruntime CPU threads (0: default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(_run=_run_evaluate)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX for the add-on",
        description="Export to ONNX with the model contract's metadata and dynamic H/W; fails unless onnxruntime "
        "matches PyTorch within --tolerance and the core loads the file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="a .pt checkpoint (usually RUN/best.pt)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--name", default="", help="denoiser.name in the metadata (default: the output's file name)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |onnxruntime - PyTorch|")
    p.set_defaults(_run=_run_export)


def _summary_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summarize",
        help="what a dataset holds: scene variety and render time",
        description="Print a dataset's sample count, resolution, spp, scene variety and total render time "
        "(from its sample records) as JSON.",
    )
    p.add_argument("--data", required=True, help="dataset folder written by generate-dataset")
    p.add_argument("--count", type=int, default=0, help="only samples with index < COUNT (default: all)")
    p.set_defaults(_run=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    import json

    from .dataset import summarize

    print(json.dumps(summarize(args.data, args.count), indent=1))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    skip = {"command", "_run", "quiet"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k not in skip}, progress=not args.quiet)
    out = train(cfg)
    print(f"run folder: {out}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, evaluate

    skip = {"command", "_run", "quiet"}
    values: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in skip}
    for k in ("checkpoint", "model"):
        values[k] = values[k] or ""
    cfg = EvalConfig(**values)
    cfg.progress = not args.quiet
    result = evaluate(cfg)
    print(f"{result['frames']} frames evaluated; results in {args.out}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .export import export

    rep = export(args.checkpoint, args.output, name=args.name, tolerance=args.tolerance)
    info = rep.info
    print(
        f"{rep.path}: {rep.bytes / 2**20:.2f} MiB, {rep.parameters:,} parameters, inputs {','.join(info.inputs)}, "
        f"transfer {info.transfer}, alignment {info.alignment}, receptive field {info.receptive_field}, "
        f"max |onnxruntime - torch| {rep.max_abs_diff:.2e}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate and export the denoiser's Modified U-Net (see docs/training.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _eval_parser(sub)
    _export_parser(sub)
    _summary_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from blender_denoise_addon.core.errors import DenoiseError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (DenoiseError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
