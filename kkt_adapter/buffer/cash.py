"""Cash in and out in the buffer: each operation is committed ``accepted`` under its
idempotency key before the KKT is asked, then ``done`` with the answer kept for replays, or
``failed`` when the KKT refused (a retry under the key tries again).

An operation found ``accepted`` by a retry was left by a request whose outcome was not
recorded (a crash, a lost answer): the caller asks the KKT by the operation id rather than
doing it again (``kkt_adapter.cash_desk``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.errors import IdempotencyKeyReused
from kkt_adapter.hlc import WallClock
from kkt_adapter.sqlite import Database

ACCEPTED, DONE, FAILED = "accepted", "done", "failed"


@dataclass(frozen=True)
class NewCash:
    """A validated cash operation about to be recorded."""

    operation_id: str
    idempotency_key: str
    fingerprint: str
    kind: CashKind
    amount: Kopecks
    cashier: str | None


@dataclass(frozen=True)
class CashStart:
    """What to do for a key: replay ``replay``; or run ``operation_id`` (``leftover``: it was
    found ``accepted``, left by ``owner``, so the KKT may have done it already)."""

    operation_id: str
    replay: dict[str, Any] | None = None
    leftover: bool = False
    owner: str | None = None


@dataclass(frozen=True)
class CashLeftover:
    """An operation left ``accepted``: its outcome was never recorded."""

    operation_id: str
    idempotency_key: str
    kind: CashKind
    amount: Kopecks
    owner: str | None


LEFTOVERS_PER_SWEEP = 100
"""Leftovers settled per sweep at most: each asks the KKT once; a crash leaves one or two."""


class CashBook:
    """The buffer's cash operations (``Buffer.cash``)."""

    def __init__(self, db: Database, wall: WallClock, owner: Callable[[], str]) -> None:
        self._db = db
        self._wall = wall
        self._owner = owner

    async def begin(self, new: NewCash) -> CashStart:
        """Record ``new`` as ``accepted``, or resolve its key: a replay, a retry of a failed
        or left-over operation, or a different body (``IdempotencyKeyReused``)."""
        return await self._db.write(lambda conn: self._begin_tx(conn, new))

    def _begin_tx(self, conn: sqlite3.Connection, new: NewCash) -> CashStart:
        now = self._wall()
        row = conn.execute(
            "SELECT id, fingerprint, status, owner, response FROM cash_operations"
            " WHERE idempotency_key = ?",
            (new.idempotency_key,),
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO cash_operations (id, idempotency_key, fingerprint, kind, amount,"
                " cashier, status, owner, created_ms, updated_ms)"
                f" VALUES (?, ?, ?, ?, ?, ?, '{ACCEPTED}', ?, ?, ?)",
                (
                    new.operation_id,
                    new.idempotency_key,
                    new.fingerprint,
                    new.kind.value,
                    new.amount,
                    new.cashier,
                    self._owner(),
                    now,
                    now,
                ),
            )
            return CashStart(new.operation_id)
        if row["fingerprint"] != new.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different cash operation",
                details={"operation_id": row["id"]},
            )
        if row["status"] == DONE:
            replay: dict[str, Any] = json.loads(row["response"])
            return CashStart(row["id"], replay=replay)
        if row["status"] == FAILED:
            conn.execute(
                f"UPDATE cash_operations SET status = '{ACCEPTED}', owner = ?, updated_ms = ?"
                " WHERE id = ?",
                (self._owner(), now, row["id"]),
            )
            return CashStart(row["id"])
        return CashStart(row["id"], leftover=True, owner=row["owner"])

    async def leftovers(self, idle_before_ms: int) -> list[CashLeftover]:
        """Operations ``accepted`` and untouched since ``idle_before_ms``, oldest first."""

        def read(conn: sqlite3.Connection) -> list[CashLeftover]:
            rows = conn.execute(
                "SELECT id, idempotency_key, kind, amount, owner FROM cash_operations"
                f" WHERE status = '{ACCEPTED}' AND updated_ms < ? ORDER BY created_ms LIMIT ?",
                (idle_before_ms, LEFTOVERS_PER_SWEEP),
            ).fetchall()
            return [
                CashLeftover(r["id"], r["idempotency_key"], CashKind(r["kind"]),
                             Kopecks(r["amount"]), r["owner"])
                for r in rows
            ]  # fmt: skip

        return await self._db.read(read)

    async def done(self, operation_id: str, shift: int, answer: dict[str, Any]) -> None:
        """The KKT did it: ``done``, with the answer kept for replays."""
        await self._db.write(
            lambda conn: conn.execute(
                f"UPDATE cash_operations SET status = '{DONE}', shift = ?, response = ?,"
                " last_error = NULL, updated_ms = ? WHERE id = ?",
                (shift, orjson.dumps(answer).decode(), self._wall(), operation_id),
            )
        )

    async def failed(self, operation_id: str, reason: str) -> None:
        """The KKT refused it (nothing was done): ``failed``; the key may be retried."""
        await self._db.write(
            lambda conn: conn.execute(
                f"UPDATE cash_operations SET status = '{FAILED}', last_error = ?,"
                " updated_ms = ? WHERE id = ?",
                (reason, self._wall(), operation_id),
            )
        )
