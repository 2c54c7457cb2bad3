"""The delivery worker: buffer claim -> OFD client -> buffer result, one small loop.

Only the holder of the buffer's sync lease delivers (``kkt_adapter.delivery.lease``). The
leader wakes when a receipt becomes ``pending`` and on a periodic sweep, claims a batch in
(FN, FD) order under a claim lease and its fencing token, sends with bounded concurrency, and
records each result on its own. Per FN, a document not delivered (backing off) holds back the
later ones: the claim skips them, and a pass sends none of them after a failure. While the
circuit breaker is open it makes no OFD calls; a manual sync ignores backoff timers and the
open timer (it may probe), and never touches a receipt another pass holds, because claims are
atomic status changes. A leader that cannot renew its lease
stops sending at once; the buffer refuses its later writes anyway (fencing).

Every OFD call has a total deadline (the client's), so one trickling answer holds its pass for
at most that long; claims whose lease runs out meanwhile are released by the lease keeper's
tick, and a claim that expired while waiting for a sending slot is not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kkt_adapter.buffer.outbox import Claimed, Outbox, SyncSummary
from kkt_adapter.delivery.backoff import Backoff
from kkt_adapter.delivery.breaker import CircuitBreaker
from kkt_adapter.delivery.lease import Grant, LeaseBackend
from kkt_adapter.device.base import Exchange
from kkt_adapter.domain.lifecycle import BreakerState, CallOutcome
from kkt_adapter.errors import NotSyncLeader, StaleLeader
from kkt_adapter.ofd import (
    Delivered,
    OfdAnswer,
    OfdClient,
    Rejected,
    Submission,
    Transient,
    call_outcome,
)
from kkt_adapter.periodic import Periodic
from kkt_adapter.settings import default_of

log = logging.getLogger(__name__)

Confirm = Callable[[str, list[int]], Awaitable[None]]
"""Tells the KKT which documents (FN, FDs) the OFD acknowledged."""
OnCall = Callable[[CallOutcome, float], None]
"""Told each OFD call's outcome and seconds (the metrics)."""
ReadExchange = Callable[[], Awaitable[Exchange]]
"""Reads the register's own exchange with the OFD (delivery ``device``)."""


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int = int(default_of("delivery_batch_size"))
    concurrency: int = int(default_of("delivery_concurrency"))
    lease_ms: int = int(default_of("delivery_lease_ms"))
    sweep_seconds: float = float(default_of("delivery_sweep_seconds"))
    leadership_ttl_ms: int = int(default_of("leadership_ttl_ms"))
    manual_sync_seconds: float = 600.0
    """How long one manual sync may keep claiming batches (not a setting)."""
    exchange_seconds: float = 5.0
    """Delivery ``device``: how often the FN's exchange status is read (each read is two
    tasks in the register's queue, between prints; not a setting)."""


@dataclass
class PassResult:
    claimed: int = 0
    synced: int = 0
    failed: int = 0
    transient: int = 0

    def add(self, other: PassResult) -> None:
        self.claimed += other.claimed
        self.synced += other.synced
        self.failed += other.failed
        self.transient += other.transient


@dataclass
class Leadership:
    """Measured facts about the sync lease."""

    backend: str
    holder: str
    fence: int | None = None
    since_ms: int | None = None
    last_error: str | None = None
    current_holder: str | None = None
    """Who holds the lease, as last read (this process or another; ``None``: nobody)."""

    @property
    def leader(self) -> bool:
        return self.fence is not None


@dataclass
class Contact:
    """Measured facts about the OFD link (for status and health)."""

    last_success_ms: int | None = None
    last_failure_ms: int | None = None
    last_error: str | None = None


