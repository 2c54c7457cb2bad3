"""The words of a receipt's life, one enum each: where a receipt is, how one OFD call ended,
and what state the OFD circuit breaker is in. Every layer (the buffer's SQL, the status
answers, the metrics, the views) uses these.

::

     POST -> accepted --print ok--> pending --claimed--> syncing --acknowledged--> synced
                |                      ^                    |
                | device refused       +--transient error---+ (backoff)
                v                                           | permanent rejection
           print_failed --same key--> accepted              v
                                                         failed (a DLQ row says why)
"""

from __future__ import annotations

from enum import StrEnum


class ReceiptStatus(StrEnum):
    """Where a receipt is (DESIGN §3)."""

    ACCEPTED = "accepted"
    """Durable, not yet fiscalized: the KKT has it in hand, or a crash left it here."""
    PRINT_FAILED = "print_failed"
    """The KKT refused it; the POS may retry with the same key."""
    PENDING = "pending"
    """Fiscalized, waiting for the OFD."""
    SYNCING = "syncing"
    """Claimed by the sync leader, on its way to the OFD."""
    SYNCED = "synced"
    """The OFD acknowledged it."""
    FAILED = "failed"
    """The OFD rejected it as invalid; it waits in the DLQ for an operator."""


UNSYNCED = frozenset(set(ReceiptStatus) - {ReceiptStatus.SYNCED, ReceiptStatus.PRINT_FAILED})
"""Everything that counts against the buffer's capacity: fiscal documents not yet synced and
receipts being printed. Failed prints are no fiscal documents; they are bounded on their own
(``KKT_PRINT_FAILED_LIMIT``, ``KKT_PRINT_FAILED_RETENTION_HOURS``)."""

UNSENT = frozenset({ReceiptStatus.PENDING, ReceiptStatus.SYNCING, ReceiptStatus.FAILED})
"""Fiscal documents the OFD does not have (the FN's 30-day clock runs for them)."""


class CallOutcome(StrEnum):
    """How one call to the OFD ended."""

    DELIVERED = "delivered"
    """The OFD stored the document."""
    DUPLICATE = "duplicate"
    """The OFD had it already (a resend): delivered too."""
    REJECTED = "rejected"
    """The OFD refused the document as invalid: it goes to the DLQ."""
    TRANSIENT = "transient"
    """The OFD could not take it now (5xx, timeout, connection): retried with backoff."""


class BreakerState(StrEnum):
    """The OFD circuit breaker (``kkt_adapter.delivery.breaker``)."""

    CLOSED = "CLOSED"
    """Calls go through."""
    OPEN = "OPEN"
    """No calls: too many failed in a row; a manual sync may still probe."""
    HALF_OPEN = "HALF_OPEN"
    """Probes go through, one receipt a pass, until enough succeed."""
