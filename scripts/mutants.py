"""The mutation check: plant known bugs, one at a time, and prove the tests catch each.

    .venv/bin/python scripts/mutants.py              # every mutant (CI runs this)
    .venv/bin/python scripts/mutants.py --only M4    # one of them; --list names them all

Each mutant is a bug that once left the whole suite green: a promise proven only in a form that
could not fail. For each, the package and the tests are copied to a temporary directory, the
bug is planted there by replacing an exact piece of source (if that piece is gone, the mutant
is stale and the check fails: keep the mutants in step with the code), and only the tests that
matter for that promise are run against the copy, subprocesses included (``PYTHONPATH`` puts
the copy first). A mutant passes the check when those tests go red. First the same tests run
on an unchanged copy and must pass, so a red run means the bug, not the harness.

Written by hand rather than with a mutation testing tool (mutmut, cosmic-ray): those generate
their own mutants by operator, thousands of them, while this check is about these particular
bugs, each tied to a promise, and must stay bounded in CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("kkt_adapter", "tests", "pyproject.toml")
RUN_TIMEOUT_S = 600
# Rounds of the crash suite in this check: the planted bugs break a promise within a few.
CRASH_ROUNDS = "8"


@dataclass(frozen=True)
class Mutant:
    name: str
    promise: str
    bug: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]
    count: int = 1  # how many times ``find`` occurs (all are replaced)


def code(indent: int, *lines: str) -> str:
    """Source lines at ``indent`` spaces, each ending with a newline."""
    return "".join(" " * indent + line + "\n" for line in lines)


INTAKE = "tests/acceptance/test_intake_process.py"
CRASH = "tests/acceptance/test_crash_suite.py"
RECONCILE = "tests/api/test_reconcile.py"
FULL_BUFFER = (
    "tests/acceptance/test_delivery_process.py::"
    "test_a_full_buffer_refuses_sales_with_503_loses_nothing_and_sells_again_after_delivery"
)

MUTANTS = (
    Mutant(
        "M1",
        "I2",
        "start-up reconciliation prints a leftover again instead of looking it up in the KKT's log",
        "kkt_adapter/service.py",
        code(16, "result = await self._device.find(receipt_id)"),
        code(
            16,
            "row = await self._buffer.get_receipt(receipt_id)",
            "assert row is not None",
            "document = __import__('json').loads(row['document'])",
            "found = await self._device.find(receipt_id)",
            "result = found and await self._device._run(",
            "    self._device.driver.print_receipt, receipt_id, document",
            ")",
        ),
        (
            RECONCILE,
            f"{INTAKE}::test_crash_between_print_and_record_is_reconciled_not_reprinted",
            CRASH,
        ),
    ),
    Mutant(
        "M2a",
        "I3 (fencing)",
        "result writes do not check that their token is the highest the buffer has seen",
        "kkt_adapter/buffer/outbox.py",
        'CURRENT_FENCE = " AND fence >= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = '
        "'fence_high')\"",
        'CURRENT_FENCE = ""',
        ("tests/unit/test_lease.py",),
    ),
    Mutant(
        "M2b",
        "I3 (fencing)",
        "result writes do not check the row's fencing token",
        "kkt_adapter/buffer/outbox.py",
        'AND status = {SYNCING} AND fence = ?"',
        'AND status = {SYNCING} AND ? IS NOT NULL"',
        ("tests/unit/test_lease.py",),
        count=3,
    ),
    Mutant(
        "M3",
        "I3 (idempotency key)",
        "each delivery attempt carries a new Idempotency-Key instead of the receipt id",
        "kkt_adapter/ofd/client.py",
        '{"Idempotency-Key": submission.receipt_id,',
        '{"Idempotency-Key": f"{submission.receipt_id}-{id(object())}",',
        (FULL_BUFFER,),
    ),
    Mutant(
        "M4",
        "I1 (durability)",
        "every connection (buffer, KKT and OFD emulators) runs with synchronous=OFF",
        "kkt_adapter/sqlite/connection.py",
        'conn.execute("PRAGMA synchronous=FULL")',
        'conn.execute("PRAGMA synchronous=OFF")',
        ("tests/api/test_durability.py",),
    ),
    Mutant(
        "M5",
        "I7",
        "the KKT emulator no longer says so in the start-up log",
        "kkt_adapter/runtime.py",
        code(4, "if status.emulator:", "    log.warning("),
        code(4, "if not status.emulator:", "    log.warning("),
        (
            f"{INTAKE}::test_poc1_fifty_receipts",
            "tests/acceptance/test_security_process.py::"
            "test_logs_are_json_lines_and_the_listening_line_stays_plain",
        ),
    ),
    Mutant(
        "M6",
        "I2 (crash before the print)",
        "start-up prints a receipt the crash left unprinted, behind the cashier's back",
        "kkt_adapter/service.py",
        code(
            16,
            'await self._buffer.record_print_failed(receipt_id, "interrupted_before_print")',
            "never_printed.append(receipt_id)",
        ),
        code(
            16,
            "row = await self._buffer.get_receipt(receipt_id)",
            "assert row is not None",
            "document = __import__('json').loads(row['document'])",
            "printed.append(",
            "    await self._device._run(self._device.driver.print_receipt, receipt_id, document)",
            ")",
        ),
        (
            RECONCILE,
            f"{INTAKE}::test_crash_before_the_print_is_not_printed_behind_the_cashiers_back",
        ),
    ),
    Mutant(
        "M7a",
        "I5 (under kill -9)",
        "the buffer's clock is not restored from the stamps it stored",
        "kkt_adapter/buffer/store.py",
        "self._clock = HybridClock(node, last=max(stamps, default=None), wall=self._wall)",
        "self._clock = HybridClock(node, last=None, wall=self._wall)",
        # The crash suite sees this only when a restart lands in the same millisecond as the
        # last stamp (rare); the unit test steps the wall clock back across a restart, always.
        (
            CRASH,
            "tests/unit/test_buffer.py::test_hlc_is_persisted_and_never_goes_back_across_restarts",
        ),
    ),
    Mutant(
        "M7b",
        "I6",
        "the buffer takes one receipt more than its capacity",
        "kkt_adapter/buffer/store.py",
        "if unsynced >= self.capacity:",
        "if unsynced > self.capacity:",
        (FULL_BUFFER,),
    ),
    Mutant(
        "M8",
        "I8 (row ownership)",
        "start-up reconciliation settles a receipt another live process is printing",
        "kkt_adapter/service.py",
        code(12, "if self._buffer.owner_alive(row.owner):", "    continue"),
        code(12, "if False:", "    continue"),
        (
            "tests/acceptance/test_shared_data_dir.py::"
            "test_a_second_process_leaves_a_receipt_the_first_is_printing_alone",
        ),
    ),
    Mutant(
        "M9",
        "I8 (the KKT's journal)",
        "the journal check does not recover the receipts a restored backup lacks",
        "kkt_adapter/journal.py",
        "tail.append(self._recovered(entry, stamp))",
        "pass",
        ("tests/api/test_journal.py",),
    ),
    Mutant(
        "M10",
        "I8 (an unknown outcome)",
        "a print whose outcome is unknown, with a device that cannot be asked, is marked failed",
        "kkt_adapter/service.py",
        'log.error("receipt %s: outcome unknown, left accepted: %s", receipt_id, lookup)',
        'tx.print_failed(receipt_id, "device_error")',
        ("tests/api/test_unknown_outcome.py",),
    ),
)


def copy_tree(into: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / name)


def plant(into: Path, mutant: Mutant) -> None:
    path = into / mutant.path
    text = path.read_text()
    found = text.count(mutant.find)
    if found != mutant.count:
        raise SystemExit(
            f"{mutant.name} is stale: {mutant.path} holds its code {found} times, not "
            f"{mutant.count}; update scripts/mutants.py with the code"
        )
    path.write_text(text.replace(mutant.find, mutant.replace))


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    """Run ``tests`` against the copy; (exit code, what it said, seconds): the first failure
    line if a test failed, else the output's tail."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")])),
        "CRASH_SUITE_ROUNDS": CRASH_ROUNDS,
    }
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    lines = (run.stdout + run.stderr).strip().splitlines()
    failures = [line for line in lines if line.startswith("E ")]
    said = failures[0][1:].strip()[:300] if failures else "\n".join(lines[-15:])
    return run.returncode, said, time.monotonic() - started


