"""``python -m training finetune``: tune the network behind a Quality preset (or any model we can
train) on the artist's own pairs, within a time budget.

One command, no training expertise: ``--quality high`` starts from the model the add-on runs at
High for the data's passes (OIDN's large cleanAux network: its prefilters stay fixed and it
trains on the guides they make, as it runs), ``--base MODEL.onnx`` from any model we can train
(``networks.SUPPORTED``). It trains with the settings of :class:`FinetuneConfig` (chosen by
measurement: docs/training.md) for ``--minutes``, scores held-out pairs before and after through
the add-on's own denoise path, and keeps the better model: never worse on those pairs than where
it started. The output is exported with the parity check, its prefilters copied beside it, its
source and license in its metadata, and a card (NAME.card.json). A rerun with the same output
resumes an interrupted run (``OUT.run/``).
"""

from __future__ import annotations

import datetime
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from blender_denoise_addon.core import catalog
from blender_denoise_addon.core.atomic import atomic_path
from blender_denoise_addon.core.contract import KEY_NAME
from blender_denoise_addon.core.defaults import QUALITY
from blender_denoise_addon.core.errors import DenoiseError, ModelContractError
from blender_denoise_addon.core.imageio import read_image
from blender_denoise_addon.core.model import Model, load_model
from blender_denoise_addon.dataset.files import write_json_atomic

from .config import FREEZE, UNetConfig, config_from, option
from .dataset import Pair, find_pairs, split_pairs

# Our own networks (v13, v16): no Quality preset runs them any more (OIDN's imported networks
# do); `--base training/base/NAME.onnx` still tunes them.
BASE_MODELS = Path(__file__).resolve().parent / "base"
RUN_SUFFIX = ".run"  # OUT.onnx -> OUT.run/ holds the training run (config, log, checkpoints)


def _tune(help: str, choices: Any = None) -> dict[str, Any]:
    return option(help, choices, "tuning (measured: docs/training.md)")


@dataclass
class FinetuneConfig:
    """A fine-tune: the CLI is generated from these fields (``config.add_options``)."""

    data: str = field(default="", metadata=option("dataset folder written by generate-dataset (e.g. with --scene)",
                                                  required=True))  # fmt: skip
    output: str = field(default="", metadata=option("the tuned .onnx to write", flag="-o,--output", required=True))
    quality: str = field(default="high", metadata=option("tune the network this Quality preset runs", QUALITY))
    base: str = field(default="", metadata=option("tune this model instead (an .onnx we can train)"))
    minutes: float = field(default=15.0, metadata=option("training time budget"))
    holdout: float = field(default=0.15, metadata=option("share of the samples held out to score before and after"))
    name: str = field(default="", metadata=option("the model's name in Blender (default: the output's file name)"))
    seed: int = field(default=0, metadata=option("seed of the held-out split and the crops"))
    threads: int = field(default=0, metadata=option("torch / onnxruntime threads (0: default)"))
    progress: bool = field(default=True, metadata=option("no progress bar", flag="--quiet"))
    patch: int = field(default=64, metadata=_tune("random crop size in pixels"))
    batch_size: int = field(default=8, metadata=_tune("crops per step"))
    lr: float = field(default=1e-4, metadata=_tune("Adam learning rate, decaying over the budget"))
    # Measured on the walkthrough (docs/training.md): the encoder frozen scored highest on later
    # frames, and the steps are a third cheaper.
    freeze: str = field(default="encoder", metadata=_tune("weights kept as they are", FREEZE))
    # The clean renders of an artist's pairs are noisy: MSE's optimum is their mean (Noise2Noise),
    # L1's their median (darker under fireflies), and SSIM's contrast term rewards their grain.
    w_mse: float = field(default=1.0, metadata=_tune("weight of the MSE term"))
    w_l1: float = field(default=0.0, metadata=_tune("weight of the L1 term"))
    w_ssim: float = field(default=0.0, metadata=_tune("weight of the (1 - SSIM) term"))


TUNING = ("patch", "batch_size", "lr", "freeze", "w_mse", "w_l1", "w_ssim")


def data_passes(pairs: list[Pair]) -> set[str]:
    """The passes every pair carries (read from the first noisy file of each kind): PNG pairs carry
    color alone, EXR pairs what they were rendered with."""
    passes = {"color", "albedo", "normal"}
    for kind in {p.kind for p in pairs}:
        frame = read_image(next(p.noisy for p in pairs if p.kind == kind))
        passes &= {"color"} | {g for g in ("albedo", "normal") if getattr(frame, g) is not None}
    return passes


