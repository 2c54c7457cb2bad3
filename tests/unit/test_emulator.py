"""The KKT emulator behaves like a separate device: durable counters, shifts, FN limit, faults."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kkt_adapter.device import MOSCOW, EmulatedKkt, KktDevice
from kkt_adapter.device.emulator import STATE_FILE
from kkt_adapter.domain.sign import verify_sign
from kkt_adapter.errors import ConfigError, DeviceError, ShiftError

KEY = b"emulator-test-key"
START = datetime(2026, 11, 24, 13, 38, 5, 123456, tzinfo=MOSCOW)


class Clock:
    """A settable clock for the device."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def receipt(receipt_id: str, total: int = 799000, type_code: int = 1) -> dict[str, Any]:
    return {
        "1054": type_code,
        "1020": total,
        "1192": receipt_id,
        "1059": [{"1030": "Оправа", "1079": total, "1023": 1, "1043": total, "1199": 11}],
        "1081": total,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kkt(tmp_path: Path, clock: Clock) -> Iterator[EmulatedKkt]:
    device = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    yield device
    device.close()


def test_implements_the_device_protocol_and_says_it_is_an_emulator(kkt: EmulatedKkt) -> None:
    device: KktDevice = kkt
    status = device.status()
    assert status.emulator is True
    assert "emulator" in status.model
    assert len(status.fn) == 16 and status.fn.startswith("9999") and status.fn.isdigit()
    assert len(status.registration_number) == 16 and status.registration_number.isdigit()
    assert (status.last_fd, status.shift, status.shift_open) == (0, 0, False)


def test_state_file_is_wal_and_versioned(kkt: EmulatedKkt, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / STATE_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    finally:
        conn.close()


def test_first_receipt_auto_opens_a_shift_with_its_own_fd(kkt: EmulatedKkt, clock: Clock) -> None:
    result = kkt.print_receipt("r1", receipt("r1"))
    status = kkt.status()
    assert status.shift_open and status.shift == 1
    assert status.shift_opened_at == START.replace(microsecond=0)
    # FD 1 is the open-shift report, as on a real FN; the receipt is FD 2.
    assert (result.fd, result.shift, result.number_in_shift) == (2, 1, 1)
    assert result.datetime == START.replace(microsecond=0)
    assert result.document["1012"] == "2026-11-24T13:38:05+03:00"
    doc = result.document
    assert (doc["1040"], doc["1041"], doc["1037"]) == (2, status.fn, status.registration_number)
    assert (doc["1038"], doc["1042"], doc["1192"]) == (1, 1, "r1")
    assert doc["1077"] == result.fp and verify_sign(KEY, doc)
    assert result.qr == f"t=20261124T1338&s=7990.00&fn={status.fn}&i=2&fp={result.fp}&n=1"


def test_without_auto_open_a_receipt_needs_an_open_shift(tmp_path: Path) -> None:
    kkt = EmulatedKkt(tmp_path, key=KEY, auto_open_shift=False)
    try:
        with pytest.raises(DeviceError) as err:
            kkt.print_receipt("r1", receipt("r1"))
        assert err.value.reason == "shift_closed"
        assert kkt.status().last_fd == 0
        assert kkt.open_shift("Ivanova A.").fd == 1
        assert kkt.print_receipt("r1", receipt("r1")).fd == 2
    finally:
        kkt.close()


def test_counters_and_log_survive_restart(tmp_path: Path, clock: Clock) -> None:
    first = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    before = first.print_receipt("r1", receipt("r1"))
    fn = first.status().fn
    first.close()

    second = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    try:
        assert second.status().fn == fn
        assert second.find_document("r1") == before
        after = second.print_receipt("r2", receipt("r2"))
        assert after.fd == before.fd + 1
        assert (after.fn, after.shift, after.number_in_shift) == (fn, 1, 2)
    finally:
        second.close()


def test_configured_fn_is_kept_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    kkt = EmulatedKkt(tmp_path, key=KEY, fn="9999078900001234", registration_number="0" * 16)
    assert kkt.status().fn == "9999078900001234"
    kkt.close()
    with pytest.raises(ConfigError, match="FN 9999078900001234, not 9999000000000009"):
        EmulatedKkt(tmp_path, key=KEY, fn="9999000000000009")
    with pytest.raises(ConfigError, match="must be 16 digits"):
        EmulatedKkt(tmp_path / "other", key=KEY, fn="12345")


def test_a_repeat_print_request_is_counted_and_answered_with_the_stored_result(
    kkt: EmulatedKkt, caplog: pytest.LogCaptureFixture
) -> None:
    first = kkt.print_receipt("r1", receipt("r1"))
    assert kkt.repeat_prints() == 0
    again = kkt.print_receipt("r1", receipt("r1"))
    assert again == first
    assert kkt.repeat_prints() == 1  # a real KKT would have printed a second document
    assert "repeat print request for receipt r1" in caplog.text
    assert kkt.status().last_fd == first.fd
    assert kkt.print_receipt("r2", receipt("r2")).fd == first.fd + 1
    assert kkt.repeat_prints() == 1


def test_a_strict_emulator_refuses_a_repeat_print_request_and_counts_it(
    tmp_path: Path, clock: Clock
) -> None:
    kkt = EmulatedKkt(tmp_path, key=KEY, clock=clock, strict=True)
    try:
        first = kkt.print_receipt("r1", receipt("r1"))
        with pytest.raises(DeviceError) as refused:
            kkt.print_receipt("r1", receipt("r1"))
        assert refused.value.details == {"reason": "repeat_print"}
        outcomes = kkt.print_receipts([("r2", receipt("r2")), ("r1", receipt("r1"))])
        assert isinstance(outcomes[1], DeviceError) and not isinstance(outcomes[0], Exception)
        assert outcomes[0].fd == first.fd + 1
        assert kkt.status().last_fd == first.fd + 1  # the refusals took no FD
        assert kkt.repeat_prints() == 2
    finally:
        kkt.close()
    again = EmulatedKkt(tmp_path, key=KEY, clock=clock)  # the count is kept in the state file
    try:
        assert again.repeat_prints() == 2
    finally:
        again.close()


def test_a_version_1_state_file_is_upgraded_and_keeps_its_documents(
    tmp_path: Path, clock: Clock
) -> None:
    kkt = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    printed = kkt.print_receipt("r1", receipt("r1"))
    kkt.close()
    with sqlite3.connect(tmp_path / STATE_FILE) as conn:  # as the first version wrote it
        conn.execute("ALTER TABLE device_state DROP COLUMN repeat_prints")
        conn.execute("ALTER TABLE device_state DROP COLUMN fn_valid_until")
        conn.execute("DROP TABLE cash_documents")
        conn.execute("PRAGMA user_version = 1")
    upgraded = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    try:
        assert upgraded.find_document("r1") == printed
        assert upgraded.repeat_prints() == 0
        assert upgraded.print_receipt("r2", receipt("r2")).fd == printed.fd + 1
        assert upgraded.status().fn_valid_until is not None  # set when the file was upgraded
    finally:
        upgraded.close()


def test_find_and_last_document(kkt: EmulatedKkt) -> None:
    assert kkt.last_document() is None and kkt.find_document("r1") is None
    r1 = kkt.print_receipt("r1", receipt("r1"))
    r2 = kkt.print_receipt("r2", receipt("r2", 100, 2))
    assert kkt.find_document("r1") == r1
    assert kkt.last_document() == r2
    kkt.close_shift()
    assert kkt.last_document() == r2  # the Z report is not a receipt


def test_document_is_copied_not_mutated(kkt: EmulatedKkt) -> None:
    doc = receipt("r1")
    result = kkt.print_receipt("r1", doc)
    assert "1040" not in doc and "1077" not in doc
    assert result.document is not doc


@pytest.mark.parametrize(
    "doc",
    [
        {**receipt("r1"), "1192": "other"},
        {**receipt("r1"), "1054": 9},
        {**receipt("r1"), "1020": "7990.00"},
        {**receipt("r1"), "1020": -1},
    ],
)
def test_malformed_documents_are_refused(kkt: EmulatedKkt, doc: dict[str, Any]) -> None:
    with pytest.raises(DeviceError) as err:
        kkt.print_receipt("r1", doc)
    assert err.value.reason == "invalid_document"
    assert kkt.status().last_fd == 0


def test_fd_strictly_increases_across_shift_documents(kkt: EmulatedKkt) -> None:
    fds = [kkt.open_shift().fd]
    fds += [kkt.print_receipt(f"a{i}", receipt(f"a{i}")).fd for i in range(3)]
    fds.append(kkt.close_shift().fd)
    fds.append(kkt.open_shift().fd)
    fds.append(kkt.print_receipt("b", receipt("b")).fd)
    assert fds == list(range(1, 8))
    assert kkt.status().shift == 2


@pytest.mark.parametrize(("fault", "flag"), [("out_of_paper", "paper"), ("offline", "online")])
def test_faults_refuse_printing_and_persist(
    tmp_path: Path, kkt: EmulatedKkt, fault: str, flag: str
) -> None:
    printed = kkt.print_receipt("r1", receipt("r1"))
    kkt.set_fault(fault)
    with pytest.raises(DeviceError) as err:
        kkt.print_receipt("r2", receipt("r2"))
    assert err.value.reason == fault
    for operation in (kkt.close_shift, kkt.x_report):
        with pytest.raises(DeviceError) as err:
            operation()
        assert err.value.details == {"reason": fault}
    # Another instance on the same dir (another process, or after restart) sees the fault.
    other = EmulatedKkt(tmp_path, key=KEY)
    assert getattr(other.status(), flag) is False
    # Reconciliation still works: the document log is readable.
    assert other.find_document("r1") == printed
    other.set_fault(None)
    other.close()
    assert kkt.print_receipt("r2", receipt("r2")).fd == 3
    assert kkt.status().paper and kkt.status().online


def test_unknown_fault_is_a_programming_error(kkt: EmulatedKkt) -> None:
    with pytest.raises(ValueError, match="unknown fault 'on_fire'"):
        kkt.set_fault("on_fire")


def test_shift_operations_check_state(kkt: EmulatedKkt) -> None:
    for operation in (kkt.close_shift, kkt.x_report):
        with pytest.raises(ShiftError) as closed:
            operation()
        assert closed.value.details == {"reason": "shift_not_open"}
    opened = kkt.open_shift("Ivanova A.")
    assert (opened.kind, opened.shift, opened.fd, opened.receipts) == ("open", 1, 1, 0)
    with pytest.raises(ShiftError) as err:
        kkt.open_shift()
    assert err.value.details["reason"] == "shift_already_open"


def test_shift_expiry_z_report_and_new_shift(kkt: EmulatedKkt, clock: Clock) -> None:
    kkt.print_receipt("s1", receipt("s1", 799000, 1))
    kkt.print_receipt("s2", receipt("s2", 1050, 1))
    kkt.print_receipt("rf", receipt("rf", 500, 2))
    x = kkt.x_report()
    assert (x.kind, x.receipts, x.fd) == ("x", 3, 4)
    assert x.totals == {"sale": 800050, "refund": 500, "expense": 0, "expense_refund": 0}
    assert kkt.status().last_fd == 4  # the X report changed nothing

    clock.advance(hours=24, seconds=1)
    assert kkt.status().shift_expired
    with pytest.raises(DeviceError) as err:
        kkt.print_receipt("late", receipt("late"))
    assert err.value.reason == "shift_expired"

    z = kkt.close_shift("Ivanova A.")
    assert (z.kind, z.shift, z.fd, z.receipts) == ("z", 1, 5, 3)
    assert z.opened_at == START.replace(microsecond=0)
    assert z.closed_at == clock.now.replace(microsecond=0)
    assert z.totals == x.totals

    late = kkt.print_receipt("late", receipt("late"))
    assert (late.shift, late.number_in_shift, late.fd) == (2, 1, 7)
    assert not kkt.status().shift_expired


def test_shift_within_limit_is_not_expired(kkt: EmulatedKkt, clock: Clock) -> None:
    kkt.print_receipt("r1", receipt("r1"))
    clock.advance(hours=23, minutes=59)
    assert kkt.print_receipt("r2", receipt("r2")).shift == 1


def test_fn_blocks_after_30_days_unconfirmed_and_unblocks_on_confirm(
    kkt: EmulatedKkt, clock: Clock
) -> None:
    old = kkt.print_receipt("old", receipt("old"))
    clock.advance(days=30, seconds=1)
    status = kkt.status()
    assert status.fn_blocked and status.unconfirmed_count == 1
    assert status.oldest_unconfirmed_at == old.datetime
    with pytest.raises(DeviceError) as err:
        kkt.print_receipt("new", receipt("new"))
    assert err.value.reason == "fn_blocked"

    kkt.confirm(old.fd)
    kkt.confirm(old.fd)  # idempotent
    kkt.confirm(10_000)  # unknown: no-op
    status = kkt.status()
    assert not status.fn_blocked and status.unconfirmed_count == 0
    # No longer blocked; the month-old shift must still be closed first.
    with pytest.raises(DeviceError) as err:
        kkt.print_receipt("new", receipt("new"))
    assert err.value.reason == "shift_expired"
    kkt.close_shift()
    assert kkt.print_receipt("new", receipt("new")).shift == 2


def test_confirm_many_confirms_a_batch_in_one_call_and_unblocks_the_fn(
    kkt: EmulatedKkt, clock: Clock
) -> None:
    fds = [kkt.print_receipt(f"r{n}", receipt(f"r{n}")).fd for n in range(100)]
    clock.advance(days=30, seconds=1)
    assert kkt.status().fn_blocked and kkt.status().unconfirmed_count == 100

    fn = kkt.status().fn
    kkt.confirm_many(fn, [*fds[:50], 10_000, fds[0]])  # unknown and repeated fds are ignored
    kkt.confirm_many("9999000000000000", fds)  # another FN's: ignored
    status = kkt.status()
    assert status.fn_blocked and status.unconfirmed_count == 50
    assert status.oldest_unconfirmed_at == START.replace(microsecond=0)

    kkt.confirm_many(fn, fds)
    kkt.confirm_many(fn, [])
    status = kkt.status()
    assert not status.fn_blocked and status.unconfirmed_count == 0
    assert status.oldest_unconfirmed_at is None
    kkt.close_shift()
    assert kkt.print_receipt("new", receipt("new")).shift == 2


def test_confirm_many_is_one_transaction(kkt: EmulatedKkt, tmp_path: Path) -> None:
    fds = [kkt.print_receipt(f"r{n}", receipt(f"r{n}")).fd for n in range(100)]
    fn = kkt.status().fn
    statements: list[str] = []
    kkt._conn.set_trace_callback(statements.append)
    kkt.confirm_many(fn, fds)
    kkt._conn.set_trace_callback(None)
    assert [s for s in statements if s.split()[0] in {"BEGIN", "COMMIT"}] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    conn = sqlite3.connect(tmp_path / STATE_FILE)
    try:
        confirmed = conn.execute("SELECT count(*) FROM documents WHERE confirmed = 1")
        assert confirmed.fetchone()[0] == 100
    finally:
        conn.close()


def test_printing_reads_only_the_oldest_unconfirmed_receipt(kkt: EmulatedKkt) -> None:
    kkt.print_receipt("r0", receipt("r0"))
    statements: list[str] = []
    kkt._conn.set_trace_callback(statements.append)
    kkt.print_receipt("r1", receipt("r1"))
    kkt._conn.set_trace_callback(None)
    assert not any("count(" in statement for statement in statements)
    # BEGIN, SAVEPOINT, one read, insert, state update, RELEASE, COMMIT
    kinds = [statement.split()[0] for statement in statements]
    assert kinds == ["BEGIN", "SAVEPOINT", "SELECT", "INSERT", "UPDATE", "RELEASE", "COMMIT"]


def test_result_document_shares_nothing_with_the_callers(kkt: EmulatedKkt) -> None:
    doc = receipt("r1")
    result = kkt.print_receipt("r1", doc)
    doc["1059"][0]["1030"] = "changed later"
    assert result.document["1059"][0]["1030"] == "Оправа"
    assert result == kkt.find_document("r1")


def test_print_delay_is_simulated_outside_the_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printing = EmulatedKkt(tmp_path, key=KEY)
    other = EmulatedKkt(tmp_path, key=KEY)
    entered, release = threading.Event(), threading.Event()

    def printout() -> None:  # the print delay, held for exactly as long as the test needs
        entered.set()
        release.wait(timeout=5)

    monkeypatch.setattr(printing, "_simulate_printing", printout)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(printing.print_receipt("r1", receipt("r1")))
        except BaseException as exc:  # surfaced by the assertion below
            outcome.append(exc)

    printer = threading.Thread(target=run)
    printer.start()
    try:
        assert entered.wait(timeout=5), "the printout never started"
        # Committed and durable while the printout is still running; the file is not locked.
        found = other.find_document("r1")
        assert found is not None and outcome == []
        other.set_fault(None)  # a write: it would wait for the lock if the print held it
    finally:
        release.set()
        printer.join(timeout=5)
        stopped = not printer.is_alive()
        printing.close()
        other.close()
    assert stopped, "the print did not finish after the printout"
    assert outcome == [found]


def test_two_instances_on_one_dir_never_repeat_an_fd(tmp_path: Path) -> None:
    devices = [EmulatedKkt(tmp_path, key=KEY) for _ in range(2)]
    opened = devices[0].open_shift()
    results: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for n in range(50):
                rid = f"d{index}-{n}"
                results[index].append(devices[index].print_receipt(rid, receipt(rid)).fd)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not any(thread.is_alive() for thread in threads), "a printing thread hangs"
        assert errors == []
        for fds in results:
            assert fds == sorted(fds) and len(set(fds)) == len(fds)
        all_fds = sorted(results[0] + results[1])
        assert all_fds == list(range(opened.fd + 1, opened.fd + 101))
        status = devices[1].status()
        assert status.last_fd == opened.fd + 100
        found = [devices[0].find_document(f"d{i}-{n}") for i in range(2) for n in range(50)]
        numbers = sorted(result.number_in_shift for result in found if result is not None)
        assert numbers == list(range(1, 101))
    finally:
        for device in devices:
            device.close()


def _print_many(data_dir: Path, prefix: str, count: int) -> None:
    device = EmulatedKkt(data_dir, key=KEY)
    try:
        for n in range(count):
            device.print_receipt(f"{prefix}-{n}", receipt(f"{prefix}-{n}"))
    finally:
        device.close()


def test_two_processes_on_one_dir_share_one_fd_sequence(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_print_many, args=(tmp_path, f"p{i}", 40)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    kkt = EmulatedKkt(tmp_path, key=KEY)
    try:
        fds = [kkt.find_document(f"p{i}-{n}") for i in range(2) for n in range(40)]
        receipt_fds = sorted(result.fd for result in fds if result is not None)
        # Exactly one shift was auto-opened (FD 1) although both processes raced for it.
        assert receipt_fds == list(range(2, 82))
        assert (kkt.status().shift, kkt.status().last_fd) == (1, 81)
    finally:
        kkt.close()


def test_a_group_of_receipts_is_one_transaction_in_order(
    kkt: EmulatedKkt, tmp_path: Path, clock: Clock
) -> None:
    first = kkt.print_receipt("r0", receipt("r0"))
    statements: list[str] = []
    kkt._conn.set_trace_callback(statements.append)
    outcomes = kkt.print_receipts([(f"g{n}", receipt(f"g{n}")) for n in range(10)])
    kkt._conn.set_trace_callback(None)
    assert [s for s in statements if s.split()[0] in {"BEGIN", "COMMIT"}] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert all(not isinstance(o, DeviceError) for o in outcomes)
    assert [o.fd for o in outcomes] == list(range(first.fd + 1, first.fd + 11))  # type: ignore[union-attr]
    assert [o.number_in_shift for o in outcomes] == list(range(2, 12))  # type: ignore[union-attr]
    kkt.close()
    reopened = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    try:
        assert [reopened.find_document(f"g{n}") for n in range(10)] == outcomes
    finally:
        reopened.close()


def test_a_refused_receipt_in_a_group_changes_nothing_and_stops_nothing(kkt: EmulatedKkt) -> None:
    bad = receipt("bad")
    bad["1192"] = "someone-else"
    outcomes = kkt.print_receipts(
        [("a", receipt("a")), ("bad", bad), ("a", receipt("a")), ("b", receipt("b"))]
    )
    a, refused, again, b = outcomes
    assert isinstance(refused, DeviceError) and refused.reason == "invalid_document"
    assert again == a  # the same id twice in one group is fiscalized once
    assert not isinstance(b, DeviceError) and not isinstance(a, DeviceError)
    assert b.fd == a.fd + 1
    assert kkt.find_document("bad") is None


def test_a_receipt_that_cannot_be_stored_fails_alone(kkt: EmulatedKkt) -> None:
    unstorable = receipt("odd")
    unstorable["1227"] = {"not", "json"}  # a set: neither signable nor storable
    a, failed, b = kkt.print_receipts(
        [("a", receipt("a")), ("odd", unstorable), ("b", receipt("b"))]
    )
    assert isinstance(failed, TypeError)
    assert not isinstance(a, Exception) and not isinstance(b, Exception)
    assert b.fd == a.fd + 1
    assert kkt.find_document("odd") is None
    with pytest.raises(TypeError):
        kkt.print_receipt("odd", unstorable)


def test_a_fault_refuses_every_receipt_of_a_group(kkt: EmulatedKkt) -> None:
    kkt.set_fault("out_of_paper")
    outcomes = kkt.print_receipts([("a", receipt("a")), ("b", receipt("b"))])
    assert [getattr(o, "reason", None) for o in outcomes] == ["out_of_paper"] * 2
    assert kkt.last_document() is None


def test_a_print_delay_means_one_receipt_at_a_time(tmp_path: Path) -> None:
    delayed = EmulatedKkt(tmp_path, key=KEY, print_delay_ms=5)
    try:
        assert delayed.max_group == 1
    finally:
        delayed.close()


def test_the_journal_lists_receipts_above_an_fd_with_their_confirmation(kkt: EmulatedKkt) -> None:
    fds = [kkt.print_receipt(f"j{n}", receipt(f"j{n}")).fd for n in range(5)]
    fn = kkt.status().fn
    kkt.confirm_many(fn, fds[:2])
    assert kkt.status().first_unconfirmed_fd == fds[2]
    entries = kkt.journal(fds[0], 3)
    assert [(e.result.receipt_id, e.result.fd, e.confirmed) for e in entries] == [
        ("j1", fds[1], True),
        ("j2", fds[2], False),
        ("j3", fds[3], False),
    ]
    assert entries[0].result == kkt.find_document("j1")
    assert kkt.journal(fds[-1], 10) == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("DELETE FROM device_state", "no device state row, but 2 documents"),
        ("UPDATE device_state SET next_fd = 1", "the next FD 1 is not above"),
        ("UPDATE device_state SET fn = 'x'", "the FN 'x' is not 16 digits"),
    ],
)
def test_a_damaged_state_file_is_named_not_silently_made_a_new_device(
    tmp_path: Path, change: str, says: str
) -> None:
    from kkt_adapter.device.emulator_store import check_state_file

    kkt = EmulatedKkt(tmp_path, key=KEY)
    kkt.print_receipt("r1", receipt("r1"))
    kkt.close()
    path = tmp_path / STATE_FILE
    assert check_state_file(path) is None
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(change)
    problem = check_state_file(path)
    assert problem is not None and says in problem
    with pytest.raises(ConfigError, match=r"state file .* is damaged"):
        EmulatedKkt(tmp_path, key=KEY)


def test_a_state_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    from kkt_adapter.device.emulator_store import check_state_file

    (tmp_path / STATE_FILE).write_bytes(b"not a database at all, just noise" * 100)
    problem = check_state_file(tmp_path / STATE_FILE)
    assert problem is not None and "not a database" in problem
    assert check_state_file(tmp_path / "absent.sqlite") is None


def test_the_emulated_fn_is_valid_for_15_months_from_its_first_use(
    tmp_path: Path, clock: Clock
) -> None:
    kkt = EmulatedKkt(tmp_path, key=KEY, clock=clock)
    first = kkt.status()
    kkt.close()
    assert first.fn_valid_until is not None and first.ffd_version == "1.2"
    assert 450 <= (first.fn_valid_until - START).days <= 457
    clock.advance(days=10)
    again = EmulatedKkt(tmp_path, key=KEY, clock=clock)  # kept, not moved on
    assert again.status().fn_valid_until == first.fn_valid_until
    again.close()
