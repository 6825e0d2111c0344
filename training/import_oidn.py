"""``python -m training import-oidn``: OIDN's published weights as ONNX models of our contract.

OIDN (Apache-2.0, code and weights) compiles its trained networks into its core library as TZA
blobs, one symbol each (``oidn::blobs::weights::rt_hdr_alb_nrm``...). This stage finds that
library in the installed ``pyoidn``, reads the blobs by symbol with pyelftools, parses TZA,
loads the tensors into :mod:`.oidn_model`'s networks (every name and shape checked), and
exports each as an ONNX model: the weights unchanged (fp16, as published, cast to float32 when
onnxruntime loads the file), OIDN's input and output processing around the network as the core
and the graph do it:

- color: the core's ``pu`` transfer with OIDN's autoexposure (``core/transfer.py``);
- albedo: [0, 1] as the core feeds it;
- normal: the core feeds [-1, 1]; the graph maps it to [0, 1] (OIDN's ``x * 0.5 + 0.5``), and a
  normal prefilter's output back;
- the output: OIDN clamps it at 0 before the inverse transfer; the graph does;
- the albedo prefilter runs in sRGB (OIDN's transfer for it): the graph encodes and decodes.

Importing is a build step on Linux (pyoidn's x86_64 wheel); the shipped files in ``models/`` are
the product. :data:`SHIPPED` is the recipe: ``import-oidn`` without arguments rebuilds them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from blender_denoise_addon.core.contract import KEY_LICENSE, KEY_SOURCE, ModelInfo
from blender_denoise_addon.core.errors import DenoiseError

from .networks import ContractNet
from .oidn_model import ALIGNMENT, OidnUNet, receptive_field

SUPPORTED_PYOIDN = "2.5.1.0"
SOURCE_LICENSE = "Apache-2.0"
TZA_MAGIC = 0x41D7


class ImportOidnError(DenoiseError):
    pass


@dataclass(frozen=True)
class Network:
    """One OIDN blob as we ship it."""

    blob: str  # the symbol's last name, e.g. rt_hdr_alb_nrm
    arch: str  # a key of oidn_model.ARCHS
    inputs: tuple[str, ...]  # the contract's passes (denoiser) or guides (prefilter)
    role: str = "denoiser"
    prefilter: tuple[str, ...] = ()  # blobs of the prefilters it expects (cleanAux)
    quality: tuple[str, ...] = ()  # the Quality presets Automatic picks it for

    @property
    def file(self) -> str:
        return f"oidn-{self.blob.replace('_', '-')}.onnx"


DENOISER = ("color", "albedo", "normal")
# What ships (models/): the presets' networks for each set of passes, and Blender's High pipeline.
SHIPPED: tuple[Network, ...] = (
    Network("rt_hdr_calb_cnrm_large", "large", DENOISER, prefilter=("rt_alb_large", "rt_nrm_large"), quality=("high",)),
    Network("rt_alb_large", "large", ("albedo",), role="prefilter"),
    Network("rt_nrm_large", "large", ("normal",), role="prefilter"),
    Network("rt_hdr_alb_nrm", "base", DENOISER, quality=("balanced",)),
    Network("rt_hdr_alb_nrm_small", "small", DENOISER, quality=("fast",)),
    Network("rt_hdr_alb", "base", ("color", "albedo"), quality=("balanced", "high")),
    Network("rt_hdr_alb_small", "small", ("color", "albedo"), quality=("fast",)),
    Network("rt_hdr", "base", ("color",), quality=("balanced", "high")),
    Network("rt_hdr_small", "small", ("color",), quality=("fast",)),
)
# Also importable on request (``--blob``): the base cleanAux pipeline.
EXTRA: tuple[Network, ...] = (
    Network("rt_hdr_calb_cnrm", "base", DENOISER, prefilter=("rt_alb", "rt_nrm")),
    Network("rt_hdr_calb_cnrm_small", "small", DENOISER, prefilter=("rt_alb", "rt_nrm")),
    Network("rt_alb", "base", ("albedo",), role="prefilter"),
    Network("rt_nrm", "base", ("normal",), role="prefilter"),
)
NETWORKS: dict[str, Network] = {n.blob: n for n in SHIPPED + EXTRA}


# -- finding and reading the blobs ----------------------------------------------------------------


def pyoidn_library() -> tuple[Path, str]:
    """The installed pyoidn's OIDN core library and pyoidn's version."""
    try:
        import pyoidn
    except ImportError:
        raise ImportOidnError(
            f"pyoidn is not installed: pip install pyoidn=={SUPPORTED_PYOIDN} (it is in requirements/dev.txt)"
        ) from None
    from importlib.metadata import version

    root = Path(pyoidn.__file__).resolve().parent
    found = sorted(root.rglob("*OpenImageDenoise_core*"))
    if not found:
        raise ImportOidnError(f"pyoidn {version('pyoidn')} at {root} has no OpenImageDenoise_core library")
    return found[0], version("pyoidn")


def _symbol(blob: str) -> str:
    """The mangled name of ``oidn::blobs::weights::<blob>`` (Itanium C++ ABI, nested name)."""
    return f"_ZN4oidn5blobs7weights{len(blob)}{blob}E"


_BLOB_SYMBOL = re.compile(r"^_ZN4oidn5blobs7weights(\d+)(\w+)E$")


def read_blobs(library: Path, blobs: list[str], version: str = "?") -> dict[str, bytes]:
    """The bytes of each named blob, read by symbol through the library's ELF symbol table."""
    with open(library, "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise ImportOidnError(
                f"{library.name} is not an ELF library: import-oidn reads pyoidn's Linux x86_64 wheel; run it on "
                "Linux (the shipped ONNX files in models/ are the product, importing is a build step)"
            )
    from elftools.elf.elffile import ELFFile

    out: dict[str, bytes] = {}
    known: list[str] = []
    with open(library, "rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
        if table is None:
            raise ImportOidnError(f"{library.name} has no symbol table (stripped?)")
        want = {_symbol(b): b for b in blobs}
        for sym in table.iter_symbols():  # type: ignore[attr-defined]
            m = _BLOB_SYMBOL.match(sym.name)
            if m and len(m.group(2)) == int(m.group(1)):
                known.append(m.group(2))
            if sym.name not in want:
                continue
            section = elf.get_section(sym["st_shndx"])
            start = sym["st_value"] - section["sh_addr"]
            out[want[sym.name]] = section.data()[start : start + sym["st_size"]]
    missing = [b for b in blobs if b not in out]
    if missing and not set(known) & set(NETWORKS):
        raise ImportOidnError(
            f"pyoidn {version} holds none of the known OIDN weights (supported: pyoidn {SUPPORTED_PYOIDN})"
        )
    if missing:
        raise ImportOidnError(
            f"pyoidn {version} has no blob {', '.join(missing)} (it has: {', '.join(sorted(known)) or 'none'}; "
            f"supported: pyoidn {SUPPORTED_PYOIDN})"
        )
    return out


def parse_tza(data: bytes, where: str = "blob") -> dict[str, np.ndarray]:
    """TZA 2.x (OIDN's ``training/tza.py`` describes it): magic, version, the table's offset; per
    tensor its name, dims, layout and type (``f`` float32, ``h`` float16); float32 arrays back."""
    if len(data) < 12:
        raise ImportOidnError(f"{where}: {len(data)} bytes is too short for a TZA file")
    magic, major, minor, table = struct.unpack_from("<HBBQ", data, 0)
    if magic != TZA_MAGIC:
        raise ImportOidnError(f"{where}: not a TZA file (magic {magic:#06x}, expected {TZA_MAGIC:#06x})")
    if major != 2:
        raise ImportOidnError(f"{where}: TZA version {major}.{minor} is not supported (2.x is)")
    tensors: dict[str, np.ndarray] = {}
    try:
        (count,) = struct.unpack_from("<I", data, table)
        at = table + 4
        for _ in range(count):
            (n,) = struct.unpack_from("<H", data, at)
            name = data[at + 2 : at + 2 + n].decode()
            at += 2 + n
            ndims = data[at]
            dims = struct.unpack_from(f"<{ndims}I", data, at + 1)
            at += 1 + 4 * ndims
            layout = data[at : at + ndims].decode()
            kind = chr(data[at + ndims])
            (offset,) = struct.unpack_from("<Q", data, at + ndims + 1)
            at += ndims + 9
            if layout not in ("x", "oihw"):
                raise ImportOidnError(f"{where}: tensor {name} has layout {layout!r} (supported: x, oihw)")
            if kind not in ("f", "h"):
                raise ImportOidnError(f"{where}: tensor {name} has type {kind!r} (supported: f, h)")
            dtype = np.dtype("<f2" if kind == "h" else "<f4")
            size = int(np.prod(dims))
            if offset + size * dtype.itemsize > len(data):
                raise ImportOidnError(f"{where}: tensor {name} runs past the end of the blob")
            tensors[name] = np.frombuffer(data, dtype, size, offset).reshape(dims).astype(np.float32)
    except (struct.error, IndexError, UnicodeDecodeError):
        raise ImportOidnError(f"{where}: the TZA tensor table is cut or corrupt") from None
    return tensors


# -- networks and export --------------------------------------------------------------------------


def build_network(net: Network, tensors: dict[str, np.ndarray]) -> OidnUNet:
    """``net``'s architecture with the blob's tensors; every name and shape must fit."""
    model = OidnUNet(net.arch, 3 * len(net.inputs), 3 * len(net.inputs) if net.role == "prefilter" else 3)
    need = model.tensor_shapes()
    for name, shape in need.items():
        if name not in tensors:
            raise ImportOidnError(f"{net.blob}: tensor {name} {shape} of the {net.arch} network is not in the blob")
        if tuple(tensors[name].shape) != shape:
            raise ImportOidnError(
                f"{net.blob}: tensor {name} has shape {tuple(tensors[name].shape)}, "
                f"the {net.arch} network needs {shape}"
            )
    extra = sorted(set(tensors) - set(need))
    if extra:
        raise ImportOidnError(f"{net.blob}: tensor {extra[0]} does not belong to the {net.arch} network")
    model.load_named({k: torch.from_numpy(v) for k, v in tensors.items()})
    return model.eval()


def model_info(net: Network) -> ModelInfo:
    return ModelInfo(
        inputs=net.inputs,
        transfer="pu" if net.role == "denoiser" else "linear",  # a prefilter's curve is in its graph
        alignment=ALIGNMENT,
        receptive_field=receptive_field(net.arch, 3 * len(net.inputs)),
        name=f"OIDN {net.blob}",
        role=net.role,
        prefilter=tuple(NETWORKS[b].file for b in net.prefilter),
        quality=net.quality,
        padding="zero",  # as OIDN pads
    )


def import_networks(out: str | Path, blobs: list[str] | None = None, tolerance: float = 1e-4) -> list[Path]:
    """Write each network (default: :data:`SHIPPED`) to ``out/<file>``; returns the files written."""
    from .export import write_checked

    chosen = [NETWORKS[b] for b in blobs] if blobs else list(SHIPPED)
    for net in chosen:  # a cleanAux model needs its prefilters beside it
        chosen += [NETWORKS[b] for b in net.prefilter if NETWORKS[b] not in chosen]
    chosen.sort(key=lambda n: n.role != "prefilter")  # the core loads a model's prefilters with it
    library, version = pyoidn_library()
    data = read_blobs(library, [n.blob for n in chosen], version)
    models = {n.blob: build_network(n, parse_tza(data[n.blob], n.blob)) for n in chosen}  # all checked first
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ImportOidnError(f"cannot create {folder}: {e.strerror}") from None
    written = []
    for net in chosen:
        info = model_info(net)
        extra = {KEY_SOURCE: f"OIDN 2.5.1 (pyoidn {version}) blob {net.blob}, weights unchanged",
                 KEY_LICENSE: SOURCE_LICENSE}  # fmt: skip
        diff = write_checked(ContractNet(models[net.blob], net.inputs, net.role), info, folder / net.file, extra,
                             tolerance, fp16_weights=True)  # fmt: skip
        print(f"{folder / net.file}: {net.arch}, {','.join(net.inputs)} ({net.role}), receptive field "
              f"{info.receptive_field}, max |onnxruntime - torch| {diff:.1e}")  # fmt: skip
        written.append(folder / net.file)
    return written
