"""``--ray [ADDRESS]``: the Ray plumbing generate-dataset and denoise-image share (each command's
driver lives beside the command: ``generate_dataset.generate_on_ray``, ``denoise_image``'s
``denoise_frames_on_ray`` and ``denoise_sequence_on_ray``).

Ray is optional (requirements/ray.txt) and never in the extension zip. Without an address a
local Ray starts on this machine's cores; with one (``auto``, ``HOST:6379``, ``ray://HOST:10001``)
the command joins that cluster. A Ray that this process already started (``ray.init``) is used
as it is.

Where results go: the workers share no storage with the driver. Each task gets its inputs as
bytes (a dataset task needs only the settings), works in a temporary folder of its own, and
returns the finished files as bytes; the driver writes them under their real names through
temporary ones, a sample's record last, so a worker that dies mid-task leaves nothing in the
output and Ray runs the task again. Renders are deterministic, so the files are the same bytes
a local run writes (sample records differ only in their timings).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_path
from ..core.errors import DenoiseError

INSTALL_HINT = "pip install -r requirements/ray.txt (or pip install 'ray==2.60.0')"
RETRIES = 3  # a task whose worker dies runs again this many times
CONNECT_SECONDS = 10.0


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DenoiseError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# What every HTTP/2 client sends first. A gRPC server (Ray's GCS, the Ray Client server) answers
# with its own preface, a SETTINGS frame (type 4 in the 9-byte frame header).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _reachable(address: str) -> None:
    """Fail within seconds on an address nobody listens at, or where something other than Ray
    listens (ray.init would retry for minutes, or end in a traceback)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise DenoiseError(f"--ray {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS) as conn:
            conn.sendall(_H2_PREFACE)
            reply = b""
            while len(reply) < 9:
                chunk = conn.recv(9 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except TimeoutError:
        reply = b""
    except OSError as e:
        raise DenoiseError(f"--ray {address}: cannot reach the cluster ({e.strerror or e})") from None
    if len(reply) < 9 or reply[3] != 4:
        raise DenoiseError(f"--ray {address}: something listens there, but it is not a Ray cluster (no gRPC answer)")


def connect(address: str | None) -> Any:
    """The ray module, connected: to ``address``, to a Ray this process started, or a new local one."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address:
        _reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as e:  # a Ray that will not take us (version, auth, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DenoiseError(f"--ray {address}: cannot connect to the cluster ({first})") from None
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    return ray


def check_workers(ray: Any, needed: tuple[str, ...]) -> None:
    """Refuse a cluster whose workers cannot import what the tasks need, naming the packages."""

    def missing(names: tuple[str, ...]) -> list[str]:  # defined here: pickled by value, runs without the project
        import importlib.util

        return [n for n in names if importlib.util.find_spec(n) is None]

    absent = ray.get(ray.remote(num_cpus=0)(missing).remote(needed))
    if absent:
        raise DenoiseError(
            f"the Ray workers lack {', '.join(absent)}: install them (and this project) where the workers run"
        )


def on_ray(address: str | None, fn: Callable[..., Any], needs: tuple[str, ...]) -> tuple[Any, Any, int]:
    """(ray, ``fn`` as a retried one-CPU task, the cluster's CPUs), once the workers are known to
    import ``needs``."""
    ray = connect(address)
    check_workers(ray, needs)
    remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(fn)
    return ray, remote, max(1, int(ray.cluster_resources().get("CPU", 1)))


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def as_completed(ray: Any, refs: dict[Any, Any], window: int, submit: Callable[[], bool]) -> Iterator[tuple[Any, Any]]:
    """(key, result or exception) as tasks finish, keeping ``window`` tasks in flight."""
    while len(refs) < window and submit():
        pass
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        key = refs.pop(done[0])
        try:
            yield key, ray.get(done[0])
        except Exception as e:  # a task error (after Ray's retries): reported per item
            yield key, e
        while len(refs) < window and submit():
            pass


def task_error(e: BaseException) -> str:
    """A failed task's error in one line: the core's message as a local run prints it."""
    cause = getattr(e, "cause", None) or e
    text = str(cause) if isinstance(cause, DenoiseError) else f"{type(cause).__name__}: {cause}"
    return text.strip().splitlines()[-1][:500] if text.strip() else type(cause).__name__
