"""One thread running calls in order, grouping the calls that queued up behind each other.

The KKT's thread: a device prints one receipt at a time and never on the event loop, and the
receipts that queued up while it was busy are fiscalized together in one device write
(``GroupCall``). The buffer's staged writes hand their outside call to it (``post``) and get
the result back on the writer's queue without waking the event loop.

Between calls the thread may do work of its own (``between``): the device runner re-reads the
KKT's status there, so a reading never queues behind a print and never delays one that waits.

Written by hand: ``concurrent.futures`` has no way to run the calls waiting in its queue as one
call, and creating a ``Future`` per print cost measurable CPU on the intake path.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Poster(Protocol):
    """Where a staged write's outside call runs: ``post(call, done)`` runs ``call()`` and then
    ``done(ok, result or exception)`` on the poster's own thread."""

    def post(self, call: Callable[[], Any], done: Callable[[bool, Any], None]) -> None: ...


CallResult = tuple[bool, Any]
"""How a call ended: ``(True, result)`` or ``(False, exception)``."""


@dataclass(frozen=True)
class GroupCall:
    """A call that ``SerialThread`` may run in one go with the calls queued right behind it.

    Calls sharing ``run`` (up to ``limit`` of them, in queue order) become one
    ``run([arg, ...])``, which returns one outcome per argument: the device fiscalizes the
    receipts that queued up during its last write with one durable write for them all.
    Called alone, it is an ordinary call.
    """

    run: Callable[[list[Any]], list[CallResult]]
    arg: Any
    limit: int = 1

    def __call__(self) -> Any:
        ok, value = self.run([self.arg])[0]
        if ok:
            return value
        raise value


_Posted = tuple[Callable[[], Any], Callable[[bool, Any], None]]

Between = Callable[[bool], float | None]
"""Run on the thread after each call (or group) and when an idle wait ends: ``between(idle)``,
``idle`` telling that nothing is queued; it returns how long the thread may wait idle before it
is called again (``None``: until the next call comes)."""


class SerialThread(Executor):
    """One worker thread running calls in order: the executor of a staged write's outside call.

    ``post`` is the hand-off the writer uses: no ``Future``, so a print costs the device
    thread and the writer as little as possible around it; queued ``GroupCall``s run together.
    ``submit`` makes it an ordinary ``Executor`` too (``loop.run_in_executor``), on the same
    thread. The thread survives any failure of a call or a completion, and every posted call
    gets its ``done``: a post after shutdown gets a failure at once (a staged write waiting
    for it must not wait forever).
    """

    def __init__(self, name: str, *, between: Between | None = None) -> None:
        self._calls: queue.SimpleQueue[_Posted | None] = queue.SimpleQueue()
        self._between = between
        self.running_since: float | None = None
        """``time.monotonic()`` when the call (or group) running now started; ``None``: idle."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._shutdown = False
        self._lock = threading.Lock()  # no post slips in behind the stop sentinel
        self._thread.start()

    def post(self, call: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        """Run ``call()`` on the thread, then ``done(ok, result or exception)`` there."""
        with self._lock:
            if not self._shutdown:
                self._calls.put((call, done))
                return
        done(False, RuntimeError(f"{self._thread.name} is stopped"))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._calls.put(
                (partial(_start, future, partial(fn, *args, **kwargs)), partial(_settle, future))
            )
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop after the calls posted so far have run."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                self._calls.put(None)
        if wait:
            self._thread.join()

    def _run(self) -> None:
        stopping = False
        wait = self._pause(idle=True)
        while not stopping:
            try:
                first = self._calls.get(timeout=wait)
            except queue.Empty:
                wait = self._pause(idle=True)
                continue
            if first is None:
                break
            posted = [first]
            while True:  # everything that queued up meanwhile, for grouping
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                posted.append(item)
            groups = list(_groups(posted))
            for n, group in enumerate(groups, 1):
                self._run_group(group)
                if not stopping:
                    wait = self._pause(idle=n == len(groups) and self._calls.empty())

    def _pause(self, *, idle: bool) -> float | None:
        """Between calls: the ``between`` hook; how long to wait for the next call."""
        if self._between is None:
            return None
        try:
            return self._between(idle)
        except BaseException:  # the hook must handle its own errors; never die
            log.exception("between calls on %s", self._thread.name)
            return None

    def _run_group(self, group: list[_Posted]) -> None:
        self.running_since = time.monotonic()
        outcomes = _outcomes(group)
        self.running_since = None
        for (_, done), (ok, value) in zip(group, outcomes, strict=True):
            try:
                done(ok, value)
            except BaseException:  # a completion must handle its own errors; never die
                log.exception("completion on %s failed", self._thread.name)


def _outcomes(group: list[_Posted]) -> list[CallResult]:
    """Run a group (or a lone call): one outcome per call, whatever happens."""
    call = group[0][0]
    try:
        if not (isinstance(call, GroupCall) and len(group) > 1):
            return [(True, call())]
        outcomes = call.run([posted[0].arg for posted in group])  # type: ignore[attr-defined]
        if len(outcomes) != len(group):
            raise RuntimeError(f"{call.run!r} gave {len(outcomes)} outcomes for {len(group)}")
        return outcomes
    except Exception as exc:  # the whole group failed: each caller decides for itself
        failure = exc
    except BaseException as exc:  # (SystemExit and the like) must not unwind a caller's thread
        failure = RuntimeError(f"the call ended with {exc!r}")
        failure.__cause__ = exc
    # Each caller gets an exception of its own: a thrown exception collects its catcher's
    # traceback, and sixty-four of them in one object would log as one tangle.
    return [(False, failure)] + [(False, _twin(failure)) for _ in group[1:]]


def _twin(exc: Exception) -> Exception:
    """A fresh exception like ``exc`` (same type and attributes), caused by it."""
    try:  # without calling __init__, whose signature may not take ``args`` back
        twin = type(exc).__new__(type(exc), *exc.args)
        twin.__dict__.update(vars(exc))
    except Exception:  # a type that cannot be rebuilt this way
        twin = RuntimeError(str(exc))
    twin.__cause__ = exc
    return twin


def _groups(posted: list[_Posted]) -> Iterator[list[_Posted]]:
    """Consecutive ``GroupCall``s sharing a ``run`` (up to its limit); other calls alone."""
    group: list[_Posted] = []
    for item in posted:
        call = item[0]
        if group:
            head = group[0][0]
            if (
                isinstance(call, GroupCall)
                and isinstance(head, GroupCall)
                and call.run == head.run
                and len(group) < head.limit
            ):
                group.append(item)
                continue
            yield group
        group = [item]
    if group:
        yield group


_CANCELLED = object()


def _start(future: Future[T], call: Callable[[], T]) -> Any:
    if not future.set_running_or_notify_cancel():
        return _CANCELLED
    return call()


def _settle(future: Future[T], ok: bool, value: Any) -> None:
    if value is _CANCELLED:
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
