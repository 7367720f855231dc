"""Opening the client's private SQLite files (ledger, channel store) one way."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger("mpp_claude.client.ledger")


def open_private_db(path: Path, *, busy_timeout: float, autocheckpoint: bool = True) -> sqlite3.Connection:
    """Open (creating with mode 0600, parent 0700) a WAL database shared by threads and processes.

    ``synchronous = NORMAL``: with WAL a process crash loses nothing and a power cut may undo the
    last commit only.  Autocommit mode (``isolation_level=None``): callers run explicit
    ``BEGIN IMMEDIATE`` transactions where they need atomicity.  ``autocheckpoint=False``: this
    connection's commits do not copy the log back into the file (SQLite's default does it in the
    commit that passes 1 000 log pages, with an fsync the caller waits for) before
    :data:`SAFETY_FRAMES`; the owner calls :func:`checkpoint` off its callers' path.

    Raises:
        sqlite3.Error: the file cannot be opened.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    if not autocheckpoint:
        db.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_FRAMES}")
    return db


SAFETY_FRAMES = 10_000
"""Log pages at which a connection opened with ``autocheckpoint=False`` still checkpoints in its own
commit: only reached by a process writing without pause, which never lets a background
checkpoint finish before its next write (the log starts over only then), so the log stays bounded."""

PASSES = 4
"""Passes of one :func:`checkpoint`: each copies what was written during the one before; it stops
once a pass found nothing new, so the next write starts the log over."""


def checkpoint(path: Path) -> None:
    """Copy the write-ahead log of ``path`` back into the database file, on a connection of its
    own, without waiting for other readers or writers (``PASSIVE``: what they write meanwhile is
    copied by the next pass, up to :data:`PASSES`).  Failures are logged: the log only grows until
    the next checkpoint.  A file removed meanwhile is left alone, quietly (nothing to copy)."""
    try:
        # mode=rw: a file removed meanwhile is not created again (empty, without its 0600 mode)
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True, timeout=0, isolation_level=None)
        try:
            before = -1
            for _ in range(PASSES):
                _, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames == done == before:
                    break
                before = frames
        finally:
            db.close()
    except sqlite3.Error as exc:
        if not path.exists():  # removed (e.g. a temporary directory after its client closed): no log to copy
            log.debug("ledger %s: removed before its background checkpoint; nothing to do", path)
            return
        log.warning("ledger %s: WAL checkpoint failed (%s: %s); retried after the next writes", path,
                    type(exc).__name__, exc)
