"""Moments as the API and the audit log write them."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_ms(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO 8601 UTC string (``None`` stays ``None``)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
