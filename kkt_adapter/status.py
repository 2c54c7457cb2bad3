"""Buffer status, alerts and health, computed from measured facts only (promise I6).

The functions here are pure: the caller gathers the facts (counts, the oldest unsent receipt,
the device's status) and these turn them into the documents the API serves.
"""

from __future__ import annotations

from dataclasses import dataclass

from kkt_adapter.buffer.outbox import SyncSummary
from kkt_adapter.buffer.store import Disk, OldestUnsent
from kkt_adapter.delivery.worker import Leadership
from kkt_adapter.device.base import DeviceStatus
from kkt_adapter.device.snapshot import StatusSnapshot
from kkt_adapter.domain.dates import iso_ms
from kkt_adapter.domain.lifecycle import UNSYNCED, BreakerState, ReceiptStatus
from kkt_adapter.journal import JournalState
from kkt_adapter.sqlite import WRITABLE, StorageHealth

NO_DISK_FLOOR = Disk(free_bytes=None, min_free_bytes=0)
"""No floor set, nothing measured: no ``disk_low``."""

Json = dict[str, object]
"""A JSON object of an answer (status, health, the heartbeat)."""

HOUR_MS = 3_600_000
FN_LIMIT_DAYS = 30
FN_WARN_DAYS = 20
FN_CRITICAL_DAYS = 27
STALE_AFTER_MS = 30_000
"""The default of ``device_status_stale_seconds``."""


@dataclass(frozen=True)
class Facts:
    """What was measured for one status or health answer."""

    counts: dict[str, int]
    capacity: int
    oldest: OldestUnsent | None
    device: DeviceStatus | None
    """The device's status if its latest reading succeeded."""
    device_error: str | None
    """Why the latest reading of the device's status failed."""
    now_ms: int
    erp: ErpFacts | None = None
    journal: JournalState | None = None
    storage: StorageHealth = WRITABLE
    disk: Disk = NO_DISK_FLOOR
    kkt: StatusSnapshot | None = None
    """The reading ``device`` comes from: when it was measured, how old it is, whether the
    device is busy (``None``: read just now, for this answer)."""


@dataclass(frozen=True)
class ErpFacts:
    """What was measured of the ERP heartbeat (``None`` in ``Facts`` when not configured)."""

    target: str
    started_ms: int
    lost_after_ms: int
    last_success_ms: int | None
    last_failure_ms: int | None
    last_error: str | None
    beats_ok: int
    beats_failed: int


def erp_lost(erp: ErpFacts, now_ms: int) -> bool:
    """No successful beat for ``lost_after_ms`` (counted from start-up before the first)."""
    since = erp.last_success_ms if erp.last_success_ms is not None else erp.started_ms
    return now_ms - since >= erp.lost_after_ms


def unsynced(counts: dict[str, int]) -> int:
    """Receipts that count against the capacity: everything not yet synced."""
    return sum(counts.get(status, 0) for status in UNSYNCED)


def percent_full(counts: dict[str, int], capacity: int) -> float:
    return round(100.0 * unsynced(counts) / capacity, 1)


def alerts(facts: Facts) -> list[dict[str, str]]:
    """Active alerts, most severe first."""
    found: list[dict[str, str]] = []
    if not facts.storage.available:
        found.append(
            _alert(
                "critical",
                "storage_unavailable",
                f"the buffer cannot be written ({facts.storage.error}): new receipts are refused",
            )
        )
    found.extend(_disk_alerts(facts.disk))
    fill = percent_full(facts.counts, facts.capacity)
    if fill >= 100:
        found.append(
            _alert("critical", "buffer_full", "the buffer is full: new receipts are refused")
        )
    elif fill >= 90:
        found.append(_alert("critical", "buffer_90", f"the buffer is {fill}% full"))
    elif fill >= 80:
        found.append(_alert("warning", "buffer_80", f"the buffer is {fill}% full"))
    oldest_ms = oldest_unconfirmed_ms(facts)
    if oldest_ms is not None:
        age_days = max(facts.now_ms - oldest_ms, 0) / (24 * HOUR_MS)
        left = FN_LIMIT_DAYS - age_days
        if age_days >= FN_CRITICAL_DAYS:
            found.append(_alert("critical", "fn_offline_limit", _fn_message(age_days, left)))
        elif age_days >= FN_WARN_DAYS:
            found.append(_alert("warning", "fn_offline_limit", _fn_message(age_days, left)))
    found.extend(_journal_alerts(facts.journal))
    found.extend(_fn_expiry_alerts(facts))
    if facts.device is not None and facts.device.shift_expired:
        found.append(
            _alert("critical", "shift_over_24h", "the shift is open over 24 h: close it (Z report)")
        )
    if facts.counts.get("dlq", 0) > 0:
        found.append(
            _alert(
                "warning", "dlq_not_empty", f"{facts.counts['dlq']} receipts rejected by the OFD"
            )
        )
    if facts.erp is not None and erp_lost(facts.erp, facts.now_ms):
        found.append(
            _alert(
                "warning",
                "erp_heartbeat_lost",
                f"no ERP heartbeat answered for {facts.erp.lost_after_ms // 1000} s or more",
            )
        )
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(found, key=lambda a: order[a["level"]])


