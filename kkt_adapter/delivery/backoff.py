"""Per-receipt retry schedule: capped exponential backoff with full jitter.

``delay = uniform(0, min(cap, base * 2**attempts))`` (the "full jitter" of the AWS architecture
blog), never shorter than the OFD's ``Retry-After`` when it sent one. Transient failures retry
without end: the FN's 30-day offline limit is the real deadline, and alerts warn long before it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from kkt_adapter.settings import default_of

Uniform = Callable[[float, float], float]


@dataclass(frozen=True)
class Backoff:
    """The schedule's parameters, in seconds."""

    base: float = float(default_of("backoff_base_seconds"))
    cap: float = float(default_of("backoff_cap_seconds"))

    def ceiling(self, attempts: int) -> float:
        """The largest delay after ``attempts`` failed attempts (1 = the first failure)."""
        exponent = max(attempts - 1, 0)
        if exponent >= 64:  # 2**64 seconds is far past any cap; avoid float overflow
            return self.cap
        return min(self.cap, self.base * 2.0**exponent)

    def delay(
        self, attempts: int, retry_after: float | None = None, uniform: Uniform = random.uniform
    ) -> float:
        """Seconds to wait before the next attempt."""
        jittered = uniform(0.0, self.ceiling(attempts))
        if retry_after is not None and retry_after > jittered:
            return min(retry_after, self.cap)
        return jittered
