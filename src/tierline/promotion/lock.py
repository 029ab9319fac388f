"""An exclusive, process-wide file lock (``fcntl.flock``) that serialises promotions."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tierline.errors import TierlineError

__all__ = ["LockTimeout", "file_lock"]

logger = logging.getLogger(__name__)


class LockTimeout(TierlineError):
    """Another process held the lock for longer than we were willing to wait (exit 1)."""


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float | None = 600.0, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; wait while another process holds it.

    The lock file is created if needed and never removed (removing it would let two processes
    lock two different files of the same name). It holds the holder's pid, for messages. The
    kernel releases the lock when the holder exits, however it exits.

    Parameters
    ----------
    path
        The lock file, e.g. ``registry/.sma_cross.lock``.
    timeout
        Seconds to wait for another holder (None: forever; 0: fail at once).
    what
        What is being serialised, for the messages (e.g. ``promotion of sma_cross``).

    Raises
    ------
    LockTimeout
        If the lock was not free within ``timeout`` seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    label = what or str(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{label}: {path} is held by another process (pid {holder}) and was "
                        f"not released within {timeout:g} s; try again when it has finished"
                    ) from None
                if not waited:
                    logger.warning("%s: waiting for pid %s to release %s", label, holder, path)
                    print(f"{label}: waiting for pid {holder} to release {path}", flush=True)
                    waited = True
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return "?"
    return text or "?"
