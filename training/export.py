"""Export a checkpoint to ONNX per the model contract, then prove it matches PyTorch.

The file gets ``input``/``output`` with dynamic N, H and W, and the contract's
``metadata_props`` from ``ModelInfo.metadata()``. Before it is kept, onnxruntime
and PyTorch must agree within ``tolerance`` on random inputs of two sizes, and the
core's ``load_model`` must accept it; otherwise the file is removed and export fails.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blender_denoise_addon.core.atomic import atomic_path
from blender_denoise_addon.core.contract import INPUT_NAME, OUTPUT_NAME, ModelInfo
from blender_denoise_addon.core.errors import DenoiseError
from blender_denoise_addon.core.model import load_model

from .checkpoint import MODEL_CONFIG_KEY, build_model, load_checkpoint

OPSET = 17
# Not part of the add-on's contract: how the network was built, so `train --init` can check it.
MAX_BYTES = 10 * 1024 * 1024  # what the add-on can reasonably ship


class ExportError(DenoiseError):
    pass


@dataclass
class ExportReport:
    path: Path
    info: ModelInfo
    max_abs_diff: float
    bytes: int
    parameters: int


def random_input(info: ModelInfo, n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Plausible network-space input: albedo in [0, 1], normals in [-1, 1], and transferred
    color in [0, 0.6] (up to about 9 stops above the autoexposure key) with 3 % of the pixels
    anywhere up to 1 (isolated highlights, up to the half-float maximum).

    Not uniform in [0, 1]: whole neighbourhoods thousands of times brighter than the key never
    occur after autoexposure, and there float32 rounding of the linear-space kernels alone
    (same weights, another summation order) made onnxruntime and PyTorch differ by 7e-4 on a
    model that agrees within 2e-6 on real frames.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for p in info.inputs:
        if p == "normal":
            parts.append(rng.uniform(-1, 1, (n, 3, h, w)))
        elif p == "color":
            hot = rng.random((n, 1, h, w)) < 0.03
            parts.append(np.where(hot, rng.uniform(0.6, 1.0, (n, 3, h, w)), rng.uniform(0.0, 0.6, (n, 3, h, w))))
        else:
            parts.append(rng.random((n, 3, h, w)))
    return np.concatenate(parts, axis=1).astype(np.float32)


def check_parity(net: torch.nn.Module, path: Path, info: ModelInfo, tolerance: float) -> float:
    """Largest |onnxruntime - PyTorch| over random inputs of two sizes (dynamic H/W, batch 2)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a = info.alignment
    worst = 0.0
    for i, (n, h, w) in enumerate(((1, 2 * a, 3 * a), (2, max(64, 4 * a), max(32, 2 * a)))):
        x = random_input(info, n, h, w, seed=i)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if got.shape != ref.shape:
            raise ExportError(f"onnxruntime output shape {got.shape} != PyTorch {ref.shape} for input {x.shape}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    if not worst <= tolerance:
        raise ExportError(f"onnxruntime and PyTorch differ by {worst:.3e} (> {tolerance:.0e}); model not exported")
    return worst


def trace_to_onnx(net: torch.nn.Module, info: ModelInfo, path: Path) -> None:
    """Write ``net`` as opset-17 ONNX with the contract's names and dynamic N, H, W (no metadata)."""
    a = info.alignment
    dummy = torch.from_numpy(random_input(info, 1, 2 * a, 2 * a))
    dims = {0: "N", 2: "H", 3: "W"}
    # The TorchScript exporter: the dynamo one needs onnxscript, which we do not ship.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # "constant folding not applied" for slices: harmless
        torch.onnx.export(
            net,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dims, OUTPUT_NAME: dims},
            opset_version=OPSET,
            dynamo=False,
        )


