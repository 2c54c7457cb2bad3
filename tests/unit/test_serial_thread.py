"""The device's thread: calls in order, queued group calls in one go, failures handed back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kkt_adapter.buffer.engine import GroupCall, Outcome, SerialThread


@pytest.fixture
def thread() -> Iterator[SerialThread]:
    serial = SerialThread("test-serial")
    yield serial
    serial.shutdown(wait=True)


class Recorder:
    """Posted calls' outcomes, and the groups a group runner was given."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[bool, Any]] = []
        self.groups: list[list[Any]] = []
        self.finished = threading.Event()

    def done(self, ok: bool, value: Any) -> None:
        self.outcomes.append((ok, value))

    def run(self, args: list[Any]) -> list[Outcome]:
        self.groups.append(list(args))
        return [(True, arg * 10) if arg >= 0 else (False, ValueError(arg)) for arg in args]


def blocked(thread: SerialThread) -> threading.Event:
    """Hold the thread on a call until the returned event is set, so later posts queue up."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(5)

    thread.post(hold, lambda ok, value: None)
    assert started.wait(5)
    return release


def wait_for(recorder: Recorder, thread: SerialThread, count: int) -> None:
    thread.post(lambda: None, lambda ok, value: recorder.finished.set())
    assert recorder.finished.wait(5)
    assert len(recorder.outcomes) == count


def test_queued_group_calls_run_together_up_to_the_limit_in_order(thread: SerialThread) -> None:
    recorder = Recorder()
    release = blocked(thread)
    for n in range(5):
        thread.post(GroupCall(recorder.run, n, limit=3), recorder.done)
    release.set()
    wait_for(recorder, thread, 5)
    assert recorder.groups == [[0, 1, 2], [3, 4]]
    assert recorder.outcomes == [(True, n * 10) for n in range(5)]


def test_other_calls_split_groups_and_keep_their_place(thread: SerialThread) -> None:
    recorder = Recorder()
    order: list[str] = []
    release = blocked(thread)
    thread.post(GroupCall(recorder.run, 1, limit=8), recorder.done)
    thread.post(lambda: order.append("between") or "x", recorder.done)
    thread.post(GroupCall(recorder.run, 2, limit=8), recorder.done)
    thread.post(GroupCall(recorder.run, -3, limit=8), recorder.done)
    release.set()
    wait_for(recorder, thread, 4)
    assert recorder.groups == [[1], [2, -3]]
    assert order == ["between"]
    assert recorder.outcomes[:3] == [(True, 10), (True, "x"), (True, 20)]
    ok, error = recorder.outcomes[3]
    assert not ok and isinstance(error, ValueError)


def test_a_failing_group_hands_each_caller_the_exception(thread: SerialThread) -> None:
    recorder = Recorder()

    def broken(args: list[Any]) -> list[Outcome]:
        raise OSError("device gone")

    release = blocked(thread)
    for n in range(3):
        thread.post(GroupCall(broken, n, limit=8), recorder.done)
    release.set()
    wait_for(recorder, thread, 3)
    assert [(ok, str(value)) for ok, value in recorder.outcomes] == [(False, "device gone")] * 3


def test_submit_is_an_ordinary_executor(thread: SerialThread) -> None:
    assert thread.submit(lambda a, b: a + b, 2, b=3).result(5) == 5
    with pytest.raises(ZeroDivisionError):
        thread.submit(lambda: 1 / 0).result(5)
    assert thread.submit(GroupCall(Recorder().run, 4, limit=8)).result(5) == 40
