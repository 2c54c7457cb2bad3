"""The OFD emulator's failure modes: pure logic, no I/O, randomness injected.

Every submission first asks :meth:`Control.decide` what to do with it. The answer is taken in
this order, so the effect of a setting is predictable:

1. mode ``fail``: every submission fails (503); the ``fail_next``/``reject_next`` counters are
   left alone, so they still apply after the mode is switched back;
2. ``fail_next`` > 0: this submission fails and the counter goes down by one;
3. mode ``flaky``: the submission fails when ``random() < failure_rate``;
4. ``reject_next`` > 0: this submission is rejected (422) and the counter goes down by one;
5. otherwise the submission is validated and stored.

``latency_ms`` delays every answer, failures included, as a slow network would.
``clock_offset_ms`` sets the emulator's wall clock that far from this machine's, as the clock
of a remote OFD may be (its hybrid logical clock stamps follow; they never go back).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from kkt_adapter.errors import InvalidModeSettings

Random = Callable[[], float]
"""Returns a float in [0, 1); ``random.random`` unless a test injects its own."""

MAX_LATENCY_MS = 60_000
MAX_CLOCK_OFFSET_MS = 86_400_000
MAX_COUNTER = 1_000_000
DEFAULT_FAILURE_RATE = 0.3


class Mode(enum.StrEnum):
    """How the emulator answers submissions in general."""

    SUCCESS = "success"
    FAIL = "fail"
    FLAKY = "flaky"


class Action(enum.Enum):
    """What to do with one submission."""

    ACCEPT = "accept"
    """Validate and store it."""
    FAIL = "fail"
    """Answer 503 ``ofd_unavailable``."""
    REJECT = "reject"
    """Answer 422 ``document_rejected``."""


@dataclass(frozen=True)
class Decision:
    """The action for one submission and how long to wait before answering."""

    action: Action
    latency_ms: int


@dataclass(frozen=True)
class ModeSettings:
    """The whole control state; the defaults are what a fresh or reset emulator uses."""

    mode: Mode = Mode.SUCCESS
    failure_rate: float = DEFAULT_FAILURE_RATE
    latency_ms: int = 0
    fail_next: int = 0
    reject_next: int = 0
    clock_offset_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as ``POST /_control/mode`` takes it."""
        settings = asdict(self)
        settings["mode"] = self.mode.value
        return settings


def apply_update(current: ModeSettings, update: Mapping[str, Any]) -> ModeSettings:
    """The settings after a ``POST /_control/mode`` body.

    A body that names ``mode`` replaces the whole state: fields it omits take their defaults,
    so ``{"mode": "success"}`` always means "healthy, no delay, nothing pending". A body
    without ``mode`` changes only the fields it names (``{"reject_next": 1}`` keeps the
    current mode, rate and latency). Raises :class:`InvalidModeSettings`.
    """
    unknown = sorted(set(update) - set(ModeSettings.__dataclass_fields__))
    if unknown:
        raise InvalidModeSettings(unknown[0], "unknown field")
    base = ModeSettings() if "mode" in update else current
    changes: dict[str, Any] = {}
    if "mode" in update:
        changes["mode"] = _mode(update["mode"])
    if "failure_rate" in update:
        changes["failure_rate"] = _rate(update["failure_rate"])
    for name, limit in (
        ("latency_ms", MAX_LATENCY_MS),
        ("fail_next", MAX_COUNTER),
        ("reject_next", MAX_COUNTER),
    ):
        if name in update:
            changes[name] = _bounded_int(name, update[name], limit)
    if "clock_offset_ms" in update:
        changes["clock_offset_ms"] = _bounded_int(
            "clock_offset_ms", update["clock_offset_ms"], MAX_CLOCK_OFFSET_MS, signed=True
        )
    return replace(base, **changes)


def _mode(value: Any) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        allowed = ", ".join(m.value for m in Mode)
        raise InvalidModeSettings("mode", f"must be one of {allowed}") from None


def _rate(value: Any) -> float:
    # bool is an int subclass: true/false as a rate is a caller's mistake, not 1.0/0.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidModeSettings("failure_rate", "must be a number from 0 to 1")
    return float(value)


def _bounded_int(name: str, value: Any, limit: int, *, signed: bool = False) -> int:
    low = -limit if signed else 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
        raise InvalidModeSettings(name, f"must be an integer from {low} to {limit}")
    return value


class Control:
    """The emulator's mutable control state; owned by one event loop (no locking needed)."""

    def __init__(self, *, rand: Random = random.random) -> None:
        self._rand = rand
        self.settings = ModeSettings()

    def update(self, body: Mapping[str, Any]) -> ModeSettings:
        """Apply a ``POST /_control/mode`` body (see :func:`apply_update`)."""
        self.settings = apply_update(self.settings, body)
        return self.settings

    def reset(self) -> None:
        """Back to the defaults: mode success, nothing pending."""
        self.settings = ModeSettings()

    def decide(self) -> Decision:
        """What to do with the next submission; consumes one ``fail_next``/``reject_next``."""
        settings = self.settings
        action = Action.ACCEPT
        if settings.mode is Mode.FAIL:
            action = Action.FAIL
        elif settings.fail_next > 0:
            self.settings = replace(settings, fail_next=settings.fail_next - 1)
            action = Action.FAIL
        elif settings.mode is Mode.FLAKY and self._rand() < settings.failure_rate:
            action = Action.FAIL
        elif settings.reject_next > 0:
            self.settings = replace(settings, reject_next=settings.reject_next - 1)
            action = Action.REJECT
        return Decision(action, settings.latency_ms)