class DeliveryWorker:
    """Delivers pending receipts to the OFD."""

    def __init__(
        self,
        outbox: Outbox,
        client: OfdClient,
        confirm: Confirm,
        *,
        lease: LeaseBackend,
        holder: str,
        breaker: CircuitBreaker,
        backoff: Backoff = Backoff(),
        config: WorkerConfig = WorkerConfig(),
        wall_ms: Callable[[], int] | None = None,
        on_call: OnCall = lambda outcome, seconds: None,
        exchange: ReadExchange | None = None,
    ) -> None:
        self.outbox = outbox
        self.delivery = "relay" if exchange is None else "device"
        """``relay``: this worker sends to the OFD; ``device``: the register's FN does, and
        this worker only reads its exchange status (no breaker, no DLQ)."""
        self._exchange = exchange
        self.client = client
        self.breaker = breaker
        self.backoff = backoff
        self.config = config
        self.contact = Contact()
        self.leadership = Leadership(lease.name, holder)
        self._lease = lease
        self._grant: Grant | None = None
        self._confirm = confirm
        self._wall_ms = wall_ms or outbox.now_ms
        self._confirming = asyncio.Lock()
        self._on_call = on_call
        self._sweep = Periodic(
            "delivery-worker", self._sweep_once, period=config.sweep_seconds, graceful=True
        )
        self._lease_keeper = Periodic(
            "sync-lease", self._renew, period=config.leadership_ttl_ms / 3000, delay_first=True
        )

    @property
    def fence(self) -> int:
        return self._grant.fence if self._grant else 0

    def wake(self) -> None:
        """A receipt became pending: deliver soon."""
        self._sweep.wake()

    async def start(self) -> None:
        await self._hold_lease()
        self._lease_keeper.start()
        self._sweep.start()

    async def stop(self) -> None:
        """Finish in-flight sends, give back claims and the lease."""
        await self._lease_keeper.stop()
        await self._sweep.stop()
        if self._grant is not None:
            try:
                released = await self.outbox.release_fence(self._grant.fence)
            except Exception as exc:  # a full disk: the claims return when their lease expires
                log.warning("could not give back claims on shutdown: %s", exc)
                released = 0
            if released:
                log.info("released %d claimed receipts on shutdown", released)
            with contextlib.suppress(Exception):  # it expires by itself anyway
                await self._lease.release(self.leadership.holder, self._grant)
        await self._lease.close()

    async def _renew(self) -> None:
        await self._hold_lease()
        # Expired claims go back to pending here too, not only between passes: a pass stuck
        # on a slow OFD call must not keep the rest of its batch from a manual sync.
        await self.outbox.release_expired()

    async def _hold_lease(self) -> None:
        """Acquire the lease if free, renew it if ours; any doubt means not leading."""
        ttl, holder = self.config.leadership_ttl_ms, self.leadership.holder
        try:
            if self._grant is None:
                grant = await self._lease.acquire(holder, ttl)
                if grant is not None:
                    await self.outbox.take_over(grant.fence)
                    self._lead(grant)
            elif not await self._lease.renew(holder, self._grant, ttl):
                self._abdicate("the sync lease was taken over")
            self.leadership.last_error = None
            self.leadership.current_holder = (
                holder if self._grant is not None else await self._lease.current_holder()
            )
        except Exception as exc:  # Redis down, buffer busy: stop delivering, say why
            self._abdicate(f"{self._lease.name} lease unavailable: {exc}")

    def _lead(self, grant: Grant) -> None:
        self._grant = grant
        self.leadership.fence = grant.fence
        self.leadership.since_ms = self._wall_ms()
        log.info("sync leader (%s lease, fence %d)", self._lease.name, grant.fence)
        self._sweep.wake()

    def _abdicate(self, reason: str) -> None:
        if self._grant is not None:
            log.warning("no longer the sync leader: %s", reason)
        self._grant = None
        self.leadership.fence = None
        self.leadership.since_ms = None
        self.leadership.last_error = reason

    async def _sweep_once(self) -> float:
        """One automatic pass; the seconds until the next (0 while there is more to send)."""
        if self._exchange is not None:
            if self._grant is not None:
                with contextlib.suppress(Exception):  # the contact records why
                    await self._device_pass("automatic")
            return self.config.exchange_seconds
        busy = False
        try:
            await self.outbox.release_expired()
            if self._grant is not None and self.breaker.allows_calls():
                started = time.monotonic()
                result = await self.run_pass(manual=False)
                busy = result.claimed > 0 and result.transient == 0
                if result.claimed:
                    await self._remember(result, time.monotonic() - started, "automatic")
            await self._confirm_synced()
        except StaleLeader as exc:
            self._abdicate(str(exc))
        return 0.0 if busy else max(self.config.sweep_seconds, self.breaker.open_remaining())

    async def run_pass(self, *, manual: bool) -> PassResult:
        """Claim one batch and deliver it."""
        grant = self._grant
        if grant is None:
            return PassResult()
        half_open = self.breaker.state is BreakerState.HALF_OPEN and not manual
        limit = 1 if half_open else self.config.batch_size
        claimed = await self.outbox.claim(
            limit=limit,
            fence=grant.fence,
            lease_ms=self.config.lease_ms,
            ignore_timers=manual,
            max_delay_ms=int(self.backoff.cap * 1000),
        )
        result = PassResult(claimed=len(claimed))
        if not claimed:
            return result
        in_flight = asyncio.Semaphore(self.config.concurrency)
        held_fns: set[str] = set()  # FNs with a document not delivered in this pass

        async def deliver(item: Claimed) -> None:
            async with in_flight:  # bounds the OFD requests in flight, not the result writes
                if self._grant is not grant:
                    return  # leadership lost: send nothing more; the new leader takes over
                if self._wall_ms() >= item.lease_until_ms:
                    held_fns.add(item.fn)  # the later ones of its FN wait for it
                    return  # the claim ran out while it waited: released, maybe sent by now
                outcome: OfdAnswer | None = None
                if not manual and not self.breaker.allows_calls():
                    reason = "circuit breaker open"
                elif item.fn in held_fns:
                    reason = "held back behind an earlier document of its FN"
                else:
                    outcome = await self._submit(item)
                if outcome is None or isinstance(outcome, Transient):
                    held_fns.add(item.fn)  # before the next send starts (per-FN order)
            if outcome is None:
                await self.outbox.record_transient(
                    item, grant.fence, reason, 0, count_attempt=False
                )
                result.transient += 1
            else:
                await self._record(item, grant.fence, outcome, result)

        await asyncio.gather(*(deliver(item) for item in claimed))
        return result

    async def _submit(self, item: Claimed) -> OfdAnswer:
        started = time.monotonic()
        outcome = await self.client.submit(_submission(item))
        self._on_call(call_outcome(outcome), time.monotonic() - started)
        return outcome

    async def _record(
        self, item: Claimed, fence: int, outcome: OfdAnswer, result: PassResult
    ) -> None:
        now = self._wall_ms()
        if isinstance(outcome, Delivered):
            self.breaker.record_success()
            self.contact.last_success_ms = now
            ours = await self.outbox.record_delivered(
                item, fence, outcome.ofd_receipt_id, outcome.hlc
            )
            result.synced += int(ours)
        elif isinstance(outcome, Rejected):
            # The OFD answered: the link works even though the document is bad.
            self.contact.last_success_ms = now
            ours = await self.outbox.record_rejected(
                item, fence, outcome.status, outcome.code, outcome.reason
            )
            result.failed += int(ours)
        else:
            self._note_transient(outcome, now)
            delay_s = self.backoff.delay(item.attempts + 1, outcome.retry_after)
            ours = await self.outbox.record_transient(
                item, fence, outcome.reason, int(delay_s * 1000)
            )
            result.transient += 1
        if not ours:
            log.warning("result for %s dropped: its claim was taken over", item.receipt_id)

    def _note_transient(self, outcome: Transient, now: int) -> None:
        self.breaker.record_failure()
        self.contact.last_failure_ms = now
        self.contact.last_error = outcome.reason

    async def _confirm_synced(self) -> None:
        """Tell the KKT which documents the OFD acknowledged (also after a crash)."""
        async with self._confirming:  # the loop and a manual sync must not tell it twice
            pending = await self.outbox.unconfirmed_fds()
            by_fn: dict[str, list[int]] = {}
            for _, fn, fd in pending:
                by_fn.setdefault(fn, []).append(fd)
            for fn, fds in by_fn.items():
                await self._confirm(fn, fds)
            if pending:
                await self.outbox.mark_confirmed([receipt_id for receipt_id, _, _ in pending])

    async def _device_pass(self, kind: str) -> PassResult:
        """Delivery ``device``: read the FN's exchange and mark what it delivered."""
        started = time.monotonic()
        now = self._wall_ms()
        try:
            exchange = await self._exchange() if self._exchange is not None else None
        except Exception as exc:
            self.contact.last_failure_ms = now
            self.contact.last_error = f"the register's exchange status: {exc}"
            raise
        assert exchange is not None
        synced = await self.outbox.mark_delivered_below(exchange.delivered_below)
        if exchange.last_success_at is not None:
            self.contact.last_success_ms = int(exchange.last_success_at.timestamp() * 1000)
        if exchange.error is not None:
            self.contact.last_failure_ms = now
            self.contact.last_error = f"the register's FN: {exchange.error}"
        else:
            self.contact.last_error = None
        result = PassResult(claimed=synced, synced=synced)
        if synced or kind == "manual":
            await self._remember(result, time.monotonic() - started, kind)
        return result

    async def sync_now(self) -> dict[str, float | int]:
        """A manual delivery pass: everything pending, now, until done or no progress."""
        if self._grant is None:
            await self._hold_lease()
        if self._grant is None:
            raise NotSyncLeader(
                "another adapter process holds the sync lease and delivers",
                details={"backend": self._lease.name, "reason": self.leadership.last_error},
            )
        if self._exchange is not None:  # the register delivers: read what it did
            started = time.monotonic()
            result = await self._device_pass("manual")
            return {
                "synced": result.synced,
                "failed": 0,
                "remaining": await self.outbox.remaining(),
                "duration_seconds": round(time.monotonic() - started, 3),
            }
        started = time.monotonic()
        totals = PassResult()
        deadline = started + self.config.manual_sync_seconds
        while time.monotonic() < deadline:
            try:
                result = await self.run_pass(manual=True)
            except StaleLeader as exc:
                # Answering 200 with ``synced: 0`` here hid a leader fenced out for good.
                self._abdicate(str(exc))
                raise NotSyncLeader(
                    f"this process's sync lease was fenced out: {exc}",
                    code="sync_fenced_out",
                    details={"backend": self._lease.name, "reason": str(exc)},
                ) from exc
            totals.add(result)
            if result.claimed == 0 or result.synced + result.failed == 0:
                break
        await self._confirm_synced()
        remaining = await self.outbox.remaining()
        duration = time.monotonic() - started
        await self._remember(totals, duration, "manual")
        return {
            "synced": totals.synced,
            "failed": totals.failed,
            "remaining": remaining,
            "duration_seconds": round(duration, 3),
        }

    async def _remember(self, result: PassResult, duration: float, kind: str) -> None:
        """Keep the last pass's figures (``last_sync`` in the buffer status)."""
        await self.outbox.save_last_sync(
            SyncSummary(
                timestamp_ms=self._wall_ms(),
                synced_count=result.synced,
                failed_count=result.failed,
                retried_count=result.transient,
                duration_seconds=round(duration, 3),
                kind=kind,
            )
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
