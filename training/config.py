"""Training settings in one place, without torch (so ``python -m training train --help`` is fast).

``UNetConfig`` is the network's shape, ``TrainConfig`` a training run; the ``train`` command's
options are generated from their fields (``add_options``), so each default is written once.
Recipes (``training/recipes/*.json``) set fields by name, the way the options do.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from blender_denoise_addon.core.contract import INPUT_SETS, PREFILTER_INPUTS, ModelInfo
from blender_denoise_addon.core.errors import DenoiseError
from blender_denoise_addon.core.transfer import TRANSFERS

# 'transpose': a learnt 2x2 stride-2 transposed conv (v1/v2 models). 'nearest': pixel
# repetition, as OIDN does; the decoder conv after it learns the rest, and onnxruntime keeps
# the whole U-Net in its blocked (NCHWc) layout, which ConvTranspose breaks.
UPSAMPLES = ("transpose", "nearest")
KERNEL_SPACES = ("log", "both")
# Networks the trainer builds, by name (training/networks.py): 'kpn', our kernel-predicting U-Net
# (the Modified U-Net for denoisers, the small guide network for prefilters), and OIDN's U-Nets,
# whose published weights import-oidn exports (UNet, UNetSmall, UNetLarge).
NETWORKS = ("kpn", "oidn-base", "oidn-small", "oidn-large")
# What a network may take: a denoiser's passes (color first), or a guide prefilter's guides.
TRAIN_INPUTS: dict[str, tuple[str, ...]] = INPUT_SETS | PREFILTER_INPUTS
# A saved config without a key was saved before that option existed (or before its default
# changed): it meant the old default. Every field's value before this version's defaults.
LEGACY_DEFAULTS: dict[str, Any] = {
    "width": 32,
    "kernel_size": 5,
    "kernel_scales": 4,
    "demodulate": False,
    "picker_width": 0,
    "upsample": "transpose",
    "post_kernel": 0,
    "kernel_space": "log",
}
# Options of earlier versions, removed since, and the value the network computes with now: a
# saved config may carry them at these values (the shipped models do), not at others.
REMOVED_OPTIONS: dict[str, Any] = {
    "head": "kernel",
    "residual": False,
    "first_width": 0,
    "picker_results": False,
    "up_kernel": False,
}
# Default largest correction of the refine branch, in the log transfer's units (1/24 is one stop).
REFINE_BOUND = 0.05


def option(
    help: str, choices: Any = None, group: str = "settings", flag: str = "", required: bool = False
) -> dict[str, Any]:
    """A config field's command-line option (``add_options``): its help, choices, group, its flags
    when not ``--field-name`` (comma-separated), and whether it must be given."""
    return {"help": help, "choices": tuple(choices) if choices else None, "group": group, "flag": flag,
            "required": required}  # fmt: skip


def _opt(help: str, choices: Any = None, group: str = "model", flag: str = "") -> dict[str, Any]:
    return option(help, choices, group, flag)


@dataclass(frozen=True)
class UNetConfig:
    """The network's shape. Level i (0 = full resolution) has ``width + growth * i`` channels;
    ``depth`` poolings. The defaults are the recommended architecture: the shipped
    color + albedo + normal model's (v13); with color alone, demodulate and the picker are off.
    """

    network: str = field(default="kpn", metadata=_opt("the network, by name (training/networks.py)", NETWORKS))
    inputs: str = field(
        default="color,albedo,normal",
        metadata=_opt("passes the network takes; guides alone train a guide prefilter", TRAIN_INPUTS),
    )
    width: int = field(default=16, metadata=_opt("channels at full resolution"))
    growth: int = field(default=16, metadata=_opt("channels added per level down"))
    depth: int = field(default=4, metadata=_opt("number of 2x poolings (alignment = 2**depth)"))
    kernel_size: int = field(default=3, metadata=_opt("odd kernel width at every scale"))
    kernel_scales: int = field(
        default=0, metadata=_opt("scales, full resolution included, at most depth + 1 (0: depth + 1)")
    )
    # The same kernels also filter irradiance (color / albedo), multiplied back by the albedo
    # afterwards, with a learnt per-pixel weight: textures stay sharp.
    demodulate: bool | None = field(
        default=None, metadata=_opt("also filter color / albedo and remodulate (default: with an albedo input)")
    )
    # Channels of a small two-layer 3x3 conv branch on the inputs whose output adds to the
    # demodulated-vs-plain logit: it sees pixel-level albedo noise directly.
    picker_width: int = field(
        default=-1, metadata=_opt("with demodulate: channels of the picker branch (0: none; -1: 8 with demodulate)")
    )
    upsample: str = field(
        default="nearest",
        metadata=_opt("decoder upsampling: 'nearest' (fast in onnxruntime) or a learnt 2x2 'transpose'", UPSAMPLES),
    )
    # A weighted average of noisy neighbours cannot rebuild an edge the coarse scales blurred; a
    # bounded correction can, and its bound keeps it from inventing highlights.
    refine_width: int = field(
        default=0, metadata=_opt("channels of a 3x3 conv branch adding a bounded correction (0: none)")
    )
    # The largest correction (tanh times this); it also scales how strongly the branch's loss
    # gradient reaches the shared features.
    refine_bound: float = field(
        default=REFINE_BOUND, metadata=_opt("with refine-width: the largest correction, in log units")
    )
    # The finest scale's 3x3 average leaves pixel-level noise in flat areas that the coarse scales
    # cannot replace (they swap in low frequencies only).
    post_kernel: int = field(default=3, metadata=_opt("size of one more per-pixel kernel at full resolution (0: none)"))
    # A mean of log values is a biased, too dark estimate of noisy radiance, which makes the
    # coarse scales useless; a linear mean spreads fireflies: 'both' blends them per pixel.
    kernel_space: str = field(
        default="both",
        metadata=_opt("where kernels average: the network's 'log' space, or 'both' log and linear", KERNEL_SPACES),
    )

    def __post_init__(self) -> None:
        if self.inputs not in TRAIN_INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(TRAIN_INPUTS)}, got {self.inputs!r}")
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        # Defaults that depend on other fields, resolved once (the saved config holds the values).
        if not self.kernel_scales:
            object.__setattr__(self, "kernel_scales", self.depth + 1)
        if self.demodulate is None:
            object.__setattr__(self, "demodulate", self.role == "denoiser" and "albedo" in self.passes)
        if self.picker_width < 0:
            object.__setattr__(self, "picker_width", 8 if self.demodulate else 0)
        if self.width < 1 or self.growth < 0 or self.depth < 1:
            raise ValueError(f"need width >= 1, growth >= 0, depth >= 1; got {self}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if not 1 <= self.kernel_scales <= self.depth + 1:
            raise ValueError(f"kernel_scales must be in 1..{self.depth + 1}, got {self.kernel_scales}")
        if self.demodulate and (self.role != "denoiser" or "albedo" not in self.passes):
            raise ValueError("demodulate needs a color and an albedo input")
        if self.picker_width and not self.demodulate:
            raise ValueError("picker_width needs demodulate")
        if not self.refine_bound > 0:
            raise ValueError(f"refine_bound must be > 0, got {self.refine_bound}")
        if self.post_kernel < 0 or (self.post_kernel and self.post_kernel % 2 == 0):
            raise ValueError(f"post_kernel must be odd (or 0: none), got {self.post_kernel}")
        if self.kernel_space not in KERNEL_SPACES:
            raise ValueError(f"kernel_space must be one of {', '.join(KERNEL_SPACES)}, got {self.kernel_space!r}")

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> UNetConfig:
        """The config a checkpoint or export saved (``to_dict``), from any version of this code."""
        for key, now in REMOVED_OPTIONS.items():
            if saved.get(key, now) != now:
                raise DenoiseError(
                    f"the model was trained with {key}={saved[key]!r}, an option this version removed "
                    "(git history has it)"
                )
        kept = {k: v for k, v in saved.items() if k not in REMOVED_OPTIONS}
        try:
            return cls(**LEGACY_DEFAULTS | kept)
        except (TypeError, ValueError) as e:
            raise DenoiseError(f"the saved model config does not fit this version: {e}") from None

    @property
    def passes(self) -> tuple[str, ...]:
        return TRAIN_INPUTS[self.inputs]

    @property
    def role(self) -> str:
        """``denoiser`` (color in) or ``prefilter`` (guides in, the same guides cleaned out)."""
        return "denoiser" if "color" in self.passes else "prefilter"

    @property
    def oidn_arch(self) -> str:
        """The OIDN architecture (a key of oidn_model.ARCHS) for OIDN's networks, else ""."""
        return self.network.removeprefix("oidn-") if self.network.startswith("oidn-") else ""

    @property
    def kpn_denoiser(self) -> bool:
        """The Modified U-Net: the shape fields below describe it (OIDN's U-Nets have fixed shapes)."""
        return self.network == "kpn" and self.role == "denoiser"

    @property
    def in_channels(self) -> int:
        return 3 * len(self.passes)

    @property
    def channels(self) -> list[int]:
        return [self.width + self.growth * i for i in range(self.depth + 1)]

    @property
    def planes(self) -> int:
        """Channels the kernel head filters: log and/or linear color, then demodulated irradiance."""
        return 3 * ((2 if self.kernel_space == "both" else 1) + self.demodulate)

    @property
    def blend_channels(self) -> int:
        """Per-scale blend logits: coarse-to-fine, then the pickers (linear vs log, then demodulated).

        Always at least two, so models saved before 'both' and 'demodulate' combined keep their shapes.
        """
        return 1 + max(1, (self.kernel_space == "both") + self.demodulate)

    @property
    def alignment(self) -> int:
        if not self.kpn_denoiser:
            from .networks import alignment

            return alignment(self)
        return 2**self.depth

    def _ops(self) -> list[str]:
        """Spatial ops in forward order along the deepest path (skips see a subset of it)."""
        ops = ["conv3", "conv3"]
        for _ in range(self.depth):
            ops += ["pool", "conv3", "conv3"]
        for _ in range(self.depth):
            ops += ["up", "conv3", "conv3"]
        return ops + ["conv1"]

    @property
    def receptive_field(self) -> int:
        """Receptive field (pixels) for inputs whose origin is on the alignment grid.

        Walks the ops backwards with interval arithmetic for every output phase
        modulo the alignment (2x2 pooling and stride-2 upsampling are not centred,
        so the window depends on the phase) and returns the widest symmetric window.
        The deepest path bounds every skip path, so following it is exact.
        """
        if not self.kpn_denoiser:
            from .networks import receptive_field

            return receptive_field(self)
        radius = 0
        # The post kernel and the refine branch read the combined result further out.
        r = (2 if self.refine_width else 0) + self.post_kernel // 2
        for x in range(self.alignment):
            lo, hi = self._kernel_deps(0, x - r, x + r)
            radius = max(radius, x - lo, hi - x)
        return 2 * radius + 1

    def _feature_ops(self, level: int) -> list[str]:
        """Ops along the deepest path to the decoder output at ``level``."""
        return self._ops()[: 2 + 3 * self.depth + 3 * (self.depth - level)]

    def _kernel_deps(self, level: int, lo: int, hi: int) -> tuple[int, int]:
        """Input pixels that the kernel head's output at ``level`` pixels [lo, hi] reads."""

        def filtered(lo: int, hi: int) -> tuple[int, int]:  # kernels (features) and the pooled planes
            f = _walk(self._feature_ops(level), lo, hi)
            r, step = self.kernel_size // 2, 2**level
            return min(f[0], (lo - r) * step), max(f[1], (hi + r) * step + step - 1)

        out = filtered(lo, hi)
        if level + 1 < self.kernel_scales:
            clo, chi = (lo - 1) // 2, (hi + 1) // 2  # bilinear upsampling reads one coarse pixel further
            for dep in (self._kernel_deps(level + 1, clo, chi), filtered(2 * clo, 2 * chi + 1)):
                out = (min(out[0], dep[0]), max(out[1], dep[1]))
        return out

    def model_info(self, transfer: str, name: str = "") -> ModelInfo:
        return ModelInfo(
            inputs=self.passes,
            transfer=transfer,
            alignment=self.alignment,
            receptive_field=self.receptive_field,
            name=name,
            role=self.role,
            padding="zero" if self.oidn_arch else "mirror",  # as OIDN pads
        )

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per full-resolution pixel (convolutions only; the Modified U-Net's)."""
        if not self.kpn_denoiser:
            return math.nan
        ch = self.channels
        total = 0.0
        cin = self.in_channels
        for i, c in enumerate(ch):
            scale = 4.0**-i
            total += scale * 9 * (cin * c + c * c)
            cin = c
        for i in reversed(range(self.depth)):
            if self.upsample == "transpose":
                total += 4.0 ** -(i + 1) * 4 * ch[i + 1] ** 2  # 2x2 transposed conv, per coarse pixel
            total += 4.0**-i * 9 * ((ch[i + 1] + ch[i]) * ch[i] + ch[i] * ch[i])
        # 1x1 convs to kernel logits (+ blend weights) per scale, then the weighted sums.
        k2 = self.kernel_size**2
        for s in range(self.kernel_scales):
            total += 4.0**-s * (ch[s] * (k2 + self.blend_channels) + k2 * self.planes)
        total += 9 * (self.in_channels * self.picker_width + self.picker_width)
        total += 9 * ((self.channels[0] + 3) * self.refine_width + self.refine_width * 3)
        p2 = self.post_kernel**2
        return total + (self.channels[0] * (p2 + 1) + p2 * 3 if self.post_kernel else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _walk(ops: list[str], lo: int, hi: int) -> tuple[int, int]:
    """The input interval that output pixels [lo, hi] of ``ops`` (in forward order) read."""
    for op in reversed(ops):
        if op == "conv3":
            lo, hi = lo - 1, hi + 1
        elif op == "up":  # output pixel p reads coarse pixel p // 2
            lo, hi = lo // 2, hi // 2
        elif op == "pool":  # coarse pixel p reads fine pixels 2p, 2p + 1
            lo, hi = 2 * lo, 2 * hi + 1
    return lo, hi


def _run(help: str, choices: Any = None, flag: str = "") -> dict[str, Any]:
    return _opt(help, choices, "run", flag)


def _data(help: str, choices: Any = None) -> dict[str, Any]:
    return _opt(help, choices, "data")


def _optim(help: str) -> dict[str, Any]:
    return _opt(help, None, "optimisation")


SOURCES = ("auto", "exr", "png")
FREEZE = ("none", "encoder")
# The albedo and normal the network is trained on: the noisy render's (as it sees them without a
# prefilter), the clean render's (how OIDN trains its cleanAux models), or the noisy ones after
# the --prefilter models (exactly what it sees at inference).
GUIDES = ("noisy", "clean", "prefiltered")


def parse_prefilter(raw: str) -> list[str]:
    """``PATH.onnx[,PATH.onnx]`` -> the prefilter model files."""
    files = [x.strip() for x in raw.split(",") if x.strip()]
    for f in files:
        if not f.endswith(".onnx"):
            raise DenoiseError(f"--prefilter entry {f!r} must be a .onnx prefilter model")
    return files


@dataclass
class TrainConfig:
    """One training run. ``config.json`` in the run folder and every checkpoint hold it (``asdict``)."""

    data: str = field(
        default="", metadata=_data("dataset folder written by generate-dataset (with --recipe: the datasets' folder)")
    )
    out: str = field(default="", metadata=_run("run folder for the config, log and checkpoints"))
    source: str = field(
        default="auto", metadata=_data("pairs to read: multilayer EXRs, PNG pairs, or auto (EXRs if any)", SOURCES)
    )
    spp: list[int] = field(default_factory=list, metadata=_data("train only on these noisy spp (default: all)"))
    guides: str = field(default="noisy", metadata=_data("albedo and normal to train on (see GUIDES)", GUIDES))
    prefilter: str = field(
        default="",
        metadata=_data(
            "PATH.onnx[,PATH.onnx]: the guide prefilters of --guides prefiltered, and the ones the exported "
            "model names (it must ship beside them); needed unless --guides noisy"
        ),
    )
    val_fraction: float = field(default=0.1, metadata=_data("share of scenes held out for validation"))
    test_fraction: float = field(default=0.1, metadata=_data("share of scenes held out for testing"))
    split_seed: int = field(default=0, metadata=_data("seed of the deterministic split by scene"))
    transfer: str = field(
        default="",
        metadata=_opt(
            "network space for color (core/transfer.py; default: log for kpn, pu for OIDN's networks, "
            "linear for prefilters)",
            TRANSFERS,
        ),
    )
    model: UNetConfig = field(default_factory=UNetConfig)  # options: one per UNetConfig field
    epochs: int = field(default=30, metadata=_optim("passes over the training crops"))
    batch_size: int = field(default=16, metadata=_optim("crops per step"))
    patch: int = field(default=64, metadata=_optim("random crop size in pixels"))
    patches_per_image: int = field(default=8, metadata=_optim("random crops taken from each pair per epoch"))
    albedo_texture: float = field(
        default=0.0, metadata=_optim("fraction of crops with a painted texture on color, target and albedo")
    )
    freeze: str = field(
        default="none",
        metadata=_opt("with --init: weights kept as they are ('encoder': the encoder's)", FREEZE, "optimisation"),
    )
    lr: float = field(default=1e-3, metadata=_optim("Adam learning rate after warmup"))
    min_lr: float = field(default=1e-5, metadata=_optim("learning rate at the end of the cosine decay"))
    warmup_steps: int = field(default=100, metadata=_optim("steps of linear learning-rate warmup"))
    w_mse: float = field(default=1.0, metadata=_optim("weight of the MSE term"))
    w_ssim: float = field(default=0.1, metadata=_optim("weight of the (1 - SSIM) term"))
    w_l1: float = field(default=1.0, metadata=_optim("weight of the L1 term"))
    w_psnr: float = field(default=0.0, metadata=_optim("weight of each frame's display-PSNR shortfall below 50 dB"))
    max_steps: int = field(default=0, metadata=_optim("stop after this many steps (0: no cap; smoke runs)"))
    minutes: float = field(
        default=0.0,
        metadata=_optim("stop after this many minutes, the learning rate decaying over them (0: by epochs and steps)"),
    )
    seed: int = field(default=0, metadata=_run("seed for weights, crops and shuffling"))
    workers: int = field(default=0, metadata=_run("DataLoader worker processes (0: the main process)"))
    threads: int = field(default=0, metadata=_run("torch CPU threads (0: torch's default)"))
    resume: str = field(
        default="", metadata=_run("continue the run in a checkpoint ('auto': OUT/last.pt) with its saved settings")
    )
    init: str = field(
        default="", metadata=_run("fine-tune: start from a .pt checkpoint's or an exported .onnx model's weights")
    )
    widen: bool = field(
        default=False,
        metadata=_run(
            "with --init: the weights may come from a narrower network, one without --demodulate, with "
            "'transpose' upsampling or the log kernel space (training/surgery.py)"
        ),
    )
    reset_blends: bool = field(default=False, metadata=_run("with --init: the coarse-to-fine blends restart at 0.5"))
    progress: bool = field(default=True, metadata=_run("no progress bars", flag="--quiet"))

    def __post_init__(self) -> None:
        if not self.transfer:  # each network's own space
            m = self.model
            self.transfer = "linear" if m.role == "prefilter" else "pu" if m.oidn_arch else "log"
        if self.freeze not in FREEZE:
            raise ValueError(f"freeze must be one of {', '.join(FREEZE)}, got {self.freeze!r}")
        if self.model.role == "prefilter" and (self.guides != "noisy" or self.albedo_texture or self.w_psnr):
            raise ValueError("a guide prefilter trains on the noisy guides: no --guides, --albedo-texture or --w-psnr")

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainConfig:
        """A saved config (``asdict``), also from before the model's fields were nested."""
        known = {f.name for f in fields(cls)} - {"model"}
        model = saved.get("model")
        if not isinstance(model, dict):  # flat: the model's fields beside the run's
            model = {k: v for k, v in saved.items() if k in {f.name for f in fields(UNetConfig)}}
            model |= {k: saved[k] for k in REMOVED_OPTIONS if k in saved}
        return cls(**{k: v for k, v in saved.items() if k in known}, model=UNetConfig.from_dict(model))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


# What --resume takes from the command line; everything else comes from the checkpoint.
RESUME_OPTIONS = ("out", "resume", "epochs", "max_steps", "workers", "threads", "progress")


def _option(parser: Any, f: Any) -> None:
    meta = f.metadata
    default = f.default if f.default is not MISSING else f.default_factory()
    flags = meta["flag"].split(",") if meta["flag"] else ["--" + f.name.replace("_", "-")]
    shown = "" if default in ("", None, []) or meta.get("required") else f" (default: {default})"
    kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": meta["help"] + shown}
    if meta["flag"].startswith("--") and isinstance(default, bool):  # e.g. --quiet: the field's opposite
        kw |= {"action": "store_false" if default else "store_true", "help": meta["help"]}
    elif isinstance(default, bool) or f.name == "demodulate":
        kw["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, list):
        kw |= {"nargs": "*", "type": int}
    else:
        kw["type"] = type(default)
    if meta["choices"]:
        kw["choices"] = meta["choices"]
    if meta.get("required"):
        kw["required"] = True
    parser.add_argument(*flags, **kw)


def add_options(parser: argparse.ArgumentParser, config: type = TrainConfig) -> None:
    """One option per field of the dataclass ``config`` (a TrainConfig's model: one per UNetConfig
    field), grouped by their metadata; absent from the parsed namespace unless given."""
    groups: dict[str, Any] = {}
    for f in fields(config):
        for g in [f] if f.metadata else fields(UNetConfig):  # the one field without: the nested network
            group = g.metadata["group"]
            if group not in groups:
                groups[group] = parser.add_argument_group(group)
            _option(groups[group], g)


def config_from(given: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from settings by field name (the command line's, a recipe stage's): the model's
    fields and the run's side by side; the rest keep their defaults."""
    model_keys = {f.name for f in fields(UNetConfig)}
    run = {k: v for k, v in given.items() if k not in model_keys}
    unknown = set(run) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise DenoiseError(f"unknown training settings: {', '.join(sorted(unknown))}")
    try:
        return TrainConfig(**run, model=UNetConfig(**{k: v for k, v in given.items() if k in model_keys}))
    except (TypeError, ValueError) as e:
        raise DenoiseError(str(e)) from None


RECIPES = Path(__file__).resolve().parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def load_recipe(name: str) -> dict[str, Any]:
    """A recipe with each stage's complete settings: the one place the merge rule lives. A stage's
    settings are its recipe's ``defaults`` overridden by its own; a recipe that ``extends`` another
    runs the other's stages first, and its own stages start from the settings of the other's last
    stage (the network they continue). The result has no ``defaults`` left."""
    path = RECIPES / f"{name}.json"
    if not path.is_file():
        raise DenoiseError(f"no recipe {name!r}; recipes: {', '.join(recipe_names()) or 'none'}")
    recipe = json.loads(path.read_text(encoding="utf-8"))
    base_name = recipe.get("extends")
    if base_name == name:
        raise DenoiseError(f"recipe {name} extends itself")
    base = load_recipe(base_name) if base_name else {"stages": [], "datasets": {}}
    inherited = base["stages"][-1]["settings"] if base["stages"] else {}
    own = [s | {"settings": inherited | recipe.get("defaults", {}) | s["settings"]} for s in recipe["stages"]]
    stages = base["stages"] + own
    names = [s["name"] for s in stages]
    if len(set(names)) != len(names):
        raise DenoiseError(f"recipe {name}: stage names repeat those of {base_name}: {names}")
    return recipe | {"datasets": base["datasets"] | recipe.get("datasets", {}), "defaults": {}, "stages": stages}
