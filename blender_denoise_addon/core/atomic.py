"""One way to write a file that is never seen half-written: :func:`atomic_path`.

The content goes to a hidden temporary file in the same folder (``.NAME.XXXX.partial.EXT``), which
is renamed over the destination once complete. Every writer of the project (images, models,
datasets, metrics, manifests) uses it, so an error, Ctrl-C, SIGTERM or SIGHUP (the commands turn
both into the same stop as Ctrl-C, see :func:`stop_on_signals`) leaves either the old file or the
new one, and no temporary file. The result gets the permissions the umask allows, as a plain
``open()`` would give it, not the private 0600 of a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL = ".partial"  # in the name of every temporary file (dataset resumption looks for it)


def _umask() -> int:
    # Reading the umask means setting it; the old value goes straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def partial_path(dst: str | os.PathLike[str], suffix: str | None = None) -> Path:
    """A new, empty hidden temporary file beside ``dst`` (the name ends ``.partial`` + ``suffix``,
    by default ``dst``'s own suffix, so writers that go by the extension still work)."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dst.stem}.", suffix=PARTIAL + (dst.suffix if suffix is None else suffix), dir=dst.parent
    )
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """A temporary path to write ``dst`` to; when the block ends normally it becomes ``dst``.

    On any exception, KeyboardInterrupt and SystemExit included, the temporary file is removed
    and ``dst`` is left as it was. The folder must exist; OSError from making the temporary file
    (an unwritable folder) propagates for the caller to phrase.
    """
    dst = Path(dst)
    tmp: Path | None = None
    try:
        with _stops_held():  # a stop between making the file and holding its name would leave it behind
            tmp = partial_path(dst, suffix)
        yield tmp
        if _stopped:  # a stop signal landed where it could not raise (a destructor): no new file now
            raise KeyboardInterrupt(_stopped[0])
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


_STOPS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Stop signals wait (blocked) until the block ends, then arrive as they would have; where
    signals cannot be blocked (Windows) the block runs as it is."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_stopped: list[str] = []  # the stop signals received inside stop_on_signals


def _raise_interrupt(signum: int, _frame: object) -> None:
    _stopped.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_stopped[-1])


def _quiet_unraisable(old: Any) -> Any:
    """A KeyboardInterrupt raised inside a destructor cannot propagate; Python would print its
    traceback. The stop is remembered (``_stopped``) and raised by the next write instead."""

    def hook(u: Any) -> None:
        if not (isinstance(u.exc_value, KeyboardInterrupt) and _stopped):
            old(u)

    return hook


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP stop the program the way Ctrl-C does
    (KeyboardInterrupt), so the same cleanup runs: a farm manager stops jobs with SIGTERM. Should
    the interrupt land where it cannot propagate, :func:`atomic_path` raises it at the next write.
    The old handlers come back after. Only the main thread can install handlers; elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stopped.clear()
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old = {n: signal.signal(getattr(signal, n), _raise_interrupt) for n in names}
    old_hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        for n, handler in old.items():
            signal.signal(getattr(signal, n), handler)
        sys.unraisablehook = old_hook
        _stopped.clear()
