"""Evaluation on the test split: noisy input vs our model vs OIDN 2.5, per-spp table, plots.

Our model runs through the core's own ``denoise`` (input preparation, exposure,
transfer, padding), either from a checkpoint (PyTorch) or from an exported ONNX
file, so the numbers are those of the shipped path. OIDN (``pyoidn``) gets the
same prepared passes. Metrics come from ``blender_denoise_addon.core.metrics``:
MSE, PSNR and SSIM on the display image (clipped, sRGB-encoded), relMSE on linear.

Outputs in ``--out``: ``metrics.json`` (per image and aggregated), ``metrics.csv``
(per image), ``table.md`` (per spp), ``curves.png`` (when the run's log.csv is
found), ``grid_<frame>.png`` (noisy | ours | OIDN | clean, error maps below) and
``comparison.png`` (one row per scene at ``figure_spp``: noisy | ours | OIDN high | clean).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blender_denoise_addon.core import metrics
from blender_denoise_addon.core.contract import ModelInfo
from blender_denoise_addon.core.defaults import DEFAULT_QUALITY, QUALITY
from blender_denoise_addon.core.errors import DenoiseError
from blender_denoise_addon.core.model import load_model

from .config import SOURCES, option
from .dataset import SPLITS, Pair, find_pairs, split_pairs
from .scoring import score_pair

# oidn_blender: OIDN high on albedo and normal prefiltered by OIDN, Blender's "Accurate" prefilter.
METHODS = ("noisy", "ours", "oidn_high", "oidn_balanced", "oidn_blender")
METRICS = ("mse", "psnr", "ssim", "relmse", "flip", "psnr_lf")


class TorchModel:
    """A torch network behind the core's Model interface (``info``, ``label``, ``run``)."""

    def __init__(self, net: Any, info: ModelInfo, label: str, config: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.info = info
        self.label = label
        self.config = config or {}
        self.prefilters: tuple[Any, ...] = ()  # a run on clean or prefiltered guides: the prefilters it names
        if self.config.get("guides", "noisy") != "noisy":
            from blender_denoise_addon.core.model import load_model

            from .config import parse_prefilter

            self.prefilters = tuple(load_model(p, threads=1) for p in parse_prefilter(self.config["prefilter"]))

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, threads: int = 0) -> TorchModel:
        import torch

        from .checkpoint import build_model, load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        state = load_checkpoint(checkpoint)
        net, cfg, transfer = build_model(state)
        info = cfg.model_info(transfer, name=Path(checkpoint).stem)
        label = f"{Path(checkpoint).parent.name}/{Path(checkpoint).name}"
        return cls(net, info, label, state.get("config", {}))

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).numpy()


def _fig(help: str, choices: Any = None) -> dict[str, Any]:
    return option(help, choices, "figures")


@dataclass
class EvalConfig:
    """An evaluation: the ``evaluate`` command's options are generated from these fields."""

    data: str = field(default="", metadata=option("dataset folder written by generate-dataset", required=True))
    out: str = field(default="", metadata=option("folder for metrics and plots", required=True))
    checkpoint: str = field(default="", metadata=option("a .pt checkpoint (its saved split settings are used)"))
    model: str = field(default="", metadata=option("an exported .onnx model instead (the split options pick frames)"))
    split: str = field(default="test", metadata=option("frames to evaluate", (*SPLITS, "all")))
    source: str = field(default="auto", metadata=option("pairs to read: EXRs, PNG pairs, or auto (EXRs if any)",
                                                        SOURCES))  # fmt: skip
    val_fraction: float = field(default=0.1, metadata=option("share of scenes held out for validation"))
    test_fraction: float = field(default=0.1, metadata=option("share of scenes held out for testing"))
    split_seed: int = field(default=0, metadata=option("seed of the deterministic split by scene"))
    oidn: bool = field(default=True, metadata=option("skip OIDN 2.5", flag="--no-oidn"))
    quality: str = field(default=DEFAULT_QUALITY, metadata=option("ours at this Quality setting", QUALITY))
    coarse: bool = field(default=False, metadata=option("ablation: ours with the coarse pass at any quality"))
    flips: int = field(default=-1, metadata=option("ablation: test-time flips instead of the quality's (-1)",
                                                   (-1, 1, 2, 4)))  # fmt: skip
    grids: int = field(default=8, metadata=_fig("comparison grids to draw, the first N frames"))
    figure_spp: int = field(default=4, metadata=_fig("comparison.png shows frames at this spp (0: none)"))
    figure_rows: int = field(default=6, metadata=_fig("scenes in comparison.png"))
    threads: int = field(default=0, metadata=option("torch / onnxruntime CPU threads (0: default)"))
    run: str = field(default="", metadata=_fig("run folder whose log.csv gives the training curves (default: the "
                                               "checkpoint's)"))  # fmt: skip
    progress: bool = field(default=True, metadata=option("no progress bar", flag="--quiet"))


