"""Crash rounds: SIGKILL an adapter at a random moment of concurrent intake and delivery,
restart it, and check promises I1-I4 from its files and the OFD emulator.

Used by ``tests/acceptance/test_crash_suite.py`` (a few dozen rounds in CI) and by
``bench/crash.py`` (hundreds of rounds, on demand).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from kkt_adapter.hlc import HlcStamp

# The OFD emulator's mode during the rounds: slow and flaky, so deliveries are in flight when
# the adapter is killed, and its clock ahead of the adapter's, so the adapter's HLC runs ahead
# of its wall clock and only a clock restored from the buffer keeps I5 across a restart.
CRASH_OFD_MODE = {"mode": "flaky", "failure_rate": 0.2, "latency_ms": 20, "clock_offset_ms": 5000}
CRASH_ENV = {
    "KKT_EMULATOR_STRICT": "true",
    "KKT_LEADERSHIP_TTL_MS": "1000",
    "KKT_DELIVERY_LEASE_MS": "1000",
    "KKT_BACKOFF_BASE_SECONDS": "0.05",
    "KKT_BACKOFF_CAP_SECONDS": "0.2",
    "KKT_BREAKER_OPEN_SECONDS": "0.3",
    "KKT_DELIVERY_SWEEP_SECONDS": "0.05",
}
SELLERS = 3
FISCALIZED = ("pending", "syncing", "synced")


class Adapter(Protocol):
    """What a round needs from a started adapter process."""

    url: str

    def kill(self) -> None:
        """SIGKILL."""


# Refusals a round may see: a full buffer and a busy client are honest answers (I6).
EXPECTED_REFUSALS = frozenset({(503, "buffer_full"), (429, "rate_limited")})


@dataclass
class Ledger:
    """Every receipt the adapter acknowledged with a 2xx: key -> (receipt id, FD); and what
    the sellers saw that they should not have (any other answer, a seller's own failure)."""

    acknowledged: dict[str, tuple[str, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, receipt_id: str, fd: int) -> None:
        with self.lock:
            self.acknowledged[key] = (receipt_id, fd)

    def note(self, problem: str) -> None:
        with self.lock:
            self.unexpected.append(problem)


@dataclass
class Report:
    rounds: int = 0
    acknowledged: int = 0
    synced: int = 0
    device_documents: int = 0
    printed_receipts: int = 0
    ofd_unique: int = 0
    ofd_duplicate_submissions: int = 0
    repeat_prints: int = 0
    backups: int = 0
    restores: int = 0
    pair_rounds: int = 0
    violations: list[str] = field(default_factory=list)


def sell_until(
    stop: threading.Event,
    url: str,
    ledger: Ledger,
    seed: int,
    refusals: frozenset[tuple[int, str]] = EXPECTED_REFUSALS,
) -> None:
    """Post receipts until stopped or the connection dies; keep the acknowledged ones. An
    answer other than 200 and ``refusals`` is noted as a problem."""
    try:
        _sell_until(stop, url, ledger, seed, refusals)
    except Exception as exc:  # noted, not lost with the thread: the round reports it
        ledger.note(f"seller failed: {exc!r}")


def _sell_until(
    stop: threading.Event,
    url: str,
    ledger: Ledger,
    seed: int,
    refusals: frozenset[tuple[int, str]],
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            key = str(uuid.uuid4())
            body = {
                "pos_id": f"POS-{seed % 10}",
                "type": "sale",
                "items": [{"name": "Lens", "price": f"{rng.randint(1, 9999)}.00",
                           "quantity": "1", "vat": "vat22"}],
                "payments": [{"method": "cash", "amount": "0"}],
            }  # fmt: skip
            body["payments"][0]["amount"] = body["items"][0]["price"]
            try:
                answer = http.post("/v1/kkt/receipt", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                return  # killed under us: whatever was not answered was not promised
            if answer.status_code == 200:
                fiscal = answer.json()["fiscal"]
                ledger.record(key, answer.json()["receipt_id"], int(fiscal["fd"]))
            elif (answer.status_code, answer.json().get("code")) not in refusals:
                ledger.note(f"answer {answer.status_code}: {answer.text[:200]}")


Command = Callable[[list[str]], int]
"""Runs a ``kkt-adapter`` command (``backup``, ``restore``) to its end; its exit code."""

RESTORE_SHARE = 0.15  # rounds that start by restoring an older backup (``kkt-adapter restore``)
PAIR_SHARE = 0.2  # rounds with two adapters on the one data dir, both killed
BACKUP_SHARE = 0.3  # single rounds that take a backup while selling


def chaos_round(
    start: Callable[[], Adapter],
    run: Command,
    data: Path,
    ledger: Ledger,
    rng: random.Random,
    report: Report,
) -> None:
    """One round of a random kind: a single adapter (sometimes backed up while it sells), a
    restore of an older backup first, or a pair of adapters sharing the data dir."""
    backups = sorted((data.parent / "crash-backups").glob("*.sqlite"))
    kind = rng.random()
    if kind < RESTORE_SHARE and backups:
        copy = rng.choice(backups)
        code = run(["restore", str(copy), "--data-dir", str(data)])
        if code != 0:
            report.violations.append(f"restore of {copy.name} refused (exit {code})")
        report.restores += 1
        # The gate's stamp is kept here: a restore and a power loss together leave only the
        # clock's leap above the lost stamps (kkt_adapter.journal), tested in process.
        crash_round(start, data, ledger, rng, report, lose_stamp=False)
    elif kind < RESTORE_SHARE + PAIR_SHARE:
        crash_round(start, data, ledger, rng, report, adapters=2)
        report.pair_rounds += 1
    else:
        backup = None
        if rng.random() < BACKUP_SHARE:
            backup = lambda: _backup(run, data, report)  # noqa: E731
        crash_round(start, data, ledger, rng, report, during=backup)


def _backup(run: Command, data: Path, report: Report) -> None:
    into = data.parent / "crash-backups"
    into.mkdir(exist_ok=True)
    code = run(["backup", str(into / f"round-{report.rounds:04d}.sqlite"), "--data-dir", str(data)])
    if code != 0:
        report.violations.append(f"backup of a running adapter failed (exit {code})")
    report.backups += 1


def crash_round(
    start: Callable[[], Adapter],
    data: Path,
    ledger: Ledger,
    rng: random.Random,
    report: Report,
    *,
    adapters: int = 1,
    lose_stamp: bool = True,
    during: Callable[[], None] | None = None,
) -> None:
    """Start (``adapters`` processes on the one data dir), check, load, SIGKILL each at a
    random moment."""
    started = [start() for _ in range(adapters)]
    report.violations.extend(check_files(data, ledger, settled=False))
    stop = threading.Event()
    sellers = [
        threading.Thread(
            target=sell_until,
            args=(stop, started[n % adapters].url, ledger, rng.randrange(10**9)),
        )
        for n in range(SELLERS)
    ]
    for thread in sellers:
        thread.start()
    if during is not None:
        during()
    for adapter in started:
        time.sleep(rng.uniform(0.02, 0.6))
        adapter.kill()
    if lose_stamp and rng.random() < 0.5:
        lose_the_gates_stamp(data)
    stop.set()
    for thread in sellers:
        thread.join(timeout=10)
    if any(thread.is_alive() for thread in sellers):
        report.violations.append("a seller did not stop within 10 s of the kill")
    with ledger.lock:
        report.violations.extend(f"API: {problem}" for problem in ledger.unexpected)
        ledger.unexpected.clear()
    report.rounds += 1


def lose_the_gates_stamp(data: Path) -> None:
    """Empty the KKT gate's lock file, as a power loss may: the last HLC stamp it keeps is not
    fsync'd by design, so after a restart only the buffer's own stamps keep the clock from
    going back (I5)."""
    (data / "kkt-device.lock").write_bytes(b"")


def check_files(
    data: Path, ledger: Ledger, *, settled: bool, device_data: Path | None = None
) -> list[str]:
    """I1, I2, I4, I5 and I8 from the buffer and the KKT's own files (right after a restart);
    the KKT's in ``device_data`` if given (mock-atol's), else in the adapter's ``data``."""
    problems: list[str] = []
    with contextlib.closing(sqlite3.connect(data / "buffer.sqlite", timeout=30)) as buffer:
        rows = {
            r[0]: (r[1], r[2], r[3], HlcStamp(r[4], r[5], r[6]))
            for r in buffer.execute(
                "SELECT id, status, fd, fn, hlc_wall, hlc_counter, hlc_node FROM receipts"
            )
        }
    documents, repeats = device_log(device_data or data)
    if repeats:
        problems.append(f"I2: the KKT was asked {repeats} times to print a receipt it had printed")
    with ledger.lock:
        acknowledged = dict(ledger.acknowledged)
    for key, (receipt_id, fd) in acknowledged.items():
        row = rows.get(receipt_id)
        if row is None:
            problems.append(f"I1: acknowledged receipt {receipt_id} (key {key}) is lost")
        elif row[1] != fd or row[0] not in FISCALIZED:
            problems.append(f"I1: {receipt_id} is {row[:2]} but was answered with FD {fd}")
    fds = [fd for fd, _ in documents]
    if fds != list(range(1, len(fds) + 1)):
        problems.append(f"I4: the KKT's FD numbers are not 1..n without gaps or reuse: {fds[-5:]}")
    printed = {rid: fd for fd, rid in documents if rid is not None}
    for receipt_id, (status, fd, _, _) in rows.items():
        if fd is not None and printed.get(receipt_id) != fd:
            problems.append(
                f"I2: buffer says {receipt_id} is FD {fd}, KKT says {printed.get(receipt_id)}"
            )
        if status == "accepted":
            problems.append(f"I2: {receipt_id} left 'accepted' after a restart (not reconciled)")
        if status in FISCALIZED and receipt_id not in printed:
            problems.append(f"I2: {receipt_id} is {status} but the KKT never printed it")
    for receipt_id, fd in printed.items():
        row = rows.get(receipt_id)
        if row is None or row[0] not in FISCALIZED:
            problems.append(f"I8: the KKT printed {receipt_id} (FD {fd}); the buffer has {row}")
    by_fn: dict[str, list[tuple[int, HlcStamp]]] = {}
    for _, fd, fn, stamp in rows.values():
        if fd is not None:
            by_fn.setdefault(fn, []).append((fd, stamp))
    for fn, stamped in by_fn.items():
        problems.extend(f"I5 (buffer, FN {fn}): {p}" for p in hlc_out_of_fd_order(stamped))
    if settled and any(row[0] == "syncing" for row in rows.values()):
        problems.append("I3: receipts still 'syncing' after the lease time")
    return problems


def hlc_out_of_fd_order(stamped: list[tuple[int, HlcStamp]]) -> list[str]:
    """Where the HLC stamps of one FN's documents do not rise with their FD numbers."""
    ordered = sorted(stamped)
    return [
        f"FD {fd_b} is stamped {b}, not above FD {fd_a}'s {a}"
        for (fd_a, a), (fd_b, b) in itertools.pairwise(ordered)
        if not a < b
    ][:5]


def device_log(data: Path) -> tuple[list[tuple[int, str | None]], int]:
    """The KKT emulator's documents (FD, receipt id) in FD order, and its count of print
    requests that named a receipt it had printed already (each one a second document on a
    real register)."""
    with contextlib.closing(sqlite3.connect(data / "kkt-emulator.sqlite", timeout=30)) as kkt:
        documents = kkt.execute("SELECT fd, receipt_id FROM documents ORDER BY fd").fetchall()
        repeats = int(kkt.execute("SELECT repeat_prints FROM device_state").fetchone()[0])
    return documents, repeats


def ofd_documents(ofd: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in itertools.count(1):
        batch = ofd.get("/_control/received", params={"page": page, "limit": 1000}).json()
        items.extend(batch["items"])
        if len(batch["items"]) < 1000:
            return items


def final_check(
    adapter: Adapter, data: Path, ofd_url: str, ledger: Ledger, report: Report,
    timeout: float = 120, device_data: Path | None = None,
) -> None:  # fmt: skip
    """Let the last instance drain, then I3: the OFD holds each synced receipt once (the KKT's
    files in ``device_data`` if given, as ``check_files``)."""
    with (
        httpx.Client(base_url=adapter.url, timeout=30) as http,
        httpx.Client(base_url=ofd_url, timeout=30) as ofd,
    ):
        ofd.post("/_control/mode", json={"mode": "success"})
        deadline = time.monotonic() + timeout
        while True:
            status = http.get("/v1/kkt/buffer/status").json()
            if status["pending"] + status["syncing"] == 0:
                break
            if time.monotonic() > deadline:
                report.violations.append(f"I3: not drained within {timeout}s: {status}")
                break
            time.sleep(0.2)
        documents = ofd_documents(ofd)
        stats = ofd.get("/_control/stats").json()
    ids = [d["receipt_id"] for d in documents]
    for document in documents:
        if document["idempotency_key"] != document["receipt_id"]:
            report.violations.append(
                f"I3: {document['receipt_id']} reached the OFD under Idempotency-Key "
                f"{document['idempotency_key']!r}, not its receipt id"
            )
    by_fn: dict[str, list[tuple[int, HlcStamp]]] = {}
    for document in documents:
        by_fn.setdefault(document["fn"], []).append(
            (document["fd"], HlcStamp.parse(document["hlc"]))
        )
    for fn, stamped in by_fn.items():
        # Also after a restore: a recovered receipt gets back the stamp it was printed with
        # (its tag 1084), so the OFD's order is the FD order whatever the buffer lost.
        report.violations.extend(f"I5 (OFD, FN {fn}): {p}" for p in hlc_out_of_fd_order(stamped))
    report.synced = status["synced"]
    report.ofd_unique = stats["unique_documents"]
    report.ofd_duplicate_submissions = stats["duplicate_submissions"]
    report.acknowledged = len(ledger.acknowledged)
    if len(ids) != len(set(ids)):
        report.violations.append("I3: the OFD stored a receipt twice")
    if stats["unique_documents"] != status["synced"]:
        report.violations.append(
            f"I3: OFD unique documents {stats['unique_documents']} != synced {status['synced']}"
        )
    report.violations.extend(check_files(data, ledger, settled=True, device_data=device_data))
    device_documents, report.repeat_prints = device_log(device_data or data)
    report.device_documents = len(device_documents)
    report.printed_receipts = sum(1 for _, rid in device_documents if rid is not None)


@contextlib.contextmanager
def held_device_gate(data: Path) -> Iterator[None]:
    """Hold the KKT's cross-process gate (``kkt-device.lock``), as a second adapter printing
    would: the adapter commits its receipt as accepted and waits for the gate to print."""
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "kkt-device.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def device_receipts(data: Path) -> list[tuple[str, int]]:
    documents, _ = device_log(data)
    return [(receipt_id, fd) for fd, receipt_id in documents if receipt_id is not None]


def buffer_statuses(data: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(data / "buffer.sqlite", timeout=10)) as conn:
        return {str(r[0]): str(r[1]) for r in conn.execute("SELECT id, status FROM receipts")}
