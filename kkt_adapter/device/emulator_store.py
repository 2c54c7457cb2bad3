"""The emulator's state file: schema, the device state row and the document log, as plain SQL.

Every function takes a connection already inside a transaction; the emulator owns those.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.domain.sign import qr_string
from kkt_adapter.sqlite import apply_migrations

RECEIPT_TYPES = {1: "sale", 2: "refund", 3: "expense", 4: "expense_refund"}

# One tuple of statements per schema version, applied in order (kkt_adapter.sqlite).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE device_state (
            id INTEGER PRIMARY KEY CHECK (id = 1), fn TEXT NOT NULL,
            registration_number TEXT NOT NULL, next_fd INTEGER NOT NULL, shift INTEGER NOT NULL,
            shift_open INTEGER NOT NULL, shift_opened_at TEXT, number_in_shift INTEGER NOT NULL,
            fault TEXT)""",
        """CREATE TABLE documents (
            fd INTEGER PRIMARY KEY, kind TEXT NOT NULL, receipt_id TEXT UNIQUE,
            created_at TEXT NOT NULL, shift INTEGER NOT NULL, number_in_shift INTEGER,
            fp TEXT NOT NULL, total INTEGER, type_code INTEGER, document TEXT NOT NULL,
            confirmed INTEGER NOT NULL DEFAULT 0)""",
        # Only receipts are delivered to the OFD, so only they can block the FN.
        """CREATE INDEX documents_unconfirmed ON documents (fd)
            WHERE confirmed = 0 AND kind = 'receipt'""",
        "CREATE INDEX documents_shift ON documents (shift, kind)",
    ),
    # 2: print requests for a receipt id already fiscalized are counted (``repeat_prints``).
    ("ALTER TABLE device_state ADD COLUMN repeat_prints INTEGER NOT NULL DEFAULT 0",),
    # 3: the emulated FN's validity (an FN is made for 15 or 36 months; set at first use).
    ("ALTER TABLE device_state ADD COLUMN fn_valid_until TEXT",),
    # 4: cash in and out. Non-fiscal documents (no FD, never sent to the OFD), so a table of
    # their own: ``documents.fd`` is the FD. The adapter's operation id is kept with each, so
    # a retry after a crash finds it instead of moving the cash twice.
    (
        """CREATE TABLE cash_documents (
            id INTEGER PRIMARY KEY, operation_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            shift INTEGER NOT NULL, number INTEGER NOT NULL, amount INTEGER NOT NULL,
            created_at TEXT NOT NULL, cashier TEXT)""",
        "CREATE INDEX cash_documents_shift ON cash_documents (shift)",
    ),
)
FN_MONTHS = 15
"""An emulated FN is valid this long from its first use (the common 15-month FN)."""
SCHEMA_VERSION = len(MIGRATIONS)

