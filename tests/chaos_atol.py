"""Crash rounds against an ATOL register: ``kkt-adapter serve --device atol-web`` in front of
``kkt-adapter mock-atol`` (its FN delivering to the OFD emulator itself), SIGKILLing the
adapter at a random moment of intake and, in some rounds, the register's web server too.

Used by ``tests/acceptance/test_crash_suite_atol.py`` (15 rounds in CI) and by
``bench/crash.py --device atol-web`` (hundreds, on demand). The checks are ``tests/chaos.py``'s,
reading the buffer from the adapter's data dir and the register's FN from mock-atol's.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos import (
    CRASH_ENV,
    EXPECTED_REFUSALS,
    SELLERS,
    Adapter,
    Ledger,
    Report,
    check_files,
    final_check,
    lose_the_gates_stamp,
    sell_until,
)

# Short task deadline and a fast exchange watch, so a round sees deliveries and settles.
ATOL_ENV = {**CRASH_ENV, "KKT_DEVICE": "atol-web", "KKT_ATOL_TASK_SECONDS": "5"}
# While the register's web server is down the adapter refuses sales honestly (503,
# ``kkt_unavailable``): expected in the rounds that kill it, a problem in the others.
REGISTER_DOWN_REFUSALS = EXPECTED_REFUSALS | {(503, "kkt_unavailable")}

# The kinds of round, by share: who is killed, and when.
ADAPTER_ONLY = 0.35  # the register keeps running into the next round
REGISTER_FIRST = 0.2  # the register dies, the adapter sells into the outage, then dies
REGISTER_AFTER = 0.2  # the adapter dies, then the register (tasks of the dead adapter queued)
# The rest: the register dies and comes back on its port under the running adapter, which
# then dies.


@dataclass
class AtolRig:
    """The processes of the ATOL rounds: the adapter on its data dir, the register's web
    server (mock-atol) on its own data dir and a fixed port, so its URL stays the one the
    adapter was given."""

    start_adapter: Callable[[], Adapter]
    start_register: Callable[[], Adapter]
    data: Path
    register_data: Path
    register: Adapter | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def ensure_register(self) -> None:
        if self.register is None:
            self.register = self.start_register()

    def kill_register(self) -> None:
        if self.register is not None:
            self.register.kill()
            self.register = None

    def check(self, ledger: Ledger, *, settled: bool = False) -> list[str]:
        return check_files(self.data, ledger, settled=settled, device_data=self.register_data)


def atol_round(rig: AtolRig, ledger: Ledger, rng: random.Random, report: Report) -> None:
    """Start the register (if down) and the adapter, check I1, I2, I4, I5, I8 from the files,
    sell from three POS threads, and SIGKILL as the round's kind says."""
    kind = _kind(rng.random())
    rig.kinds[kind] = rig.kinds.get(kind, 0) + 1
    rig.ensure_register()
    adapter = rig.start_adapter()
    report.violations.extend(f"after restart: {p}" for p in rig.check(ledger))
    refusals = EXPECTED_REFUSALS if kind == "adapter_only" else REGISTER_DOWN_REFUSALS
    stop = threading.Event()
    sellers = [
        threading.Thread(
            target=sell_until, args=(stop, adapter.url, ledger, rng.randrange(10**9), refusals)
        )
        for _ in range(SELLERS)
    ]
    for thread in sellers:
        thread.start()
    time.sleep(rng.uniform(0.02, 0.6))
    if kind == "register_first":
        rig.kill_register()
        time.sleep(rng.uniform(0.0, 0.3))
    elif kind == "register_restarted":
        rig.kill_register()
        rig.ensure_register()  # the same port: the running adapter finds it again
        time.sleep(rng.uniform(0.02, 0.4))
    adapter.kill()
    if kind == "register_after":
        time.sleep(rng.uniform(0.0, 0.1))
        rig.kill_register()
    if rng.random() < 0.5:
        lose_the_gates_stamp(rig.data)
    stop.set()
    for thread in sellers:
        thread.join(timeout=10)
    if any(thread.is_alive() for thread in sellers):
        report.violations.append("a seller did not stop within 10 s of the kill")
    with ledger.lock:
        report.violations.extend(f"API: {problem}" for problem in ledger.unexpected)
        ledger.unexpected.clear()
    report.rounds += 1


def _kind(draw: float) -> str:
    if draw < ADAPTER_ONLY:
        return "adapter_only"
    if draw < ADAPTER_ONLY + REGISTER_FIRST:
        return "register_first"
    if draw < ADAPTER_ONLY + REGISTER_FIRST + REGISTER_AFTER:
        return "register_after"
    return "register_restarted"


def atol_final_check(
    rig: AtolRig, ofd_url: str, ledger: Ledger, report: Report, timeout: float = 120
) -> Adapter:
    """With the register up and the OFD answering, the last adapter sees every document the
    register printed delivered by its FN: each ``synced`` and stored once at the OFD (I3)."""
    rig.ensure_register()
    adapter = rig.start_adapter()
    final_check(adapter, rig.data, ofd_url, ledger, report, timeout, device_data=rig.register_data)
    return adapter