def _disk_alerts(disk: Disk) -> list[dict[str, str]]:
    """``disk_low``: critical below the floor (sales are refused), a warning below twice it,
    while there is still room to act (at a till's ~5 KB per receipt, 256 MB is ~50,000)."""
    free, floor = disk.free_bytes, disk.min_free_bytes
    if not floor or free is None or free >= 2 * floor:
        return []
    state = f"the buffer's disk has {free // 2**20} MB free"
    limit = f"the floor of {floor // 2**20} MB (KKT_BUFFER_MIN_FREE_MB)"
    if free < floor:
        return [_alert("critical", "disk_low", f"{state}, below {limit}: new receipts are refused")]
    return [_alert("warning", "disk_low", f"{state}; new receipts are refused below {limit}")]


def oldest_unconfirmed_ms(facts: Facts) -> int | None:
    """The oldest document the OFD has not acknowledged, by the buffer or by the KKT's own
    count (a document the buffer lost still blocks the FN)."""
    found = [] if facts.oldest is None else [facts.oldest.created_ms]
    device = facts.device
    if device is not None and device.oldest_unconfirmed_at is not None:
        found.append(int(device.oldest_unconfirmed_at.timestamp() * 1000))
    return min(found, default=None)


FN_EXPIRY_WARN_DAYS = 30
FN_EXPIRY_CRITICAL_DAYS = 3


def _fn_expiry_alerts(facts: Facts) -> list[dict[str, str]]:
    """The FN's validity runs out: it must be replaced (and re-registered) before then."""
    device = facts.device
    if device is None or device.fn_valid_until is None:
        return []
    left = (device.fn_valid_until.timestamp() * 1000 - facts.now_ms) / (24 * HOUR_MS)
    if left >= FN_EXPIRY_WARN_DAYS:
        return []
    level = "critical" if left < FN_EXPIRY_CRITICAL_DAYS else "warning"
    message = (
        f"the FN {device.fn} expired on {device.fn_valid_until.date()}: replace it"
        if left <= 0
        else f"the FN {device.fn} expires on {device.fn_valid_until.date()}"
        f" ({left:.1f} days left): replace it and re-register the KKT before then"
    )
    return [_alert(level, "fn_expiry", message)]


def _journal_alerts(journal: JournalState | None) -> list[dict[str, str]]:
    if journal is None:
        return []
    found = []
    if journal.contradiction:
        found.append(_alert("critical", "kkt_journal_contradiction", journal.contradiction))
    if journal.gaps:
        found.append(
            _alert(
                "critical",
                "kkt_journal_gap",
                f"{len(journal.gaps)} documents on the KKT cannot be recovered into the buffer"
                f" (FDs {', '.join(map(str, journal.gaps[:10]))})",
            )
        )
    if journal.error:
        found.append(
            _alert("warning", "kkt_journal_unchecked", f"the KKT's journal: {journal.error}")
        )
    return found


def _fn_message(age_days: float, left: float) -> str:
    return (
        f"the oldest unsent document is {age_days:.1f} days old; the FN blocks at "
        f"{FN_LIMIT_DAYS} days ({max(left, 0):.1f} days left)"
    )


def _alert(level: str, code: str, message: str) -> dict[str, str]:
    return {"level": level, "code": code, "message": message}


def oldest_pending(facts: Facts) -> Json | None:
    if facts.oldest is None:
        return None
    return {
        "receipt_id": facts.oldest.receipt_id,
        "created_at": iso_ms(facts.oldest.created_ms),
        "age_hours": round(_age_ms(facts, facts.oldest) / HOUR_MS, 3),
    }