def check_copy_is_imported(copy: Path) -> None:
    """The copy's package must be the one imported, also by the ``kkt-adapter`` command."""
    probe = subprocess.run(
        [sys.executable, "-c", "import kkt_adapter; print(kkt_adapter.__file__)"],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        check=True,
    )
    if not Path(probe.stdout.strip()).is_relative_to(copy):
        raise SystemExit(f"the copy is not imported first: {probe.stdout.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:4} {m.promise:28} {m.bug}")
        return 0
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if not chosen:
        parser.error(f"no mutant named {args.only}")
    survived: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kkt-mutants-") as tmp:
        base = Path(tmp) / "unchanged"
        copy_tree(base)
        check_copy_is_imported(base)
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        code, tail, seconds = run_tests(base, tests)
        if code != 0:
            print(f"the unchanged copy fails its tests ({seconds:.0f} s):\n{tail}")
            return 1
        print(f"unchanged copy: {len(tests)} test targets pass ({seconds:.0f} s)", flush=True)
        for mutant in chosen:
            copy = Path(tmp) / mutant.name
            copy_tree(copy)
            plant(copy, mutant)
            code, tail, seconds = run_tests(copy, mutant.tests)
            caught = code == 1  # pytest's "tests failed"; other codes mean the run broke
            verdict = "caught" if caught else f"SURVIVED (pytest exit {code})"
            print(
                f"{mutant.name:4} {mutant.promise:28} {verdict:10} {seconds:4.0f} s  {mutant.bug}"
            )
            print(f"     {tail}" if caught else tail, flush=True)
            if not caught:
                survived.append(mutant.name)
            shutil.rmtree(copy, ignore_errors=True)
    if survived:
        print(f"mutants the tests did not catch: {', '.join(survived)}")
        return 1
    print(f"all {len(chosen)} mutants caught")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
