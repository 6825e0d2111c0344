"""``python -m training import-oidn``: reading OIDN's weights out of pyoidn's library, and every
bad input as one ``error:`` line with nothing written. (The files it makes against OIDN itself:
test_oidn_parity.py.)"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.import_oidn import (
    NETWORKS,
    ImportOidnError,
    Network,
    build_network,
    import_networks,
    parse_tza,
    pyoidn_library,
    read_blobs,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def blobs() -> dict[str, bytes]:
    library, version = pyoidn_library()
    return read_blobs(library, ["rt_hdr_alb_nrm", "rt_hdr_calb_cnrm_large"], version)


def _cli(*args: str, pre: str = "pass") -> subprocess.CompletedProcess[str]:
    code = f"import sys; {pre}; from training.__main__ import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)


def test_blobs_parse_into_every_tensor_the_networks_need(blobs):
    t = parse_tza(blobs["rt_hdr_alb_nrm"], "rt_hdr_alb_nrm")
    assert len(t) == 32 and t["enc_conv0.weight"].shape == (32, 9, 3, 3) and t["dec_conv0.bias"].shape == (3,)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in t.values())
    large = parse_tza(blobs["rt_hdr_calb_cnrm_large"])
    assert len(large) == 38 and large["dec_conv1c.weight"].shape == (3, 64, 3, 3)
    net = build_network(NETWORKS["rt_hdr_alb_nrm"], t)
    assert sum(p.numel() for p in net.parameters()) == sum(a.size for a in t.values())


def test_a_blob_that_does_not_fit_the_network_names_the_tensor(blobs):
    tensors = parse_tza(blobs["rt_hdr_alb_nrm"])
    with pytest.raises(ImportOidnError, match=r"tensor enc_conv1a.weight \(64, 9, 3, 3\) of the large network"):
        build_network(Network("rt_hdr_alb_nrm", "large", ("color", "albedo", "normal")), tensors)
    tensors["enc_conv2.weight"] = tensors["enc_conv2.weight"].transpose(1, 0, 2, 3)
    with pytest.raises(ImportOidnError, match=r"tensor enc_conv2.weight has shape \(32, 48, 3, 3\)"):
        build_network(NETWORKS["rt_hdr_alb_nrm"], tensors)


def test_tza_with_an_unknown_version_or_layout_is_refused(blobs):
    data = bytearray(blobs["rt_hdr_alb_nrm"])
    data[2] = 3
    with pytest.raises(ImportOidnError, match="TZA version 3.0 is not supported"):
        parse_tza(bytes(data), "x")
    with pytest.raises(ImportOidnError, match="not a TZA file"):
        parse_tza(b"\x00" * 64, "x")
    # The first tensor's layout string ("oihw") turned into "ohwi".
    data = bytearray(blobs["rt_hdr_alb_nrm"])
    (table,) = struct.unpack_from("<Q", data, 4)
    at = table + 4 + 2 + len("enc_conv0.weight") + 1 + 4 * 4
    assert data[at : at + 4] == b"oihw"
    data[at : at + 4] = b"ohwi"
    with pytest.raises(ImportOidnError, match="layout 'ohwi'"):
        parse_tza(bytes(data), "x")
    with pytest.raises(ImportOidnError, match="cut or corrupt"):
        parse_tza(blobs["rt_hdr_alb_nrm"][: table + 40], "x")


def test_a_library_without_the_blobs_or_not_elf_is_one_error(tmp_path):
    library, _ = pyoidn_library()
    other = next(p for p in library.parent.glob("libtbb.so*") if p.is_file())  # ELF, no OIDN weights
    with pytest.raises(ImportOidnError, match=r"pyoidn 9\.9 holds none of the known OIDN weights \(supported: pyoidn"):
        read_blobs(other, ["rt_hdr"], "9.9")
    with pytest.raises(ImportOidnError, match="has no blob rt_nonexistent"):
        read_blobs(library, ["rt_hdr", "rt_nonexistent"], "2.5.1.0")
    dylib = tmp_path / "libOpenImageDenoise_core.2.5.1.dylib"
    dylib.write_bytes(b"\xcf\xfa\xed\xfe" + b"\x00" * 64)  # Mach-O
    with pytest.raises(ImportOidnError, match="not an ELF library: import-oidn reads pyoidn's Linux x86_64 wheel"):
        read_blobs(dylib, ["rt_hdr"])


def test_cli_errors_are_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    res = _cli("import-oidn", "-o", str(out), pre="sys.modules['pyoidn'] = None")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "error: pyoidn is not installed: pip install pyoidn==2.5.1.0 (it is in requirements/dev.txt)"
    ]
    res = _cli("import-oidn", "-o", str(out), "--blob", "rt_bogus")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "unknown OIDN network" in res.stderr
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _cli("import-oidn", "-o", str(blocker / "sub"), "--blob", "rt_hdr_small")
    assert res.returncode == 1 and res.stderr.startswith("error: cannot create") and "Traceback" not in res.stderr


def test_one_blob_on_request(tmp_path):
    res = _cli("import-oidn", "-o", str(tmp_path), "--blob", "rt_hdr_calb_cnrm_small")
    assert res.returncode == 0, res.stderr
    # A cleanAux network brings the prefilters it names.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "oidn-rt-alb.onnx",
        "oidn-rt-hdr-calb-cnrm-small.onnx",
        "oidn-rt-nrm.onnx",
    ]


@pytest.mark.slow
def test_import_oidn_rebuilds_the_shipped_files(tmp_path):
    """The recipe (``python -m training import-oidn``) gives the shipped files back, byte for byte."""
    written = import_networks(tmp_path)
    shipped = sorted((ROOT / "models").glob("*.onnx"))
    assert sorted(p.name for p in written) == [p.name for p in shipped]
    for p in written:
        assert p.read_bytes() == (ROOT / "models" / p.name).read_bytes(), p.name
