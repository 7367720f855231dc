"""The SQLite spend ledger's schema and the statements of its hot path (``ledger.Ledger``)."""

# ``id`` is a plain rowid alias: rows are never deleted, so ids are never reused, and AUTOINCREMENT
# would write its ``sqlite_sequence`` page in every reservation (files made before keep it).
SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id            INTEGER PRIMARY KEY,
    wallet        TEXT NOT NULL,
    status        TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    chain_id      INTEGER,
    payee         TEXT NOT NULL,
    origin        TEXT NOT NULL,
    path          TEXT NOT NULL,
    model         TEXT,
    request_id    TEXT,
    challenge_id  TEXT,
    tx_hash       TEXT,
    reference     TEXT,
    valid_before  INTEGER,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS payments_window ON payments (wallet, created_at, status);
CREATE TABLE IF NOT EXISTS payee_pins (
    wallet      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    payee       TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    PRIMARY KEY (wallet, origin)
);
CREATE TABLE IF NOT EXISTS spend_minutes (
    wallet  TEXT NOT NULL,
    minute  INTEGER NOT NULL,
    amount  INTEGER NOT NULL,
    PRIMARY KEY (wallet, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refunds (
    wallet     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    at         REAL NOT NULL,
    PRIMARY KEY (wallet, reference)
) WITHOUT ROWID
"""
SCHEMA_VERSION = 2
BACKFILL = """
INSERT INTO spend_minutes (wallet, minute, amount)
SELECT wallet, CAST(created_at / 60 AS INTEGER), SUM(amount) FROM payments
WHERE status IN ('reserved', 'signed', 'settled', 'unknown') GROUP BY 1, 2
ON CONFLICT (wallet, minute) DO UPDATE SET amount = excluded.amount
"""
# Version 1 files kept no refund marks: a channel some of whose rows were released on its
# finalisation was refunded (a refund in part only leaves no trace; it stays refundable once more).
BACKFILL_REFUNDS = """
INSERT OR IGNORE INTO refunds (wallet, reference, amount, at)
SELECT wallet, reference, 0, MAX(updated_at) FROM payments
WHERE status = 'released' AND reference IS NOT NULL AND error LIKE 'channel finalised%' GROUP BY 1, 2
"""


# The statements of a payment's hot path, written once (the module's statement cache keeps them
# prepared).  Every status but 'released' is counted (COUNTED): one comparison per row, not four.
LIMITS = ("SELECT (SELECT COALESCE(SUM(amount), 0) FROM spend_minutes WHERE wallet = ?1 AND minute >= ?2), "
           "(SELECT COUNT(*) FROM payments WHERE wallet = ?1 AND created_at > ?3 AND status != 'released')")
INSERT_ROW = ("INSERT INTO payments (wallet, status, amount, currency, chain_id, payee, origin, path, "
               "model, request_id, challenge_id, reference, created_at, updated_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_PIN = "INSERT OR IGNORE INTO payee_pins (wallet, origin, payee, first_seen) VALUES (?, ?, ?, ?)"
ADD_TO_BUCKET = ("INSERT INTO spend_minutes (wallet, minute, amount) VALUES (?, ?, ?) "
                  "ON CONFLICT (wallet, minute) DO UPDATE SET amount = amount + excluded.amount")
PRUNE_BUCKETS = "DELETE FROM spend_minutes WHERE wallet = ? AND minute < ?"
MARK_SIGNED = ("UPDATE payments SET status = 'signed', tx_hash = ?, valid_before = ?, updated_at = ? "
                "WHERE id = ?")
SETTLE = ("UPDATE payments SET status = 'settled', reference = ?, tx_hash = COALESCE(?, tx_hash), "
           "valid_before = COALESCE(?, valid_before), updated_at = ? WHERE id = ?")
MARK_UNKNOWN = ("UPDATE payments SET status = 'unknown', error = ?, tx_hash = COALESCE(?, tx_hash), "
                 "valid_before = COALESCE(?, valid_before), updated_at = ? WHERE id = ?")
