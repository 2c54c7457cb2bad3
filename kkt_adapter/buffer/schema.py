"""Schema of the SQLite buffer, versioned with ``PRAGMA user_version``.

Each migration moves the schema one version up inside one transaction; a buffer written by a
newer version is refused instead of being misread.
"""

from __future__ import annotations

import sqlite3

from kkt_adapter.sqlite import apply_migrations, split_statements

_SCRIPTS: tuple[str, ...] = (
    # 1: receipts, idempotency keys, audit events, DLQ, metadata, exact status counters.
    """
    CREATE TABLE receipts (
        id              TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL,             -- unique through idempotency_keys
        pos_id          TEXT NOT NULL,
        type            TEXT NOT NULL,
        total           INTEGER NOT NULL,          -- kopecks
        status          TEXT NOT NULL,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        hlc_wall        INTEGER NOT NULL,
        hlc_counter     INTEGER NOT NULL,
        hlc_node        TEXT NOT NULL,
        payload         TEXT NOT NULL,             -- the validated receipt, JSON
        document        TEXT NOT NULL,             -- FFD document, JSON (fiscal tags once printed)
        fn              TEXT,
        fd              INTEGER,
        fp              TEXT,
        shift           INTEGER,
        number_in_shift INTEGER,
        fiscal_at       TEXT,
        qr              TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        lease_until_ms  INTEGER,
        fence           INTEGER,
        synced_ms       INTEGER,
        ofd_receipt_id  TEXT,
        confirmed       INTEGER NOT NULL DEFAULT 0, -- the KKT was told the OFD has it
        response        TEXT                        -- the answer replayed for a repeated key
    );
    CREATE INDEX receipts_due ON receipts(status, next_attempt_ms);
    CREATE INDEX receipts_unsent ON receipts(created_ms)
        WHERE status IN ('pending', 'syncing', 'failed');
    CREATE INDEX receipts_synced ON receipts(synced_ms) WHERE status = 'synced';
    CREATE INDEX receipts_unconfirmed ON receipts(fd) WHERE status = 'synced' AND confirmed = 0;
    CREATE INDEX receipts_leased ON receipts(lease_until_ms) WHERE status = 'syncing';

    CREATE TABLE idempotency_keys (
        key        TEXT PRIMARY KEY,
        receipt_id TEXT NOT NULL REFERENCES receipts(id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX idempotency_keys_receipt ON idempotency_keys(receipt_id);

    CREATE TABLE buffer_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms       INTEGER NOT NULL,
        level       TEXT NOT NULL,
        event       TEXT NOT NULL,
        receipt_id  TEXT,
        from_status TEXT,
        to_status   TEXT,
        message     TEXT
    );
    CREATE INDEX buffer_events_receipt ON buffer_events(receipt_id, id);
    CREATE INDEX buffer_events_ts ON buffer_events(ts_ms);

    CREATE TABLE dlq (
        receipt_id  TEXT PRIMARY KEY REFERENCES receipts(id),
        code        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        http_status INTEGER,
        created_ms  INTEGER NOT NULL
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('fence_high', '0');

    -- The sync lease of the sqlite backend (kkt_adapter.delivery.lease).
    CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        fence      INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );

    -- Exact counters per status, kept by triggers, so status and capacity checks cost O(1)
    -- however many receipts the buffer holds.
    CREATE TABLE status_counts (
        status TEXT PRIMARY KEY,
        n      INTEGER NOT NULL
    );
    INSERT INTO status_counts(status, n) VALUES
        ('accepted', 0), ('print_failed', 0), ('pending', 0),
        ('syncing', 0), ('synced', 0), ('failed', 0);
    CREATE TRIGGER receipts_count_insert AFTER INSERT ON receipts BEGIN
        UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;
    END;
    CREATE TRIGGER receipts_count_update AFTER UPDATE OF status ON receipts
        WHEN OLD.status != NEW.status BEGIN
        UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
        UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;
    END;
    CREATE TRIGGER receipts_count_delete AFTER DELETE ON receipts BEGIN
        UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
    END;
    """,
    # 2: the owner of an ``accepted`` row (kkt_adapter.buffer.owners): only a dead owner's
    # rows are settled by someone else.
    """
    ALTER TABLE receipts ADD COLUMN owner TEXT;
    """,
    # 3: lookups of a fiscalized receipt by (FN, FD) and of a shift's receipts
    # (kkt_adapter.buffer.lookup). Partial: rows not yet printed are never looked up so. Each
    # costs a printed receipt one more b-tree write, measured at noise level next to the
    # ~120 µs of SQLite work per receipt and far below its fsync (docs/decisions.md).
    """
    CREATE INDEX receipts_fiscal ON receipts(fn, fd) WHERE fd IS NOT NULL;
    CREATE INDEX receipts_shift ON receipts(shift, fn, number_in_shift) WHERE fd IS NOT NULL;
    """,
    # 4: refunds of a named sale (kkt_adapter.buffer.refunds): the sale a refund returns and
    # the quantity it takes from each of the sale's lines (JSON {"<line>": thousandths},
    # resolved when it was taken in). Partial index: only refunds that name a sale are
    # looked up by it, so other receipts cost nothing more.
    """
    ALTER TABLE receipts ADD COLUMN refund_of TEXT;
    ALTER TABLE receipts ADD COLUMN refund_lines TEXT;
    CREATE INDEX receipts_refund_of ON receipts(refund_of) WHERE refund_of IS NOT NULL;
    """,
    # 5: cash in and out (kkt_adapter.buffer.cash), each committed ``accepted`` before the KKT
    # is asked, under its idempotency key; and the Z reports of closed shifts
    # (kkt_adapter.buffer.shift_reports), kept as the KKT gave them.
    """
    CREATE TABLE cash_operations (
        id              TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        fingerprint     TEXT NOT NULL,
        kind            TEXT NOT NULL,             -- cash_in, cash_out
        amount          INTEGER NOT NULL,          -- kopecks
        cashier         TEXT,
        status          TEXT NOT NULL,             -- accepted, done, failed
        owner           TEXT,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL,
        shift           INTEGER,
        last_error      TEXT,
        response        TEXT                       -- the answer replayed for a repeated key
    );
    CREATE TABLE shift_reports (
        fn         TEXT NOT NULL,
        shift      INTEGER NOT NULL,
        fd         INTEGER NOT NULL,
        closed_ms  INTEGER NOT NULL,
        report     TEXT NOT NULL,                  -- the Z report, JSON
        PRIMARY KEY (fn, shift)
    );
    CREATE INDEX shift_reports_closed ON shift_reports(closed_ms);
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the buffer's schema up to date; returns the version found."""
    return apply_migrations(conn, MIGRATIONS, "buffer")


MIGRATIONS: tuple[tuple[str, ...], ...] = tuple(split_statements(script) for script in _SCRIPTS)
SCHEMA_VERSION = len(MIGRATIONS)