_STATE_COLUMNS = (
    "fn, registration_number, next_fd, shift, shift_open, shift_opened_at, number_in_shift, fault"
)
# The oldest unconfirmed receipt is found through the partial index, whatever the backlog.
_OLDEST_UNCONFIRMED = (
    "SELECT created_at FROM documents WHERE confirmed = 0 AND kind = 'receipt' ORDER BY fd LIMIT 1"
)
# What a print needs to know, in one statement: the state, whether this receipt id was
# fiscalized already, and the oldest unconfirmed receipt (for the FN offline limit).
_PRINT_CONTEXT = (
    f"SELECT {_STATE_COLUMNS}, (SELECT fd FROM documents WHERE receipt_id = ?),"
    f" ({_OLDEST_UNCONFIRMED}) FROM device_state WHERE id = 1"
)
_INSERT_DOCUMENT = (
    "INSERT INTO documents (fd, kind, receipt_id, created_at, shift, number_in_shift,"
    " total, type_code, fp, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CONFIRM = "UPDATE documents SET confirmed = 1 WHERE fd = ? AND confirmed = 0"


@dataclass(frozen=True, slots=True)
class State:
    """The device state row."""

    fn: str
    registration_number: str
    next_fd: int
    shift: int
    shift_open: bool
    shift_opened_at: datetime | None
    number_in_shift: int
    fault: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> State:
        """Build from the first eight columns of ``_STATE_COLUMNS`` order."""
        fn, registration_number, next_fd, shift, shift_open, opened, number, fault = row[:8]
        return cls(
            fn,
            registration_number,
            next_fd,
            shift,
            bool(shift_open),
            None if opened is None else datetime.fromisoformat(opened),
            number,
            fault,
        )


@dataclass(frozen=True, slots=True)
class PrintContext:
    """Everything a print reads before writing, from one query."""

    state: State
    existing_fd: int | None
    oldest_unconfirmed: datetime | None


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the state file's schema up to date; returns the version found (0: a new file)."""
    return apply_migrations(conn, MIGRATIONS, "KKT emulator state")


def state_problem(conn: sqlite3.Connection) -> str | None:
    """What makes this state file unusable as the device it was, in a few words; ``None`` if
    nothing (a file with no device row and no documents is a device not made yet)."""
    row = conn.execute(f"SELECT {_STATE_COLUMNS} FROM device_state WHERE id = 1").fetchone()
    count, last_fd = conn.execute("SELECT COUNT(*), MAX(fd) FROM documents").fetchone()
    if row is None:
        return None if count == 0 else f"no device state row, but {count} documents"
    try:
        state = State.from_row(row)
    except (TypeError, ValueError) as exc:
        return f"unreadable device state: {exc}"
    if not (isinstance(state.fn, str) and len(state.fn) == 16 and state.fn.isdigit()):
        return f"the FN {state.fn!r} is not 16 digits"
    if not isinstance(state.next_fd, int) or state.next_fd <= (last_fd or 0):
        return f"the next FD {state.next_fd!r} is not above the last document's ({last_fd})"
    return None


def check_state_file(path: Path) -> str | None:
    """Whether the state file at ``path`` can be opened as a device: ``None`` if it is sound,
    absent or empty (a new device), else the first problem (not a database, torn pages, a
    newer schema, a lost or contradictory device row). Read-only: it changes nothing."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        first = str(rows[0][0]) if rows else "no answer"
        if first != "ok":
            return first
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            return f"schema version {version} is newer than this kkt-adapter's ({SCHEMA_VERSION})"
        return state_problem(conn) if version > 0 else None
    except sqlite3.Error as exc:  # "file is not a database", "no such table" ...
        return str(exc)
    finally:
        conn.close()


def ensure_state(conn: sqlite3.Connection, fn: str, registration_number: str) -> State:
    """The device state row; a new device's (these numbers, FD 1 next, no shift) if none."""
    conn.execute(
        "INSERT INTO device_state (id, fn, registration_number, next_fd, shift, shift_open,"
        " shift_opened_at, number_in_shift, fault) VALUES (1, ?, ?, 1, 0, 0, NULL, 0, NULL)"
        " ON CONFLICT (id) DO NOTHING",
        (fn, registration_number),
    )
    return read_state(conn)


def fn_valid_until(conn: sqlite3.Connection, now: datetime) -> datetime:
    """Until when the emulated FN signs documents; set to ``FN_MONTHS`` from ``now`` the first
    time it is asked (call inside a write transaction)."""
    row = conn.execute("SELECT fn_valid_until FROM device_state WHERE id = 1").fetchone()
    if row is not None and row[0]:
        return datetime.fromisoformat(row[0])
    until = now + timedelta(days=FN_MONTHS * 365 // 12)
    conn.execute("UPDATE device_state SET fn_valid_until = ? WHERE id = 1", (until.isoformat(),))
    return until


def read_fn_valid_until(conn: sqlite3.Connection) -> datetime | None:
    row = conn.execute("SELECT fn_valid_until FROM device_state WHERE id = 1").fetchone()
    return datetime.fromisoformat(row[0]) if row is not None and row[0] else None


def read_state(conn: sqlite3.Connection) -> State:
    """The device state row."""
    return State.from_row(
        conn.execute(f"SELECT {_STATE_COLUMNS} FROM device_state WHERE id = 1").fetchone()
    )


def read_print_context(conn: sqlite3.Connection, receipt_id: str) -> PrintContext:
    """The state, the FD of ``receipt_id`` if fiscalized already, and the oldest unconfirmed."""
    row = conn.execute(_PRINT_CONTEXT, (receipt_id,)).fetchone()
    oldest = row[9]
    return PrintContext(
        State.from_row(row), row[8], None if oldest is None else datetime.fromisoformat(oldest)
    )


def set_state(conn: sqlite3.Connection, **fields: object) -> None:
    """Update the named state columns."""
    # Column names come from the emulator's call sites only, never from input.
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE device_state SET {assignments} WHERE id = 1", tuple(fields.values()))


def advance_receipt_counters(conn: sqlite3.Connection, next_fd: int, number_in_shift: int) -> None:
    """The state update after a receipt: the hot path's one fixed statement."""
    conn.execute(
        "UPDATE device_state SET next_fd = ?, number_in_shift = ? WHERE id = 1",
        (next_fd, number_in_shift),
    )


def insert_document(
    conn: sqlite3.Connection,
    kind: str,
    doc: dict[str, Any],
    data: bytes,
    receipt_id: str | None = None,
) -> None:
    """Log a signed document; ``data`` is its JSON serialization."""
    receipt = (doc["1020"], doc["1054"]) if kind == "receipt" else (None, None)
    conn.execute(
        _INSERT_DOCUMENT,
        (
            doc["1040"],
            kind,
            receipt_id,
            doc["1012"],
            doc["1038"],
            doc.get("1042"),
            *receipt,
            doc["1077"],
            data.decode(),
        ),
    )


def count_repeat_print(conn: sqlite3.Connection) -> None:
    """One more print request for a receipt id that was fiscalized already."""
    conn.execute("UPDATE device_state SET repeat_prints = repeat_prints + 1 WHERE id = 1")


def repeat_prints(conn: sqlite3.Connection) -> int:
    """How many print requests named a receipt id that was fiscalized already."""
    count: int = conn.execute("SELECT repeat_prints FROM device_state WHERE id = 1").fetchone()[0]
    return count


def confirm(conn: sqlite3.Connection, fds: list[tuple[int]]) -> None:
    """Mark the documents confirmed; already confirmed or unknown FDs change nothing."""
    conn.executemany(_CONFIRM, fds)


def find_by_fd(conn: sqlite3.Connection, fd: int) -> sqlite3.Row | None:
    """The logged document ``fd``."""
    row: sqlite3.Row | None = conn.execute("SELECT * FROM documents WHERE fd = ?", (fd,)).fetchone()
    return row


def find_receipt(conn: sqlite3.Connection, receipt_id: str) -> sqlite3.Row | None:
    """The logged receipt whose tag 1192 is ``receipt_id``."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM documents WHERE receipt_id = ?", (receipt_id,)
    ).fetchone()
    return row


def last_receipt(conn: sqlite3.Connection) -> sqlite3.Row | None:
    """The most recent logged receipt."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM documents WHERE kind = 'receipt' ORDER BY fd DESC LIMIT 1"
    ).fetchone()
    return row


def unconfirmed(conn: sqlite3.Connection) -> tuple[int, datetime | None, int | None]:
    """Count of receipts not confirmed by the OFD, the time and FD of the oldest one."""
    count: int = conn.execute(
        "SELECT count(*) FROM documents WHERE confirmed = 0 AND kind = 'receipt'"
    ).fetchone()[0]
    row = conn.execute(
        "SELECT created_at, fd FROM documents WHERE confirmed = 0 AND kind = 'receipt'"
        " ORDER BY fd LIMIT 1"
    ).fetchone()
    if row is None:
        return count, None, None
    return count, datetime.fromisoformat(row[0]), int(row[1])


def journal(conn: sqlite3.Connection, after_fd: int, limit: int) -> list[sqlite3.Row]:
    """Logged receipts above ``after_fd`` in FD order, at most ``limit``."""
    return conn.execute(
        "SELECT * FROM documents WHERE fd > ? AND kind = 'receipt' ORDER BY fd LIMIT ?",
        (after_fd, limit),
    ).fetchall()


def shift_documents(conn: sqlite3.Connection, shift: int) -> list[dict[str, Any]]:
    """The receipts of ``shift`` as their stored FFD documents, in FD order."""
    return [
        orjson.loads(row[0])
        for row in conn.execute(
            "SELECT document FROM documents WHERE shift = ? AND kind = 'receipt' ORDER BY fd",
            (shift,),
        )
    ]


def shift_cash(conn: sqlite3.Connection, shift: int) -> list[tuple[CashKind, int]]:
    """The cash operations of ``shift`` as ``(kind, amount)``, in order."""
    return [
        (CashKind(kind), amount)
        for kind, amount in conn.execute(
            "SELECT kind, amount FROM cash_documents WHERE shift = ? ORDER BY id", (shift,)
        )
    ]


def insert_cash(
    conn: sqlite3.Connection,
    operation_id: str,
    kind: CashKind,
    shift: int,
    number: int,
    amount: int,
    created_at: str,
    cashier: str | None,
) -> None:
    """Log a cash operation under the adapter's operation id."""
    conn.execute(
        "INSERT INTO cash_documents (operation_id, kind, shift, number, amount, created_at,"
        " cashier) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (operation_id, kind.value, shift, number, amount, created_at, cashier),
    )


def find_cash(conn: sqlite3.Connection, operation_id: str) -> sqlite3.Row | None:
    """The logged cash operation of ``operation_id``."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM cash_documents WHERE operation_id = ?", (operation_id,)
    ).fetchone()
    return row


def cash_count(conn: sqlite3.Connection, shift: int) -> int:
    """How many cash operations ``shift`` has."""
    count: int = conn.execute(
        "SELECT count(*) FROM cash_documents WHERE shift = ?", (shift,)
    ).fetchone()[0]
    return count


def fiscal_result(
    receipt_id: str,
    fd: int,
    fp: str,
    shift: int,
    number_in_shift: int,
    created_at: str,
    total: int,
    type_code: int,
    document: dict[str, Any],
) -> FiscalResult:
    """The result of a fiscalized receipt, from the values logged for it."""
    when = datetime.fromisoformat(created_at)
    fn = document["1041"]
    return FiscalResult(
        receipt_id=receipt_id,
        fn=fn,
        fd=fd,
        fp=fp,
        shift=shift,
        number_in_shift=number_in_shift,
        datetime=when,
        qr=qr_string(when, total, fn, fd, fp, type_code),
        document=document,
    )


def result_from_row(row: sqlite3.Row) -> FiscalResult:
    """The result of a logged receipt."""
    return fiscal_result(
        row["receipt_id"],
        row["fd"],
        row["fp"],
        row["shift"],
        row["number_in_shift"],
        row["created_at"],
        row["total"],
        row["type_code"],
        orjson.loads(row["document"]),
    )
