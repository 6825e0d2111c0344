"""``python -m training finetune``: tune a shipped (or any exported) model on the artist's pairs.

One command, no training expertise: it starts from the model that fits the data's passes (the
weights come out of the ONNX file, which carries its network config), trains with that
model's recipe for a time budget, and scores a few held-out pairs before and after through
the add-on's own denoise path. The output is the better of the two, so it is never worse on
those pairs than where it started, exported with the parity check, with a card beside it.
A rerun with the same output resumes an interrupted run (``OUT.run/``).
"""

from __future__ import annotations

import datetime
import math
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from blender_denoise_addon.core import catalog, metrics
from blender_denoise_addon.core.atomic import atomic_path
from blender_denoise_addon.core.contract import INPUT_SETS, KEY_NAME
from blender_denoise_addon.core.denoise import denoise, sanitize_color
from blender_denoise_addon.core.errors import DenoiseError, ModelContractError
from blender_denoise_addon.core.imageio import read_image
from blender_denoise_addon.core.model import load_model
from blender_denoise_addon.dataset.files import write_json_atomic

from .config import UNetConfig, config_from, load_recipe, recipe_names
from .dataset import Pair, find_pairs, split_pairs

# Our own networks (v13, v16) that `finetune` starts from: no Quality preset runs them any more
# (OIDN's imported networks do), so they live here, not in models/ and the add-on.
BASE_MODELS = Path(__file__).resolve().parent / "base"
RUN_SUFFIX = ".run"  # OUT.onnx -> OUT.run/ holds the training run (config, log, checkpoints)


@dataclass
class FinetuneConfig:
    data: str
    output: str
    base: str = ""  # --from; empty: the shipped model that uses the most of the data's passes
    minutes: float = 30.0
    holdout: float = 0.1  # share of the samples held out to score before and after
    name: str = ""
    seed: int = 0
    threads: int = 0
    progress: bool = True


def data_passes(pairs: list[Pair]) -> set[str]:
    """EXR pairs carry albedo and normal; PNG pairs only color."""
    return {"color", "albedo", "normal"} if all(p.kind == "exr" for p in pairs) else {"color"}


def pick_base(base: str, passes: set[str]) -> Path:
    """``--from``, checked against the data's passes; else the base model (``training/base/``) that uses
    most of them."""
    if base:
        try:
            info = load_model(base, threads=1).info
        except ModelContractError as e:
            raise DenoiseError(f"--from {base}: {e}") from None
        if not set(info.inputs) <= passes:
            raise DenoiseError(
                f"--from {Path(base).name} takes {','.join(info.inputs)} but the data has only "
                f"{','.join(p for p in ('color', 'albedo', 'normal') if p in passes)} (PNG pairs carry color alone)"
            )
        return Path(base)
    return catalog.pick_model(passes, threads=1, candidates=sorted(BASE_MODELS.glob("*.onnx"))).path


def recipe_for(base: Path, inputs: tuple[str, ...]) -> str:
    """The recipe that made ``base``: its own (by file name), the one its card names (a tuned
    model), else the shipped recipe for the same passes."""
    names = recipe_names()
    for n in names:
        if load_recipe(n).get("model") == base.name:
            return n
    named = catalog.read_card(base).get("recipe")
    if named in names:
        return str(named)
    for n in names:
        r = load_recipe(n)
        settings = r.get("defaults", {}) | r["stages"][-1]["settings"]
        if INPUT_SETS.get(settings.get("inputs", "color,albedo,normal")) == inputs:
            return n
    raise DenoiseError(f"no training recipe for a model with inputs {','.join(inputs)}")


def base_model_config(base: Path) -> dict[str, Any]:
    from .checkpoint import initial_config

    saved = initial_config(base)
    if saved is None:
        raise DenoiseError(
            f"{base.name} does not record its network (no training.model_config metadata): only models "
            "exported by `python -m training export` or `finetune` can be fine-tuned"
        )
    model = UNetConfig.from_dict(saved)
    return {f.name: getattr(model, f.name) for f in fields(UNetConfig)}


def training_settings(cfg: FinetuneConfig, base: Path, recipe: str, run_dir: Path) -> dict[str, Any]:
    """The recipe's last stage (its loss, learning rate, crops), on this data, for the time budget,
    starting from ``base``'s weights with ``base``'s network."""
    r = load_recipe(recipe)
    settings = r.get("defaults", {}) | r["stages"][-1]["settings"]
    settings |= base_model_config(base)
    settings |= {
        "data": cfg.data,
        "out": str(run_dir),
        "init": str(base),
        "val_fraction": cfg.holdout,
        "test_fraction": 0.0,
        "split_seed": cfg.seed,
        "seed": cfg.seed,
        "epochs": 1_000_000,  # the time budget ends the run
        "minutes": cfg.minutes,
        "threads": cfg.threads,
        "progress": cfg.progress,
    }
    return settings