def pick_base(cfg: FinetuneConfig, passes: set[str]) -> Model:
    """``--base``, else the bundled model the add-on runs at ``--quality`` for these passes; its
    passes must all be in the data."""
    try:
        if cfg.base:
            model = load_model(cfg.base, threads=1)
        else:
            model = catalog.pick_model(passes, threads=1, quality=cfg.quality)
    except ModelContractError as e:
        raise DenoiseError(f"--base {cfg.base}: {e}" if cfg.base else str(e)) from None
    if not set(model.info.inputs) <= passes:
        have = ",".join(p for p in ("color", "albedo", "normal") if p in passes)
        raise DenoiseError(
            f"{model.path.name} needs {','.join(model.info.inputs)} but the pairs in {cfg.data} carry only {have} "
            "(PNG pairs carry color alone; render EXR pairs with generate-dataset)"
        )
    return model


def training_settings(cfg: FinetuneConfig, base: Model, run_dir: Path) -> dict[str, Any]:
    """The base's network (its own weights and config), on this data, with the tuning settings,
    for the time budget. A cleanAux model trains on the guides its (fixed) prefilters make."""
    from .checkpoint import initial_config

    path = Path(base.path)
    # An error names what can be trained; a config saved by an older version comes up to date.
    settings = UNetConfig.from_dict(initial_config(path)).to_dict()
    settings |= {k: getattr(cfg, k) for k in TUNING}
    if base.info.prefilter:
        named = [str(path.parent / f) for f in base.info.prefilter]
        settings |= {"guides": "prefiltered", "prefilter": ",".join(named)}
    return settings | {
        "data": cfg.data,
        "out": str(run_dir),
        "init": str(path),
        "transfer": base.info.transfer,
        "val_fraction": cfg.holdout,
        "test_fraction": 0.0,
        "split_seed": cfg.seed,
        "seed": cfg.seed,
        "epochs": 1_000_000,  # the time budget ends the run
        "minutes": cfg.minutes,
        "warmup_steps": 20,
        "min_lr": cfg.lr / 100,
        "threads": cfg.threads,
        "progress": cfg.progress,
    }


def _named_copy(base: Path, out: Path, name: str) -> None:
    """``base`` under a new ``denoiser.name`` (the weights untouched), written atomically."""
    import onnx
    from onnx import helper

    from .export import provenance

    proto = onnx.load(str(base))
    meta = {p.key: p.value for p in proto.metadata_props} | {KEY_NAME: name}
    meta |= provenance(str(base), "{}, unchanged: tuning did not improve the held-out pairs")
    del proto.metadata_props[:]
    helper.set_model_props(proto, meta)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        load_model(tmp, threads=1)


def write_notice(base: Model, out: Path, kept: str) -> list[str]:
    """Apache-2.0 weights (OIDN's) carry their license on: its text copied beside ``out`` and
    ``NAME.NOTICE.txt`` saying what was changed, with the base's own NOTICE. The files written."""
    from blender_denoise_addon.core.contract import KEY_LICENSE

    from .export import provenance

    license = provenance(str(base.path)).get(KEY_LICENSE)
    if license != "Apache-2.0":
        return []
    folder = Path(base.path).parent
    texts = sorted(p for p in folder.glob("LICENSE*") if p.is_file())
    for src in texts:
        if not (out.parent / src.name).is_file():
            with atomic_path(out.parent / src.name) as tmp:
                shutil.copyfile(src, tmp)
    change = "fine-tuned" if kept == "tuned" else "copied unchanged (tuning did not improve it)"
    lines = [
        f"{out.name}: the weights of {base.info.name or Path(base.path).name} ({Path(base.path).name}), {change} "
        f"on {datetime.date.today().isoformat()} with `python -m training finetune` on the pairs named in its card.",
        "Licensed under the Apache License, Version 2.0"
        + (f" ({', '.join(p.name for p in texts)})." if texts else "."),
    ]
    if (folder / "NOTICE").is_file():
        lines += ["", f"The notice of {Path(base.path).name}:", "", (folder / "NOTICE").read_text(encoding="utf-8")]
    notice = out.with_name(out.stem + ".NOTICE.txt")
    with atomic_path(notice) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return [notice.name, *(p.name for p in texts)]


def _dataset_summary(root: Path, pairs: list[Pair]) -> dict[str, Any]:
    from blender_denoise_addon.dataset import files as df

    scenes: set[str] = set()
    for rec in df.iter_records(root):
        s = rec.get("scene", {})
        scenes.add(str(s.get("file") or s.get("layout") or "?"))
    return {
        "path": str(root),
        "samples": len({p.scene for p in pairs}),
        "pairs": len(pairs),
        "spp": sorted({p.spp for p in pairs if p.spp is not None}),
        "sources": sorted(scenes),
    }


