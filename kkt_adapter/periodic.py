"""A job run again and again in the background: the delivery sweep, housekeeping, the ERP
heartbeat and the sync lease's renewal all use this one loop.

The job returns how long to wait before its next run (``None``: the period). ``wake`` runs it
again at once. A job that raises is logged and run again after the period: a background loop
must survive anything. ``stop`` either lets the run in progress finish (``graceful``: the
delivery worker finishes its sends) or cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[float | None]]
"""One run; returns the seconds to wait before the next (``None``: the period)."""


class Periodic:
    """Runs ``job`` now (or after ``period`` when ``delay_first``), then again as it asks."""

    def __init__(
        self,
        name: str,
        job: Job,
        *,
        period: float,
        delay_first: bool = False,
        graceful: bool = False,
    ) -> None:
        self.name = name
        self._job = job
        self._period = period
        self._delay_first = delay_first
        self._graceful = graceful
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    def wake(self) -> None:
        """Run the job again now (or as soon as the run in progress ends)."""
        self._wake.set()

    async def stop(self) -> None:
        """No more runs; the one in progress finishes (``graceful``) or is cancelled."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        if not self._graceful:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        wait: float | None = self._period if self._delay_first else 0.0
        while True:
            await self._sleep(wait)
            if self._stopping:
                return
            try:
                wait = await self._job()
            except Exception:  # the next run tries again; the loop must not die
                log.exception("%s failed", self.name)
                wait = None

    async def _sleep(self, wait: float | None) -> None:
        seconds = self._period if wait is None else wait
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
