"""The sync :class:`KktClient` and the async :class:`AsyncKktClient`.

Two thin senders over one description of the API (``calls.py``) and one retry policy
(``retry.py``): each method builds its :class:`~kkt_adapter.client.calls.Call` once and sends
it until it is answered or :func:`~kkt_adapter.client.retry.retry_delay` says to stop, so a
receipt's ``Idempotency-Key`` is the same on every resend. ``sleep`` and ``clock`` are
constructor arguments (tests pass their own); ``transport`` is httpx's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from kkt_adapter.api.answers import (
    AuditPage,
    BufferStatus,
    CashAnswer,
    Cleared,
    DlqPage,
    Health,
    ReceiptAnswer,
    ReceiptPage,
    ReceiptView,
    Requeued,
    ShiftReportPage,
    ShiftReportView,
    ShiftView,
    SyncResult,
)
from kkt_adapter.client import calls
from kkt_adapter.client.calls import A, Call, Money
from kkt_adapter.client.errors import KktError
from kkt_adapter.client.retry import RetryPolicy, retry_delay

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
"""Per request: a print on a slow register takes seconds, a group of them longer."""


def _headers(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


class KktClient:
    """The adapter's API, blocking. Use it as a context manager, or ``close()`` it.

    ``token`` is sent as ``Authorization: Bearer``: the POS token, or the admin token for
    ``sync_now``, ``requeue`` and ``clear_print_failed``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport
        )
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    @property
    def base_url(self) -> str:
        """The adapter's URL this client talks to."""
        return str(self._http.base_url)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[A]) -> A:
        started, retries = self._clock(), 0
        while True:
            try:
                return call.result(self._exchange(call))
            except KktError as error:
                elapsed = self._clock() - started
                delay = retry_delay(
                    self._retry, error, retries=retries, elapsed=elapsed, replayable=call.replayable
                )
                if delay is None:
                    raise
            self._sleep(delay)
            retries += 1

    def _exchange(self, call: Call[A]) -> httpx.Response:
        try:
            return self._http.send(call.request(self._http))
        except httpx.TransportError as exc:
            raise call.unreachable(exc) from exc

    # -- receipts -----------------------------------------------------------------------------

    def create_receipt(
        self, receipt: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> ReceiptAnswer:
        """Fiscalize ``receipt`` (the JSON body as a dict; ``Decimal`` amounts are sent as
        decimal strings). Without ``idempotency_key`` a fresh one is made; every retry sends
        the same, and an error carries it (``KktError.idempotency_key``)."""
        return self._send(calls.create_receipt(receipt, idempotency_key))

    def get_receipt(self, receipt_id: str) -> ReceiptView:
        return self._send(calls.get_receipt(receipt_id))

    def find_receipts(
        self,
        *,
        idempotency_key: str | None = None,
        fn: str | None = None,
        fd: int | None = None,
        shift: int | None = None,
        page: int | None = None,
        limit: int | None = None,
    ) -> ReceiptPage:
        """By the key it was posted with, by ``fn`` and ``fd``, or a ``shift``'s page."""
        return self._send(calls.find_receipts(
            idempotency_key=idempotency_key, fn=fn, fd=fd, shift=shift, page=page, limit=limit
        ))  # fmt: skip

    def receipt_view_url(self, receipt_id: str) -> str:
        """The customer's printable copy (HTML); no request is made."""
        return str(self._http.base_url.join(calls.receipt_view_path(receipt_id)))

    # -- cash and shift -----------------------------------------------------------------------

    def cash_in(
        self, amount: Money, *, cashier: str | None = None, idempotency_key: str | None = None
    ) -> CashAnswer:
        return self._send(calls.cash("in", amount, cashier, idempotency_key))

    def cash_out(
        self, amount: Money, *, cashier: str | None = None, idempotency_key: str | None = None
    ) -> CashAnswer:
        return self._send(calls.cash("out", amount, cashier, idempotency_key))

    def shift(self) -> ShiftView:
        return self._send(calls.get_shift())

    def open_shift(self, *, cashier: str | None = None) -> ShiftReportView:
        return self._send(calls.shift_action("open", cashier))

    def close_shift(self, *, cashier: str | None = None) -> ShiftReportView:
        """Close the shift: its Z report."""
        return self._send(calls.shift_action("close", cashier))

    def x_report(self) -> ShiftReportView:
        return self._send(calls.x_report())

    def closed_shifts(
        self, *, limit: int | None = None, before: int | None = None, fn: str | None = None
    ) -> ShiftReportPage:
        return self._send(calls.closed_shifts(limit, before, fn))

    def z_report(self, shift: int, *, fn: str | None = None) -> ShiftReportView:
        return self._send(calls.z_report(shift, fn))

    # -- buffer, delivery, health -------------------------------------------------------------

    def buffer_status(self) -> BufferStatus:
        return self._send(calls.buffer_status())

    def health(self) -> Health:
        """Also when unhealthy (HTTP 503): ``status`` says so."""
        return self._send(calls.health())

    def sync_now(self) -> SyncResult:
        return self._send(calls.sync_now())

    def buffer_logs(
        self,
        *,
        page: int | None = None,
        limit: int | None = None,
        level: str | None = None,
        since: str | None = None,
        receipt_id: str | None = None,
    ) -> AuditPage:
        return self._send(calls.buffer_logs(page, limit, level, since, receipt_id))

    def dlq(self, *, page: int | None = None, limit: int | None = None) -> DlqPage:
        return self._send(calls.dlq(page, limit))

    def requeue(self, receipt_id: str) -> Requeued:
        return self._send(calls.requeue(receipt_id))

    def clear_print_failed(self) -> Cleared:
        return self._send(calls.clear_print_failed())


class AsyncKktClient:
    """The same API for asyncio: every method of :class:`KktClient`, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport
        )
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    @property
    def base_url(self) -> str:
        """The adapter's URL this client talks to."""
        return str(self._http.base_url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[A]) -> A:
        started, retries = self._clock(), 0
        while True:
            try:
                return call.result(await self._exchange(call))
            except KktError as error:
                elapsed = self._clock() - started
                delay = retry_delay(
                    self._retry, error, retries=retries, elapsed=elapsed, replayable=call.replayable
                )
                if delay is None:
                    raise
            await self._sleep(delay)
            retries += 1

    async def _exchange(self, call: Call[A]) -> httpx.Response:
        try:
            return await self._http.send(call.request(self._http))
        except httpx.TransportError as exc:
            raise call.unreachable(exc) from exc

    # -- receipts -----------------------------------------------------------------------------

    async def create_receipt(
        self, receipt: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> ReceiptAnswer:
        return await self._send(calls.create_receipt(receipt, idempotency_key))

    async def get_receipt(self, receipt_id: str) -> ReceiptView:
        return await self._send(calls.get_receipt(receipt_id))

    async def find_receipts(
        self,
        *,
        idempotency_key: str | None = None,
        fn: str | None = None,
        fd: int | None = None,
        shift: int | None = None,
        page: int | None = None,
        limit: int | None = None,
    ) -> ReceiptPage:
        return await self._send(calls.find_receipts(
            idempotency_key=idempotency_key, fn=fn, fd=fd, shift=shift, page=page, limit=limit
        ))  # fmt: skip

    def receipt_view_url(self, receipt_id: str) -> str:
        return str(self._http.base_url.join(calls.receipt_view_path(receipt_id)))

    # -- cash and shift -----------------------------------------------------------------------

    async def cash_in(
        self, amount: Money, *, cashier: str | None = None, idempotency_key: str | None = None
    ) -> CashAnswer:
        return await self._send(calls.cash("in", amount, cashier, idempotency_key))

    async def cash_out(
        self, amount: Money, *, cashier: str | None = None, idempotency_key: str | None = None
    ) -> CashAnswer:
        return await self._send(calls.cash("out", amount, cashier, idempotency_key))

    async def shift(self) -> ShiftView:
        return await self._send(calls.get_shift())

    async def open_shift(self, *, cashier: str | None = None) -> ShiftReportView:
        return await self._send(calls.shift_action("open", cashier))

    async def close_shift(self, *, cashier: str | None = None) -> ShiftReportView:
        return await self._send(calls.shift_action("close", cashier))

    async def x_report(self) -> ShiftReportView:
        return await self._send(calls.x_report())

    async def closed_shifts(
        self, *, limit: int | None = None, before: int | None = None, fn: str | None = None
    ) -> ShiftReportPage:
        return await self._send(calls.closed_shifts(limit, before, fn))

    async def z_report(self, shift: int, *, fn: str | None = None) -> ShiftReportView:
        return await self._send(calls.z_report(shift, fn))

    # -- buffer, delivery, health -------------------------------------------------------------

    async def buffer_status(self) -> BufferStatus:
        return await self._send(calls.buffer_status())

    async def health(self) -> Health:
        return await self._send(calls.health())

    async def sync_now(self) -> SyncResult:
        return await self._send(calls.sync_now())

    async def buffer_logs(
        self,
        *,
        page: int | None = None,
        limit: int | None = None,
        level: str | None = None,
        since: str | None = None,
        receipt_id: str | None = None,
    ) -> AuditPage:
        return await self._send(calls.buffer_logs(page, limit, level, since, receipt_id))

    async def dlq(self, *, page: int | None = None, limit: int | None = None) -> DlqPage:
        return await self._send(calls.dlq(page, limit))

    async def requeue(self, receipt_id: str) -> Requeued:
        return await self._send(calls.requeue(receipt_id))

    async def clear_print_failed(self) -> Cleared:
        return await self._send(calls.clear_print_failed())