def holdout_psnr(model_path: str | Path, pairs: list[Pair], threads: int = 0) -> dict[str, float]:
    """Mean display PSNR over ``pairs`` through the core's denoise (what the add-on runs): per spp and ``all``."""
    model = load_model(model_path, threads=threads or None)
    per: dict[str, list[float]] = {}
    for pair in pairs:
        frame = read_image(pair.noisy)
        clean = sanitize_color(read_image(pair.clean).color[..., :3])
        out = denoise(
            model,
            sanitize_color(frame.color[..., :3]),
            frame.albedo if "albedo" in model.info.inputs else None,
            frame.normal if "normal" in model.info.inputs else None,
            tiling="full",
        ).image[..., :3]
        value = metrics.psnr(metrics.to_display(out), metrics.to_display(clean))
        if math.isfinite(value):
            per.setdefault(f"{pair.spp}spp", []).append(value)
            per.setdefault("all", []).append(value)
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(per.items())}


def _named_copy(base: Path, out: Path, name: str) -> None:
    """``base`` under a new ``denoiser.name`` (the weights untouched), written atomically."""
    import onnx
    from onnx import helper

    proto = onnx.load(str(base))
    meta = {p.key: p.value for p in proto.metadata_props} | {KEY_NAME: name}
    del proto.metadata_props[:]
    helper.set_model_props(proto, meta)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        load_model(tmp, threads=1)


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


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run the fine-tune; returns the card it wrote."""
    import torch

    from .checkpoint import load_checkpoint
    from .export import export
    from .train import BEST, LAST, train

    out = Path(cfg.output)
    if out.suffix.lower() != ".onnx":
        raise DenoiseError(f"-o {out}: the output must be an .onnx file")
    if not cfg.minutes > 0:
        raise DenoiseError(f"--minutes must be above 0, got {cfg.minutes}")
    if not 0 < cfg.holdout < 1:
        raise DenoiseError(f"--holdout must be a share between 0 and 1, got {cfg.holdout}")
    pairs = find_pairs(cfg.data)
    base = pick_base(cfg.base, data_passes(pairs))
    if base.resolve() == out.resolve():
        raise DenoiseError(f"-o {out} would overwrite the model it starts from; choose another file")
    info = load_model(base, threads=1).info
    recipe = recipe_for(base, info.inputs)
    name = cfg.name or out.stem
    run_dir = out.with_name(out.stem + RUN_SUFFIX)
    settings = training_settings(cfg, base, recipe, run_dir)
    held = split_pairs(pairs, cfg.holdout, 0.0, cfg.seed)["val"]
    if not held:
        raise DenoiseError(f"{cfg.data} has too few samples to hold any out ({len(pairs)} pairs); render more")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = print if cfg.progress else (lambda *a, **k: None)
    say(
        f"fine-tuning {base.name} (recipe {recipe}) for {cfg.minutes:g} min; {len(held)} held-out pairs",
        file=sys.stderr,
    )
    before = holdout_psnr(base, held, cfg.threads)
    say(f"held-out PSNR before: {before['all']:.2f} dB", file=sys.stderr)

    last = run_dir / LAST
    train_cfg = config_from(settings)
    if last.is_file():
        state = load_checkpoint(last)
        if state.get("seconds", 0.0) < 60 * cfg.minutes:
            say(f"resuming {run_dir}", file=sys.stderr)
            train(replace(train_cfg, resume=str(last)))
    else:
        train(train_cfg)
    spent = load_checkpoint(run_dir / LAST)
    state = load_checkpoint(run_dir / BEST)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        report = export(run_dir / BEST, tmp, name=name)
        after = holdout_psnr(tmp, held, cfg.threads)
        kept = "tuned" if after["all"] > before["all"] else "base"
        if kept == "base":
            _named_copy(base, tmp, name)
    card = {
        "name": name,
        "kept": kept,
        "base": base.name,
        "recipe": recipe,
        "inputs": list(info.inputs),
        "data": _dataset_summary(Path(cfg.data), pairs),
        "held_out": sorted({p.scene for p in held}),
        "minutes": round(spent.get("seconds", 0.0) / 60, 2),
        "minutes_budget": cfg.minutes,
        "steps": spent["step"],
        "best_step": state["step"],
        "psnr_before": before,
        "psnr_tuned": after,
        "parity_max_abs_diff": report.max_abs_diff,
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
