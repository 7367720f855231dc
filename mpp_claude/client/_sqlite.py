"""Opening the client's private SQLite files (ledger, channel store) one way."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def open_private_db(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating with mode 0600, parent 0700) a WAL database shared by threads and processes.

    ``synchronous = NORMAL``: with WAL a process crash loses nothing and a power cut may undo the
    last commit only.  Autocommit mode (``isolation_level=None``): callers run explicit
    ``BEGIN IMMEDIATE`` transactions where they need atomicity.

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
    return db
