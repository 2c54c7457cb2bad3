"""Alerts and health from measured facts."""

from __future__ import annotations

from dataclasses import replace

from kkt_adapter.buffer.store import Disk, OldestUnsent
from kkt_adapter.status import Facts, alerts, buffer_component, overall

DAY_MS = 24 * 3_600_000


def facts(
    unsynced: int = 0, capacity: int = 100, oldest_age_days: float | None = None, dlq: int = 0
) -> Facts:
    counts = {
        "accepted": 0, "print_failed": 0, "pending": unsynced, "syncing": 0, "synced": 7,
        "failed": 0, "total": unsynced + 7, "dlq": dlq,
    }  # fmt: skip
    now = 100 * DAY_MS
    oldest = None
    if oldest_age_days is not None:
        oldest = OldestUnsent("R1", now - int(oldest_age_days * DAY_MS))
    return Facts(counts, capacity, oldest, None, None, now)


def codes(f: Facts) -> list[str]:
    return [a["code"] for a in alerts(f)]


def test_buffer_fill_alerts_at_80_90_and_100_percent() -> None:
    assert codes(facts(79)) == []
    assert codes(facts(80)) == ["buffer_80"]
    assert codes(facts(90)) == ["buffer_90"]
    assert codes(facts(100)) == ["buffer_full"]


def test_fn_limit_alert_warns_before_the_30_day_block() -> None:
    assert codes(facts(1, oldest_age_days=19)) == []
    warning = alerts(facts(1, oldest_age_days=21))
    assert warning[0]["code"] == "fn_offline_limit" and warning[0]["level"] == "warning"
    critical = alerts(facts(1, oldest_age_days=28))
    assert critical[0]["level"] == "critical" and "2.0 days left" in critical[0]["message"]


def test_dlq_not_empty_alert_and_order_by_severity() -> None:
    found = alerts(facts(95, dlq=2))
    assert [a["code"] for a in found] == ["buffer_90", "dlq_not_empty"]


def test_overall_health() -> None:
    ok = {"status": "ok"}
    assert (
        overall({"kkt": ok, "ofd": ok, "buffer": ok, "erp": {"status": "not_configured"}})
        == "healthy"
    )
    assert overall({"kkt": ok, "ofd": {"status": "warning"}, "buffer": ok, "erp": ok}) == "degraded"
    assert overall({"kkt": {"status": "error"}, "ofd": ok, "buffer": ok, "erp": ok}) == "unhealthy"
    assert buffer_component(facts(85))["status"] == "warning"


def test_after_the_clock_stepped_back_the_oldest_pending_age_is_never_negative() -> None:
    from kkt_adapter.status import oldest_pending

    stepped = facts(1, oldest_age_days=-0.5)  # created "12 h in the future" of the clock now
    view = oldest_pending(stepped)
    assert view is not None and view["age_hours"] == 0
    assert codes(stepped) == []


def test_an_unwritable_buffer_is_a_critical_alert_and_unhealthy() -> None:
    from dataclasses import replace

    from kkt_adapter.sqlite import StorageHealth

    full = replace(facts(1), storage=StorageHealth("database or disk is full", 3))
    [alert] = alerts(full)
    assert (alert["level"], alert["code"]) == ("critical", "storage_unavailable")
    component = buffer_component(full)
    assert (component["status"], component["storage"]) == ("error", "unavailable")
    ok = {"status": "ok"}
    assert overall({"kkt": ok, "ofd": ok, "buffer": component, "erp": ok}) == "unhealthy"
    assert buffer_component(facts(1))["storage"] == "ok"


def test_the_fn_alert_counts_the_kkts_own_unconfirmed_documents() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from kkt_adapter.device.base import DeviceStatus
    from kkt_adapter.journal import JournalState
    from kkt_adapter.status import kkt_component

    now = 100 * DAY_MS
    device = DeviceStatus(
        emulator=True, model="emulator", fn="9999000000000001", registration_number="1",
        online=True, paper=True, shift_open=True, shift=1, shift_opened_at=None,
        shift_expired=False, last_fd=9, unconfirmed_count=1,
        oldest_unconfirmed_at=datetime.fromtimestamp((now - 21 * DAY_MS) / 1000, UTC),
        fn_blocked=False, first_unconfirmed_fd=3,
    )  # fmt: skip
    journal = JournalState(checked_ms=now)
    # The buffer has nothing unsent (it lost the document), the KKT still has it unconfirmed.
    lost = replace(facts(0), device=device, journal=journal)
    [warning] = alerts(lost)
    assert (warning["code"], warning["level"]) == ("fn_offline_limit", "warning")
    assert "21.0 days old" in warning["message"]
    component = kkt_component(lost)
    assert component["status"] == "ok" and component["problems"] == []
    assert component["oldest_unconfirmed_at"] == device.oldest_unconfirmed_at.isoformat()
    gap = replace(lost, journal=replace(journal, gaps=[7]))
    assert kkt_component(gap)["status"] == "warning"
    assert kkt_component(gap)["problems"] == ["journal_gap"]
    assert [a["code"] for a in alerts(gap)] == ["kkt_journal_gap", "fn_offline_limit"]


def test_an_fn_about_to_expire_is_an_alert_and_an_expired_one_a_problem() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from kkt_adapter.device.base import DeviceStatus
    from kkt_adapter.status import kkt_component

    now = 100 * DAY_MS
    device = DeviceStatus(
        emulator=True, model="emulator", fn="9999000000000001", registration_number="1",
        online=True, paper=True, shift_open=True, shift=1, shift_opened_at=None,
        shift_expired=False, last_fd=9, unconfirmed_count=0, oldest_unconfirmed_at=None,
        fn_blocked=False, fn_valid_until=datetime.fromtimestamp((now + 40 * DAY_MS) / 1000, UTC),
        ffd_version="1.2",
    )  # fmt: skip

    def at(days_left: float) -> Facts:
        until = datetime.fromtimestamp((now + days_left * DAY_MS) / 1000, UTC)
        return replace(facts(0), device=replace(device, fn_valid_until=until))

    assert codes(at(40)) == []
    [warning] = alerts(at(20))
    assert (warning["code"], warning["level"]) == ("fn_expiry", "warning")
    assert "20.0 days left" in warning["message"]
    assert alerts(at(2))[0]["level"] == "critical"
    assert kkt_component(at(2))["status"] == "ok"
    expired = kkt_component(at(-1))
    assert (expired["status"], expired["problems"]) == ("error", ["fn_expired"])
    assert kkt_component(at(40))["ffd_version"] == "1.2"


def test_disk_low_warns_below_twice_the_floor_and_is_critical_below_it() -> None:
    mb = 2**20

    def disk_alerts(free: int | None, floor: int) -> list[tuple[str, str]]:
        found = alerts(replace(facts(), disk=Disk(free, floor)))
        return [(a["level"], a["message"]) for a in found if a["code"] == "disk_low"]

    assert disk_alerts(512 * mb, 256 * mb) == []  # twice the floor: nothing yet
    [(level, message)] = disk_alerts(512 * mb - 1, 256 * mb)
    assert level == "warning" and "511 MB free" in message and "below the floor" in message
    [(level, message)] = disk_alerts(256 * mb - 1, 256 * mb)
    assert level == "critical" and "new receipts are refused" in message
    assert disk_alerts(0, 0) == []  # no floor set: the disk is watched by storage_unavailable
    assert disk_alerts(None, 256 * mb) == []  # not measured: no guess
