"""Receipt bodies, and the adapter app in-process, shared by the test suites."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx

from kkt_adapter.api import create_app
from kkt_adapter.runtime import build_device
from kkt_adapter.settings import Settings

T = TypeVar("T")

SAMPLE_RECEIPT: dict[str, Any] = {
    "pos_id": "POS-001",
    "type": "sale",
    "items": [
        {
            "name": "Frame Ray-Ban RB5154",
            "price": "7990.00",
            "quantity": "1",
            "vat": "vat22",
            "subject": "goods",
            "payment_method": "full_payment",
            "sku": "RB5154-2000",
            "mark_code": None,
        }
    ],
    "payments": [{"method": "card", "amount": "7990.00"}],
    "customer": {"email": "buyer@example.com"},
    "cashier": {"name": "Ivanova A.", "inn": None},
}


def receipt(**changes: Any) -> dict[str, Any]:
    """A valid receipt body, with top-level fields replaced by ``changes``."""
    body = copy.deepcopy(SAMPLE_RECEIPT)
    body.update(changes)
    return body


def priced_receipt(kopecks: int, pos_id: str = "POS-001") -> dict[str, Any]:
    """A one-item receipt for ``kopecks``, paid in cash."""
    amount = f"{kopecks // 100}.{kopecks % 100:02d}"
    return receipt(
        pos_id=pos_id,
        items=[{"name": "Lens cloth", "price": amount, "quantity": "1", "vat": "vat22"}],
        payments=[{"method": "cash", "amount": amount}],
    )


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def fiscalized(buffer: Any, n: int) -> str:
    """Put receipt ``R{n:04d}`` in ``buffer`` as printed (``pending``), FD ``n``; its id."""
    from datetime import datetime

    from fakes import begin_intake

    from kkt_adapter.buffer import NewReceipt
    from kkt_adapter.domain.fiscal import FiscalResult

    rid = f"R{n:04d}"
    doc = {"1192": rid}
    await begin_intake(buffer, NewReceipt(rid, f"k{n}", "f", "POS", "sale", 100, {}, doc))
    result = FiscalResult(
        rid, "9999000000000001", n, "0000000001", 1, n,
        datetime.fromisoformat("2026-11-24T13:38:00+03:00"), "qr", doc,
    )  # fmt: skip
    await buffer.record_fiscal(rid, result, lambda: {})
    return rid


@contextlib.asynccontextmanager
async def adapter(
    settings: Settings, device: Any = build_device
) -> AsyncIterator[httpx.AsyncClient]:
    """The adapter app in-process with a device factory of the test's choosing."""
    app = create_app(settings, device_factory=device)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def eventually(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = 10.0,
    what: str = "condition",
) -> T:
    """Await ``fetch()`` until ``done`` holds for its value (returned), or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what} ({value})"
        await asyncio.sleep(0.01)