def _age_ms(facts: Facts, oldest: OldestUnsent) -> int:
    """How old ``oldest`` is; never negative (a wall clock stepped back since it was made)."""
    return max(facts.now_ms - oldest.created_ms, 0)


def buffer_status(facts: Facts, delivery: Json) -> Json:
    """The ``GET /v1/kkt/buffer/status`` document; ``delivery`` holds the OFD side's facts."""
    counts = facts.counts
    return {
        "total": counts["total"],
        **{str(status): counts[status] for status in ReceiptStatus},
        "dlq": counts["dlq"],
        "total_capacity": facts.capacity,
        "current_queued": unsynced(counts),
        "percent_full": percent_full(counts, facts.capacity),
        "oldest_pending": oldest_pending(facts),
        **delivery,
        "alerts": alerts(facts),
    }


def kkt_component(facts: Facts, *, stale_after_ms: int = STALE_AFTER_MS) -> Json:
    """The KKT as last measured. ``unreachable`` (error) when its latest status reading
    failed; ``status_stale`` (warning) when the reading is older than ``stale_after_ms``: the
    device has been busy with one call all that time, and what it says may no longer hold."""
    device = facts.device
    reading = reading_view(facts.kkt)
    if device is None:
        last = None if facts.kkt is None else facts.kkt.status
        return {
            "status": "error",
            "problems": ["unreachable"],
            "error": facts.device_error,
            "emulator": None if last is None else last.emulator,  # I7, from the last reading
            **reading,
        }
    stale = facts.kkt is not None and (facts.kkt.age_ms or 0) > stale_after_ms
    problems = [
        name
        for name, bad in (
            ("offline", not device.online),
            ("out_of_paper", not device.paper),
            ("fn_blocked", device.fn_blocked),
            ("shift_expired", device.shift_expired),
            ("cover_open", device.cover_open),
            ("fn_expired", _fn_expired(device, facts.now_ms)),
        )
        if bad
    ]
    # The journal's problems do not stop fiscalizing: health degraded, not unhealthy.
    journal = [] if facts.journal is None else facts.journal.problems()
    warnings = (["status_stale"] if stale else []) + journal
    if device.fn_memory_warning:
        warnings.append("fn_memory_nearly_full")
    return {
        "status": "error" if problems else "warning" if warnings else "ok",
        "problems": problems + warnings,
        **reading,
        "emulator": device.emulator,
        "model": device.model,
        "fn": device.fn,
        "registration_number": device.registration_number,
        "shift_open": device.shift_open,
        "shift": device.shift,
        "last_fd": device.last_fd,
        "unconfirmed_documents": device.unconfirmed_count,
        "oldest_unconfirmed_at": None
        if device.oldest_unconfirmed_at is None
        else device.oldest_unconfirmed_at.isoformat(),
        "journal": None if facts.journal is None else journal_view(facts.journal),
        "fn_valid_until": None
        if device.fn_valid_until is None
        else device.fn_valid_until.date().isoformat(),
        "ffd_version": device.ffd_version,
    }


def _fn_expired(device: DeviceStatus, now_ms: int) -> bool:
    until = device.fn_valid_until
    return until is not None and until.timestamp() * 1000 <= now_ms


def reading_view(snapshot: StatusSnapshot | None) -> Json:
    """When the KKT's status was measured, how old that is, and how long the device has been
    on the call it runs now (``None``: idle)."""
    if snapshot is None:
        return {}
    return {
        "measured_at": iso_ms(snapshot.measured_ms),
        "age_seconds": None if snapshot.age_ms is None else snapshot.age_ms / 1000,
        "busy_seconds": None if snapshot.busy_ms is None else snapshot.busy_ms / 1000,
    }


def journal_view(journal: JournalState) -> Json:
    """The last check of the KKT's journal against the buffer (I8)."""
    return {
        "checked_at": iso_ms(journal.checked_ms),
        "recovered": journal.recovered,
        "gaps": journal.gaps,
        "contradiction": journal.contradiction,
        "error": journal.error,
    }


def buffer_component(facts: Facts) -> Json:
    """The buffer's fill and whether its file can be written (``storage``)."""
    fill = percent_full(facts.counts, facts.capacity)
    writable = facts.storage.available
    return {
        "status": "error" if fill >= 100 or not writable else "warning" if fill >= 80 else "ok",
        "storage": "ok" if writable else "unavailable",
        "storage_error": facts.storage.error,
        "percent_full": fill,
        "current_queued": unsynced(facts.counts),
        "total_capacity": facts.capacity,
    }


