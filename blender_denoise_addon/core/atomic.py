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
import secrets
import signal
import sys
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


def partial_path(dst: str | os.PathLike[str], suffix: str | None = None, names: list[Path] | None = None) -> Path:
    """A new, empty hidden temporary file beside ``dst`` (the name ends ``.partial`` + ``suffix``,
    by default ``dst``'s own suffix, so writers that go by the extension still work). ``names``
    gets the name before the file exists, so a stop landing in between cannot leave it unknown."""
    dst = Path(dst)
    ext = PARTIAL + (dst.suffix if suffix is None else suffix)
    while True:
        tmp = dst.parent / f".{dst.stem}.{secrets.token_hex(4)}{ext}"
        if names is not None:
            names.append(tmp)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return tmp
        except FileExistsError:  # another writer's: not ours to remove
            if names is not None:
                names.remove(tmp)


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """A temporary path to write ``dst`` to; when the block ends normally it becomes ``dst``.

    On any exception, KeyboardInterrupt and SystemExit included, the temporary file is removed
    and ``dst`` is left as it was, wherever the stop lands (a stop signal may arrive while the
    file is being made). The folder must exist; OSError from making the temporary file (an
    unwritable folder) propagates for the caller to phrase.
    """
    dst = Path(dst)
    names: list[Path] = []
    try:
        tmp = partial_path(dst, suffix, names)
        yield tmp
        if _stopped:  # a stop signal landed where it could not raise (a destructor): no new file now
            raise KeyboardInterrupt(_stopped[0])
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
    except BaseException:
        for name in names:
            name.unlink(missing_ok=True)
        raise


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
