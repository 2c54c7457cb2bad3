"""The KKT's last measured status, and when the device runner reads it again.

Status, health, ``/metrics`` and the ERP heartbeat must answer at once, but the device works
one call at a time: with a 300 ms print and four tills posting, a status call queued behind the
prints took 1.15 s. So the runner reads the status on the device's own thread *between* calls
and keeps the reading; the readers take the reading and say how old it is.

A status call is not free either (a real ATOL register takes tens of ms per call, and a print
waiting behind it waits that long), so ``RefreshPolicy`` reads no more often than needed:
soon after the device changed (a print, a shift, a confirmation), and on a timer otherwise, to
see what happens without the adapter (paper out, the cover opened, another process printing).
"""

from __future__ import annotations

from dataclasses import dataclass

from kkt_adapter.device.base import DeviceStatus

AFTER_CHANGE_S = 0.1
"""After a change, the device idle: read once it is this old (a burst of quick prints with
short gaps between them is followed by one reading, not one per gap)."""
WHILE_BUSY_S = 1.0
"""After a change, calls still queued: read between them once it is this old (a reading
delays the next print by one status call, at most once a second)."""


@dataclass(frozen=True)
class RefreshPolicy:
    """When the runner reads the device's status again (pure; the runner keeps the clock)."""

    idle_seconds: float = 2.0
    """Nothing changed: read when the reading is this old."""

    def wait(self, age: float | None, *, changed: bool, idle: bool) -> float:
        """Seconds until the next reading is due (``<= 0``: read now); ``age`` is how old the
        last reading is (``None``: none yet), ``changed``: the device changed since it,
        ``idle``: nothing is queued for the device."""
        if age is None:
            return 0.0
        limit = self.idle_seconds
        if changed:
            limit = min(limit, AFTER_CHANGE_S if idle else WHILE_BUSY_S)
        return limit - age


@dataclass(frozen=True)
class StatusSnapshot:
    """The device's status as the runner last read it, and how old that is now."""

    status: DeviceStatus | None
    """The last reading that succeeded (``None``: none yet)."""
    measured_ms: int | None
    """Wall-clock time of that reading."""
    age_ms: int | None
    """How old that reading is now (on the monotonic clock)."""
    error: str | None
    """Why the latest reading failed (``None``: it succeeded; ``status`` is then current)."""
    busy_ms: int | None
    """How long the device has been on the call it runs now (``None``: idle)."""

    @property
    def current(self) -> DeviceStatus | None:
        """The status if the latest reading succeeded."""
        return self.status if self.error is None else None