def erp_component(erp: ErpFacts | None, now_ms: int) -> Json:
    """ok: the last beat was answered; warning: the last beat failed (or none answered yet);
    error: none answered for ``lost_after_ms``."""
    if erp is None:
        return {"status": "not_configured"}
    last_ok, last_bad = erp.last_success_ms, erp.last_failure_ms
    if erp_lost(erp, now_ms):
        state = "error"
    elif last_ok is None or (last_bad is not None and last_bad > last_ok):
        state = "warning"
    else:
        state = "ok"
    return {
        "status": state,
        "target": erp.target,
        "last_success_at": iso_ms(last_ok),
        "last_failure_at": iso_ms(last_bad),
        "last_error": erp.last_error,
        "beats_ok": erp.beats_ok,
        "beats_failed": erp.beats_failed,
    }


def overall(components: dict[str, Json]) -> str:
    """unhealthy: the KKT cannot fiscalize or the buffer cannot be written (no sale can be
    taken either way); degraded: any other component not ok."""
    if components["kkt"]["status"] == "error" or components["buffer"].get("storage") == (
        "unavailable"
    ):
        return "unhealthy"
    if any(c.get("status") not in ("ok", "not_configured") for c in components.values()):
        return "degraded"
    return "healthy"


@dataclass(frozen=True)
class LinkFacts:
    """What was measured of the OFD link."""

    breaker: BreakerState
    consecutive_failures: int
    last_success_ms: int | None
    last_failure_ms: int | None
    last_error: str | None
    last_sync: SyncSummary | None
    target: str
    emulator: bool
    leadership: Leadership
    delivery: str = "relay"
    """``relay`` (the adapter sends) or ``device`` (the register's FN sends itself)."""


NOT_USED = "not_used"
"""What the breaker shows in delivery ``device``: no OFD call is made here to break."""


def _breaker(link: LinkFacts) -> str:
    return NOT_USED if link.delivery == "device" else str(link.breaker)


def network_status(link: LinkFacts) -> str:
    """offline: breaker open; degraded: half-open or the last contact failed; online: the last
    contact succeeded; unknown: no contact yet (nothing was sent)."""
    if link.breaker == BreakerState.OPEN:
        return "offline"
    last_ok, last_bad = link.last_success_ms, link.last_failure_ms
    if link.breaker == BreakerState.HALF_OPEN or (
        last_bad is not None and (last_ok or 0) < last_bad
    ):
        return "degraded"
    return "online" if last_ok is not None else "unknown"


def delivery_status(link: LinkFacts) -> Json:
    """The OFD side of ``GET /v1/kkt/buffer/status``."""
    last = link.last_sync
    return {
        "network_status": network_status(link),
        "circuit_breaker": _breaker(link),
        "delivery": link.delivery,
        "last_sync": None
        if last is None
        else {
            "timestamp": iso_ms(last.timestamp_ms),
            "synced_count": last.synced_count,
            "failed_count": last.failed_count,
            "duration_seconds": last.duration_seconds,
            "kind": last.kind,
        },
        "sync_leader": leadership_view(link.leadership),
    }


def ofd_component(link: LinkFacts) -> Json:
    """The OFD link; ``warning`` when this process cannot lead for a reason other than another
    process leading (e.g. Redis unreachable): then nothing here delivers."""
    state = {BreakerState.OPEN: "error", BreakerState.HALF_OPEN: "warning"}.get(link.breaker, "ok")
    if state == "ok" and not link.leadership.leader and link.leadership.last_error:
        state = "warning"
    return {
        "status": state,
        "delivery": link.delivery,
        "circuit_breaker": _breaker(link),
        "network_status": network_status(link),
        "consecutive_failures": link.consecutive_failures,
        "last_success_at": iso_ms(link.last_success_ms),
        "last_failure_at": iso_ms(link.last_failure_ms),
        "last_error": link.last_error,
        "target": link.target,
        "emulator": link.emulator,
        "sync_leader": leadership_view(link.leadership),
    }


def leadership_view(leadership: Leadership) -> Json:
    """The sync lease as status and health show it."""
    return {
        "leader": leadership.leader,
        "backend": leadership.backend,
        "holder": leadership.holder,
        "current_holder": leadership.current_holder,
        "fence": leadership.fence,
        "since": iso_ms(leadership.since_ms),
        "error": leadership.last_error,
    }
