"""Circuit breaker on the OFD.

CLOSED -> OPEN after ``failure_threshold`` consecutive transient failures; OPEN -> HALF_OPEN once
``open_seconds`` passed, or at a success while open (a manual sync probes); HALF_OPEN -> CLOSED
after ``success_threshold`` successes, back to OPEN on any transient failure. Permanent
rejections (a bad document) say nothing about the OFD's health and are not recorded here.

A small class rather than a library: pybreaker wraps calls and its async support is Tornado's;
aiobreaker (its asyncio fork) is unmaintained; neither lets the caller classify outcomes
(permanent rejections must not count) or let a manual sync probe while the breaker is open.
The clock is injected so the transitions are tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kkt_adapter.domain.lifecycle import BreakerState
from kkt_adapter.settings import default_of


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = int(default_of("breaker_failures"))
    open_seconds: float = float(default_of("breaker_open_seconds"))
    success_threshold: int = int(default_of("breaker_successes"))


class CircuitBreaker:
    """Decides whether the delivery worker may call the OFD now."""

    def __init__(
        self,
        config: BreakerConfig = BreakerConfig(),
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] = lambda old, new: None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose time is up reads as HALF_OPEN."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.open_seconds
        ):
            self._move(BreakerState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def open_remaining(self) -> float:
        """Seconds until an OPEN breaker lets probes through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.config.open_seconds - (self._clock() - self._opened_at))

    def allows_calls(self) -> bool:
        """True unless the breaker is OPEN (HALF_OPEN lets probes through)."""
        return self.state is not BreakerState.OPEN

    def record_success(self) -> None:
        """A delivered document. One while OPEN is a manual sync's probe getting through: it
        counts as a half-open probe, so a drain that succeeds closes the breaker."""
        self._failures = 0
        state = self.state
        if state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN)
            state = BreakerState.HALF_OPEN
        if state is BreakerState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.config.success_threshold:
                self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A transient failure (5xx, 408, 429, timeout, connection error)."""
        self._failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self._failures >= self.config.failure_threshold
        ):
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)
        elif state is BreakerState.OPEN:
            self._opened_at = self._clock()  # a failed manual probe restarts the open time

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._successes = 0
        if old is not new:
            self._on_change(old, new)
