"""A Python client of the adapter's API, sync (:class:`KktClient`) and async
(:class:`AsyncKktClient`).

Results are the API's own answer models (``kkt_adapter.api.answers``), read tolerantly so a
newer adapter's extra fields do no harm; refusals are :class:`KktError` subclasses named by
their stable code (``errors.py`` draws the tree). A receipt or a cash operation goes with an
``Idempotency-Key`` (a fresh one per call unless given) that stays the same on every retry of
that call; transient answers are retried as the adapter's ``Retry-After`` says (``retry.py``).

    from kkt_adapter.client import KktClient

    with KktClient("http://127.0.0.1:8000", token="pos-7f1c2a4e9b0d4c1a") as kkt:
        answer = kkt.create_receipt(receipt)
        print(answer.fiscal.fn, answer.fiscal.fd)

Importing it pulls in httpx and pydantic, not the server (FastAPI, the buffer, the KKT).
"""

from kkt_adapter.client.calls import new_idempotency_key
from kkt_adapter.client.clients import AsyncKktClient, KktClient
from kkt_adapter.client.errors import (
    BufferFull,
    CashOutcomeUnknown,
    Conflict,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientCash,
    KktError,
    KktUnavailable,
    NotFiscalized,
    NotFound,
    NotSyncLeader,
    RateLimited,
    RefundCashExceedsPaid,
    RefundExceedsSale,
    RefundHeldUntilSynced,
    RefundOfLinesUnknown,
    RefundOfNotFiscalized,
    RefundRefused,
    RequestInProgress,
    ServerError,
    ShiftStateConflict,
    StorageUnavailable,
    Unauthorized,
    Unavailable,
    UnexpectedAnswer,
    Unreachable,
    ValidationRefused,
)
from kkt_adapter.client.retry import RetryPolicy, retry_delay

__all__ = [
    "AsyncKktClient",
    "BufferFull",
    "CashOutcomeUnknown",
    "Conflict",
    "Forbidden",
    "IdempotencyKeyReused",
    "InsufficientCash",
    "KktClient",
    "KktError",
    "KktUnavailable",
    "NotFiscalized",
    "NotFound",
    "NotSyncLeader",
    "RateLimited",
    "RefundCashExceedsPaid",
    "RefundExceedsSale",
    "RefundHeldUntilSynced",
    "RefundOfLinesUnknown",
    "RefundOfNotFiscalized",
    "RefundRefused",
    "RequestInProgress",
    "RetryPolicy",
    "ServerError",
    "ShiftStateConflict",
    "StorageUnavailable",
    "Unauthorized",
    "Unavailable",
    "UnexpectedAnswer",
    "Unreachable",
    "ValidationRefused",
    "new_idempotency_key",
    "retry_delay",
]
