"""Prometheus metrics of one adapter app, in a registry of its own (not the global one).

Counters and histograms are observed where things happen (intake, OFD calls, device errors);
the gauges are set from measured facts when ``/metrics`` is scraped, so they cost nothing
between scrapes and never drift from the buffer's own counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kkt_adapter.domain.lifecycle import BreakerState, CallOutcome, ReceiptStatus
from kkt_adapter.sqlite import WRITABLE, StorageHealth

BREAKER_STATES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


JOURNAL_ALERTS = ("kkt_journal_gap", "kkt_journal_contradiction", "kkt_journal_unchecked")
"""The alerts of the buffer held to the KKT's journal (I8), one ``kkt_journal_problem`` each."""

UNKNOWN = float("nan")
"""A gauge's value while its fact is not known (no ERP configured, an FN that does not say):
every comparison with it in an alerting rule is false."""


@dataclass(frozen=True)
class GaugeFacts:
    """The facts the gauges show, measured at scrape time."""

    counts: dict[str, int]
    queued: int
    capacity: int
    oldest_age_seconds: float
    breaker: BreakerState
    leader: bool
    fence: int | None
    storage: StorageHealth = WRITABLE
    device: DeviceFacts | None = None
    disk_free_bytes: float = UNKNOWN
    """Free bytes on the buffer's file system (NaN: not measured)."""
    disk_min_free_bytes: int = 0
    """The floor below which sales are refused (``KKT_BUFFER_MIN_FREE_MB``; 0: none)."""
    journal_problems: frozenset[str] = frozenset()
    """The KKT journal's alerts active now (of :data:`JOURNAL_ALERTS`)."""


@dataclass(frozen=True)
class DeviceFacts:
    """The KKT's and the ERP link's facts the alerting rules need (``deploy/prometheus``)."""

    available: bool
    """The KKT can fiscalize: its ``/v1/health`` component is not ``error``."""
    shift_expired: bool
    fn_valid_until_seconds: float
    """Epoch seconds when the FN stops signing (``UNKNOWN``: not reported)."""
    oldest_unconfirmed_age_seconds: float
    """Age of the oldest document the OFD has not acknowledged, by the buffer or by the KKT's
    own count, as the ``fn_offline_limit`` alert counts it (0: none)."""
    erp_heartbeat_age_seconds: float = UNKNOWN
    """Since the last answered ERP heartbeat, or since start-up before the first."""
    erp_lost_after_seconds: float = UNKNOWN


