"""The bundled KKT emulator: a cash register and its fiscal drive kept in their own SQLite file.

It behaves like a separate device so the adapter's promises can be tested for real: the FN
number, FD counter, shift and document log survive restarts (I4), a receipt id is fiscalized
at most once (I2), and two processes sharing a data dir are serialized by SQLite's write lock,
because every state change runs in ``BEGIN IMMEDIATE`` and re-reads the state inside it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from kkt_adapter.device.base import DeviceStatus, FfdDocument, FiscalResult, ShiftReport
from kkt_adapter.device.sign import fiscal_sign, qr_string
from kkt_adapter.errors import ConfigError, DeviceError, ShiftError

MOSCOW = timezone(timedelta(hours=3), "MSK")
STATE_FILE = "kkt-emulator.sqlite"
MODEL = "kkt-adapter emulator"
FAULTS = frozenset({"out_of_paper", "offline"})
RECEIPT_TYPES = {1: "sale", 2: "refund", 3: "expense", 4: "expense_refund"}

_SCHEMA_VERSION = 1
# Separate statements: executescript() would COMMIT the surrounding BEGIN IMMEDIATE.
_SCHEMA = (
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
)


@dataclass(frozen=True)
class _State:
    fn: str
    registration_number: str
    next_fd: int
    shift: int
    shift_open: bool
    shift_opened_at: datetime | None
    number_in_shift: int
    fault: str | None


class EmulatedKkt:
    """A faithful software KKT (``KktDevice``), labelled as an emulator in its status.

    State lives in ``data_dir / "kkt-emulator.sqlite"``; a new instance on the same directory
    continues where the last one stopped. Faults set with ``set_fault`` are persisted there
    too, so another process (or a restart) sees them, as it would on a real device.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        key: bytes,
        fn: str | None = None,
        registration_number: str | None = None,
        print_delay_ms: int = 0,
        auto_open_shift: bool = True,
        shift_max_hours: int = 24,
        offline_limit_days: int = 30,
        clock: Callable[[], datetime] | None = None,
        tz: tzinfo = MOSCOW,
    ) -> None:
        if not key:
            raise ConfigError("the emulator's fiscal sign key must not be empty")
        for name, value in (("fn", fn), ("registration_number", registration_number)):
            if value is not None and not (len(value) == 16 and value.isdigit()):
                raise ConfigError(f"emulator {name} must be 16 digits, got {value!r}")
        self.path = Path(data_dir) / STATE_FILE
        self._key = key
        self._print_delay_s = print_delay_ms / 1000
        self._auto_open = auto_open_shift
        self._shift_max = timedelta(hours=shift_max_hours)
        self._offline_limit = timedelta(days=offline_limit_days)
        self._tz = tz
        self._clock = clock or (lambda: datetime.now(tz))
        # One receipt printed at a time per instance; the connection has its own guard so
        # reads and confirms need not wait for a (simulated) printout.
        self._print_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        self._init_state(fn, registration_number)

    def print_receipt(self, receipt_id: str, document: FfdDocument) -> FiscalResult:
        """Fiscalize ``document`` once; a repeated ``receipt_id`` returns the stored result."""
        _check_document(receipt_id, document)
        with self._print_lock:
            with self._tx() as conn:
                existing = _find_row(conn, receipt_id)
                if existing is not None:
                    return _result(existing)
                result = self._fiscalize(conn, receipt_id, document)
            self._simulate_printing()
        return result

    def find_document(self, receipt_id: str) -> FiscalResult | None:
        """The fiscalized receipt whose tag 1192 is ``receipt_id``, if any."""
        with self._tx("DEFERRED") as conn:
            row = _find_row(conn, receipt_id)
        return None if row is None else _result(row)

    def last_document(self) -> FiscalResult | None:
        """The most recent fiscalized receipt (shift documents are not receipts)."""
        with self._tx("DEFERRED") as conn:
            row = conn.execute(
                "SELECT * FROM documents WHERE kind = 'receipt' ORDER BY fd DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _result(row)

    def status(self) -> DeviceStatus:
        """Measured state, read from the device file."""
        now = self._now()
        with self._tx("DEFERRED") as conn:
            state = _read_state(conn)
            count, oldest = _unconfirmed(conn)
        return DeviceStatus(
            emulator=True,
            model=MODEL,
            fn=state.fn,
            registration_number=state.registration_number,
            online=state.fault != "offline",
            paper=state.fault != "out_of_paper",
            shift_open=state.shift_open,
            shift=state.shift,
            shift_opened_at=state.shift_opened_at,
            shift_expired=self._shift_expired(state, now),
            last_fd=state.next_fd - 1,
            unconfirmed_count=count,
            oldest_unconfirmed_at=oldest,
            fn_blocked=oldest is not None and now - oldest > self._offline_limit,
        )

    def open_shift(self, cashier: str | None = None) -> ShiftReport:
        """Open a new shift; ``ShiftError`` if one is open already."""
        with self._print_lock:
            with self._tx() as conn:
                state = _read_state(conn)
                _check_fault(state)
                if state.shift_open:
                    raise ShiftError(
                        f"shift {state.shift} is already open",
                        details={"reason": "shift_already_open", "shift": state.shift},
                    )
                report = self._open_shift(conn, state, self._now(), cashier)
            self._simulate_printing()
        return report

    def close_shift(self, cashier: str | None = None) -> ShiftReport:
        """Close the open shift (expired or not) and return its Z report."""
        with self._print_lock:
            with self._tx() as conn:
                state = _require_open_shift(_read_state(conn))
                _check_fault(state)
                now = self._now()
                receipts, totals = _shift_totals(conn, state.shift)
                doc = self._header(state, now, cashier)
                doc["1118"] = receipts
                self._store(conn, "close_shift", doc)
                _set_state(conn, next_fd=state.next_fd + 1, shift_open=0, shift_opened_at=None)
            self._simulate_printing()
        return ShiftReport(
            "z", state.shift, state.next_fd, state.shift_opened_at, now, receipts, totals
        )

    def x_report(self) -> ShiftReport:
        """Totals of the open shift so far; changes nothing. ``fd`` is the last FD issued."""
        with self._print_lock:
            with self._tx("DEFERRED") as conn:
                state = _require_open_shift(_read_state(conn))
                _check_fault(state)
                receipts, totals = _shift_totals(conn, state.shift)
            self._simulate_printing()
        last_fd = state.next_fd - 1
        return ShiftReport("x", state.shift, last_fd, state.shift_opened_at, None, receipts, totals)

    def confirm(self, fd: int) -> None:
        """Mark document ``fd`` acknowledged by the OFD; repeated or unknown ``fd`` is a no-op."""
        with self._tx() as conn:
            conn.execute("UPDATE documents SET confirmed = 1 WHERE fd = ? AND confirmed = 0", (fd,))

    def close(self) -> None:
        """Close the state file."""
        with self._conn_lock:
            self._conn.close()

    def set_fault(self, fault: str | None) -> None:
        """Inject ``"out_of_paper"`` or ``"offline"``, or clear with ``None`` (persisted)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        with self._tx() as conn:
            _set_state(conn, fault=fault)

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit BEGIN IMMEDIATE / COMMIT below.
        conn = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._conn_lock:
            self._conn.execute(f"BEGIN {mode}")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _init_state(self, fn: str | None, registration_number: str | None) -> None:
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO device_state VALUES (1, ?, ?, 1, 0, 0, NULL, 0, NULL)",
                    (fn or "9999" + _digits(12), registration_number or _digits(16)),
                )
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            elif version != _SCHEMA_VERSION:
                raise ConfigError(f"{self.path}: unsupported emulator state version {version}")
            state = _read_state(conn)
        if fn is not None and fn != state.fn:
            raise ConfigError(f"{self.path} holds the emulator with FN {state.fn}, not {fn}")

    def _fiscalize(
        self, conn: sqlite3.Connection, receipt_id: str, document: FfdDocument
    ) -> FiscalResult:
        state = _read_state(conn)
        now = self._now()
        _check_fault(state)
        self._check_fn_not_blocked(conn, now)
        if state.shift_open and self._shift_expired(state, now):
            raise DeviceError(
                f"shift {state.shift} is older than {self._shift_max}; close it first",
                reason="shift_expired",
            )
        if not state.shift_open:
            if not self._auto_open:
                raise DeviceError("no open shift", reason="shift_closed")
            self._open_shift(conn, state, now, None)
            state = _read_state(conn)
        number = state.number_in_shift + 1
        # A JSON round trip copies the caller's dict and proves it is storable as is.
        doc: FfdDocument = json.loads(json.dumps(document, ensure_ascii=False))
        doc.update(self._header(state, now, None))
        doc["1042"] = number
        self._store(conn, "receipt", doc, receipt_id=receipt_id)
        _set_state(conn, next_fd=state.next_fd + 1, number_in_shift=number)
        row = _find_row(conn, receipt_id)
        assert row is not None  # inserted just above, in this transaction
        return _result(row)

    def _open_shift(
        self, conn: sqlite3.Connection, state: _State, now: datetime, cashier: str | None
    ) -> ShiftReport:
        shift = state.shift + 1
        doc = self._header(state, now, cashier)
        doc["1038"] = shift
        self._store(conn, "open_shift", doc)
        fields = {
            "next_fd": state.next_fd + 1,
            "shift": shift,
            "shift_open": 1,
            "number_in_shift": 0,
        }
        _set_state(conn, shift_opened_at=now.isoformat(), **fields)
        return ShiftReport("open", shift, state.next_fd, now, None, 0, {})

    def _header(self, state: _State, now: datetime, cashier: str | None) -> FfdDocument:
        """The fiscal attributes every document gets: FD, FN, registration no., shift, time."""
        header: FfdDocument = {
            "1040": state.next_fd,
            "1041": state.fn,
            "1037": state.registration_number,
            "1038": state.shift,
            "1012": now.isoformat(),
        }
        if cashier:
            header["1021"] = cashier
        return header

    def _store(
        self, conn: sqlite3.Connection, kind: str, doc: FfdDocument, receipt_id: str | None = None
    ) -> None:
        doc["1077"] = fiscal_sign(self._key, doc)
        receipt = (doc["1020"], doc["1054"]) if kind == "receipt" else (None, None)
        common = (doc["1040"], kind, receipt_id, doc["1012"], doc["1038"], doc.get("1042"))
        conn.execute(
            "INSERT INTO documents (fd, kind, receipt_id, created_at, shift, number_in_shift,"
            " total, type_code, fp, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*common, *receipt, doc["1077"], json.dumps(doc, ensure_ascii=False)),
        )

    def _check_fn_not_blocked(self, conn: sqlite3.Connection, now: datetime) -> None:
        _, oldest = _unconfirmed(conn)
        if oldest is not None and now - oldest > self._offline_limit:
            raise DeviceError(
                f"FN blocked: a document from {oldest.isoformat()} is unconfirmed by the OFD"
                f" for more than {self._offline_limit.days} days",
                reason="fn_blocked",
            )

    def _shift_expired(self, state: _State, now: datetime) -> bool:
        opened = state.shift_opened_at
        return state.shift_open and opened is not None and now - opened > self._shift_max

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the emulator's clock must return timezone-aware datetimes")
        # Whole seconds in device local time: that is what a receipt prints and tag 1012 holds.
        return now.astimezone(self._tz).replace(microsecond=0)

    def _simulate_printing(self) -> None:
        # Outside the transaction: a slow printout must not hold the device file's write lock.
        if self._print_delay_s > 0:
            time.sleep(self._print_delay_s)


def _check_document(receipt_id: str, document: FfdDocument) -> None:
    problem = None
    if document.get("1192") != receipt_id:
        problem = "tag 1192 must equal the receipt id"
    elif document.get("1054") not in RECEIPT_TYPES:
        problem = "tag 1054 must be a receipt type code 1..4"
    elif type(document.get("1020")) is not int or document["1020"] < 0:
        problem = "tag 1020 must be a non-negative integer of kopecks"
    if problem is not None:
        raise DeviceError(
            f"document refused: {problem}", reason="invalid_document", retry_after=None
        )


def _check_fault(state: _State) -> None:
    if state.fault == "out_of_paper":
        raise DeviceError("the KKT is out of paper", reason="out_of_paper")
    if state.fault == "offline":
        raise DeviceError("the KKT does not respond", reason="offline")


def _require_open_shift(state: _State) -> _State:
    if not state.shift_open:
        raise ShiftError("no open shift", details={"reason": "shift_not_open"})
    return state


def _read_state(conn: sqlite3.Connection) -> _State:
    row = dict(conn.execute("SELECT * FROM device_state WHERE id = 1").fetchone())
    opened = row.pop("shift_opened_at")
    del row["id"]
    row["shift_open"] = bool(row["shift_open"])
    return _State(**row, shift_opened_at=None if opened is None else datetime.fromisoformat(opened))


def _set_state(conn: sqlite3.Connection, **fields: object) -> None:
    # Column names come from this module's call sites only, never from input.
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE device_state SET {assignments} WHERE id = 1", tuple(fields.values()))


def _find_row(conn: sqlite3.Connection, receipt_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM documents WHERE receipt_id = ?", (receipt_id,)
    ).fetchone()
    return row


def _unconfirmed(conn: sqlite3.Connection) -> tuple[int, datetime | None]:
    """Count of receipts not confirmed by the OFD and the time of the oldest one."""
    count = conn.execute(
        "SELECT count(*) FROM documents WHERE confirmed = 0 AND kind = 'receipt'"
    ).fetchone()[0]
    row = conn.execute(
        "SELECT created_at FROM documents WHERE confirmed = 0 AND kind = 'receipt'"
        " ORDER BY fd LIMIT 1"
    ).fetchone()
    return count, None if row is None else datetime.fromisoformat(row[0])


def _shift_totals(conn: sqlite3.Connection, shift: int) -> tuple[int, dict[str, int]]:
    totals = dict.fromkeys(RECEIPT_TYPES.values(), 0)
    receipts = 0
    for type_code, count, total in conn.execute(
        "SELECT type_code, count(*), sum(total) FROM documents"
        " WHERE shift = ? AND kind = 'receipt' GROUP BY type_code",
        (shift,),
    ):
        totals[RECEIPT_TYPES[type_code]] = total
        receipts += count
    return receipts, totals


def _result(row: sqlite3.Row) -> FiscalResult:
    document: dict[str, Any] = json.loads(row["document"])
    when = datetime.fromisoformat(row["created_at"])
    fn = document["1041"]
    return FiscalResult(
        receipt_id=row["receipt_id"],
        fn=fn,
        fd=row["fd"],
        fp=row["fp"],
        shift=row["shift"],
        number_in_shift=row["number_in_shift"],
        datetime=when,
        qr=qr_string(when, row["total"], fn, row["fd"], row["fp"], row["type_code"]),
        document=document,
    )


def _digits(n: int) -> str:
    return f"{secrets.randbelow(10**n):0{n}d}"