def flip(display: np.ndarray, reference_display: np.ndarray) -> float:
    """Mean LDR-FLIP (NVIDIA's flip-evaluator) of two sRGB display images."""
    import flip_evaluator

    ref = np.ascontiguousarray(reference_display, np.float32)
    test = np.ascontiguousarray(display, np.float32)
    return float(flip_evaluator.evaluate(ref, test, "LDR", inputsRGB=True, applyMagma=False)[1])


def image_metrics(result: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    da, db = metrics.to_display(result), metrics.to_display(reference)
    return {"mse": metrics.mse(da, db), "flip": flip(da, db)} | metrics.report(result, reference)


def _mean_psnr(values: list[float]) -> float:
    """Mean in dB over the frames that differ from their reference (inf, if none does)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.inf


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{spp or 'all': {method: {metric: mean, "exact": frames}}}; PSNR is averaged in dB, as is usual.

    A frame equal to its reference (an all-black render, say) has an infinite PSNR, which
    would make the mean infinite: PSNR averages the other frames, and ``exact`` counts them.
    """
    groups: dict[str, list[dict[str, Any]]] = {"all": rows}
    for r in rows:
        groups.setdefault(str(r["spp"]), []).append(r)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, group in groups.items():
        out[key] = {}
        for m in METHODS:
            vals = [r for r in group if f"{m}_psnr" in r]
            if vals:
                out[key][m] = {k: float(np.mean([r[f"{m}_{k}"] for r in vals])) for k in METRICS if k != "psnr"}
                psnrs = [float(r[f"{m}_psnr"]) for r in vals]
                out[key][m]["psnr"] = _mean_psnr(psnrs)
                out[key][m]["exact"] = float(sum(not math.isfinite(v) for v in psnrs))
    return out


def table_markdown(agg: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| spp | method | MSE (display) | PSNR dB | SSIM | FLIP | relMSE (linear) | low-freq PSNR dB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted((k for k in agg if k != "all"), key=lambda k: (k == "None", int(k) if k.isdigit() else 0)) + ["all"]
    for key in keys:
        for m, v in agg[key].items():
            cells = f"{v['mse']:.3e} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['flip']:.4f} | {v['relmse']:.3e}"
            cells += f" | {v['psnr_lf']:.2f}"
            lines.append(f"| {key} | {m} | {cells} |")
    exact = {m: int(v.get("exact", 0)) for m, v in agg["all"].items() if v.get("exact")}
    if exact:
        counts = ", ".join(f"{m} {n}" for m, n in exact.items())
        lines.append(f"\nFrames equal to their reference (left out of the PSNR means): {counts}.")
    return "\n".join(lines) + "\n"


def scene_table(rows: list[dict[str, Any]], spp: int) -> str:
    """Per scene at ``spp``: display PSNR and low-frequency PSNR of every method, and ours minus
    OIDN balanced (the number a target like "no scene more than 1 dB behind" is about)."""
    sel = [r for r in rows if r["spp"] == spp]
    if not sel:
        return ""
    methods = [m for m in METHODS if f"{m}_psnr" in sel[0]]
    head = " | ".join(f"{m} PSNR / low-freq" for m in methods)
    lines = [
        f"{spp} spp per scene (dB):",
        "",
        f"| scene | {head} | ours - OIDN balanced |",
        "|---" * (len(methods) + 2) + "|",
    ]
    for r in sel:
        cells = " | ".join(f"{r[f'{m}_psnr']:.2f} / {r[f'{m}_psnr_lf']:.2f}" for m in methods)
        gap = f"{r['ours_psnr'] - r['oidn_balanced_psnr']:+.2f}" if "oidn_balanced_psnr" in r else "-"
        lines.append(f"| {r['scene']} | {cells} | {gap} |")
    return "\n".join(lines) + "\n"


def plot_curves(log_csv: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .train import read_log

    rows = read_log(log_csv)
    epochs = [r["epoch"] for r in rows]
    terms = [k[len("train_") :] for k in rows[0] if k.startswith("train_")]
    fig, axes = plt.subplots(1, len(terms) + 1, figsize=(4 * (len(terms) + 1), 3.2))
    for ax, term in zip(axes, terms, strict=False):
        for split in ("train", "val"):
            ys = [r.get(f"{split}_{term}", math.nan) for r in rows]
            ax.plot(epochs, ys, marker="o", markersize=3, label=split)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.legend()
    axes[-1].plot(epochs, [r["lr"] for r in rows])
    axes[-1].set_title("learning rate")
    axes[-1].set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_grid(images: dict[str, np.ndarray], clean: np.ndarray, title: str, out: Path) -> Path:
    """Top: display images (methods, then clean). Bottom: per-pixel display error, one shared scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = metrics.to_display(clean)
    names = list(images)
    errors = {n: np.abs(metrics.to_display(img) - ref).mean(-1) for n, img in images.items()}
    vmax = max(1e-6, max(float(np.percentile(e, 99)) for e in errors.values()))
    cols = len(names) + 1
    fig, axes = plt.subplots(2, cols, figsize=(3 * cols, 6.2), squeeze=False)
    for i, name in enumerate(names):
        m = metrics.report(images[name], clean)
        axes[0, i].imshow(metrics.to_display(images[name]))
        axes[0, i].set_title(f"{name}\n{m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}", fontsize=9)
        im = axes[1, i].imshow(errors[name], cmap="inferno", vmin=0, vmax=vmax)
        axes[1, i].set_title(f"|error| {name}", fontsize=9)
    axes[0, -1].imshow(ref)
    axes[0, -1].set_title("clean", fontsize=9)
    fig.colorbar(im, ax=axes[1, -1], fraction=0.8)
    axes[1, -1].axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_comparison(rows: list[tuple[str, dict[str, np.ndarray], np.ndarray]], title: str, out: Path) -> Path:
    """One row per frame: noisy | ours | OIDN high | clean, each titled with its display PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("noisy", "ours", "oidn_high") if n in rows[0][1]]
    cols = len(names) + 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.6 * cols, 2.75 * len(rows)), squeeze=False)
    for r, (label, images, clean) in enumerate(rows):
        ref = metrics.to_display(clean)
        for c, name in enumerate(names):
            shown = metrics.to_display(images[name])
            axes[r, c].imshow(shown)
            axes[r, c].set_title(f"{name} {metrics.psnr(shown, ref):.2f} dB", fontsize=9)
        axes[r, -1].imshow(ref)
        axes[r, -1].set_title(f"clean ({label})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _split_args(cfg: EvalConfig, model: Any) -> tuple[float, float, int, str]:
    """The split the checkpoint was trained with, else the command-line one."""
    saved = getattr(model, "config", {}) or {}
    return (
        saved.get("val_fraction", cfg.val_fraction),
        saved.get("test_fraction", cfg.test_fraction),
        saved.get("split_seed", cfg.split_seed),
        saved.get("source", cfg.source),
    )


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate and write the outputs; returns what metrics.json holds."""
    from tqdm import tqdm

    if bool(cfg.checkpoint) == bool(cfg.model):
        raise DenoiseError("give exactly one of --checkpoint (PyTorch) or --model (ONNX)")
    if cfg.split not in (*SPLITS, "all"):
        raise DenoiseError(f"split must be one of {', '.join(SPLITS)}, all")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model: Any = (
        TorchModel.from_checkpoint(cfg.checkpoint, cfg.threads)
        if cfg.checkpoint
        else load_model(cfg.model, cfg.threads or None)
    )
    val, test, seed, source = _split_args(cfg, model)
    pairs = find_pairs(cfg.data, source)
    chosen: list[Pair] = pairs if cfg.split == "all" else split_pairs(pairs, val, test, seed)[cfg.split]
    if not chosen:
        raise DenoiseError(f"the {cfg.split} split of {cfg.data} is empty (val {val}, test {test}, seed {seed})")
    passes = model.info.inputs
    preset = QUALITY[cfg.quality]  # as the add-on and the CLIs map it
    use_coarse, flips = preset.coarse or cfg.coarse, preset.flips if cfg.flips < 0 else cfg.flips
    rows: list[dict[str, Any]] = []
    grids: list[str] = []
    figure_rows: list[tuple[str, dict[str, np.ndarray], np.ndarray]] = []
    for i, pair in enumerate(tqdm(chosen, desc="evaluating", unit="img", disable=not cfg.progress)):
        scored = score_pair(pair, {"ours": model}, cfg.oidn, cfg.quality, use_coarse, flips)
        results, clean = scored.results, scored.clean
        row: dict[str, Any] = {"frame": pair.label, "scene": pair.scene, "spp": pair.spp}
        for name, img in results.items():
            row |= {f"{name}_{k}": v for k, v in image_metrics(img, clean).items()}
        rows.append(row)
        if pair.spp == cfg.figure_spp and len(figure_rows) < cfg.figure_rows:
            figure_rows.append((pair.label, results, clean))
        if i < cfg.grids:
            grids.append(
                str(plot_grid(results, clean, f"{pair.label} ({model.label})", out / f"grid_{pair.label}.png"))
            )

    comparison = None
    if figure_rows:
        title = f"{cfg.figure_spp} spp, display PSNR against the clean render ({model.label})"
        comparison = str(plot_comparison(figure_rows, title, out / "comparison.png"))
    agg = aggregate(rows)
    run_dir = Path(cfg.run) if cfg.run else (Path(cfg.checkpoint).parent if cfg.checkpoint else None)
    curves = None
    if run_dir is not None and (run_dir / "log.csv").is_file():
        curves = str(plot_curves(run_dir / "log.csv", out / "curves.png"))
    result = {
        "model": model.label,
        "inputs": list(passes),
        "transfer": model.info.transfer,
        "coarse": cfg.coarse,
        "quality": cfg.quality,
        "flips": flips,
        "split": cfg.split,
        "frames": len(rows),
        "metrics": agg,
        "per_image": rows,
        "plots": {"curves": curves, "grids": grids, "comparison": comparison},
        "out": str(out),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = table_markdown(agg)
    if cfg.figure_spp:
        table += "\n" + scene_table(rows, cfg.figure_spp)
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table, file=sys.stderr)
    return result
