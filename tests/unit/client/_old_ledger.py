"""Turn a ledger file back into what an older release wrote, to test the upgrade on opening."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def downgrade(path: Path, *, drop_table: str, version: int) -> None:
    """Drop ``drop_table`` (added after ``version``) and set the file's schema version."""
    db = sqlite3.connect(path)
    db.execute(f"DROP TABLE {drop_table}")
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()
