"""The OFD emulator's failure modes, with injected randomness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kkt_adapter.errors import InvalidModeSettings
from kkt_adapter.mock_ofd.modes import (
    DEFAULT_FAILURE_RATE,
    Action,
    Control,
    Mode,
    ModeSettings,
    apply_update,
)


def fixed(*values: float) -> Iterator[float]:
    return iter(values)


def control_with(*values: float) -> Control:
    draws = fixed(*values)
    return Control(rand=lambda: next(draws))


def actions(control: Control, n: int) -> list[Action]:
    return [control.decide().action for _ in range(n)]


def test_success_accepts_everything() -> None:
    assert actions(Control(rand=lambda: 0.0), 3) == [Action.ACCEPT] * 3


def test_fail_fails_everything_and_keeps_counters() -> None:
    control = Control()
    control.update({"mode": "fail", "reject_next": 2})
    assert actions(control, 3) == [Action.FAIL] * 3
    assert control.settings.reject_next == 2


def test_fail_next_fails_n_then_accepts() -> None:
    control = Control()
    control.update({"fail_next": 2})
    assert actions(control, 3) == [Action.FAIL, Action.FAIL, Action.ACCEPT]
    assert control.settings.fail_next == 0


def test_reject_next_rejects_n_then_accepts() -> None:
    control = Control()
    control.update({"reject_next": 1})
    assert actions(control, 2) == [Action.REJECT, Action.ACCEPT]


def test_fail_next_comes_before_reject_next() -> None:
    control = Control()
    control.update({"fail_next": 1, "reject_next": 1})
    assert actions(control, 3) == [Action.FAIL, Action.REJECT, Action.ACCEPT]


def test_flaky_fails_below_the_rate() -> None:
    control = control_with(0.1, 0.5, 0.29, 0.3)
    control.update({"mode": "flaky", "failure_rate": 0.3})
    assert actions(control, 4) == [Action.FAIL, Action.ACCEPT, Action.FAIL, Action.ACCEPT]


@pytest.mark.parametrize(("rate", "expected"), [(1.0, Action.FAIL), (0.0, Action.ACCEPT)])
def test_flaky_extremes(rate: float, expected: Action) -> None:
    control = control_with(0.0, 0.5, 0.999999)
    control.update({"mode": "flaky", "failure_rate": rate})
    assert actions(control, 3) == [expected] * 3


def test_flaky_does_not_draw_when_fail_next_decides() -> None:
    control = control_with(0.9)  # a second draw would raise StopIteration
    control.update({"mode": "flaky", "failure_rate": 0.5, "fail_next": 1})
    assert actions(control, 2) == [Action.FAIL, Action.ACCEPT]


def test_latency_is_reported_with_every_decision() -> None:
    control = Control()
    control.update({"latency_ms": 250, "fail_next": 1})
    assert [d.latency_ms for d in (control.decide(), control.decide())] == [250, 250]


def test_update_with_mode_resets_omitted_fields() -> None:
    current = ModeSettings(Mode.FLAKY, 0.9, 100, 3, 4)
    assert apply_update(current, {"mode": "success"}) == ModeSettings()


def test_update_without_mode_changes_only_named_fields() -> None:
    current = ModeSettings(Mode.FLAKY, 0.9, 100, 0, 0)
    updated = apply_update(current, {"reject_next": 2})
    assert updated == ModeSettings(Mode.FLAKY, 0.9, 100, 0, 2)


def test_defaults() -> None:
    assert ModeSettings().as_dict() == {
        "mode": "success",
        "failure_rate": DEFAULT_FAILURE_RATE,
        "latency_ms": 0,
        "fail_next": 0,
        "reject_next": 0,
        "clock_offset_ms": 0,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "broken"}, "mode"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": True}, "failure_rate"),
        ({"failure_rate": "0.3"}, "failure_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": 10.5}, "latency_ms"),
        ({"fail_next": -2}, "fail_next"),
        ({"reject_next": False}, "reject_next"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_updates_name_the_field(body: dict[str, object], field: str) -> None:
    control = Control()
    with pytest.raises(InvalidModeSettings) as info:
        control.update(body)
    assert info.value.field == field
    assert control.settings == ModeSettings()


def test_reset_goes_back_to_success() -> None:
    control = Control()
    control.update({"mode": "fail", "reject_next": 5, "latency_ms": 10})
    control.reset()
    assert control.settings == ModeSettings()
