"""Stops that arrive as exceptions, and the few blocks they must wait for.

SIGTERM and SIGINT raise in the main thread (``Interrupted`` from the CLI, ``Shutdown`` in the
scheduler), wherever it happens to be, so a run ends recorded as failed instead of dying. A
few steps must not be cut in two: a lock row committed but not yet owned by a ``with`` that
will release it, or a release half done, would leave the lock held by a process that has
gone. Inside :func:`shielded` a stop waits for the end of the block, then is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


def raise_or_defer(stop: BaseException) -> None:
    """From a signal handler: raise ``stop`` now, or at the end of the shielded block the thread is in."""
    if getattr(_local, "depth", 0):
        _local.pending = stop
        return
    raise stop


@contextmanager
def shielded() -> Iterator[None]:
    """A block a stop must not interrupt; a stop that came during it is raised when it ends."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        pending = getattr(_local, "pending", None)
        if _local.depth == 0 and pending is not None:
            _local.pending = None
            raise pending
