"""Signal handlers installed for the length of a block (the main thread only)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["signal_handlers"]


@contextlib.contextmanager
def signal_handlers(
    handler: Callable[[int, Any], Any], signals: Iterable[signal.Signals]
) -> Iterator[bool]:
    """Handle ``signals`` with ``handler`` while inside; restore the previous handlers after.

    Parameters
    ----------
    handler
        ``handler(signum, frame)``, as `signal.signal` takes it.
    signals
        The signals to handle (e.g. SIGTERM and SIGHUP).

    Yields
    ------
    bool
        Whether the handlers were installed: Python lets only the main thread install them,
        so elsewhere nothing changes and False is yielded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
