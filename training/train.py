"""Training loop: Adam with warmup + cosine decay, best checkpoint by validation loss, resume.

A run folder holds ``config.json`` (every option and the seed, written before the
first step), ``split.json`` (scenes per split), ``log.csv`` (one row per epoch),
``last.pt`` (to resume) and ``best.pt`` (lowest validation loss; export this one).
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from blender_denoise_addon.core import transfer as tf
from blender_denoise_addon.core.defaults import EXPOSURE
from blender_denoise_addon.core.errors import DenoiseError

from .checkpoint import load_checkpoint
from .dataset import (
    DEFAULT_TEXTURE_KINDS,
    FullImageDataset,
    PairCache,
    RandomCropDataset,
    check_texture_fraction,
    check_texture_kinds,
    find_pairs,
    split_pairs,
    to_network,
)
from .losses import DenoiseLoss, LossWeights, picker_loss
from .model import (
    LATE_BRANCHES,
    LEGACY_DEFAULTS,
    REFINE_BOUND,
    GuideHead,
    ModifiedUNet,
    UNetConfig,
    count_parameters,
)
from .surgery import GROWN_OFFSET_LOGIT, fitted_weights, reset_blends

CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
LOG_FILE = "log.csv"
LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainConfig:
    data: str
    out: str
    inputs: str = "color,albedo,normal"
    transfer: str = "log"
    source: str = "auto"
    spp: list[int] = field(default_factory=list)  # empty: every spp found
    width: int = 32
    growth: int = 16
    depth: int = 4
    first_width: int = 0  # channels at full resolution (0: width)
    residual: bool = False
    head: str = "direct"
    kernel_size: int = 5
    kernel_scales: int = 4
    demodulate: bool = False
    picker_width: int = 0
    picker_results: bool = False
    refine_width: int = 0
    refine_bound: float = REFINE_BOUND
    post_kernel: int = 0
    up_kernel: bool = False
    upsample: str = "nearest"
    kernel_space: str = "log"
    epochs: int = 30
    batch_size: int = 16
    patch: int = 64
    patches_per_image: int = 8
    augment: bool = True
    albedo_texture: float = 0.0  # fraction of crops with a painted texture (dataset.albedo_texture)
    texture_kinds: list[str] = field(default_factory=lambda: list(DEFAULT_TEXTURE_KINDS))
    texture_hue: float = 0.0  # fraction of the painted textures in colours of one luminance
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.0
    w_mse: float = 1.0
    w_ssim: float = 1.0
    w_l1: float = 0.0
    w_gradient: float = 0.0
    w_display: float = 0.0
    w_psnr: float = 0.0
    w_picker: float = 0.0  # needs demodulate; not an image term, so validation leaves it out
    picker_block: int = 8
    w_guides: float = 0.0  # training-only guide head (albedo + normal from the decoder features); not in validation
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    workers: int = 0
    threads: int = 0  # 0: torch's default
    resume: str = ""  # checkpoint path, or "auto" for OUT/last.pt
    init: str = ""  # start from these weights (.pt or exported .onnx); a fresh optimizer and schedule
    widen: bool = False  # with init: the weights may come from a narrower network (model.widened_state)
    grown_offset_logit: float = GROWN_OFFSET_LOGIT  # with widen: grown kernel offsets start this far below
    branch_lr: float = 0.0  # learning rate of the branches after the kernel head (LATE_BRANCHES; 0: lr)
    reset_blends: bool = False  # with init: the kernel head's scale blends restart at 0.5
    max_steps: int = 0  # 0: no cap (tests and smoke runs cap it)
    progress: bool = True

    def model_config(self) -> UNetConfig:
        return UNetConfig(
            inputs=self.inputs,
            width=self.width,
            growth=self.growth,
            depth=self.depth,
            first_width=self.first_width,
            residual=self.residual,
            head=self.head,
            kernel_size=self.kernel_size,
            kernel_scales=self.kernel_scales,
            demodulate=self.demodulate,
            picker_width=self.picker_width,
            picker_results=self.picker_results,
            refine_width=self.refine_width,
            refine_bound=self.refine_bound,
            post_kernel=self.post_kernel,
            up_kernel=self.up_kernel,
            upsample=self.upsample,
            kernel_space=self.kernel_space,
        )

    def loss_weights(self) -> LossWeights:
        # Every LossWeights term has its w_<term> field here: a new term cannot be left out.
        return LossWeights(**{f.name: getattr(self, f"w_{f.name}") for f in fields(LossWeights)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**LEGACY_DEFAULTS | {k: v for k, v in d.items() if k in known})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warmup, then cosine decay to ``floor`` (a fraction of the base rate) at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def init_output_bias(model: ModifiedUNet, transfer: str) -> None:
    """Start the sigmoid at the transferred autoexposure key (mid grey), not at 0.5.

    In log space 0.5 is a very bright value; starting near the typical target makes
    the first epoch learn structure instead of the overall level.
    """
    y = float(np.clip(tf.forward(np.float64(EXPOSURE.key), transfer), 1e-4, 1 - 1e-4))
    with torch.no_grad():
        model.head.bias.fill_(math.log(y / (1.0 - y)))


def _loader(ds: Any, batch: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(ds, batch_size=batch, shuffle=shuffle, num_workers=workers, generator=gen, drop_last=False)


def evaluate_loss(model: ModifiedUNet, loader: DataLoader, loss_fn: DenoiseLoss, transfer: str) -> dict[str, float]:
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
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name


def train(cfg: TrainConfig) -> Path:
    """Train per ``cfg``; returns the run folder."""
    # Settings that cannot work fail before anything is written.
    if cfg.w_picker and not cfg.demodulate:
        raise DenoiseError("--w-picker teaches the remodulation weight: it needs --demodulate")
    if cfg.picker_block < 1 or cfg.patch % cfg.picker_block:
        raise DenoiseError(f"--picker-block must divide --patch ({cfg.patch}), got {cfg.picker_block}")
    check_texture_fraction(cfg.albedo_texture)
    check_texture_fraction(cfg.texture_hue, "--texture-hue")
    check_texture_kinds(cfg.texture_kinds)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    resume_path = Path(out / LAST if cfg.resume == "auto" else cfg.resume) if cfg.resume else None
    state = load_checkpoint(resume_path) if resume_path else None
    if state is not None:
        # The model and data must match the checkpoint; epochs may be extended.
        saved = TrainConfig.from_dict(state["config"])
        keys = (
            "inputs",
            "transfer",
            "width",
            "growth",
            "depth",
            "first_width",
            "residual",
            "up_kernel",
            "refine_bound",
            "branch_lr",  # the optimizer's parameter groups
            "split_seed",
            "val_fraction",
            "test_fraction",
        )
        for key in keys:
            if getattr(saved, key) != getattr(cfg, key):
                raise DenoiseError(
                    f"--resume: {key} is {getattr(saved, key)!r} in the checkpoint, not {getattr(cfg, key)!r}"
                )
        if cfg.w_guides and "guide_head" not in state:
            raise DenoiseError("--resume: the checkpoint was trained without --w-guides")
    seed_everything(cfg.seed)
    (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")

    mcfg = cfg.model_config()
    init = None
    if cfg.init and state is None:  # a resumed run already has its weights
        # Checked before the data loads, on a throwaway model that must not use up the seeded RNG.
        with torch.random.fork_rng():
            init = fitted_weights(ModifiedUNet(mcfg), cfg.init, cfg.widen, cfg.grown_offset_logit)
    pairs = find_pairs(cfg.data, cfg.source, cfg.spp or None)
    splits = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    (out / SPLIT_FILE).write_text(
        json.dumps({k: sorted({p.scene for p in v}) for k, v in splits.items()}, indent=2) + "\n", encoding="utf-8"
    )
    if not splits["train"]:
        raise DenoiseError("no training scenes after the split")
    train_cache = PairCache(splits["train"], cfg.inputs, cfg.transfer, guides=cfg.w_guides > 0)
    val_cache = PairCache(splits["val"], cfg.inputs, cfg.transfer)
    train_cache.preload(cfg.progress)
    val_cache.preload(cfg.progress)
    crops = RandomCropDataset(
        train_cache,
        cfg.patch,
        cfg.patches_per_image,
        cfg.augment,
        cfg.seed,
        cfg.albedo_texture,
        cfg.texture_kinds,
        cfg.texture_hue,
    )
    train_loader = _loader(crops, cfg.batch_size, True, cfg.workers, cfg.seed)
    # Validate on whole frames; without validation scenes, fall back to the training frames.
    val_source = val_cache if len(val_cache) else train_cache
    val_loader = _loader(FullImageDataset(val_source, mcfg.alignment), 1, False, 0, cfg.seed)
    if not len(val_cache):
        print("warning: no validation scenes; best.pt is chosen by the loss on training frames", file=sys.stderr)

    model = ModifiedUNet(mcfg)
    if mcfg.head == "direct" and not cfg.residual:  # a residual head starts at the identity instead
        init_output_bias(model, cfg.transfer)
    if init is not None:
        if cfg.reset_blends:
            init = reset_blends(init, mcfg)
        model.load_state_dict(init)
    loss_fn = DenoiseLoss(cfg.loss_weights(), cfg.transfer)
    guide_head = GuideHead(mcfg.channels[0]) if cfg.w_guides else None
    params = list(model.parameters()) + (list(guide_head.parameters()) if guide_head else [])
    groups: list[dict[str, Any]] = [{"params": params}]
    if cfg.branch_lr:
        # Branches grown onto a trained model start at zero output, and at a fine-tuning rate Adam
        # moves each weight by about lr per step: too little for them to learn much in a few epochs.
        late = {id(p) for name, p in model.named_parameters() if name.startswith(LATE_BRANCHES)}
        groups = [
            {"params": [p for p in params if id(p) not in late]},
            {"params": [p for p in params if id(p) in late], "lr": cfg.branch_lr},
        ]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(train_loader)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    floor = cfg.min_lr / cfg.lr
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, floor))
    start_epoch, step, best = 0, 0, math.inf
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state["best_val"]
        torch.set_rng_state(state["torch_rng"])
        if guide_head is not None:
            guide_head.load_state_dict(state["guide_head"])
    print(
        f"model: {count_parameters(model):,} parameters, alignment {mcfg.alignment}, receptive field "
        f"{mcfg.receptive_field}, {mcfg.macs_per_pixel() / 1e3:.1f} kMAC/pixel | "
        f"pairs: {len(splits['train'])} train, {len(splits['val'])} val, {len(splits['test'])} test",
        file=sys.stderr,
    )
    from tqdm import tqdm

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "model_config": mcfg.to_dict(),
            "transfer": cfg.transfer,
            "config": asdict(cfg),
            "seed": cfg.seed,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "step": step,
            "best_val": best,
            "torch_rng": torch.get_rng_state(),
        } | ({"guide_head": guide_head.state_dict()} if guide_head else {})

    model.train()
    model.keep_pick = cfg.w_picker > 0
    model.keep_features = guide_head is not None
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps and step >= cfg.max_steps:
            break
        crops.set_epoch(epoch)
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not cfg.progress)
        for batch in bar:
            x, y = to_network(batch, cfg.transfer)
            loss, terms = loss_fn(model(x), y, batch["exposure"])
            if cfg.w_picker:
                assert model.pick is not None
                term = picker_loss(*model.pick, y, cfg.picker_block)
                loss = loss + cfg.w_picker * term
                terms["picker"] = float(term.detach())
            if guide_head is not None:
                assert model.features is not None
                term = guide_head.loss(model.features, batch)
                loss = loss + cfg.w_guides * term
                terms["guides"] = float(term.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            n += 1
            for k, v in ({"loss": loss.item()} | terms).items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        bar.close()
        val = evaluate_loss(model, val_loader, loss_fn, cfg.transfer)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": opt.param_groups[0]["lr"]}
        row |= {f"train_{k}": v / max(1, n) for k, v in sums.items()}
        row |= {f"val_{k}": v for k, v in val.items()}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        improved = val["loss"] < best
        if improved:
            best = val["loss"]
        row["best"] = int(improved)
        _append_log(out / LOG_FILE, row)
        state = checkpoint(epoch)
        _save(out / LAST, state)
        if improved:
            _save(out / BEST, state)
        print(
            f"epoch {epoch + 1}: train {row['train_loss']:.5f} val {val['loss']:.5f} ({val['psnr_db']:.2f} dB)"
            f"{' (best)' if improved else ''} lr {row['lr']:.2e} {row['seconds']:.1f}s",
            file=sys.stderr,
        )
    return out
