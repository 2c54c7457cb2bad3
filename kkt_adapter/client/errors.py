"""The client's exceptions: every refusal of the adapter, by its stable ``code``.

One base, :class:`KktError`, carries what the error answer said (``code``, ``message``,
``details``, ``status``, ``request_id``), its ``Retry-After`` in seconds and the
``idempotency_key`` the request went with, so a POS can keep the key and try again later. A
family per HTTP status, and a class for the codes a POS handles on their own::

    KktError
    ├── Unreachable                  no answer: connection refused, timed out, cut off
    ├── UnexpectedAnswer             an answer the client cannot read
    ├── Unauthorized                 401
    ├── Forbidden                    403
    ├── NotFound                     404
    ├── Conflict                     409
    │   ├── RequestInProgress        request_in_progress
    │   ├── NotFiscalized            not_fiscalized
    │   ├── ShiftStateConflict       shift_state_conflict
    │   ├── InsufficientCash         insufficient_cash
    │   ├── CashOutcomeUnknown       cash_operation_outcome_unknown
    │   ├── NotSyncLeader            not_sync_leader
    │   └── RefundRefused            every refund_* code of a 409
    │       ├── RefundOfNotFiscalized
    │       ├── RefundOfLinesUnknown
    │       ├── RefundExceedsSale
    │       ├── RefundCashExceedsPaid
    │       └── RefundHeldUntilSynced
    ├── ValidationRefused            422: every validation code (invalid_money, ...)
    │   └── IdempotencyKeyReused     idempotency_key_reused
    ├── RateLimited                  429
    ├── Unavailable                  503
    │   ├── BufferFull               buffer_full
    │   ├── KktUnavailable           kkt_unavailable
    │   └── StorageUnavailable       storage_unavailable
    └── ServerError                  any other 5xx

An answer is turned into the class of its ``code`` when the client names one for the same
status, else into its status's family (:func:`error_for`); ``except Conflict`` catches every
409 however new its code. The codes are the server's own (``kkt_adapter.errors``), so the two
cannot drift apart.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kkt_adapter import errors as server

CONNECT_FAILED = "connect_failed"
"""The code of an :class:`Unreachable` whose connection never opened: nothing was sent."""
NO_ANSWER = "no_answer"
"""The code of an :class:`Unreachable` after the request went out: it may have been done."""
NO_ERROR_BODY = "no_error_body"
"""The code of an error answer without the adapter's ``{code, message, ...}`` (a proxy's)."""


class KktError(Exception):
    """Base of everything the client raises."""

    status_family: ClassVar[int | None] = None
    """The HTTP status of the class's answers (``None``: several, or none)."""
    code_of_class: ClassVar[str | None] = None
    """The stable code this class stands for (``None``: a family)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details
        self.request_id = request_id
        self.retry_after = retry_after
        self.idempotency_key = idempotency_key


class Unreachable(KktError):
    """No answer came: the connection was refused, timed out or was cut. With a key, the
    request may have been done: send it again with the same ``idempotency_key``."""


class UnexpectedAnswer(KktError):
    """The adapter answered something this client cannot read (not JSON, not the model)."""


class Unauthorized(KktError):
    status_family = 401


class Forbidden(KktError):
    status_family = 403


class NotFound(KktError):
    status_family = 404


class Conflict(KktError):
    status_family = 409


class RequestInProgress(Conflict):
    code_of_class = server.RequestInProgress.code


class NotFiscalized(Conflict):
    code_of_class = server.NotFiscalized.code


class ShiftStateConflict(Conflict):
    code_of_class = server.ShiftError.code


class InsufficientCash(Conflict):
    code_of_class = server.InsufficientCash.code


class CashOutcomeUnknown(Conflict):
    code_of_class = server.CashOutcomeUnknown.code


class NotSyncLeader(Conflict):
    code_of_class = server.NotSyncLeader.code


class RefundRefused(Conflict):
    """The refund names a sale that does not allow it (now); nothing was printed."""

    code_of_class = server.RefundRefused.code


class RefundOfNotFiscalized(RefundRefused):
    code_of_class = server.RefundOfNotFiscalized.code


class RefundOfLinesUnknown(RefundRefused):
    code_of_class = server.RefundOfLinesUnknown.code


class RefundExceedsSale(RefundRefused):
    code_of_class = server.RefundExceedsSale.code


class RefundCashExceedsPaid(RefundRefused):
    code_of_class = server.RefundCashExceedsPaid.code


class RefundHeldUntilSynced(RefundRefused):
    code_of_class = server.RefundHeldUntilSynced.code


class ValidationRefused(KktError):
    """The request is invalid; ``details["field"]`` names the field. Do not retry as is."""

    status_family = 422


class IdempotencyKeyReused(ValidationRefused):
    """The key was used for another body: a new receipt needs a new key."""

    code_of_class = server.IdempotencyKeyReused.code


class RateLimited(KktError):
    status_family = 429


class Unavailable(KktError):
    """The adapter cannot do it now; ``retry_after`` says when to try again, if ever."""

    status_family = 503


class BufferFull(Unavailable):
    code_of_class = server.BufferFull.code


class KktUnavailable(Unavailable):
    """The KKT refused or could not be reached; ``details["reason"]`` says why
    (``out_of_paper``, ``outcome_unknown``, ...)."""

    code_of_class = server.DeviceError.code


class StorageUnavailable(Unavailable):
    code_of_class = server.StorageUnavailable.code


class ServerError(KktError):
    """A 5xx the client names no family for (``internal_error``, a proxy's 502)."""


def _subclasses(base: type[KktError]) -> list[type[KktError]]:
    found: list[type[KktError]] = []
    for cls in base.__subclasses__():
        found += [cls, *_subclasses(cls)]
    return found


_BY_STATUS = {
    cls.status_family: cls for cls in _subclasses(KktError) if "status_family" in vars(cls)
}
_BY_CODE = {
    (cls.status_family, cls.code_of_class): cls
    for cls in _subclasses(KktError)
    if "code_of_class" in vars(cls)
}


def error_for(status: int, code: str) -> type[KktError]:
    """The class of an error answer: its code's, else its status family's."""
    by_code = _BY_CODE.get((status, code))
    if by_code is not None:
        return by_code
    if status == 409 and code.startswith("refund_"):
        return RefundRefused
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else KktError
