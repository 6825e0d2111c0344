"""Build small ONNX denoiser graphs with known receptive fields, without torch.

Used by the tests (tiny models) and by benchmarks/ (an OIDN-base-sized U-Net
with random weights: same shape and cost as a trained one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from blender_denoise_addon.core.contract import ModelInfo

OPSET = 17


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.params = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def conv(
        self, x: str, cin: int, cout: int, k: int = 3, relu: bool = True, gain: float = 1.0, bias: float = 0.0
    ) -> str:
        w = (self.rng.standard_normal((cout, cin, k, k)) * gain * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.01 + bias).astype(np.float32)
        wn, bn, y = self.name("w"), self.name("b"), self.name("conv")
        self.inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        self.params += w.size + b.size
        p = k // 2
        self.nodes.append(helper.make_node("Conv", [x, wn, bn], [y], kernel_shape=[k, k], pads=[p, p, p, p]))
        if relu:
            r = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    def pool(self, x: str) -> str:
        y = self.name("pool")
        self.nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[2, 2], strides=[2, 2]))
        return y

    def upsample(self, x: str) -> str:
        scales = self.name("scales")
        self.inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), scales))
        y = self.name("up")
        self.nodes.append(helper.make_node("Resize", [x, "", scales], [y], mode="nearest"))
        return y

    def concat(self, a: str, b: str) -> str:
        y = self.name("cat")
        self.nodes.append(helper.make_node("Concat", [a, b], [y], axis=1))
        return y

    def finish(
        self,
        last: str,
        cin: int,
        info: ModelInfo,
        path: Path,
        meta: dict[str, str | None] | None = None,
        input_name: str = "input",
        hw: tuple[int | str, int | str] = ("H", "W"),
        out_channels: int = 3,
    ) -> Path:
        """``meta`` overrides the metadata (a None value drops the key): for contract tests."""
        self.nodes.append(helper.make_node("Identity", [last], ["output"]))
        if input_name != "input":
            self.nodes.insert(0, helper.make_node("Identity", [input_name], ["input"]))
        inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", cin, *hw])
        out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", out_channels, *hw])
        graph = helper.make_graph(self.nodes, "denoiser", [inp], [out], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        props: dict[str, str | None] = {**info.metadata(), **(meta or {})}
        helper.set_model_props(model, {k: v for k, v in props.items() if v is not None})
        onnx.checker.check_model(model)
        path = Path(path)
        onnx.save(model, str(path))
        return path


def conv_chain(
    path: Path,
    layers: int = 3,
    inputs: tuple[str, ...] = ("color",),
    width: int = 8,
    kernel: int = 3,
    transfer: str = "log",
    seed: int = 0,
    sigmoid: bool = True,
    **finish_kwargs: object,
) -> Path:
    """``layers`` convolutions (kernel k): receptive field ``layers * (k - 1) + 1``, alignment 1."""
    g = _Graph(seed)
    cin = 3 * len(inputs)
    x, c = "input", cin
    for i in range(layers):
        last = i == layers - 1
        # The last layer is damped and biased so sigmoid outputs sit near 0.3, which the
        # log transfer maps to ordinary linear values (about 1), not to extreme highlights.
        x = g.conv(
            x, c, 3 if last else width, k=kernel, relu=not last, gain=0.2 if last else 1.0, bias=-0.85 if last else 0.0
        )
        c = width
    if sigmoid:
        s = g.name("sig")
        g.nodes.append(helper.make_node("Sigmoid", [x], [s]))
        x = s
    rf = layers * (kernel - 1) + 1
    info = ModelInfo(inputs=inputs, transfer=transfer, alignment=1, receptive_field=rf, name=f"chain{layers}")
    return g.finish(x, cin, info, path, **finish_kwargs)  # type: ignore[arg-type]


def unet(
    path: Path,
    inputs: tuple[str, ...] = ("color", "albedo", "normal"),
    enc: tuple[int, ...] = (32, 48, 64, 80, 96),
    dec: tuple[int, ...] = (112, 96, 64, 64),
    transfer: str = "log",
    seed: int = 0,
) -> tuple[Path, int]:
    """OIDN-style U-Net (defaults: OIDN 'base' widths, ~0.9 M parameters). Returns (path, parameters).

    Receptive field is tracked as radius/jump through the deepest path (an upper bound).
    """
    g = _Graph(seed)
    cin = 3 * len(inputs)
    levels = len(enc) - 1
    radius, jump = 0, 1
    x = g.conv("input", cin, enc[0])
    x = g.conv(x, enc[0], enc[0])
    radius += 2 * jump
    skips = [("input", cin)]
    c = enc[0]
    for lvl in range(1, levels):
        x = g.pool(x)
        radius += jump
        jump *= 2
        skips.append((x, c))
        x = g.conv(x, c, enc[lvl])
        radius += jump
        c = enc[lvl]
    x = g.pool(x)
    radius += jump
    jump *= 2
    x = g.conv(x, c, enc[levels])
    x = g.conv(x, enc[levels], enc[levels])
    radius += 2 * jump
    c = enc[levels]
    for i, d in enumerate(dec):
        x = g.upsample(x)
        jump //= 2
        skip, sc = skips.pop()
        x = g.concat(x, skip)
        x = g.conv(x, c + sc, d)
        last_level = i == len(dec) - 1
        x = g.conv(x, d, d if not last_level else 32)
        radius += 2 * jump
        c = d if not last_level else 32
    x = g.conv(x, c, 3, relu=False, gain=0.2, bias=-0.85)
    radius += jump
    s = g.name("sig")
    g.nodes.append(helper.make_node("Sigmoid", [x], [s]))
    rf = 2 * radius + 1
    info = ModelInfo(inputs=inputs, transfer=transfer, alignment=2**levels, receptive_field=rf, name="unet-random")
    return g.finish(s, cin, info, path), g.params


def fixed_conv(path: Path, weights: np.ndarray, info: ModelInfo, **finish_kwargs: object) -> Path:
    """One convolution with the given weights (cout x cin x k x k, no bias, no activation): a model
    whose output is known exactly, for tests of what the core feeds a network."""
    g = _Graph(0)
    w = np.asarray(weights, np.float32)
    cout, cin, k, _ = w.shape
    wn, bn, y = g.name("w"), g.name("b"), g.name("conv")
    g.inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(np.zeros(cout, np.float32), bn)]
    p = k // 2
    g.nodes.append(helper.make_node("Conv", ["input", wn, bn], [y], kernel_shape=[k, k], pads=[p, p, p, p]))
    return g.finish(y, cin, info, path, out_channels=cout, **finish_kwargs)  # type: ignore[arg-type]
