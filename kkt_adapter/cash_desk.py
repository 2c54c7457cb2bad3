"""Cash in and out (внесение / выплата), two-phase like receipt intake:

    endpoint -> CashDesk.operate -> buffer (accepted) -> KKT -> buffer (done) -> answer

The operation is committed ``accepted`` under its idempotency key before the KKT is asked,
and its id travels to the KKT. A retry that finds it still ``accepted`` (the process died, or
the answer was lost, between the KKT's act and the record) asks the KKT by that id rather than
doing it again: found, it is recorded; not done, it is done now; a KKT that cannot tell (an
ATOL register: ``CashOutcomeUnknown``) gets no second try: 409, and the X report shows
whether the cash moved.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any

from kkt_adapter.buffer import Buffer
from kkt_adapter.buffer.cash import CashStart, NewCash
from kkt_adapter.device.base import CashResult
from kkt_adapter.device.runner import DeviceRunner
from kkt_adapter.domain.money import Kopecks, format_money
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.errors import DeviceAnswerError, DeviceError, InsufficientCash, RequestInProgress
from kkt_adapter.service import Intake, new_receipt_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CashRequest:
    """A validated cash in or out."""

    kind: CashKind
    amount: Kopecks
    cashier: str | None

    def fingerprint(self) -> str:
        """Same request, same fingerprint: a replay under its key returns the stored answer."""
        text = f"{self.kind.value}\n{self.amount}\n{self.cashier or ''}"
        return hashlib.sha256(text.encode()).hexdigest()


def cash_answer(result: CashResult) -> dict[str, Any]:
    """The POS's answer (money formatted like every amount: "500.00")."""
    return {
        "operation_id": result.operation_id,
        "kind": result.kind.value,
        "amount": format_money(result.amount),
        "shift": result.shift,
        "number": result.number,
        "at": result.at.isoformat(),
        "drawer_cash": format_money(result.drawer_cash),
    }


class CashDesk:
    """Cash in and out, durable before the KKT acts and never done twice."""

    def __init__(self, buffer: Buffer, device: DeviceRunner) -> None:
        self._buffer = buffer
        self._device = device
        self._inflight: set[str] = set()  # keys with a request running in this process

    async def operate(self, key: str, request: CashRequest) -> Intake:
        """Do ``request`` once under ``key``; its answer (the stored one on a replay,
        ``replayed`` then, as a receipt's replay is)."""
        if key in self._inflight:
            raise RequestInProgress(
                "a request with this Idempotency-Key is still being processed", retry_after=1
            )
        self._inflight.add(key)
        try:
            new = NewCash(
                new_receipt_id(self._buffer.now_ms()),
                key,
                request.fingerprint(),
                request.kind,
                request.amount,
                request.cashier,
            )
            start = await self._buffer.cash.begin(new)
            if start.replay is not None:
                return Intake(start.replay, replayed=True)
            if start.leftover:
                found = await self._settle(start)
                if found is not None:  # the same body (fingerprint): its kind and amount
                    found = replace(found, kind=request.kind, amount=request.amount)
                    return Intake(await self._record(start.operation_id, found), replayed=False)
            return Intake(await self._do(start.operation_id, request), replayed=False)
        finally:
            self._inflight.discard(key)

    async def settle_leftovers(self, idle_before_ms: int) -> int:
        """Settle operations left ``accepted`` before ``idle_before_ms`` that nobody retried
        (housekeeping): done on the KKT, recorded ``done`` (a retry replays it); not done,
        ``failed`` (a retry does it then); a KKT that cannot tell, left for a retry or the
        next sweep. Returns how many were settled."""
        settled = 0
        for left in await self._buffer.cash.leftovers(idle_before_ms):
            if left.idempotency_key in self._inflight:
                continue
            if left.owner != self._buffer.owner and self._buffer.owner_alive(left.owner):
                continue  # another live process runs it and settles it itself
            try:
                found = await self._device.find_cash_operation(left.operation_id)
            except Exception as unknown:  # the KKT cannot tell now: the next sweep asks again
                log.warning("cash operation %s left unsettled: %s", left.operation_id, unknown)
                continue
            if found is None:
                await self._buffer.cash.failed(left.operation_id, "not_done")
            else:
                log.warning("cash operation %s was done but not recorded: recorded from the KKT",
                            left.operation_id)  # fmt: skip
                done = replace(found, kind=left.kind, amount=left.amount)
                await self._record(left.operation_id, done)
            settled += 1
        return settled

    async def _settle(self, start: CashStart) -> CashResult | None:
        """A left-over operation: what the KKT did under its id (``None``: nothing)."""
        if start.owner != self._buffer.owner and self._buffer.owner_alive(start.owner):
            raise RequestInProgress(
                "another adapter process is running this cash operation",
                details={"operation_id": start.operation_id},
                retry_after=1,
            )
        found = await self._device.find_cash_operation(start.operation_id)
        if found is not None:
            log.warning("cash operation %s was done but not recorded: recorded from the KKT",
                        start.operation_id)  # fmt: skip
        return found

    async def _do(self, operation_id: str, request: CashRequest) -> dict[str, Any]:
        try:
            result = await self._device.cash_operation(
                operation_id, request.kind, request.amount, request.cashier
            )
        except DeviceAnswerError:
            result = await self._after_failure(operation_id, request)
        except InsufficientCash:
            await self._buffer.cash.failed(operation_id, "insufficient_cash")
            raise
        except DeviceError as refused:
            await self._buffer.cash.failed(operation_id, refused.reason)
            raise
        except Exception:
            log.exception("device failure during cash operation %s", operation_id)
            result = await self._after_failure(operation_id, request)
        return await self._record(operation_id, result)

    async def _after_failure(self, operation_id: str, request: CashRequest) -> CashResult:
        """The KKT failed mid-operation: ask it whether it was done (never guess)."""
        try:
            found = await self._device.find_cash_operation(operation_id)
        except Exception as lookup:  # left ``accepted``: a retry with the key settles it
            raise DeviceError(
                f"cash operation {operation_id}: the KKT's outcome is unknown and it cannot be"
                f" asked now ({lookup}); retry with the same Idempotency-Key",
                reason="outcome_unknown",
            ) from None
        if found is None:
            await self._buffer.cash.failed(operation_id, "device_error")
            raise DeviceError(f"the KKT failed the cash operation {operation_id}",
                              reason="device_error")  # fmt: skip
        return replace(found, kind=request.kind, amount=request.amount)

    async def _record(self, operation_id: str, result: CashResult) -> dict[str, Any]:
        answer = cash_answer(result)
        await self._buffer.cash.done(operation_id, result.shift, answer)
        return answer
