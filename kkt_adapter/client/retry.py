"""When the client sends a request again, and after how long: one pure function.

The adapter says which of its refusals are worth retrying: it sends ``Retry-After`` with
exactly those (``buffer_full``, ``kkt_unavailable`` a retry can cure, ``storage_unavailable``,
``request_in_progress``, ``refund_held_until_synced``, ``rate_limited``), and leaves it off a
``kkt_unavailable`` no retry cures (a document the KKT refused). So an answer is retried when it
carries ``Retry-After``, after that long; one without the adapter's error body at 502, 503 or
504 (a proxy in the way) is retried with a capped backoff. No answer at all (a refused
connection, a timeout) is retried with the backoff when resending cannot do a thing twice: a
read, a request with an ``Idempotency-Key`` (the same key on every resend, so the adapter
replays instead of printing again) or a connection that never opened. Everything else
(validation, refund refusals, 404) is final at once.

A retry is never scheduled past ``deadline`` seconds from the first attempt: a wait the
adapter asks for that would end after it raises the error instead, with its ``retry_after``,
for the POS to decide (the cashier is waiting).
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass

from kkt_adapter.client.errors import CONNECT_FAILED, NO_ERROR_BODY, KktError, Unreachable

PROXY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. ``max_retries=0`` sends each request once."""

    max_retries: int = 5
    deadline: float = 30.0
    """Seconds from the first attempt after which no retry starts."""
    backoff: float = 0.5
    """The first wait without ``Retry-After``; it doubles per retry up to ``backoff_cap``."""
    backoff_cap: float = 5.0


def retry_delay(
    policy: RetryPolicy, error: KktError, *, retries: int, elapsed: float, replayable: bool
) -> float | None:
    """Seconds to wait before sending again after ``error``, or ``None`` to raise it.

    ``retries`` is how many retries were made already, ``elapsed`` the seconds since the first
    attempt, ``replayable`` whether a request that may have arrived can be sent again.
    """
    if retries >= policy.max_retries:
        return None
    if error.retry_after is not None:
        delay: float = error.retry_after
    elif _transient(error, replayable):
        delay = min(policy.backoff * 2**retries, policy.backoff_cap)
    else:
        return None
    return delay if elapsed + delay <= policy.deadline else None


def _transient(error: KktError, replayable: bool) -> bool:
    if isinstance(error, Unreachable):
        return replayable or error.code == CONNECT_FAILED
    return error.status in PROXY_STATUSES and error.code == NO_ERROR_BODY


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``None`` if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None
