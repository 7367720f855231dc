"""One background thread that applies deferred ledger writes off the caller's critical path.

A ledger that defers a write (:meth:`Ledger.settle` with ``defer=True``) queues it on itself,
marks itself :data:`WAITING` and calls :func:`submit`; the writer thread then calls its
``flush()``.  Whoever comes first applies the queue: the writer thread, the next call on any
ledger handle of the same file in this process (:func:`flush_file`), ``flush()``/``close()``,
or the interpreter's exit (:func:`flush_all`, registered with ``atexit``).  So reads in this
process always see the writes deferred before them.

One thread serves every ledger of the process, started on the first deferred write (and again
in a forked child); it holds a ledger only while that ledger has writes waiting.  SQLite runs
its statements without the GIL, so the write overlaps the caller's own work.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from typing import Protocol

log = logging.getLogger("mpp_claude.client.ledger")


class Flushable(Protocol):
    """A ledger handle with writes waiting: its file (``key``) and how to apply them."""

    @property
    def key(self) -> str: ...

    def flush(self) -> None: ...


WAITING: set[Flushable] = set()
"""Handles with deferred writes not applied yet (each adds and removes itself under its lock)."""

_queue: queue.SimpleQueue[Flushable] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_pid = 0
_start_lock = threading.Lock()


def _run(work: queue.SimpleQueue[Flushable]) -> None:
    while True:
        owner = work.get()
        try:
            owner.flush()
        except Exception:  # flush() logs each failed write itself; this is a bug, not a lost write
            log.exception("mpp_claude ledger writer: flush failed")


def submit(owner: Flushable) -> None:
    """Ask the writer thread to flush ``owner`` (started here when not running in this process)."""
    global _thread, _pid, _queue
    if _pid != os.getpid():
        with _start_lock:
            if _pid != os.getpid():  # first use, or a forked child (the parent's thread is not here)
                _queue = queue.SimpleQueue()
                _thread = threading.Thread(target=_run, args=(_queue,), name="mpp-claude-ledger-writer",
                                           daemon=True)
                _thread.start()
                _pid = os.getpid()
    _queue.put(owner)


def flush_file(key: str) -> None:
    """Apply the deferred writes of every handle on the file ``key`` in this process."""
    for owner in list(WAITING):
        if owner.key == key:
            owner.flush()


def flush_all() -> None:
    """Apply every deferred write of this process (at exit: the daemon thread may not get to them)."""
    for owner in list(WAITING):
        try:
            owner.flush()
        except Exception:
            log.exception("mpp_claude ledger: deferred writes not applied at exit")


atexit.register(flush_all)
