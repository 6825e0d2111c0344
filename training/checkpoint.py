"""Reading what training saved: checkpoints (``.pt``) and exported models' weights and config.

A checkpoint holds ``model`` (the state dict), ``model_config`` (``UNetConfig.to_dict()``),
``transfer`` and ``config`` (the run's ``TrainConfig``); an export carries the model config in
its metadata under ``MODEL_CONFIG_KEY`` and PyTorch's parameter names on its initializers; an
OIDN network import-oidn wrote is recognised by its tensors (``networks.onnx_config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from blender_denoise_addon.core.errors import DenoiseError

from .config import LEGACY_DEFAULTS, UNetConfig
from .networks import MODEL_CONFIG_KEY, build, onnx_config, read_onnx_weights

__all__ = ["MODEL_CONFIG_KEY", "build_model", "initial_config", "initial_weights", "load_checkpoint", "read_initial"]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DenoiseError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def build_model(checkpoint: dict[str, Any]) -> tuple[nn.Module, UNetConfig, str]:
    """(model with weights, its config, its transfer) from a loaded checkpoint."""
    cfg = UNetConfig.from_dict(checkpoint["model_config"])
    model = build(cfg)
    model.load_state_dict(checkpoint["model"])
    return model, cfg, checkpoint["transfer"]


def read_initial(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(the model config, the weights) to start a run from, read once: a checkpoint's, or an
    exported model's (its metadata, or OIDN's architecture recognised by its tensors; an error names
    what can be trained when it is neither). Exported models keep PyTorch's parameter names (the
    TorchScript exporter names each initializer after its parameter), so a shipped ``.onnx`` can be
    fine-tuned without its checkpoint."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        state = load_checkpoint(path)
        return LEGACY_DEFAULTS | state["model_config"], state["model"]
    if not path.is_file():
        raise DenoiseError(f"model not found: {path}")
    meta, weights = read_onnx_weights(path)
    return onnx_config(path, meta, weights), weights


def initial_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return read_initial(path)[1]


def initial_config(path: str | Path) -> dict[str, Any]:
    return read_initial(path)[0]
