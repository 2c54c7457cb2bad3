"""The device's thread: calls in order, queued group calls in one go, failures handed back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kkt_adapter.serial import CallResult, GroupCall, SerialThread


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

    def run(self, args: list[Any]) -> list[CallResult]:
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

    def between() -> str:
        order.append("between")
        return "x"

    thread.post(between, recorder.done)
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

    def broken(args: list[Any]) -> list[CallResult]:
        raise OSError("device gone")

    release = blocked(thread)
    for n in range(3):
        thread.post(GroupCall(broken, n, limit=8), recorder.done)
    release.set()
    wait_for(recorder, thread, 3)
    assert [(ok, str(value)) for ok, value in recorder.outcomes] == [(False, "device gone")] * 3
    errors = [value for _, value in recorder.outcomes]
    assert all(type(error) is OSError for error in errors)
    assert len({id(error) for error in errors}) == 3  # each caller its own exception


def test_a_group_answering_for_the_wrong_number_of_calls_fails_each_call(
    thread: SerialThread,
) -> None:
    recorder = Recorder()

    def miscounts(args: list[Any]) -> list[CallResult]:
        return [(True, 1)]

    release = blocked(thread)
    for n in range(3):
        thread.post(GroupCall(miscounts, n, limit=8), recorder.done)
    release.set()
    wait_for(recorder, thread, 3)
    assert [ok for ok, _ in recorder.outcomes] == [False] * 3
    assert "1 outcomes for 3" in str(recorder.outcomes[0][1])


def test_the_thread_survives_system_exit_and_failing_completions(thread: SerialThread) -> None:
    recorder = Recorder()

    def exits() -> None:
        raise SystemExit(3)

    def broken_done(ok: bool, value: Any) -> None:
        raise RuntimeError("completion bug")

    thread.post(lambda: 1, broken_done)
    thread.post(exits, recorder.done)
    wait_for(recorder, thread, 1)
    ok, error = recorder.outcomes[0]
    assert not ok and isinstance(error, RuntimeError) and "SystemExit" in str(error)
    assert thread.submit(lambda: "alive").result(5) == "alive"


def test_a_post_after_shutdown_fails_at_once_and_queued_posts_still_run() -> None:
    serial = SerialThread("test-serial-stop")
    recorder = Recorder()
    release = blocked(serial)
    serial.post(lambda: "queued", recorder.done)
    stopper = threading.Thread(target=serial.shutdown)
    stopper.start()
    deadline = time.monotonic() + 5
    while not serial._shutdown:  # shutdown has put its sentinel behind the queued post
        assert time.monotonic() < deadline, "shutdown() did not mark the thread stopped in 5 s"
        threading.Event().wait(0.001)
    serial.post(lambda: "late", recorder.done)
    assert len(recorder.outcomes) == 1
    ok, error = recorder.outcomes[0]
    assert not ok and "stopped" in str(error)
    release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert recorder.outcomes[1] == (True, "queued")
    with pytest.raises(RuntimeError):
        serial.submit(lambda: None)


def test_a_cancelled_submit_does_not_run(thread: SerialThread) -> None:
    ran: list[int] = []
    release = blocked(thread)
    future = thread.submit(ran.append, 1)
    assert future.cancel()
    release.set()
    assert thread.submit(lambda: len(ran)).result(5) == 0


def test_submit_is_an_ordinary_executor(thread: SerialThread) -> None:
    assert thread.submit(lambda a, b: a + b, 2, b=3).result(5) == 5
    with pytest.raises(ZeroDivisionError):
        thread.submit(lambda: 1 / 0).result(5)
    assert thread.submit(GroupCall(Recorder().run, 4, limit=8)).result(5) == 40
