"""``python -m training train|evaluate|export|finetune|prefilter|summarize|import-oidn``, each imported when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from .config import RESUME_OPTIONS, add_options, recipe_names  # no torch: --help stays fast

    p = sub.add_parser(
        "train",
        help="train any of our networks on random crops: denoisers and guide prefilters (or a recipe)",
        description="Train a network picked by --network (MSE + SSIM + L1, Adam): the Modified U-Net ('kpn', the "
        "default: the recommended architecture, the shipped color + albedo + normal model's), or OIDN's U-Nets "
        "('oidn-base', 'oidn-small', 'oidn-large'; with --init an import-oidn export, they fine-tune). Guides "
        "alone as --inputs (e.g. albedo,normal) train a guide prefilter. The run folder gets config.json, split.json, "
        "log.csv, last.pt and best.pt (lowest validation loss). --resume continues a run with the settings saved "
        f"in its checkpoint; only {', '.join('--' + o.replace('_', '-') for o in RESUME_OPTIONS[2:])} may change.",
    )
    p.add_argument(
        "--recipe",
        choices=recipe_names(),
        help="run every stage of a shipped model's recipe (training/recipes/NAME.json) into OUT/<stage>, its "
        "datasets in --data (default: data); a rerun skips finished stages and resumes an interrupted one",
    )
    p.add_argument(
        "--render",
        action="store_true",
        help="with --recipe: render its datasets first (resumable; needs bpy) and export OUT/<model>.onnx at the end",
    )
    p.add_argument(
        "--start-at",
        metavar="STAGE",
        help="with --recipe: begin at this stage, with --init the model the earlier stages made (a shipped .onnx)",
    )
    add_options(p)
    p.set_defaults(_run=_run_train)


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    from .config import add_options
    from .evaluate import EvalConfig

    p = sub.add_parser(
        "evaluate",
        help="metrics and plots on the test split: noisy vs ours vs OIDN",
        description="Evaluate a checkpoint (--checkpoint) or an exported ONNX model (--model) through the core's "
        "denoise path. Writes metrics.json, metrics.csv, table.md (per spp), curves.png and grid_*.png into --out.",
    )
    add_options(p, EvalConfig)
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
    p.add_argument(
        "--priority", type=int, default=0, help="denoiser.priority: Automatic prefers it over models of lower priority"
    )
    p.set_defaults(_run=_run_export)


def _finetune_parser(sub: argparse._SubParsersAction) -> None:
    from .config import add_options
    from .finetune import FinetuneConfig

    p = sub.add_parser(
        "finetune",
        help="tune the network behind a Quality preset on your own pairs, for a time budget (one command)",
        description="Fine-tune the network the add-on runs at --quality (or --base MODEL) on pairs rendered from "
        "your scene, for --minutes; score held-out pairs before and after, keep the better model, export it with "
        "the parity check (its prefilters copied beside it) and write its card (NAME.card.json). Put them in the "
        "add-on's models folder: Preferences list it under Tuned models. A rerun with the same output resumes "
        "(OUT.run/).",
    )
    add_options(p, FinetuneConfig)
    p.set_defaults(_run=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, finetune

    finetune(FinetuneConfig(**{k: v for k, v in vars(args).items() if k not in ("command", "_run")}))
    return 0


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
    from blender_denoise_addon.core.errors import DenoiseError

    from .config import RESUME_OPTIONS, config_from

    given = {k: v for k, v in vars(args).items() if k not in ("command", "_run", "recipe", "start_at", "render")}
    if (args.start_at or args.render) and not args.recipe:
        raise DenoiseError(f"--{'start-at' if args.start_at else 'render'} needs --recipe")
    if args.recipe:
        from .recipe import run_recipe

        if "out" not in given:
            raise DenoiseError("--recipe needs --out")
        extra = set(given) - {"out", "data", "threads", "workers", "progress"} - ({"init"} if args.start_at else set())
        if extra:
            raise DenoiseError(f"--recipe sets every training option itself; drop --{', --'.join(sorted(extra))}")
        run = {k: v for k, v in given.items() if k not in ("out", "init", "data")}
        data_root = given.get("data", "data")
        last = run_recipe(args.recipe, given["out"], data_root, run, args.start_at, given.get("init"), args.render)
        if not args.render:
            print(f"recipe {args.recipe} done: export {last / 'best.pt'}")
        return 0
    if "resume" in given:
        extra = set(given) - set(RESUME_OPTIONS)
        if extra:
            raise DenoiseError(
                f"--resume continues a run with its saved settings; --{', --'.join(sorted(extra))} cannot change"
            )
    from .train import train

    out = train(config_from(given))
    print(f"run folder: {out}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, evaluate

    result = evaluate(EvalConfig(**{k: v for k, v in vars(args).items() if k not in ("command", "_run")}))
    print(f"{result['frames']} frames evaluated; results in {result['out']}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .export import export

    rep = export(args.checkpoint, args.output, name=args.name, tolerance=args.tolerance, priority=args.priority)
    info = rep.info
    print(
        f"{rep.path}: {rep.bytes / 2**20:.2f} MiB, {rep.parameters:,} parameters, inputs {','.join(info.inputs)}, "
        f"transfer {info.transfer}, alignment {info.alignment}, receptive field {info.receptive_field}, "
        f"max |onnxruntime - torch| {rep.max_abs_diff:.2e}"
    )
    return 0


def _import_oidn_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-oidn",
        help="OIDN's published networks (from the installed pyoidn) as ONNX models of the contract",
        description="Read OIDN's trained weights from the installed pyoidn's core library (by ELF symbol), check "
        "every tensor against the network, and export each as an ONNX model with the contract's metadata; "
        "onnxruntime must match PyTorch within --tolerance. Without --blob: every shipped network (models/).",
    )
    p.add_argument("-o", "--out", default="models", help="folder for the .onnx files (default %(default)s)")
    p.add_argument("--blob", action="append", help="one network by its OIDN name (e.g. rt_hdr_calb_cnrm); repeat")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |onnxruntime - PyTorch|")
    p.set_defaults(_run=_run_import_oidn)


def _run_import_oidn(args: argparse.Namespace) -> int:
    from .import_oidn import NETWORKS, import_networks

    unknown = [b for b in args.blob or [] if b not in NETWORKS]
    if unknown:
        raise ValueError(f"unknown OIDN network {unknown[0]!r}; known: {', '.join(NETWORKS)}")
    import_networks(args.out, args.blob, args.tolerance)
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
    _finetune_parser(sub)
    _summary_parser(sub)
    _import_oidn_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from blender_denoise_addon.core.atomic import stop_on_signals
    from blender_denoise_addon.core.errors import DenoiseError

    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP stop as Ctrl-C does
            return int(args._run(args) or 0)
    except (DenoiseError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
