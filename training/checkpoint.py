"""Reading what training saved: checkpoints (``.pt``) and exported models' weights and config.

A checkpoint holds ``model`` (the state dict), ``model_config`` (``UNetConfig.to_dict()``),
``transfer`` and ``config`` (the run's ``TrainConfig``); an export carries the model config in
its metadata under ``MODEL_CONFIG_KEY`` and PyTorch's parameter names on its initializers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from blender_denoise_addon.core.errors import DenoiseError

from .model import LEGACY_DEFAULTS, ModifiedUNet, UNetConfig

MODEL_CONFIG_KEY = "training.model_config"  # export metadata: the UNetConfig, as JSON


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DenoiseError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def build_model(checkpoint: dict[str, Any]) -> tuple[ModifiedUNet, UNetConfig, str]:
    """(model with weights, its config, its transfer) from a loaded checkpoint."""
    cfg = UNetConfig.from_dict(checkpoint["model_config"])
    model = ModifiedUNet(cfg)
    model.load_state_dict(checkpoint["model"])
    return model, cfg, checkpoint["transfer"]


def initial_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights to start a run from: a checkpoint's ``model``, or an exported model's initializers.

    Exported models keep PyTorch's parameter names (the TorchScript exporter names each
    initializer after its parameter), so a shipped ``.onnx`` can be fine-tuned without its
    checkpoint.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return load_checkpoint(path)["model"]
    if not path.is_file():
        raise DenoiseError(f"model not found: {path}")
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - onnx raises several types for a bad file
        raise DenoiseError(f"cannot read {path} as an ONNX model: {e}") from e
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}


def initial_config(path: str | Path) -> dict[str, Any] | None:
    """The model config ``path`` was trained with: a checkpoint's, or an export's metadata (None if absent)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return LEGACY_DEFAULTS | load_checkpoint(path)["model_config"]
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(meta[MODEL_CONFIG_KEY]) if MODEL_CONFIG_KEY in meta else None
