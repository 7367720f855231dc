"""Deferred ledger writes, applied off the caller's critical path.

A ledger that defers a write (:meth:`Ledger.settle` with ``defer=True``) queues it on itself,
marks itself :data:`WAITING` and calls :func:`submit`.  Whoever comes first applies the queue:

* a transport that has just sent a request and is about to wait for the answer calls
  :func:`while_waiting` (``WireTransport`` and ``AsyncWireTransport``, the clients' defaults):
  the write runs in time the caller spends waiting for the server anyway;
* the next call on any ledger handle of the same file in this process (:func:`flush_file`),
  ``flush()`` or ``close()``, so reads in this process always see the writes made before them;
* the fallback thread, :data:`DELAY` seconds after the write was deferred (other transports,
  or no further request), and the interpreter's exit (:func:`flush_all`, ``atexit``).

The same thread runs the ledger's WAL checkpoints (:func:`run_soon`): a checkpoint copies the
write-ahead log back into the database file and fsyncs it, ~15 ms here, which SQLite would
otherwise do inside the commit of every ~200th reservation.

The thread waits before it writes because a thread that wakes while the caller runs Python
takes the GIL at the caller's next system call (``os.urandom``, a socket send) and makes it
wait for the hand-offs: measured, the next request's first segment grew by what the deferral
saved.  One thread serves every ledger of the process, started on the first deferred write
(and again in a forked child); it holds a ledger only while a write of it is queued.  A forked
child inherits the queued writes and may apply them again: the same ``UPDATE`` with the same
values, harmless.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("mpp_claude.client.ledger")


class Flushable(Protocol):
    """A ledger handle with writes waiting: its file (``key``) and how to apply them."""

    @property
    def key(self) -> str: ...

    def flush(self, *, wait: bool = True) -> None: ...


WAITING: set[Flushable] = set()
"""Handles with deferred writes not applied yet (each adds and removes itself under its lock)."""

DELAY = 0.2
"""Seconds after which the fallback thread applies a deferred write nobody applied before
(constant: the thread sleeps until the oldest queued write is due, in queue order)."""


class _Job:
    """A function for the thread to run (:func:`run_soon`), told apart from a ledger to flush."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn


_Item = tuple[float, "Flushable | _Job"]
_queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_pid = 0
_start_lock = threading.Lock()


def _run(work: queue.SimpleQueue[_Item]) -> None:
    while True:
        due, item = work.get()
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        items = [item]
        while True:  # what was queued meanwhile is applied now too: one wake-up per DELAY at most
            try:
                items.append(work.get_nowait()[1])
            except queue.Empty:
                break
        _flush([i for i in items if not isinstance(i, _Job)])
        for job in items:
            if isinstance(job, _Job):
                try:
                    job.fn()
                except Exception:  # a job logs its own expected failures: this would be a bug
                    log.exception("mpp_claude ledger: background job failed")


def _flush(owners: list[Flushable], wait: bool = True) -> None:
    for owner in owners:
        if owner in WAITING:
            try:
                owner.flush(wait=wait)
            except Exception:  # flush() logs each failed write itself: this would be a bug
                log.exception("mpp_claude ledger: applying deferred writes failed")


def submit(owner: Flushable) -> None:
    """Ask the fallback thread to flush ``owner`` in :data:`DELAY` seconds (the thread is started
    here when it is not running in this process)."""
    _put((time.monotonic() + DELAY, owner))


def run_soon(job: Callable[[], None]) -> None:
    """Run ``job`` on the same thread as soon as it is free (after the writes due before it)."""
    _put((time.monotonic(), _Job(job)))


def _put(item: _Item) -> None:
    global _thread, _pid, _queue
    if _pid != os.getpid():
        with _start_lock:
            if _pid != os.getpid():  # first use, or a forked child (the parent's thread is not here)
                _queue = queue.SimpleQueue()
                _thread = threading.Thread(target=_run, args=(_queue,), name="mpp-claude-ledger-writer",
                                           daemon=True)
                _thread.start()
                _pid = os.getpid()
    _queue.put(item)


def while_waiting() -> None:
    """Apply every deferred write of this process now: for a transport between sending a request
    and blocking on its answer (the caller would only be waiting).  A ledger busy in another
    thread is skipped (its next call or the fallback thread applies them)."""
    _flush(list(WAITING), wait=False)


def flush_file(key: str) -> None:
    """Apply the deferred writes of every handle on the file ``key`` in this process."""
    for owner in list(WAITING):
        if owner.key == key:
            owner.flush()


def flush_all() -> None:
    """Apply every deferred write of this process (at exit: the daemon thread may not get to them)."""
    _flush(list(WAITING))


atexit.register(flush_all)
