"""Periodic housekeeping of the buffer: retention, and receipts whose record was lost.

Every ``KKT_RETENTION_SWEEP_SECONDS`` it prunes what retention allows (in bounded batches,
``kkt_adapter.buffer.retention``: synced receipts, and failed prints past their retention or
limit), checks the buffer against the KKT's journal (``kkt_adapter.journal``), and settles
receipts left ``accepted`` by a process that died since (another process on the data dir,
``kkt_adapter.buffer.owners``), or by an intake of this process whose record could not be
committed (a full disk) and that nobody retried: if the KKT printed one, it is recorded from
the KKT's log and goes to the OFD like any other. Cash operations left ``accepted`` are
settled the same way (``CashDesk.settle_leftovers``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kkt_adapter.buffer import Buffer
from kkt_adapter.buffer.retention import Retention
from kkt_adapter.cash_desk import CashDesk
from kkt_adapter.journal import JournalKeeper
from kkt_adapter.periodic import Periodic
from kkt_adapter.service import IntakeService

log = logging.getLogger(__name__)

LEFTOVER_IDLE_MS = 120_000
"""An ``accepted`` receipt untouched this long is no running intake's (prints take seconds)."""


@dataclass(frozen=True)
class SweepResult:
    pruned: int
    settled: int


class Housekeeper:
    """Runs ``sweep`` every ``period`` seconds in the background."""

    def __init__(
        self,
        buffer: Buffer,
        intake: IntakeService,
        journal: JournalKeeper,
        retention: Retention,
        *,
        cash: CashDesk | None = None,
        period: float,
        leftover_idle_ms: int = LEFTOVER_IDLE_MS,
    ) -> None:
        self._buffer = buffer
        self._intake = intake
        self._journal = journal
        self._retention = retention
        self._cash = cash
        self._idle_ms = leftover_idle_ms
        self._loop = Periodic("housekeeping", self._run, period=period, delay_first=True)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        await self.sweep()

    async def sweep(self) -> SweepResult:
        """Settle leftovers, then prune; returns what was done."""
        report = await self._intake.reconcile()  # rows of processes that died since
        await self._journal.check()  # the KKT's journal against the buffer (I8)
        settled = len(report.recovered) + len(report.never_printed)
        idle_before = self._buffer.now_ms() - self._idle_ms
        for left in await self._buffer.leftovers(idle_before):
            if await self._intake.settle_leftover(left.receipt_id, left.idempotency_key):
                settled += 1
        if self._cash is not None:
            settled += await self._cash.settle_leftovers(idle_before)
        pruned = await self._buffer.prune(self._retention)
        if pruned or settled:
            log.info("housekeeping: pruned %d receipts, settled %d left accepted", pruned, settled)
        return SweepResult(pruned, settled)
