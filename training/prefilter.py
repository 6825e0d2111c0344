"""Guide prefilters: small networks that clean the noisy albedo or normal pass before the denoiser.

Trained on the generator's EXR pairs: each noisy frame's guide in, the clean render's guide as
the target (the clean render holds converged albedo and normal). The network is the Modified
U-Net's kernel-prediction design, smaller: each output pixel is a weighted average of its noisy
neighbours, so an albedo stays in [0, 1] and a normal in [-1, 1] and flat areas stay exactly flat.
Normals are mapped to [0, 1] inside the exported graph, so the core feeds guides as it prepares
them and gets them back in the same units. The run folder gets config.json (settings and seed),
log.csv, best.pt, and the ONNX export (role ``prefilter`` in the model contract).

    python -m training prefilter --data data/train-s9000 --guide albedo --out runs/prefilter-albedo \\
        --minutes 15 -o models/prefilter-albedo.onnx
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blender_denoise_addon.core.contract import ModelInfo
from blender_denoise_addon.core.denoise import prepare_albedo, prepare_normal
from blender_denoise_addon.core.errors import DenoiseError
from blender_denoise_addon.core.imageio import read_image

from .config import UNetConfig
from .dataset import dihedral, find_pairs, split_pairs
from .model import ModifiedUNet

GUIDES = ("albedo", "normal")


@dataclass
class PrefilterConfig:
    """One prefilter training run (saved as config.json and in every checkpoint)."""

    data: list[str] = field(default_factory=list)
    guide: str = "albedo"
    out: str = ""
    minutes: float = 15.0
    batch_size: int = 16
    patch: int = 64
    lr: float = 1e-3
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    threads: int = 0
    # The network: the Modified U-Net's shape, smaller (guides are smooth; cost must stay a few % of the denoiser's).
    width: int = 12
    growth: int = 8
    depth: int = 3
    kernel_size: int = 5

    def unet(self) -> UNetConfig:
        return UNetConfig(inputs="color", width=self.width, growth=self.growth, depth=self.depth,
                          kernel_size=self.kernel_size, kernel_scales=0, demodulate=False, picker_width=0,
                          upsample="nearest", kernel_space="log", post_kernel=0, refine_width=0)  # fmt: skip


class PrefilterNet(nn.Module):
    """A guide in its own units (N x 3 x H x W) -> the cleaned guide in the same units."""

    def __init__(self, config: PrefilterConfig) -> None:
        super().__init__()
        self.guide = config.guide
        self.net = ModifiedUNet(config.unet())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.guide == "normal":  # [-1, 1] <-> [0, 1]: the network's output range
            return self.net(x * 0.5 + 0.5) * 2.0 - 1.0
        return self.net(x)


def model_info(config: PrefilterConfig, name: str) -> ModelInfo:
    u = config.unet()
    return ModelInfo(inputs=(config.guide,), transfer="linear", alignment=u.alignment,
                     receptive_field=u.receptive_field, name=name, role="prefilter")  # fmt: skip


def load_guides(pairs: list[Any], guide: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy, clean) guide of each pair, 3 x H x W float32, prepared as the core prepares them."""
    prep = prepare_albedo if guide == "albedo" else prepare_normal
    out = []
    clean_cache: dict[Path, np.ndarray] = {}
    for p in pairs:
        noisy = getattr(read_image(p.noisy), guide)
        if p.clean not in clean_cache:
            clean_cache[p.clean] = getattr(read_image(p.clean), guide)
        clean = clean_cache[p.clean]
        if noisy is None or clean is None:
            raise DenoiseError(f"{p.noisy}: no {guide} pass in the noisy or the clean render")
        out.append(tuple(prep(a[..., :3]).transpose(2, 0, 1).copy() for a in (noisy, clean)))
    return out  # type: ignore[return-value]


def _crops(frames: list[tuple[np.ndarray, np.ndarray]], n: int, patch: int, guide: str, rng: np.random.Generator):
    xs, ys = [], []
    for _ in range(n):
        noisy, clean = frames[int(rng.integers(len(frames)))]
        _, h, w = noisy.shape
        y0, x0 = int(rng.integers(0, max(1, h - patch + 1))), int(rng.integers(0, max(1, w - patch + 1)))
        item = {f"noisy_{guide}": noisy[:, y0 : y0 + patch, x0 : x0 + patch],
                f"clean_{guide}": clean[:, y0 : y0 + patch, x0 : x0 + patch]}  # fmt: skip
        item = dihedral(item, int(rng.integers(0, 8)))  # turns normals with the image
        xs.append(item[f"noisy_{guide}"])
        ys.append(item[f"clean_{guide}"])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _val_error(net: PrefilterNet, frames: list[tuple[np.ndarray, np.ndarray]], alignment: int) -> tuple[float, float]:
    """Mean absolute error against the clean guide: (prefiltered, noisy as is)."""
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
    if config.guide not in GUIDES:
        raise DenoiseError(f"guide must be one of {', '.join(GUIDES)}, got {config.guide!r}")
    if not config.data:
        raise DenoiseError("no --data folder given")
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    pairs = [p for d in config.data for p in find_pairs(d, "exr")]
    # Scene names repeat across folders: split each folder's scenes by folder and name.
    for p in pairs:
        object.__setattr__(p, "scene", f"{Path(p.clean).parents[2].name}/{p.scene}")
    split = split_pairs(pairs, config.val_fraction, 0.0, config.split_seed)
    train, val = load_guides(split["train"], config.guide), load_guides(split["val"], config.guide)
    net = PrefilterNet(config)
    align = config.unet().alignment
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    start, step, best = time.monotonic(), 0, math.inf
    budget = config.minutes * 60
    log = out / "log.csv"
    log.write_text("step,minutes,train_l1,val_l1,val_l1_noisy\n")
    running = 0.0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        for g in opt.param_groups:  # cosine over the time budget
            g["lr"] = config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        x, y = _crops(train, config.batch_size, config.patch, config.guide, rng)
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
                torch.save({"config": asdict(config), "state": net.state_dict(), "step": step}, out / "best.pt")
    net.eval()
    err, base = _val_error(net, val, align)
    if err < best:
        torch.save({"config": asdict(config), "state": net.state_dict(), "step": step}, out / "best.pt")
        best = err
    summary = {"steps": step, "val_l1": best, "val_l1_noisy": base, "train_pairs": len(train), "val_pairs": len(val)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if export_to:
        summary["export"] = str(export_prefilter(out / "best.pt", export_to))
    return summary


def export_prefilter(checkpoint: str | Path, path: str | Path, tolerance: float = 1e-4) -> Path:
    """Write the checkpoint as a contract ONNX prefilter (checked against PyTorch and the core's loader)."""
    import os

    import onnx
    from onnx import helper

    from blender_denoise_addon.core.model import load_model

    from .export import check_parity, trace_to_onnx

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = PrefilterConfig(**state["config"])
    net = PrefilterNet(config)
    net.load_state_dict(state["state"])
    net.eval()
    path = Path(path)
    info = model_info(config, name=path.stem)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        trace_to_onnx(net, info, tmp)  # type: ignore[arg-type]
        proto = onnx.load(str(tmp))
        helper.set_model_props(proto, info.metadata())
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        check_parity(net, tmp, info, tolerance)  # type: ignore[arg-type]
        load_model(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