def store_fp16(proto: Any) -> None:
    """Convolution weights and biases stored as float16 with a Cast to float32 in front (onnxruntime
    folds it when the session loads): half the file. Only for weights float16 holds exactly."""
    from onnx import TensorProto, helper, numpy_helper

    conv_inputs = {name for node in proto.graph.node if node.op_type == "Conv" for name in node.input[1:]}
    casts = []
    for init in proto.graph.initializer:
        if init.name not in conv_inputs or init.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):
            raise ExportError(f"{init.name} is not exact in float16; keep float32 weights")
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def write_checked(
    net: torch.nn.Module,
    info: ModelInfo,
    out: Path,
    extra: dict[str, str],
    tolerance: float,
    fp16_weights: bool = False,
) -> float:
    """Trace ``net`` to ``out`` with ``info``'s metadata (and ``extra``), kept only once onnxruntime
    matches PyTorch within ``tolerance`` and the core loads it; returns the largest difference.
    ``fp16_weights``: convolutions stored as float16 (:func:`store_fp16`)."""
    import onnx
    from onnx import helper

    with atomic_path(out) as tmp:
        trace_to_onnx(net, info, tmp)  # type: ignore[arg-type]
        proto = onnx.load(str(tmp))
        if fp16_weights:
            store_fp16(proto)
        helper.set_model_props(proto, info.metadata() | extra)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        diff = check_parity(net, tmp, info, tolerance)  # type: ignore[arg-type]
        load_model(tmp)  # the core must accept it as it is
    return diff


def provenance(init: str, change: str = "fine-tuned from {}") -> dict[str, str]:
    """What a model made from the exported ``init`` says of its source (``change`` with the base's
    name and source filled in) and the license it keeps; {} when ``init`` is no ONNX file."""
    from blender_denoise_addon.core.contract import KEY_LICENSE, KEY_NAME, KEY_SOURCE

    if not init.lower().endswith(".onnx") or not Path(init).is_file():
        return {}
    import onnx

    meta = {p.key: p.value for p in onnx.load(init, load_external_data=False).metadata_props}
    base = (meta.get(KEY_NAME) or Path(init).name) + (f" ({meta[KEY_SOURCE]})" if KEY_SOURCE in meta else "")
    return {KEY_SOURCE: change.format(base)} | ({KEY_LICENSE: meta[KEY_LICENSE]} if KEY_LICENSE in meta else {})


def export(
    checkpoint: str | Path, out: str | Path, name: str = "", tolerance: float = 1e-4, priority: int = 0
) -> ExportReport:
    """A model trained on clean or prefiltered guides names its prefilters (``denoiser.prefilter``),
    copied beside ``out`` when they are not there yet: the core runs them first."""
    import shutil

    from .config import parse_prefilter

    state = load_checkpoint(checkpoint)
    net, cfg, transfer = build_model(state)
    net.eval()
    # OIDN publishes its weights in float16; tuned ones are stored so too (half the file, and the
    # parity check then holds exactly what the file computes).
    fp16 = bool(cfg.oidn_arch)
    if fp16:
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.half().float())
    info = cfg.model_info(transfer, name=name or Path(out).stem)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run = state.get("config", {})
    if run.get("guides", "noisy") != "noisy":
        named = parse_prefilter(run.get("prefilter", ""))
        for src in map(Path, named):
            if not (out.parent / src.name).is_file():
                shutil.copyfile(src, out.parent / src.name)
        info = replace(info, prefilter=tuple(Path(p).name for p in named))
    info = replace(info, priority=priority)
    extra = {MODEL_CONFIG_KEY: json.dumps(cfg.to_dict())} | provenance(run.get("init", ""))
    diff = write_checked(net, info, out, extra, tolerance, fp16_weights=fp16)
    size = out.stat().st_size
    if size > MAX_BYTES:
        print(f"warning: {out} is {size / 2**20:.1f} MiB, more than the add-on should ship", file=sys.stderr)
    params = sum(p.numel() for p in net.parameters())
    return ExportReport(path=out, info=info, max_abs_diff=diff, bytes=size, parameters=params)
