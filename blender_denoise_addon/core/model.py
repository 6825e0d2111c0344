"""Loading an ONNX denoiser with onnxruntime (imported lazily) and checking its contract."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .contract import INPUT_NAME, OUTPUT_NAME, ModelInfo, check_io, parse_metadata
from .errors import ModelContractError

# Providers we never pick automatically: TensorRT builds engines per shape (minutes
# for every new tile size) and Azure is a remote endpoint.
_SKIP_PROVIDERS = {"TensorrtExecutionProvider", "AzureExecutionProvider"}


def default_providers(available: Sequence[str]) -> list[str]:
    """Accelerated providers first when present, CPU always last as the fallback."""
    picked = [p for p in available if p not in _SKIP_PROVIDERS and p != "CPUExecutionProvider"]
    return picked + ["CPUExecutionProvider"]


@dataclass
class Model:
    """A loaded, validated model: the onnxruntime session plus its contract."""

    path: Path
    info: ModelInfo
    session: Any
    providers: list[str]
    # The prefilter models (``denoiser.prefilter``) run on the guides before this model, in order.
    prefilters: tuple[Model, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.info.name or self.path.stem

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        out = self.session.run([OUTPUT_NAME], feed, _shrink_arena())[0]
        channels = self.info.channels if self.info.role == "prefilter" else 3  # a prefilter returns its guides
        expected = (batch.shape[0], channels, batch.shape[2], batch.shape[3])
        if tuple(out.shape) != expected:
            raise ModelContractError(
                f"{self.path.name}: output shape {tuple(out.shape)} for input {tuple(batch.shape)}, expected {expected}"
            )
        return out


def _shrink_arena() -> Any:
    """Run options that hand the session's arena back after each run: a model with prefilters holds
    three sessions, and each keeping its peak would add them up (15 GB for High at 1080p, against
    5 GB); the cost is allocating again on the next run."""
    import onnxruntime as ort

    global _RUN_OPTIONS
    if _RUN_OPTIONS is None:
        _RUN_OPTIONS = ort.RunOptions()
        _RUN_OPTIONS.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return _RUN_OPTIONS


_RUN_OPTIONS: Any = None


def load_model(
    path: str | os.PathLike[str],
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> Model:
    """Load and validate ``path``. Raises ModelContractError with what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelContractError(f"model file not found: {path}")
    import onnxruntime as ort  # lazy: registering the add-on must stay fast

    opts = ort.SessionOptions()
    if threads is not None:
        if threads < 0:
            raise ModelContractError(f"threads must be 0 (automatic) or more, got {threads}")
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only; warnings about unused initializers are noise
    # One plan of every activation at its peak (the memory pattern) held 4.0 GB for OIDN's base network
    # at 1080p; allocating as the graph runs, from the arena, 2.4 GB at the same speed.
    opts.enable_mem_pattern = False
    chosen = list(providers) if providers else default_providers(ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
    except Exception as e:  # onnxruntime raises several unrelated types for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelContractError(f"cannot load model {path.name}: not a valid ONNX model ({first})") from None
    meta = session.get_modelmeta().custom_metadata_map
    info = parse_metadata(meta, where=path.name)
    check_io(info, session.get_inputs(), session.get_outputs(), where=path.name)
    prefilters = []
    cleaned: set[str] = set()
    for file in info.prefilter:
        where = f"{path.name}: its prefilter {file}"
        if not (path.parent / file).is_file():
            raise ModelContractError(f"{where} is not beside it in {path.parent}")
        pre = load_model(path.parent / file, threads, providers)
        guides = set(pre.info.inputs)
        if pre.info.role != "prefilter" or not guides <= set(info.inputs) or guides & cleaned:
            raise ModelContractError(
                f"{where} is not a prefilter for guides it takes and no other prefilter cleans "
                f"({pre.info.role}, {','.join(pre.info.inputs)})"
            )
        cleaned |= guides
        prefilters.append(pre)
    return Model(path=path, info=info, session=session, providers=session.get_providers(), prefilters=tuple(prefilters))
