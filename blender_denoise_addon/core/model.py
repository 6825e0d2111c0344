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
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        channels = self.info.channels if self.info.role == "prefilter" else 3  # a prefilter returns its guides
        expected = (batch.shape[0], channels, batch.shape[2], batch.shape[3])
        if tuple(out.shape) != expected:
            raise ModelContractError(
                f"{self.path.name}: output shape {tuple(out.shape)} for input {tuple(batch.shape)}, expected {expected}"
            )
        return out


def _shared_arena(ort: Any) -> bool:
    """One CPU arena for every session of the process, registered once. A model with prefilters
    holds three sessions that run one after another; with an arena each, their peaks add up (8.8 GB
    for High at 1080p), with one they share it (3.1 GB, the same speed). Handing an arena back
    after each run instead costs the next run its page faults (+1.9 s of 2.6 at 1080p). False
    where this onnxruntime cannot: each session keeps its own then."""
    global _ARENA
    if _ARENA is None:
        try:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, -1, -1))  # grow by powers of two
            _ARENA = True
        except Exception:  # an older or stripped build: per-session arenas still work
            _ARENA = False
    return _ARENA


_ARENA: bool | None = None


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
    if _shared_arena(ort):
        opts.add_session_config_entry("session.use_env_allocators", "1")
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
