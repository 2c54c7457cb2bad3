"""The project's error hierarchy.

Every error carries a stable machine ``code`` and the HTTP status it maps to; the API turns
them into ``{"code", "message", "details", "request_id"}`` bodies in one place
(``kkt_adapter.http_errors``).
"""

from __future__ import annotations

from typing import Any


class KktAdapterError(Exception):
    """Base of all errors the adapter reports to a caller."""

    code: str = "internal_error"
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.retry_after = retry_after


class ValidationError(KktAdapterError):
    """The request is malformed or violates a business rule; ``details`` names the field."""

    code = "validation_error"
    http_status = 422


class NotFound(KktAdapterError):
    code = "not_found"
    http_status = 404


class NotFiscalized(KktAdapterError):
    """The receipt has no fiscal document yet (``accepted`` or ``print_failed``): it has no
    copy to show."""

    code = "not_fiscalized"
    http_status = 409


class IdempotencyKeyReused(KktAdapterError):
    """The same Idempotency-Key arrived with a different body."""

    code = "idempotency_key_reused"
    http_status = 422


class RequestInProgress(KktAdapterError):
    """A request with this Idempotency-Key is still being processed."""

    code = "request_in_progress"
    http_status = 409


class RefundRefused(KktAdapterError):
    """A refund that names its sale (``refund_of``) cannot be fiscalized as asked: the sale
    does not allow it (now). Nothing was printed or stored; each subclass is one rule."""

    code = "refund_refused"
    http_status = 409


class RefundOfNotFiscalized(RefundRefused):
    """The sale a refund names has no fiscal document (``accepted`` or ``print_failed``):
    nothing was sold yet that could be returned."""

    code = "refund_of_not_fiscalized"


class RefundOfLinesUnknown(RefundRefused):
    """The sale a refund names was recovered from the KKT's journal: the buffer holds its
    fiscal document but not its lines, so a refund of its lines cannot be checked. Refund it
    without ``refund_of``."""

    code = "refund_of_lines_unknown"


class RefundExceedsSale(RefundRefused):
    """A line would be refunded beyond what was sold minus what earlier refunds returned."""

    code = "refund_exceeds_sale"


class RefundCashExceedsPaid(RefundRefused):
    """The refund returns more cash than the sale kept in cash minus what earlier refunds
    returned in cash."""

    code = "refund_cash_exceeds_paid"


class RefundHeldUntilSynced(RefundRefused):
    """``KKT_REFUND_REQUIRES_SYNCED``: the sale has not reached the OFD yet; retry later."""

    code = "refund_held_until_synced"


class BufferFull(KktAdapterError):
    """Unsynced receipts reached the configured capacity; nothing was accepted."""

    code = "buffer_full"
    http_status = 503


class StorageUnavailable(KktAdapterError):
    """The buffer could not be written (disk full, I/O error); nothing was accepted."""

    code = "storage_unavailable"
    http_status = 503


class DeviceError(KktAdapterError):
    """The KKT refused or could not fiscalize. ``reason`` says why (out_of_paper, offline, ...)."""

    code = "kkt_unavailable"
    http_status = 503

    def __init__(self, message: str, *, reason: str, retry_after: int | None = 5) -> None:
        super().__init__(message, details={"reason": reason}, retry_after=retry_after)
        self.reason = reason


class DeviceAnswerError(DeviceError):
    """The KKT (or its driver) answered something the adapter cannot read: a field missing or
    of the wrong type. The operation's outcome is unknown: after a fiscal task, settle it from
    the device (read the task again, or the FN archive) before printing anything again (I2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="malformed_answer", retry_after=None)


class ShiftError(KktAdapterError):
    """A shift operation is not possible in the device's current state."""

    code = "shift_state_conflict"
    http_status = 409


class InsufficientCash(KktAdapterError):
    """A cash out beyond the cash in the drawer: the register refuses it (``details``:
    ``drawer_cash``, ``requested``)."""

    code = "insufficient_cash"
    http_status = 409


class CashOutcomeUnknown(KktAdapterError):
    """A retried cash operation whose first attempt the register cannot be asked about (an
    ATOL register keeps no id with it): not done again; the X report shows whether it was."""

    code = "cash_operation_outcome_unknown"
    http_status = 409


class NotSyncLeader(KktAdapterError):
    """Another adapter process holds the sync lease: only it delivers (``sync_fenced_out``:
    this process's lease was overtaken by a newer fencing token)."""

    code = "not_sync_leader"
    http_status = 409


class ConfigError(KktAdapterError):
    """Bad configuration: the commands exit non-zero with this one-line message."""

    code = "config_error"


class RecordLost(KktAdapterError):
    """A fiscal record changed no row: the receipt's row holds another fiscal document (or is
    gone). Never silent: the document stays on the KKT's journal, which the journal check
    reads (I8)."""

    code = "record_lost"
    http_status = 503


class StartupRefused(KktAdapterError):
    """The KKT's journal contradicts the buffer (another FN, FDs gone back): ``serve`` exits
    with this one-line reason instead of mixing two devices' documents."""

    code = "startup_refused"


class BodyTooLarge(Exception):
    """A chunked request body grew past the limit while being read (answered 413)."""


class StaleLeader(Exception):
    """A claim with a fencing token lower than the buffer's highest: leadership was lost."""


# -- the OFD emulator's answers (kkt-adapter mock-ofd) ----------------------------------------


class OfdUnavailable(KktAdapterError):
    """The OFD emulator was told to fail this submission."""

    code = "ofd_unavailable"
    http_status = 503


class DocumentRejected(KktAdapterError):
    """The submission is invalid (or the OFD emulator was told to reject it): do not retry."""

    code = "document_rejected"
    http_status = 422


class PayloadTooLarge(KktAdapterError):
    """The request body is over the OFD emulator's limit."""

    code = "payload_too_large"
    http_status = 413


class IdentityConflict(KktAdapterError):
    """A different document claims an Idempotency-Key or (FN, FD) the OFD emulator stored."""

    code = "conflict"
    http_status = 409


class InvalidModeSettings(ValueError):
    """A control request to the OFD emulator names an unknown field or a value out of range."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
