"""The bundled KKT emulator: a cash register and its fiscal drive kept in their own SQLite file.

It behaves like a separate device so the adapter's promises can be tested for real: the FN
number, FD counter, shift and document log survive restarts (I4), and two processes sharing a
data dir are serialized by SQLite's write lock, because every state change runs in
``BEGIN IMMEDIATE`` and re-reads the state inside it.

A real register prints a second document when asked twice to print the same receipt, so the
adapter must never ask twice (I2). The emulator cannot print twice either, and a lenient
answer would hide such a request: every print request naming a receipt id that was fiscalized
already is counted in the state file (``repeat_prints``) and logged as an error; in ``strict``
mode (the tests run in it) it is refused with ``DeviceError(reason="repeat_print")``, else it
gets the stored result.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

import orjson

from kkt_adapter.device import emulator_store as store
from kkt_adapter.device.base import CashResult, DeviceStatus, JournalEntry, ShiftReport
from kkt_adapter.device.emulator_store import RECEIPT_TYPES, State
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.money import Kopecks, format_money
from kkt_adapter.domain.shift_totals import CashKind, ShiftTotals, shift_totals
from kkt_adapter.domain.sign import fiscal_sign
from kkt_adapter.errors import ConfigError, DeviceError, InsufficientCash, ShiftError
from kkt_adapter.sqlite import connect

MOSCOW = timezone(timedelta(hours=3), "MSK")
STATE_FILE = "kkt-emulator.sqlite"
MODEL = "kkt-adapter emulator"
FAULTS = frozenset({"out_of_paper", "offline"})
MAX_GROUP = 64  # receipts fiscalized in one transaction at most

log = logging.getLogger(__name__)


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
        strict: bool = False,
    ) -> None:
        if not key:
            raise ConfigError("the emulator's fiscal sign key must not be empty")
        for name, value in (("fn", fn), ("registration_number", registration_number)):
            if value is not None and not (len(value) == 16 and value.isdigit()):
                raise ConfigError(f"emulator {name} must be 16 digits, got {value!r}")
        self.path = Path(data_dir) / STATE_FILE
        self._key = key
        self._print_delay_s = print_delay_ms / 1000
        # With a print delay each paper receipt takes that long anyway, and a group would
        # hold its first answers back until the last is printed: one at a time then.
        self.max_group = MAX_GROUP if print_delay_ms == 0 else 1
        self._auto_open = auto_open_shift
        self._shift_max = timedelta(hours=shift_max_hours)
        self._offline_limit = timedelta(days=offline_limit_days)
        self._tz = tz
        self._strict = strict
        self._clock = clock or (lambda: datetime.now(tz))
        # One receipt printed at a time per instance; the connection has its own guard so
        # reads and confirms need not wait for a (simulated) printout.
        self._print_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        self._init_state(fn, registration_number)

    def print_receipt(self, receipt_id: str, document: FfdDocument) -> FiscalResult:
        """Fiscalize ``document``; a ``receipt_id`` fiscalized already is a repeat print request
        (counted; refused in strict mode, else answered with the stored result)."""
        outcome = self.print_receipts([(receipt_id, document)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def print_receipts(
        self, items: Sequence[tuple[str, FfdDocument]]
    ) -> list[FiscalResult | Exception]:
        """Fiscalize each ``(receipt_id, document)`` in order, in one transaction: one fsync
        for all of them, as a fiscal drive writes a queue of documents in one go. A receipt
        that fails changes nothing and does not stop the others; a storage failure fails all.
        """
        with self._print_lock:
            with self._tx() as conn:
                outcomes = [self._print_one(conn, rid, doc) for rid, doc in items]
            for outcome in outcomes:
                if not isinstance(outcome, Exception):
                    self._simulate_printing()
        return outcomes

    def find_document(self, receipt_id: str) -> FiscalResult | None:
        """The fiscalized receipt whose tag 1192 is ``receipt_id``, if any."""
        with self._tx("DEFERRED") as conn:
            row = store.find_receipt(conn, receipt_id)
        return None if row is None else store.result_from_row(row)

    def archive_document(self, fd: int) -> tuple[str, FfdDocument] | None:
        """Document ``fd`` of any kind (``receipt``, ``open_shift``, ``close_shift``) with its
        tags, as the FN's archive gives it; ``None`` above the last FD."""
        with self._tx("DEFERRED") as conn:
            row = store.find_by_fd(conn, fd)
        if row is None:
            return None
        document: FfdDocument = orjson.loads(row["document"])
        return str(row["kind"]), document

    def journal(self, after_fd: int, limit: int) -> list[JournalEntry]:
        """Fiscalized receipts above ``after_fd`` in FD order, at most ``limit``."""
        with self._tx("DEFERRED") as conn:
            rows = store.journal(conn, after_fd, limit)
        return [JournalEntry(store.result_from_row(row), bool(row["confirmed"])) for row in rows]

    def last_document(self) -> FiscalResult | None:
        """The most recent fiscalized receipt (shift documents are not receipts)."""
        with self._tx("DEFERRED") as conn:
            row = store.last_receipt(conn)
        return None if row is None else store.result_from_row(row)

    def status(self) -> DeviceStatus:
        """Measured state, read from the device file."""
        now = self._now()
        with self._tx("DEFERRED") as conn:
            state = store.read_state(conn)
            count, oldest, first_fd = store.unconfirmed(conn)
            valid_until = store.read_fn_valid_until(conn)
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
            first_unconfirmed_fd=first_fd,
            fn_valid_until=valid_until,
            ffd_version="1.2",
        )

    def open_shift(self, cashier: str | None = None) -> ShiftReport:
        """Open a new shift; ``ShiftError`` if one is open already."""
        with self._print_lock:
            with self._tx() as conn:
                state = store.read_state(conn)
                _check_fault(state)
                if state.shift_open:
                    raise ShiftError(
                        f"shift {state.shift} is already open",
                        details={"reason": "shift_already_open", "shift": state.shift},
                    )
                now = self._now()
                opened = self._open_shift(conn, state, now, cashier)
            self._simulate_printing()
        return ShiftReport("open", opened.shift, state.next_fd, now, None, 0, {}, fn=state.fn)

    def close_shift(self, cashier: str | None = None) -> ShiftReport:
        """Close the open shift (expired or not) and return its Z report."""
        with self._print_lock:
            with self._tx() as conn:
                state = _require_open_shift(store.read_state(conn))
                _check_fault(state)
                now = self._now()
                summary = _summary(conn, state.shift)
                doc = self._header(state, now.isoformat(), cashier)
                doc["1118"] = summary.receipts
                self._store(conn, "close_shift", doc)
                store.set_state(conn, next_fd=state.next_fd + 1, shift_open=0, shift_opened_at=None)
            self._simulate_printing()
        return _report("z", state, state.next_fd, now, summary)

    def x_report(self) -> ShiftReport:
        """Totals of the open shift so far; changes nothing. ``fd`` is the last FD issued."""
        with self._print_lock:
            with self._tx("DEFERRED") as conn:
                state = _require_open_shift(store.read_state(conn))
                _check_fault(state)
                summary = _summary(conn, state.shift)
            self._simulate_printing()
        return _report("x", state, state.next_fd - 1, None, summary)

    def cash_operation(
        self, operation_id: str, kind: CashKind, amount: Kopecks, cashier: str | None
    ) -> CashResult:
        """Cash in or out (a non-fiscal document: no FD, never sent to the OFD), kept with
        ``operation_id``. A cash out beyond the drawer's cash is refused (``InsufficientCash``),
        as a register refuses it. The shift rules are a receipt's: an expired shift refuses,
        a closed one is opened if ``auto_open_shift``. An ``operation_id`` done already is a
        repeat request (a bug in the caller, logged): answered with what was done, never
        done twice."""
        kind = CashKind(kind)  # the emulator process passes its value
        if amount <= 0:
            raise ValueError("a cash operation's amount must be positive")
        with self._print_lock:
            with self._tx() as conn:
                known = store.find_cash(conn, operation_id)
                if known is not None:
                    log.error("KKT emulator: repeat cash operation %s", operation_id)
                    return _cash_result(known, _summary(conn, known["shift"]).drawer_cash)
                state = store.read_state(conn)
                now = self._now()
                _check_fault(state)
                state = self._shift_for_document(conn, state, now)
                drawer = _summary(conn, state.shift).drawer_cash
                if kind is CashKind.CASH_OUT and amount > drawer:
                    raise InsufficientCash(
                        f"cash out of {format_money(amount)} refused: the drawer holds"
                        f" {format_money(drawer)}",
                        details={
                            "drawer_cash": format_money(drawer),
                            "requested": format_money(amount),
                        },
                    )
                number = store.cash_count(conn, state.shift) + 1
                stamp = now.isoformat()
                store.insert_cash(
                    conn, operation_id, kind, state.shift, number, amount, stamp, cashier
                )
                after = drawer + (amount if kind is CashKind.CASH_IN else -amount)
            self._simulate_printing()
        return CashResult(operation_id, kind, amount, state.shift, number, now, Kopecks(after))

    def find_cash_operation(self, operation_id: str) -> CashResult | None:
        """The cash operation kept with ``operation_id``, if it was done."""
        with self._tx("DEFERRED") as conn:
            row = store.find_cash(conn, operation_id)
            if row is None:
                return None
            return _cash_result(row, _summary(conn, row["shift"]).drawer_cash)

    def confirm(self, fd: int) -> None:
        """Mark document ``fd`` acknowledged by the OFD; repeated or unknown ``fd`` is a no-op."""
        with self._tx() as conn:
            store.confirm(conn, [(fd,)])

    def confirm_many(self, fn: str, fds: Sequence[int]) -> None:
        """Mark all ``fds`` of FN ``fn`` acknowledged in one transaction (one fsync); unknown
        fds, or another FN's (the FN was replaced), are ignored."""
        if not fds:
            return
        with self._tx() as conn:
            if store.read_state(conn).fn != fn:
                log.warning("confirmations for FN %s ignored: this KKT's FN is another", fn)
                return
            store.confirm(conn, [(fd,) for fd in fds])

    def repeat_prints(self) -> int:
        """Print requests so far that named a receipt id fiscalized already (I2: must stay 0)."""
        with self._tx("DEFERRED") as conn:
            return store.repeat_prints(conn)

    def close(self) -> None:
        """Close the state file."""
        with self._conn_lock:
            self._conn.close()

    def set_fault(self, fault: str | None) -> None:
        """Inject ``"out_of_paper"`` or ``"offline"``, or clear with ``None`` (persisted)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        with self._tx() as conn:
            store.set_state(conn, fault=fault)

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit BEGIN IMMEDIATE / COMMIT below.
        conn = connect(self.path)
        try:
            store.migrate(conn)
        except BaseException:
            conn.close()
            raise
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
            problem = store.state_problem(conn)
            if problem is not None:  # a fresh device row here would reuse FD numbers (I4)
                raise ConfigError(
                    f"the KKT emulator's state file {self.path} is damaged: {problem}"
                )
            state = store.ensure_state(
                conn, fn or "9999" + _digits(12), registration_number or _digits(16)
            )
            store.fn_valid_until(conn, self._now())
        if fn is not None and fn != state.fn:
            raise ConfigError(f"{self.path} holds the emulator with FN {state.fn}, not {fn}")

    def _print_one(
        self, conn: sqlite3.Connection, receipt_id: str, document: FfdDocument
    ) -> FiscalResult | Exception:
        """One receipt inside the print transaction, in a savepoint of its own."""
        conn.execute("SAVEPOINT print")
        repeat = False
        outcome: FiscalResult | Exception
        try:
            _check_document(receipt_id, document)
            context = store.read_print_context(conn, receipt_id)
            repeat = context.existing_fd is not None
            if context.existing_fd is not None:
                outcome = self._repeat(conn, receipt_id, context.existing_fd)
            else:
                outcome = self._fiscalize(conn, context, receipt_id, document)
        except sqlite3.Error:
            raise  # the state file failed: the whole transaction fails
        except Exception as failed:  # a refusal, or this document could not be stored
            conn.execute("ROLLBACK TO print")
            outcome = failed
        conn.execute("RELEASE print")
        if repeat:  # outside the savepoint: a refused repeat is counted too
            store.count_repeat_print(conn)
        return outcome

    def _repeat(self, conn: sqlite3.Connection, receipt_id: str, fd: int) -> FiscalResult:
        """A print request for a receipt fiscalized already as ``fd``: a bug in the caller."""
        log.error(
            "KKT emulator: repeat print request for receipt %s, fiscalized already as FD %d"
            " (a real KKT would print a second document)",
            receipt_id,
            fd,
        )
        if self._strict:
            raise DeviceError(
                f"receipt {receipt_id} was fiscalized already as FD {fd}; refusing to print it"
                " again (strict emulator)",
                reason="repeat_print",
                retry_after=None,
            )
        row = store.find_by_fd(conn, fd)
        assert row is not None  # found by the print context, in this transaction
        return store.result_from_row(row)

    def _fiscalize(
        self,
        conn: sqlite3.Connection,
        context: store.PrintContext,
        receipt_id: str,
        document: FfdDocument,
    ) -> FiscalResult:
        state = context.state
        now = self._now()
        _check_fault(state)
        self._check_fn_not_blocked(context.oldest_unconfirmed, now)
        state = self._shift_for_document(conn, state, now)
        number = state.number_in_shift + 1
        stamp = now.isoformat()
        # A shallow copy: the caller's dict is not changed; the serialization below proves the
        # document storable, and the result's document is read back from it, sharing nothing.
        doc = dict(document)
        doc.update(self._header(state, stamp, None))
        doc["1042"] = number
        data = self._store(conn, "receipt", doc, receipt_id=receipt_id)
        store.advance_receipt_counters(conn, state.next_fd + 1, number)
        return store.fiscal_result(
            receipt_id,
            state.next_fd,
            doc["1077"],
            state.shift,
            number,
            stamp,
            doc["1020"],
            doc["1054"],
            orjson.loads(data),
        )

    def _shift_for_document(self, conn: sqlite3.Connection, state: State, now: datetime) -> State:
        """The shift a receipt or cash document goes into: refused if expired (close it
        first); opened now if closed and ``auto_open_shift``, else refused."""
        if state.shift_open and self._shift_expired(state, now):
            raise DeviceError(
                f"shift {state.shift} is older than {self._shift_max}; close it first",
                reason="shift_expired",
            )
        if not state.shift_open:
            if not self._auto_open:
                raise DeviceError("no open shift", reason="shift_closed")
            state = self._open_shift(conn, state, now, None)
        return state

    def _open_shift(
        self, conn: sqlite3.Connection, state: State, now: datetime, cashier: str | None
    ) -> State:
        """Log the open-shift report and return the state after it."""
        stamp = now.isoformat()
        opened = replace(
            state,
            next_fd=state.next_fd + 1,
            shift=state.shift + 1,
            shift_open=True,
            shift_opened_at=datetime.fromisoformat(stamp),
            number_in_shift=0,
        )
        doc = self._header(state, stamp, cashier)
        doc["1038"] = opened.shift
        self._store(conn, "open_shift", doc)
        store.set_state(
            conn,
            next_fd=opened.next_fd,
            shift=opened.shift,
            shift_open=1,
            shift_opened_at=stamp,
            number_in_shift=0,
        )
        return opened

    def _header(self, state: State, stamp: str, cashier: str | None) -> FfdDocument:
        """The fiscal attributes every document gets: FD, FN, registration no., shift, time."""
        header: FfdDocument = {
            "1040": state.next_fd,
            "1041": state.fn,
            "1037": state.registration_number,
            "1038": state.shift,
            "1012": stamp,
        }
        if cashier:
            header["1021"] = cashier
        return header

    def _store(
        self, conn: sqlite3.Connection, kind: str, doc: FfdDocument, receipt_id: str | None = None
    ) -> bytes:
        """Sign ``doc`` (adding tag 1077) and log it; returns the stored JSON."""
        doc["1077"] = fiscal_sign(self._key, doc)
        data = orjson.dumps(doc)
        store.insert_document(conn, kind, doc, data, receipt_id)
        return data

    def _check_fn_not_blocked(self, oldest: datetime | None, now: datetime) -> None:
        if oldest is not None and now - oldest > self._offline_limit:
            raise DeviceError(
                f"FN blocked: a document from {oldest.isoformat()} is unconfirmed by the OFD"
                f" for more than {self._offline_limit.days} days",
                reason="fn_blocked",
            )

    def _shift_expired(self, state: State, now: datetime) -> bool:
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


def _summary(conn: sqlite3.Connection, shift: int) -> ShiftTotals:
    """The shift's figures over its stored receipts and cash operations."""
    return shift_totals(store.shift_documents(conn, shift), store.shift_cash(conn, shift))


def _report(
    kind: str, state: State, fd: int, closed_at: datetime | None, summary: ShiftTotals
) -> ShiftReport:
    return ShiftReport(
        kind,
        state.shift,
        fd,
        state.shift_opened_at,
        closed_at,
        summary.receipts,
        dict(summary.totals),
        fn=state.fn,
        summary=summary,
    )


def _cash_result(row: sqlite3.Row, drawer_now: int) -> CashResult:
    """A logged cash operation; the drawer as it is now (the log keeps no running sum)."""
    return CashResult(
        row["operation_id"],
        CashKind(row["kind"]),
        Kopecks(row["amount"]),
        row["shift"],
        row["number"],
        datetime.fromisoformat(row["created_at"]),
        Kopecks(drawer_now),
    )


def _check_fault(state: State) -> None:
    if state.fault == "out_of_paper":
        raise DeviceError("the KKT is out of paper", reason="out_of_paper")
    if state.fault == "offline":
        raise DeviceError("the KKT does not respond", reason="offline")


def _require_open_shift(state: State) -> State:
    if not state.shift_open:
        raise ShiftError("no open shift", details={"reason": "shift_not_open"})
    return state


def _digits(n: int) -> str:
    return f"{secrets.randbelow(10**n):0{n}d}"
