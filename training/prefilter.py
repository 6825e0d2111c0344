"""Guide prefilters: small networks that clean the noisy albedo and normal passes before the denoiser.

Trained on the generator's EXR pairs: each noisy frame's guides in, the clean render's guides as
the target (the clean render holds converged albedo and normal). The network is a small U-Net
on 2x2 pixel blocks that predicts per-pixel kernels (``_GuideUNet``), so each output is a weighted
average of noisy neighbours. One network can clean both guides at once (``albedo,normal``): each
guide's edges inform the other's, and it costs one network instead of two. Normals are mapped to
[0, 1] inside the exported graph, so the core feeds guides as it prepares them and gets them back
in the same units. The run folder gets config.json (settings and seed), log.csv, best.pt,
summary.json, and the ONNX export (role ``prefilter`` in the model contract).

    python -m training prefilter --data data/train-s9000 --guides albedo,normal --out runs/prefilter \\
        --minutes 10 -o models/prefilter-v1-albedo-normal.onnx
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blender_denoise_addon.core.atomic import atomic_path
from blender_denoise_addon.core.contract import PREFILTER_INPUTS, ModelInfo
from blender_denoise_addon.core.denoise import prepare_guide
from blender_denoise_addon.core.errors import DenoiseError
from blender_denoise_addon.core.imageio import read_image

from .dataset import dihedral, find_pairs, split_pairs
from .model import _block, _softmax_channels, _upsample, apply_kernels

GUIDE_SETS = tuple(PREFILTER_INPUTS)


@dataclass
class PrefilterConfig:
    """One prefilter training run (saved as config.json and in every checkpoint)."""

    data: list[str] = field(default_factory=list)
    guides: str = "albedo,normal"
    out: str = ""
    minutes: float = 15.0
    batch_size: int = 16
    patch: int = 64
    lr: float = 1e-3
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    threads: int = 0
    # The network: small, on 2x2 blocks. At 1080p on 2 cores it must cost a small part of the
    # denoiser's time (issue 36: the default at most 1.3x the time before prefilters).
    width: int = 16
    growth: int = 8
    depth: int = 2

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.guides.split(","))

    @property
    def channels(self) -> list[int]:
        return [self.width + self.growth * i for i in range(self.depth + 1)]


class _GuideUNet(nn.Module):
    """A small U-Net on 2x2 pixel blocks that predicts per-pixel 3x3 kernels: each output pixel is a
    weighted average of its noisy neighbours, at full resolution and at the 2x and 4x averaged
    levels, blended coarse to fine (the Modified U-Net's head). So a guide stays in its range and
    flat areas stay flat. The blocks keep the convolutions at half resolution with 4x the channels:
    on a CPU, 8-channel convolutions at full resolution ran at a third of the speed per operation."""

    K = 3

    def __init__(self, config: PrefilterConfig, planes: int) -> None:
        super().__init__()
        ch = config.channels
        self.encoders = nn.ModuleList(_block(4 * planes if i == 0 else ch[i - 1], c) for i, c in enumerate(ch))
        self.decoders = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(config.depth)))
        k2 = self.K**2
        # Per level: k*k kernel logits and the weight of the coarser level's low frequencies. Full
        # resolution's come in 2x2 blocks from the half-resolution features.
        self.full_head = nn.Conv2d(ch[0], 4 * (k2 + 1), 1)
        self.heads = nn.ModuleList(nn.Conv2d(ch[s], k2 + 1, 1) for s in range(min(2, config.depth + 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, y = [], F.pixel_unshuffle(x, 2)
        for i, enc in enumerate(self.encoders):
            y = enc(F.max_pool2d(y, 2) if i else y)
            skips.append(y)
        features = [y]
        skips.pop()
        for dec in self.decoders:
            y = dec(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1))
            features.append(y)
        features = features[::-1]  # half resolution, quarter, ...
        k, k2 = self.K, self.K**2
        logits = [F.pixel_shuffle(self.full_head(features[0]), 2)]
        logits += [h(f) for h, f in zip(self.heads, features, strict=False)]
        levels, planes = [], x
        for s, lg in enumerate(logits):
            planes = F.avg_pool2d(planes, 2) if s else planes
            levels.append(apply_kernels(planes, _softmax_channels(lg[:, :k2]), k))
        out = levels[-1]
        for s in reversed(range(len(levels) - 1)):  # each finer level takes the coarser one's low frequencies
            fine = levels[s]
            out = fine + torch.sigmoid(logits[s][:, k2:]) * _upsample(out - F.avg_pool2d(fine, 2))
        return out


class PrefilterNet(nn.Module):
    """Guides in their own units (N x 3k x H x W, in ``config.names`` order) -> cleaned, same units."""

    def __init__(self, config: PrefilterConfig) -> None:
        super().__init__()
        self.names = config.names
        self.net = _GuideUNet(config, 3 * len(self.names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "normal" not in self.names:
            return self.net(x)
        i = 3 * self.names.index("normal")  # [-1, 1] <-> [0, 1], the albedo's range
        x = torch.cat([x[:, :i], x[:, i : i + 3] * 0.5 + 0.5, x[:, i + 3 :]], dim=1)
        y = self.net(x)
        return torch.cat([y[:, :i], y[:, i : i + 3] * 2.0 - 1.0, y[:, i + 3 :]], dim=1)


def alignment(config: PrefilterConfig) -> int:
    return 2 ** (config.depth + 1)  # the 2x2 blocks, then ``depth`` poolings


def receptive_field(config: PrefilterConfig) -> int:
    """Measured: the widest input span any output pixel depends on, over every offset on the
    alignment grid (gradients of a random network in float64: every weight non-zero)."""
    torch.manual_seed(0)
    net = PrefilterNet(config).double()
    for prm in net.parameters():
        torch.nn.init.uniform_(prm, 0.002, 0.02)  # positive: no ReLU is dead, no path cancels, no softmax saturates
    a, size = alignment(config), 16 * alignment(config)
    widest = 1
    for off in range(a):
        x = torch.rand(1, 3 * len(config.names), size, size, dtype=torch.float64, requires_grad=True)
        c = size // 2 + off
        net(x)[0, :, c, c].sum().backward()
        assert x.grad is not None
        cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
        widest = max(widest, int(cols.max() - cols.min()) + 1, 2 * max(c - int(cols.min()), int(cols.max()) - c) + 1)
    return widest


def model_info(config: PrefilterConfig, name: str) -> ModelInfo:
    return ModelInfo(inputs=config.names, transfer="linear", alignment=alignment(config),
                     receptive_field=receptive_field(config), name=name, role="prefilter")  # fmt: skip


def load_guides(pairs: list[Any], names: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy, clean) guides of each pair, 3k x H x W float32, prepared as the core prepares them."""
    out = []
    clean_cache: dict[Path, Any] = {}
    for p in pairs:
        noisy = read_image(p.noisy)
        if p.clean not in clean_cache:
            clean_cache[p.clean] = read_image(p.clean)
        clean = clean_cache[p.clean]
        both = []
        for frame in (noisy, clean):
            parts = []
            for g in names:
                arr = getattr(frame, g)
                if arr is None:
                    raise DenoiseError(f"{p.noisy}: no {g} pass in the noisy or the clean render")
                parts.append(prepare_guide(g, arr[..., :3]).transpose(2, 0, 1))
            both.append(np.ascontiguousarray(np.concatenate(parts)))
        out.append((both[0], both[1]))
    return out


def _crops(frames: list[tuple[np.ndarray, np.ndarray]], n: int, patch: int, names: tuple[str, ...],
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    xs, ys = [], []
    for _ in range(n):
        noisy, clean = frames[int(rng.integers(len(frames)))]
        _, h, w = noisy.shape
        y0, x0 = int(rng.integers(0, max(1, h - patch + 1))), int(rng.integers(0, max(1, w - patch + 1)))
        item = {}
        for i, g in enumerate(names):  # keys ending in "normal" turn with the image (dataset.dihedral)
            item[f"noisy_{g}"] = noisy[3 * i : 3 * i + 3, y0 : y0 + patch, x0 : x0 + patch]
            item[f"clean_{g}"] = clean[3 * i : 3 * i + 3, y0 : y0 + patch, x0 : x0 + patch]
        item = dihedral(item, int(rng.integers(0, 8)))
        xs.append(np.concatenate([item[f"noisy_{g}"] for g in names]))
        ys.append(np.concatenate([item[f"clean_{g}"] for g in names]))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _val_error(net: PrefilterNet, frames: list[tuple[np.ndarray, np.ndarray]], alignment: int) -> tuple[float, float]:
    """Mean absolute error against the clean guides: (prefiltered, noisy as is)."""
    err, base = 0.0, 0.0
    with torch.no_grad():
        for noisy, clean in frames:
            _, h, w = noisy.shape
            ph, pw = -h % alignment, -w % alignment
            x = torch.from_numpy(np.pad(noisy, ((0, 0), (0, ph), (0, pw)), mode="symmetric"))[None]
            y = net(x)[0, :, :h, :w].numpy()
            err += float(np.abs(y - clean).mean())
            base += float(np.abs(noisy - clean).mean())
    return err / len(frames), base / len(frames)


def train_prefilter(config: PrefilterConfig, export_to: str | None = None) -> dict[str, Any]:
    """Train for ``config.minutes`` and export the best weights; returns the run's summary."""
    if config.guides not in GUIDE_SETS:
        raise DenoiseError(f"guides must be one of {', '.join(GUIDE_SETS)}, got {config.guides!r}")
    if not config.data:
        raise DenoiseError("no --data folder given")
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    # Scene names repeat across folders: split each folder's scenes by folder and name.
    pairs = [replace(p, scene=f"{Path(d).name}/{p.scene}") for d in config.data for p in find_pairs(d, "exr")]
    split = split_pairs(pairs, config.val_fraction, 0.0, config.split_seed)
    train, val = load_guides(split["train"], config.names), load_guides(split["val"], config.names)
    net = PrefilterNet(config)
    align = alignment(config)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    start, step, best = time.monotonic(), 0, math.inf
    budget = config.minutes * 60
    log = out / "log.csv"
    log.write_text("step,minutes,train_l1,val_l1,val_l1_noisy\n")
    running = 0.0

    def save() -> None:
        with atomic_path(out / "best.pt") as tmp:
            torch.save({"config": asdict(config), "state": net.state_dict(), "step": step}, tmp)

    while True:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        for g in opt.param_groups:  # cosine over the time budget
            g["lr"] = config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        x, y = _crops(train, config.batch_size, config.patch, config.names, rng)
        loss = (net(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        running += loss.item()
        if step % 200 == 0:
            net.eval()
            err, base = _val_error(net, val, align)
            net.train()
            with log.open("a") as f:
                f.write(f"{step},{elapsed / 60:.2f},{running / 200:.5f},{err:.5f},{base:.5f}\n")
            print(f"step {step}: train L1 {running / 200:.4f}, val L1 {err:.4f} (noisy {base:.4f})", flush=True)
            running = 0.0
            if err < best:
                best = err
                save()
    net.eval()
    err, base = _val_error(net, val, align)
    if err < best:
        best = err
        save()
    summary = {"steps": step, "val_l1": best, "val_l1_noisy": base, "train_pairs": len(train), "val_pairs": len(val)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if export_to:
        summary["export"] = str(export_prefilter(out / "best.pt", export_to))
    return summary


def export_prefilter(checkpoint: str | Path, path: str | Path, tolerance: float = 1e-4) -> Path:
    """Write the checkpoint as a contract ONNX prefilter (checked against PyTorch and the core's loader)."""
    from .export import write_checked

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = PrefilterConfig(**state["config"])
    net = PrefilterNet(config)
    net.load_state_dict(state["state"])
    net.eval()
    path = Path(path)
    write_checked(net, model_info(config, name=path.stem), path, {}, tolerance)
    return path
