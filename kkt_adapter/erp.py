"""The ERP heartbeat: the adapter's status POSTed to the ERP every few seconds.

Operations watch a chain of terminals from the ERP; a terminal that stops beating is lost
(its alert ``erp_heartbeat_lost``, its health component ``erp``). The payload is compact and
made of measured facts only (promise I6): counters, breaker, oldest unsent document, alerts.
A beat that fails is not retried early: the next one is due a period later anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

import aiohttp
import orjson

from kkt_adapter import __version__
from kkt_adapter.domain.dates import iso_ms
from kkt_adapter.domain.lifecycle import BreakerState
from kkt_adapter.periodic import Periodic
from kkt_adapter.status import (
    ErpFacts,
    Facts,
    Json,
    alerts,
    oldest_pending,
    percent_full,
    unsynced,
)

log = logging.getLogger(__name__)

Payload = Callable[[], Awaitable[Json]]
"""Measures and builds the body of one beat."""


def heartbeat_payload(
    facts: Facts, *, node_id: str, breaker: BreakerState, ofd_emulator: bool
) -> Json:
    """The body of one beat."""
    counts = facts.counts
    return {
        "node_id": node_id,
        "version": __version__,
        "sent_at": iso_ms(facts.now_ms),
        "buffer": {
            **{name: counts.get(name, 0) for name in sorted(counts)},
            "current_queued": unsynced(counts),
            "total_capacity": facts.capacity,
            "percent_full": percent_full(counts, facts.capacity),
        },
        "oldest_pending": oldest_pending(facts),
        "circuit_breaker": breaker,
        "alerts": alerts(facts),
        "emulator": {
            "kkt": facts.device.emulator if facts.device is not None else None,
            "ofd": ofd_emulator,
        },
    }


class ErpHeartbeat:
    """POSTs a status snapshot to ``url`` every ``period`` seconds; off when ``url`` is None."""

    def __init__(
        self,
        url: str | None,
        *,
        period: float,
        timeout: float,
        lost_after: float,
        now_ms: Callable[[], int],
    ) -> None:
        self.url = url
        self._period = period
        self._timeout = timeout
        self._lost_after_ms = int(lost_after * 1000)
        self._now_ms = now_ms
        self._started_ms = now_ms()
        self._loop: Periodic | None = None
        self._session: aiohttp.ClientSession | None = None
        self.last_success_ms: int | None = None
        self.last_failure_ms: int | None = None
        self.last_error: str | None = None
        self.beats_ok = 0
        self.beats_failed = 0

    def facts(self) -> ErpFacts | None:
        """The measured state, or ``None`` when no ERP is configured."""
        if self.url is None:
            return None
        return ErpFacts(
            target=self.url,
            started_ms=self._started_ms,
            lost_after_ms=self._lost_after_ms,
            last_success_ms=self.last_success_ms,
            last_failure_ms=self.last_failure_ms,
            last_error=self.last_error,
            beats_ok=self.beats_ok,
            beats_failed=self.beats_failed,
        )

    def start(self, payload: Payload) -> None:
        """Beat now and then every period, in the background (start-up never waits on it)."""
        if self.url is None:
            return
        self._started_ms = self._now_ms()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"User-Agent": f"kkt-adapter/{__version__}"},
        )
        self._loop = Periodic("erp-heartbeat", partial(self._run, payload), period=self._period)
        self._loop.start()
        log.info("ERP heartbeat every %.1f s to %s", self._period, self.url)

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()
            self._loop = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self, payload: Payload) -> None:
        await self.beat(payload)

    async def beat(self, payload: Payload) -> bool:
        """Send one beat; records and returns whether the ERP took it (any 2xx)."""
        assert self._session is not None and self.url is not None
        error: str | None = None
        try:
            body = orjson.dumps(await payload())
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    error = f"HTTP {response.status}"
        except TimeoutError:
            error = f"no answer within {self._timeout} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the loop must survive a failing snapshot too
            log.exception("ERP heartbeat failed")
            error = f"{type(exc).__name__}: {exc}"
        return self._record(error)

    def _record(self, error: str | None) -> bool:
        now = self._now_ms()
        if error is None:
            if self.last_error is not None:
                log.info("ERP heartbeat answered again")
            self.last_success_ms, self.last_error = now, None
            self.beats_ok += 1
            return True
        if self.last_error is None:
            log.warning("ERP heartbeat to %s failed: %s", self.url, error)
        self.last_failure_ms, self.last_error = now, error
        self.beats_failed += 1
        return False