class Metrics:
    """The adapter's metrics. ``render`` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.receipts = Gauge("kkt_receipts", "Receipts by status", ["status"], registry=reg)
        self.intake_seconds = Histogram(
            "kkt_intake_seconds",
            "Time to answer POST /v1/kkt/receipt",
            buckets=SECONDS_BUCKETS,
            registry=reg,
        )
        self.ofd_calls = Counter(
            "kkt_ofd_calls", "OFD submissions by outcome", ["outcome"], registry=reg
        )
        self.ofd_call_seconds = Histogram(
            "kkt_ofd_call_seconds",
            "Time of one OFD submission",
            buckets=SECONDS_BUCKETS,
            registry=reg,
        )
        self.breaker_state = Gauge(
            "kkt_ofd_breaker_state",
            "OFD circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=reg,
        )
        self.buffer_queued = Gauge(
            "kkt_buffer_queued",
            "Receipts not yet synced (they count against capacity)",
            registry=reg,
        )
        self.buffer_capacity = Gauge("kkt_buffer_capacity", "Buffer capacity", registry=reg)
        self.buffer_fill = Gauge("kkt_buffer_fill_ratio", "Queued / capacity (0-1)", registry=reg)
        self.oldest_pending = Gauge(
            "kkt_oldest_pending_age_seconds",
            "Age of the oldest receipt the OFD has not acknowledged (0: none)",
            registry=reg,
        )
        self.dlq_size = Gauge("kkt_dlq_size", "Receipts in the DLQ", registry=reg)
        self.leader = Gauge(
            "kkt_sync_leader", "1 while this process holds the sync lease", registry=reg
        )
        self.fence = Gauge(
            "kkt_sync_fencing_token",
            "Fencing token of the held sync lease (0: not leader)",
            registry=reg,
        )
        self.device_errors = Counter(
            "kkt_device_errors", "KKT refusals on intake by reason", ["reason"], registry=reg
        )
        self.storage_unavailable = Gauge(
            "kkt_storage_unavailable",
            "1 while the buffer cannot be written (disk full, I/O error): sales are refused",
            registry=reg,
        )
        self.storage_failures = Counter(
            "kkt_storage_failures",
            "Buffer commits that failed (disk full, I/O error)",
            registry=reg,
        )
        self._storage_failures_seen = 0
        self.journal_problem = Gauge(
            "kkt_journal_problem",
            "1 while the KKT journal's alert of this code is active (status.alerts)",
            ["code"],
            registry=reg,
        )
        self.disk_free = Gauge(
            "kkt_buffer_disk_free_bytes",
            "Free bytes on the buffer's file system (NaN: not measured)",
            registry=reg,
        )
        self.disk_min_free = Gauge(
            "kkt_buffer_disk_min_free_bytes",
            "Below this many free bytes new receipts are refused (KKT_BUFFER_MIN_FREE_MB; 0: no"
            " floor)",
            registry=reg,
        )
        self.device_available = Gauge(
            "kkt_device_available",
            "1 while the KKT can fiscalize (its health component is not error)",
            registry=reg,
        )
        self.shift_expired = Gauge(
            "kkt_shift_expired", "1 while the shift is open over 24 h", registry=reg
        )
        self.fn_valid_until = Gauge(
            "kkt_fn_valid_until_timestamp_seconds",
            "When the FN stops signing, epoch seconds (NaN: not reported)",
            registry=reg,
        )
        self.fn_oldest_unconfirmed = Gauge(
            "kkt_fn_oldest_unconfirmed_age_seconds",
            "Age of the oldest document the OFD has not acknowledged, by the buffer or the"
            " KKT (0: none); the FN blocks at 30 days",
            registry=reg,
        )
        self.erp_age = Gauge(
            "kkt_erp_heartbeat_age_seconds",
            "Since the last answered ERP heartbeat, or start-up (NaN: no ERP configured)",
            registry=reg,
        )
        self.erp_lost_after = Gauge(
            "kkt_erp_heartbeat_lost_after_seconds",
            "KKT_ERP_LOST_SECONDS: the ERP link is lost past this age (NaN: no ERP)",
            registry=reg,
        )
        for outcome in CallOutcome:
            self.ofd_calls.labels(outcome.value)
        self.observe_intake = self.intake_seconds.observe

    def observe_ofd_call(self, outcome: CallOutcome, seconds: float) -> None:
        """One OFD submission: its outcome and how long it took."""
        self.ofd_calls.labels(outcome.value).inc()
        self.ofd_call_seconds.observe(seconds)

    def device_error(self, reason: str) -> None:
        self.device_errors.labels(reason).inc()

    def update(self, snapshot: GaugeFacts) -> None:
        """Set the gauges from facts measured now."""
        for status in ReceiptStatus:
            self.receipts.labels(status.value).set(snapshot.counts.get(status, 0))
        self.dlq_size.set(snapshot.counts.get("dlq", 0))
        self.buffer_queued.set(snapshot.queued)
        self.buffer_capacity.set(snapshot.capacity)
        self.buffer_fill.set(snapshot.queued / snapshot.capacity)
        self.oldest_pending.set(snapshot.oldest_age_seconds)
        self.breaker_state.set(BREAKER_STATES[snapshot.breaker])
        self.leader.set(int(snapshot.leader))
        self.fence.set(snapshot.fence or 0)
        self.storage_unavailable.set(int(not snapshot.storage.available))
        self.disk_free.set(snapshot.disk_free_bytes)
        self.disk_min_free.set(snapshot.disk_min_free_bytes)
        for code in JOURNAL_ALERTS:
            self.journal_problem.labels(code).set(int(code in snapshot.journal_problems))
        if snapshot.device is not None:
            self._update_device(snapshot.device)
        # The writer thread counts the failures; the counter catches up with it here.
        new = snapshot.storage.failures - self._storage_failures_seen
        if new > 0:
            self.storage_failures.inc(new)
            self._storage_failures_seen = snapshot.storage.failures

    def _update_device(self, device: DeviceFacts) -> None:
        self.device_available.set(int(device.available))
        self.shift_expired.set(int(device.shift_expired))
        self.fn_valid_until.set(device.fn_valid_until_seconds)
        self.fn_oldest_unconfirmed.set(device.oldest_unconfirmed_age_seconds)
        self.erp_age.set(device.erp_heartbeat_age_seconds)
        self.erp_lost_after.set(device.erp_lost_after_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
