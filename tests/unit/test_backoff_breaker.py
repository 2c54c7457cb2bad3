"""Backoff schedule and circuit breaker, with injected randomness and clock."""

from __future__ import annotations

import pytest
from fakes import Clock
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.delivery.backoff import Backoff
from kkt_adapter.delivery.breaker import BreakerConfig, BreakerState, CircuitBreaker


def top(low: float, high: float) -> float:
    return high


def bottom(low: float, high: float) -> float:
    return low


def test_schedule_doubles_from_the_base() -> None:
    backoff = Backoff(base=1, cap=300)
    assert [backoff.delay(n, uniform=top) for n in range(1, 7)] == [1, 2, 4, 8, 16, 32]


def test_schedule_is_capped() -> None:
    backoff = Backoff(base=1, cap=300)
    assert backoff.delay(9, uniform=top) == 256
    assert backoff.delay(10, uniform=top) == 300
    assert backoff.delay(10_000, uniform=top) == 300  # no overflow, retries forever


@given(st.integers(1, 200), st.floats(0, 1))
def test_full_jitter_stays_within_zero_and_the_ceiling(attempts: int, fraction: float) -> None:
    backoff = Backoff(base=1, cap=300)
    delay = backoff.delay(attempts, uniform=lambda lo, hi: lo + (hi - lo) * fraction)
    assert 0 <= delay <= backoff.ceiling(attempts) <= 300


def test_retry_after_is_a_floor_but_never_beyond_the_cap() -> None:
    backoff = Backoff(base=1, cap=300)
    assert backoff.delay(1, retry_after=30, uniform=bottom) == 30
    assert backoff.delay(1, retry_after=0.5, uniform=top) == 1  # jitter already longer
    assert backoff.delay(1, retry_after=10_000, uniform=bottom) == 300


def test_breaker_full_cycle() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        BreakerConfig(failure_threshold=5, open_seconds=60, success_threshold=2),
        clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allows_calls()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allows_calls()
    clock.now = 59.9
    assert breaker.state is BreakerState.OPEN
    assert breaker.open_remaining() == pytest.approx(0.1)
    clock.now = 60
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allows_calls()
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_a_failed_probe_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, open_seconds=10), clock)
    breaker.record_failure()
    clock.now = 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now = 19
    assert breaker.state is BreakerState.OPEN  # the open time restarted at the probe


def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=3), Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_successes_of_a_manual_sync_while_open_close_the_breaker() -> None:
    # A manual sync probes while the breaker is open; once it delivers, the OFD is back: the
    # breaker must not stay open (or half-open with nothing left to probe) after the drain.
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        BreakerConfig(failure_threshold=1, open_seconds=60, success_threshold=2),
        clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
