"""Training loop: Adam with warmup + cosine decay, best checkpoint by validation loss, resume.

A run folder holds ``config.json`` (every setting and the seed, written before the first
step), ``split.json`` (scenes per split), ``log.csv`` (one row per epoch), ``last.pt`` (to
resume) and ``best.pt`` (lowest validation loss; export this one). ``train`` goes through
its steps: the run's settings (``resolve``), the data (``load_data``), the model and
optimiser (``build``), then the epochs (``fit``).
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from blender_denoise_addon.core.atomic import atomic_path
from blender_denoise_addon.core.errors import DenoiseError

from .checkpoint import load_checkpoint
from .config import RESUME_OPTIONS, TrainConfig
from .dataset import (
    FullImageDataset,
    PairCache,
    RandomCropDataset,
    check_texture_fraction,
    find_pairs,
    split_pairs,
    to_network,
)
from .losses import DenoiseLoss, LossWeights
from .model import count_parameters
from .networks import build as build_network
from .networks import frozen_prefixes
from .surgery import fitted_weights, reset_blends

CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
LOG_FILE = "log.csv"
LAST = "last.pt"
BEST = "best.pt"


def loss_weights(cfg: TrainConfig) -> LossWeights:
    # Every LossWeights term has its w_<term> field: a new term cannot be left out.
    return LossWeights(**{f.name: getattr(cfg, f"w_{f.name}") for f in fields(LossWeights)})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, floor: float, progress: float | None = None) -> float:
    """Linear warmup, then cosine decay to ``floor`` (a fraction of the base rate) at ``total``
    steps, or, with a time budget, at ``progress`` (the budget's fraction used) = 1."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, progress if progress is not None else (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _loader(ds: Any, batch: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(ds, batch_size=batch, shuffle=shuffle, num_workers=workers, generator=gen, drop_last=False)


def evaluate_loss(model: torch.nn.Module, loader: DataLoader, loss_fn: DenoiseLoss, transfer: str) -> dict[str, float]:
    """Mean loss terms over full frames (padding cropped off before the loss), and ``psnr_db``.

    ``psnr_db`` is the mean display PSNR over frames, what evaluation reports, whatever the loss
    weights: runs with different loss terms compare on it. Frames equal to their target are
    left out of it (inf), as in evaluation.
    """
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    psnrs: list[float] = []
    with torch.no_grad():
        for batch in loader:
            x, y = to_network(batch, transfer)
            h, w = int(batch["height"][0]), int(batch["width"][0])
            pred, target = model(x)[..., :h, :w], y[..., :h, :w]
            total, terms = loss_fn(pred, target, batch["exposure"])
            for k, v in ({"loss": float(total)} | terms).items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if "color" in batch:  # a prefilter's guides are no image to display
                frame_mse = loss_fn.frame_display_mse(pred, target, batch["exposure"])
                psnrs += [float(-10.0 * torch.log10(m)) for m in frame_mse.double() if m > 0]
    model.train()
    means = {k: v / max(1, n) for k, v in sums.items()}
    return means | {"psnr_db": sum(psnrs) / len(psnrs) if psnrs else math.nan}


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_log(path: str | Path) -> list[dict[str, float]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()} for r in csv.DictReader(f)]


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:  # never a half-written checkpoint under the real name
        torch.save(state, tmp)


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's settings and, with ``resume``, the checkpoint to continue: a resumed run takes
    every setting from the checkpoint (its model included) except ``RESUME_OPTIONS``."""
    if not cfg.resume:
        if not cfg.data or not cfg.out:
            raise DenoiseError("a training run needs --data and --out")
        check_texture_fraction(cfg.albedo_texture)
        return cfg, None
    path = Path(cfg.out) / LAST if cfg.resume == "auto" else Path(cfg.resume)
    state = load_checkpoint(path)
    saved = TrainConfig.from_dict(state["config"])
    return replace(saved, **{k: getattr(cfg, k) for k in RESUME_OPTIONS if k != "out"}, out=cfg.out or saved.out), state


@dataclass
class Data:
    splits: dict[str, list[Any]]
    crops: RandomCropDataset
    train_loader: DataLoader
    val_loader: DataLoader


def load_prefilters(cfg: TrainConfig) -> tuple[Any, ...]:
    """The prefilter models --guides prefiltered runs on the noisy guides (None for the others)."""
    from blender_denoise_addon.core.model import load_model

    from .config import GUIDES, parse_prefilter

    if cfg.guides not in GUIDES:
        raise DenoiseError(f"--guides must be one of {', '.join(GUIDES)}, got {cfg.guides!r}")
    named = parse_prefilter(cfg.prefilter)
    if cfg.guides != "noisy" and not named:
        raise DenoiseError(f"--guides {cfg.guides} needs --prefilter: the models that clean the guides at inference")
    return tuple(load_model(p, threads=1) for p in named) if cfg.guides == "prefiltered" else ()


def load_data(cfg: TrainConfig, out: Path) -> Data:
    """Pairs, the split by scene (written to split.json), crops and loaders."""
    pairs = find_pairs(cfg.data, cfg.source, cfg.spp or None)
    splits = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    scenes = {k: sorted({p.scene for p in v}) for k, v in splits.items()}
    (out / SPLIT_FILE).write_text(json.dumps(scenes, indent=2) + "\n", encoding="utf-8")
    if not splits["train"]:
        raise DenoiseError("no training scenes after the split")
    prefilters = load_prefilters(cfg)
    train_cache = PairCache(splits["train"], cfg.model.inputs, cfg.transfer, cfg.guides, prefilters)
    val_cache = PairCache(splits["val"], cfg.model.inputs, cfg.transfer, cfg.guides, prefilters)
    train_cache.preload(cfg.progress)
    val_cache.preload(cfg.progress)
    crops = RandomCropDataset(train_cache, cfg.patch, cfg.patches_per_image, True, cfg.seed, cfg.albedo_texture)
    # Validate on whole frames; without validation scenes, fall back to the training frames.
    val_source = val_cache if len(val_cache) else train_cache
    if not len(val_cache):
        print("warning: no validation scenes; best.pt is chosen by the loss on training frames", file=sys.stderr)
    return Data(
        splits,
        crops,
        _loader(crops, cfg.batch_size, True, cfg.workers, cfg.seed),
        _loader(FullImageDataset(val_source, cfg.model.alignment), 1, False, 0, cfg.seed),
    )


@dataclass
class Run:
    """What the epochs update, and what a checkpoint saves."""

    cfg: TrainConfig
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any = None  # torch.optim.lr_scheduler.LambdaLR
    epoch: int = 0  # the next epoch to run
    step: int = 0
    best: float = math.inf
    seconds: float = 0.0  # wall time spent training (and validating), over every resume

    @property
    def budget_used(self) -> float | None:
        """Fraction of ``cfg.minutes`` spent (None without a time budget)."""
        return self.seconds / (60 * self.cfg.minutes) if self.cfg.minutes else None

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_config": self.cfg.model.to_dict(),
            "transfer": self.cfg.transfer,
            "config": asdict(self.cfg),
            "seed": self.cfg.seed,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": epoch,
            "step": self.step,
            "best_val": self.best,
            "seconds": self.seconds,
            "torch_rng": torch.get_rng_state(),
        }


def build(cfg: TrainConfig, steps_per_epoch: int, state: dict[str, Any] | None, init: Any) -> Run:
    """The model (from ``init``'s weights, or the checkpoint's when resuming), Adam and the schedule."""
    model = build_network(cfg.model)
    if init is not None:
        model.load_state_dict(reset_blends(init, cfg.model) if cfg.reset_blends else init)
    frozen = frozen_prefixes(cfg.model, cfg.freeze)
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(frozen) if frozen else True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    floor = cfg.min_lr / cfg.lr
    run = Run(cfg, model, opt)
    if state is not None:
        run.seconds = state.get("seconds", 0.0)
    run.sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, cfg.warmup_steps, floor, run.budget_used)
    )
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        run.epoch, run.step, run.best = state["epoch"] + 1, state["step"], state["best_val"]
        torch.set_rng_state(state["torch_rng"])
    return run


def fit(run: Run, data: Data, out: Path) -> None:
    """The epochs: train, validate, log, checkpoint (last.pt, and best.pt when validation improved)."""
    from tqdm import tqdm

    cfg, model = run.cfg, run.model
    loss_fn = DenoiseLoss(loss_weights(cfg), cfg.transfer)
    model.train()
    start = time.perf_counter() - run.seconds
    budget = 60 * cfg.minutes
    # With a time budget, one bar over the budget (its ETA is the end of training), else one per epoch.
    timer = tqdm(
        total=round(budget),
        initial=min(round(run.seconds), round(budget)),
        unit="s",
        desc="training",
        bar_format="{l_bar}{bar}| {n}/{total} s [{elapsed}<{remaining}{postfix}]",
        disable=not (cfg.progress and budget),
        file=sys.stderr,
    )

    def out_of_time() -> bool:
        run.seconds = time.perf_counter() - start
        if budget:
            timer.update(min(round(run.seconds), round(budget)) - timer.n)
        return bool(budget) and run.seconds >= budget

    for epoch in range(run.epoch, cfg.epochs):
        if (cfg.max_steps and run.step >= cfg.max_steps) or out_of_time():
            break
        data.crops.set_epoch(epoch)
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(
            data.train_loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not cfg.progress or bool(budget),
        )
        for batch in bar:
            x, y = to_network(batch, cfg.transfer)
            loss, terms = loss_fn(model(x), y, batch["exposure"])
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            run.sched.step()
            run.step += 1
            n += 1
            for k, v in ({"loss": loss.item()} | terms).items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
            timer.set_postfix_str(f"epoch {epoch + 1}, step {run.step}, loss {sums['loss'] / n:.4f}", refresh=False)
            if (cfg.max_steps and run.step >= cfg.max_steps) or out_of_time():
                break
        bar.close()
        if budget and run.seconds >= budget:  # the budget is a hard limit: an epoch it cut is not validated
            break
        val = evaluate_loss(model, data.val_loader, loss_fn, cfg.transfer)
        out_of_time()  # validation counts against the budget
        row: dict[str, Any] = {"epoch": epoch + 1, "step": run.step, "lr": run.opt.param_groups[0]["lr"]}
        row |= {f"train_{k}": v / max(1, n) for k, v in sums.items()}
        row |= {f"val_{k}": v for k, v in val.items()}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        improved = val["loss"] < run.best
        if improved:
            run.best = val["loss"]
        row["best"] = int(improved)
        _append_log(out / LOG_FILE, row)
        state = run.checkpoint(epoch)
        _save(out / LAST, state)
        if improved:
            _save(out / BEST, state)
        tqdm.write(  # above the time bar, when there is one
            f"epoch {epoch + 1}: train {row['train_loss']:.5f} val {val['loss']:.5f} ({val['psnr_db']:.2f} dB)"
            f"{' (best)' if improved else ''} lr {row['lr']:.2e} {row['seconds']:.1f}s",
            file=sys.stderr,
        )
    timer.close()


def train(cfg: TrainConfig) -> Path:
    """Train per ``cfg``; returns the run folder."""
    cfg, state = resolve(cfg)  # settings that cannot work fail before anything is written
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    (out / CONFIG_FILE).write_text(cfg.to_json(), encoding="utf-8")
    init = None
    if cfg.init and state is None:  # a resumed run already has its weights
        # Checked before the data loads, on a throwaway model that must not use up the seeded RNG.
        with torch.random.fork_rng():
            init = fitted_weights(build_network(cfg.model), cfg.init, cfg.widen)
    data = load_data(cfg, out)
    run = build(cfg, len(data.train_loader), state, init)
    m, s = cfg.model, data.splits
    macs = m.macs_per_pixel()
    print_if = print if cfg.progress else (lambda *a, **k: None)
    print_if(
        f"model: {m.network} {m.role}, {count_parameters(run.model):,} parameters, alignment {m.alignment}"
        + (f", {macs / 1e3:.1f} kMAC/pixel" if math.isfinite(macs) else "")
        + f" | pairs: {len(s['train'])} train, {len(s['val'])} val, {len(s['test'])} test",
        file=sys.stderr,
    )
    fit(run, data, out)
    return out