def check(cfg: FinetuneConfig) -> tuple[list[Pair], Model, list[Pair]]:
    """Everything that can be wrong with the input, before anything is written: the pairs, the base
    and the held-out split."""
    out = Path(cfg.output)
    if out.suffix.lower() != ".onnx":
        raise DenoiseError(f"-o {out}: the output must be an .onnx file")
    if not cfg.minutes > 0:
        raise DenoiseError(f"--minutes must be above 0, got {cfg.minutes}")
    if not 0 < cfg.holdout < 1:
        raise DenoiseError(f"--holdout must be a share between 0 and 1, got {cfg.holdout}")
    pairs = find_pairs(cfg.data)
    base = pick_base(cfg, data_passes(pairs))
    if Path(base.path).resolve() == out.resolve():
        raise DenoiseError(f"-o {out} would overwrite the model it starts from; choose another file")
    split = split_pairs(pairs, cfg.holdout, 0.0, cfg.seed)
    samples = len({p.scene for p in pairs})
    if not split["val"] or not split["train"]:
        raise DenoiseError(
            f"{cfg.data} has {samples} sample(s): too few to hold some out for scoring and train on the rest "
            f"(--holdout {cfg.holdout:g}); render more pairs"
        )
    return pairs, base, split["val"]


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run the fine-tune; returns the card it wrote."""
    import torch

    from .checkpoint import load_checkpoint
    from .export import export
    from .scoring import mean_psnr
    from .train import BEST, LAST, train

    pairs, base, held = check(cfg)
    out = Path(cfg.output)
    base_path = Path(base.path)
    name = cfg.name or out.stem
    run_dir = out.with_name(out.stem + RUN_SUFFIX)
    train_cfg = config_from(training_settings(cfg, base, run_dir))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = print if cfg.progress else (lambda *a, **k: None)
    say(f"fine-tuning {base_path.name} for {cfg.minutes:g} min; {len(held)} held-out pairs", file=sys.stderr)
    before = mean_psnr(held, base)
    say(f"held-out PSNR before: {before['all']:.2f} dB", file=sys.stderr)

    last, fresh = run_dir / LAST, not run_dir.exists()
    try:
        if last.is_file():
            if load_checkpoint(last).get("seconds", 0.0) < 60 * cfg.minutes:
                say(f"resuming {run_dir}", file=sys.stderr)
                train(replace(train_cfg, resume=str(last)))
        else:
            train(train_cfg)
        if not (run_dir / BEST).is_file():
            raise DenoiseError(
                f"the time budget ({cfg.minutes:g} min) ran out before the first evaluation; give more --minutes"
            )
    except BaseException:
        if fresh and not (run_dir / LAST).is_file():  # nothing worth resuming: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    spent = load_checkpoint(run_dir / LAST)
    state = load_checkpoint(run_dir / BEST)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        report = export(run_dir / BEST, tmp, name=name)
        after = mean_psnr(held, load_model(tmp, threads=cfg.threads or None))
        kept = "tuned" if after["all"] > before["all"] else "base"
        if kept == "base":
            _named_copy(base_path, tmp, name)
    license_files = write_notice(base, out, kept)
    card = {
        "name": name,
        "kept": kept,
        "base": base_path.name,
        "base_name": base.info.name,
        "quality": "" if cfg.base else cfg.quality,
        "inputs": list(base.info.inputs),
        "prefilter": list(base.info.prefilter),
        "license_files": license_files,
        "data": _dataset_summary(Path(cfg.data), pairs),
        "held_out": sorted({p.scene for p in held}),
        "minutes": round(spent.get("seconds", 0.0) / 60, 2),
        "minutes_budget": cfg.minutes,
        "steps": spent["step"],
        "best_step": state["step"],
        "psnr_before": before,
        "psnr_tuned": after,
        "parity_max_abs_diff": report.max_abs_diff,
        "settings": {k: getattr(cfg, k) for k in TUNING},
        "seed": cfg.seed,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(catalog.card_path(out), card)
    verdict = "tuned model kept" if kept == "tuned" else "no gain: the output is the base model, renamed"
    print(
        f"{out}: held-out PSNR {before['all']:.2f} -> {after['all']:.2f} dB ({verdict}); card {catalog.card_path(out)}",
        file=sys.stderr,
    )
    return card
