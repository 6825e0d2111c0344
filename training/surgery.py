"""Model surgery for ``train --init``: start from weights of another shape or setting.

``fitted_weights`` reads a checkpoint or export and fits it to a model: widening to more
channels (function-preserving, ``widened_state``), adding the demodulated path, converting
transposed-conv upsampling to nearest, growing kernels, rescaling the refine branch, and
starting branches the source lacks at no change. ``reset_blends`` restarts the kernel
head's blends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from blender_denoise_addon.core.errors import DenoiseError

from .checkpoint import read_initial
from .model import LATE_BRANCHES, REFINE_BOUND, ModifiedUNet, UNetConfig

# Options that change what the weights compute without changing their shapes: --init must match them.
_FUNCTION_FIELDS = (
    "network",
    "inputs",
    "depth",
    "kernel_size",
    "kernel_scales",
    "demodulate",
    "upsample",
    "kernel_space",
)


def _flag(field: str, value: Any) -> str:
    name = "--" + field.replace("_", "-")
    if isinstance(value, bool):
        return name if value else f"no {name}"
    return f"{name} {value}"


def load_initial_weights(model: ModifiedUNet, path: str | Path) -> None:
    """Copy every parameter and buffer of ``model`` from ``path``."""
    model.load_state_dict(fitted_weights(model, path))


def fitted_weights(model: torch.nn.Module, path: str | Path, widen: bool = False) -> dict[str, torch.Tensor]:
    """``model``'s state dict, read from ``path``; every name and shape must match.

    With ``widen``, ``path`` may hold a narrower network of the same layout: its weights fill
    the first channels and the result computes what it did (see ``widened_state``). It may
    also lack ``demodulate`` (kernel space both): the demodulated result then starts
    blended in at weight 0.5. And a ``transpose`` model may become a ``nearest`` one: its
    transposed convs are dropped (this one is not function-preserving: fine-tune it).
    """
    config: UNetConfig = model.config  # every network of networks.build carries its config
    saved, weights = read_initial(path)
    if saved:
        differ = [k for k in _FUNCTION_FIELDS if saved.get(k, "kpn" if k == "network" else None) not in
                  (None, getattr(config, k))]  # fmt: skip
        if widen and "demodulate" in differ and config.demodulate and config.kernel_space != "log":
            differ.remove("demodulate")  # grown: widened_state adds the demodulated path, half-blended in
        if widen and "kernel_space" in differ and config.kernel_space == "both":
            # Grown: the same kernels now also average linear radiance (the shapes do not change);
            # --reset-blends restarts the blends a log-space model learnt to switch off.
            differ.remove("kernel_space")
        if widen and differ == ["upsample"] and config.upsample == "nearest":
            # Converted: the learnt 2x2 transposed convs are dropped; not function-preserving, so fine-tune.
            differ = []
            weights = {k: v for k, v in weights.items() if not k.startswith("ups.")}
        if differ:
            flags = ", ".join(_flag(k, saved[k]) for k in differ)
            raise DenoiseError(f"--init {path} was trained with other settings; to start from it, pass {flags}")
        ratio = saved.get("refine_bound", REFINE_BOUND) / config.refine_bound
        if ratio != 1.0 and "refine.2.weight" in weights:
            # Another --refine-bound: the output layer is scaled so that the branch adds what it did
            # (to first order: tanh is near linear where the branch barely acts), and fine-tuning
            # starts from the source's function.
            weights["refine.2.weight"] = weights["refine.2.weight"] * ratio
            weights["refine.2.bias"] = weights["refine.2.bias"] * ratio
    own = model.state_dict()
    if widen:
        if not isinstance(model, ModifiedUNet):
            raise DenoiseError("--widen grows the Modified U-Net (--network kpn) only")
        try:
            weights = widened_state(model, weights)
        except (KeyError, ValueError) as e:
            raise DenoiseError(f"--init {path} --widen: {e}") from None
    # A refine branch or post kernel the source lacks starts as this model built it: its zero output layer
    # leaves the function as it was.
    weights = {k: own[k] for k in own if k.startswith(LATE_BRANCHES) and k not in weights} | weights
    missing = [k for k in own if k not in weights]
    wrong = [
        f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or wrong:
        raise DenoiseError(
            f"--init {path} does not fit this model (same --inputs, --width, --growth, --depth, "
            f"--kernel-* needed): {len(missing)} missing, e.g. {missing[:3]}; {len(wrong)} of another shape, "
            f"e.g. {wrong[:3]}"
        )
    return {k: weights[k].to(v.dtype) for k, v in own.items()}


def reset_blends(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    """``state`` with every kernel-head blend logit at 0 (weight 0.5), the kernels kept.

    A sigmoid blend trained towards 0 (e.g. in log space, where coarse means are biased dark)
    has almost no gradient left, so a run that changes ``kernel_space`` restarts them.
    """
    k2 = cfg.kernel_size**2
    state = dict(state)
    for s in range(cfg.kernel_scales):
        for kind in ("weight", "bias"):
            name = f"kernel_heads.{s}.{kind}"
            state[name] = state[name].clone()
            state[name][k2:] = 0.0
    return state


def widened_state(model: ModifiedUNet, small: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model``'s state dict with a narrower network's weights in its first channels.

    ``small`` must be a state dict of the same layout (inputs, depth, head, upsample) with
    at most as many channels per level. Function-preserving widening (Net2Net, Chen et al.
    2016): old channels get the old weights and zero weights from the new channels, so the
    wide network computes exactly what the small one did; the new channels keep ``model``'s
    random initialisation, and training grows their influence from zero.
    """
    cfg = model.config
    own = model.state_dict()
    big = cfg.channels
    old = [int(small[f"encoders.{i}.0.weight"].shape[0]) for i in range(cfg.depth + 1)]
    if any(o > b for o, b in zip(old, big, strict=True)):
        raise ValueError(f"the weights have channels {old}, wider than this network's {big}")
    r = torch.arange
    # Parameter prefix -> (old output channels, old input channels), as indices into the wide layer.
    where: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    cin = r(cfg.in_channels)
    for i in range(cfg.depth + 1):
        where[f"encoders.{i}.0"] = (r(old[i]), cin)
        where[f"encoders.{i}.2"] = (r(old[i]), r(old[i]))
        cin = r(old[i])
    for j, lv in enumerate(reversed(range(cfg.depth))):
        where[f"ups.{j}.0"] = (r(old[lv + 1]), r(old[lv + 1]))
        # The decoder reads cat(upsampled coarse features, skip): the skip starts after all the coarse ones.
        where[f"decoders.{j}.0"] = (r(old[lv]), torch.cat([r(old[lv + 1]), big[lv + 1] + r(old[lv])]))
        where[f"decoders.{j}.2"] = (r(old[lv]), r(old[lv]))
    for s in range(cfg.kernel_scales):
        # A model grown by --demodulate has more blend logits: the new ones start at 0 (weight 0.5).
        where[f"kernel_heads.{s}"] = (r(int(small[f"kernel_heads.{s}.bias"].shape[0])), r(old[s]))
    late = {k: v for k, v in own.items() if k.startswith(LATE_BRANCHES)}
    late_fits = all(k in small and small[k].shape == v.shape for k, v in late.items())
    if not late_fits and all(k in small and small[k].shape[0] == v.shape[0] for k, v in late.items()):
        # Only the full-resolution features they read grew: the old columns keep their weights.
        late_fits = True
        if "post_head.weight" in own:
            where["post_head"] = (r(own["post_head.weight"].shape[0]), r(old[0]))
        if "refine.0.weight" in own:  # reads cat(features[0], the filtered result)
            where["refine.0"] = (r(own["refine.0.weight"].shape[0]), torch.cat([r(old[0]), big[0] + r(3)]))
            where["refine.2"] = (r(3), r(own["refine.0.weight"].shape[0]))
    out: dict[str, torch.Tensor] = {}
    for name, value in own.items():
        prefix, kind = name.rsplit(".", 1)
        if prefix.startswith("picker."):  # not widened; a model grown by --picker-width starts with its own
            out[name] = small[name].clone() if name in small else value.clone()
            continue
        if name.startswith(LATE_BRANCHES) and prefix not in where:
            # They read the widened features: restart if they no longer fit.
            out[name] = small[name].clone() if late_fits and name in small else value.clone()
            continue
        rows, cols = where[prefix]
        w = value.clone()
        # ConvTranspose2d stores (in, out, kh, kw): view it as (out, in, ...) like Conv2d.
        view = w.transpose(0, 1) if prefix.startswith("ups.") and kind == "weight" else w
        src = small[name].to(w.dtype)
        src = src.transpose(0, 1) if view is not w else src
        want = (len(rows), len(cols)) if kind == "weight" else (len(rows),)
        if tuple(src.shape[: len(want)]) != want or src.shape[len(want) :] != view.shape[len(want) :]:
            raise ValueError(f"{name}: shape {tuple(small[name].shape)} does not fit {tuple(value.shape)}")
        if prefix.startswith("kernel_heads."):
            view[len(rows) :] = 0.0
        if kind == "weight":
            view[rows] = 0.0
            view[rows[:, None], cols[None, :]] = src
        else:
            view[rows] = src
        out[name] = w
    return out
