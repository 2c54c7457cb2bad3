"""The delivery worker: buffer claim -> OFD client -> buffer result, one small loop.

It wakes when a receipt becomes ``pending`` and on a periodic sweep, claims a batch in HLC
order under a lease and its fencing token, sends with bounded concurrency, and records each
result on its own. While the circuit breaker is open it makes no OFD calls; a manual sync
ignores backoff timers and the open timer (it may probe), and never touches a receipt another
pass holds, because claims are atomic status changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kkt_adapter.buffer.outbox import Claimed, Outbox
from kkt_adapter.delivery.backoff import Backoff
from kkt_adapter.delivery.breaker import BreakerState, CircuitBreaker
from kkt_adapter.ofd import Delivered, OfdClient, Outcome, Rejected, Submission, Transient

log = logging.getLogger(__name__)

Confirm = Callable[[list[int]], Awaitable[None]]


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int = 64
    concurrency: int = 16
    lease_ms: int = 30_000
    sweep_seconds: float = 1.0
    manual_sync_seconds: float = 600.0


@dataclass
class PassResult:
    claimed: int = 0
    synced: int = 0
    failed: int = 0
    transient: int = 0
    lost: int = 0  # results the buffer refused: the claim had been taken over


@dataclass
class Contact:
    """Measured facts about the OFD link (for status and health)."""

    last_success_ms: int | None = None
    last_failure_ms: int | None = None
    last_error: str | None = None
    calls: dict[str, int] = field(
        default_factory=lambda: {"delivered": 0, "duplicate": 0, "rejected": 0, "transient": 0}
    )


class DeliveryWorker:
    """Delivers pending receipts to the OFD."""

    def __init__(
        self,
        outbox: Outbox,
        client: OfdClient,
        confirm: Confirm,
        *,
        breaker: CircuitBreaker,
        backoff: Backoff = Backoff(),
        config: WorkerConfig = WorkerConfig(),
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.breaker = breaker
        self.backoff = backoff
        self.config = config
        self.contact = Contact()
        self._confirm = confirm
        self._wall_ms = wall_ms or outbox.buffer.now_ms
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._fence = 0

    @property
    def fence(self) -> int:
        return self._fence

    def wake(self) -> None:
        """A receipt became pending: deliver soon."""
        self._wake.set()

    async def start(self) -> None:
        self._fence = await self.outbox.next_fence()
        self._task = asyncio.create_task(self._run(), name="delivery-worker")

    async def stop(self) -> None:
        """Finish in-flight sends, then give back anything still claimed."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        released = await self.outbox.release_fence(self._fence)
        if released:
            log.info("released %d claimed receipts on shutdown", released)

    async def _run(self) -> None:
        while not self._stopping:
            busy = False
            try:
                await self.outbox.release_expired()
                if self.breaker.allows_calls():
                    started = time.monotonic()
                    result = await self.run_pass(manual=False)
                    busy = result.claimed > 0 and result.transient == 0
                    if result.claimed:
                        await self._remember(result, time.monotonic() - started, "automatic")
                await self._confirm_synced()
            except Exception:  # the loop must survive anything; the next sweep retries
                log.exception("delivery pass failed")
            if not busy:
                await self._sleep()

    async def _sleep(self) -> None:
        timeout = max(self.config.sweep_seconds, self.breaker.open_remaining())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def run_pass(self, *, manual: bool) -> PassResult:
        """Claim one batch and deliver it."""
        half_open = self.breaker.state is BreakerState.HALF_OPEN and not manual
        limit = 1 if half_open else self.config.batch_size
        claimed = await self.outbox.claim(
            limit=limit, fence=self._fence, lease_ms=self.config.lease_ms, ignore_timers=manual
        )
        result = PassResult(claimed=len(claimed))
        if not claimed:
            return result
        gate = asyncio.Semaphore(self.config.concurrency)

        async def deliver(item: Claimed) -> None:
            async with gate:
                if not manual and not self.breaker.allows_calls():
                    await self.outbox.record_transient(
                        item, self._fence, "circuit breaker open", 0, count_attempt=False
                    )
                    result.transient += 1
                    return
                outcome = await self.client.submit(_submission(item))
                await self._record(item, outcome, result)

        await asyncio.gather(*(deliver(item) for item in claimed))
        return result

    async def _record(self, item: Claimed, outcome: Outcome, result: PassResult) -> None:
        now = self._wall_ms()
        if isinstance(outcome, Delivered):
            self.breaker.record_success()
            self.contact.last_success_ms = now
            self.contact.calls["duplicate" if outcome.duplicate else "delivered"] += 1
            ours = await self.outbox.record_delivered(
                item, self._fence, outcome.ofd_receipt_id, outcome.hlc
            )
            result.synced += int(ours)
        elif isinstance(outcome, Rejected):
            # The OFD answered: the link works even though the document is bad.
            self.contact.last_success_ms = now
            self.contact.calls["rejected"] += 1
            ours = await self.outbox.record_rejected(
                item, self._fence, outcome.status, outcome.code, outcome.reason
            )
            result.failed += int(ours)
        else:
            self._note_transient(outcome, now)
            delay_s = self.backoff.delay(item.attempts + 1, outcome.retry_after)
            ours = await self.outbox.record_transient(
                item, self._fence, outcome.reason, int(delay_s * 1000)
            )
            result.transient += 1
        result.lost += int(not ours)
        if not ours:
            log.warning("result for %s dropped: its claim was taken over", item.receipt_id)

    def _note_transient(self, outcome: Transient, now: int) -> None:
        self.breaker.record_failure()
        self.contact.last_failure_ms = now
        self.contact.last_error = outcome.reason
        self.contact.calls["transient"] += 1

    async def _confirm_synced(self) -> None:
        """Tell the KKT which documents the OFD acknowledged (also after a crash)."""
        pending = await self.outbox.unconfirmed_fds()
        if pending:
            await self._confirm([fd for _, fd in pending])
            await self.outbox.mark_confirmed([receipt_id for receipt_id, _ in pending])

    async def sync_now(self) -> dict[str, float | int]:
        """A manual delivery pass: everything pending, now, until done or no progress."""
        started = time.monotonic()
        totals = PassResult()
        deadline = started + self.config.manual_sync_seconds
        while time.monotonic() < deadline:
            result = await self.run_pass(manual=True)
            for name in ("claimed", "synced", "failed", "transient", "lost"):
                setattr(totals, name, getattr(totals, name) + getattr(result, name))
            if result.claimed == 0 or result.synced + result.failed == 0:
                break
        await self._confirm_synced()
        counts = await self.outbox.buffer.counts()
        duration = time.monotonic() - started
        await self._remember(totals, duration, "manual")
        return {
            "synced": totals.synced,
            "failed": totals.failed,
            "remaining": counts["pending"] + counts["syncing"],
            "duration_seconds": round(duration, 3),
        }

    async def _remember(self, result: PassResult, duration: float, kind: str) -> None:
        """Keep the last pass's figures (``last_sync`` in the buffer status)."""
        await self.outbox.save_last_sync(
            {
                "timestamp_ms": self._wall_ms(),
                "synced_count": result.synced,
                "failed_count": result.failed,
                "retried_count": result.transient,
                "duration_seconds": round(duration, 3),
                "kind": kind,
            }
        )


def _submission(item: Claimed) -> Submission:
    return Submission(
        receipt_id=item.receipt_id,
        pos_id=item.pos_id,
        fn=item.fn,
        fd=item.fd,
        fp=item.fp,
        hlc=str(item.hlc),
        document=item.document,
    )
