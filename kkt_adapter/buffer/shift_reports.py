"""Z reports of closed shifts, kept as the KKT gave them and read back by (FN, shift); and a
shift's fiscalized receipts as documents (the figures a register does not count itself).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from kkt_adapter.sqlite import Database


class ShiftReports:
    """The buffer's kept Z reports (``Buffer.shift_reports``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def keep(self, fn: str, shift: int, fd: int, closed_ms: int, report: Any) -> None:
        """Keep a closed shift's Z report (``report``: JSON-able); a second close of the same
        (FN, shift) cannot happen, and a repeat keeps the first."""
        data = orjson.dumps(report).decode()
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO shift_reports (fn, shift, fd, closed_ms, report)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (fn, shift) DO NOTHING",
                (fn, shift, fd, closed_ms, data),
            )
        )

    async def page(self, *, fn: str | None, before: int | None, limit: int) -> list[Any]:
        """Kept Z reports, newest first: of FN ``fn`` if given, of shifts numbered below
        ``before`` if given, at most ``limit``."""

        def read(conn: sqlite3.Connection) -> list[Any]:
            where: list[str] = ["1"]
            params: list[Any] = []
            if fn is not None:
                where.append("fn = ?")
                params.append(fn)
            if before is not None:
                where.append("shift < ?")
                params.append(before)
            rows = conn.execute(
                f"SELECT report FROM shift_reports WHERE {' AND '.join(where)}"
                " ORDER BY closed_ms DESC, shift DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [orjson.loads(row[0]) for row in rows]

        return await self._db.read(read)

    async def get(self, shift: int, fn: str | None) -> Any | None:
        """The kept Z report of ``shift`` (of FN ``fn``; else the newest with that number)."""

        def read(conn: sqlite3.Connection) -> Any | None:
            sql = "SELECT report FROM shift_reports WHERE shift = ?"
            params: tuple[Any, ...] = (shift,)
            if fn is not None:
                sql += " AND fn = ?"
                params += (fn,)
            row = conn.execute(sql + " ORDER BY closed_ms DESC LIMIT 1", params).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._db.read(read)

    async def shift_documents(self, fn: str, shift: int) -> list[dict[str, Any]]:
        """The fiscal documents of shift ``shift`` of FN ``fn`` the buffer holds, in
        number-in-shift order (receipts pruned by retention are missing)."""

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT document FROM receipts INDEXED BY receipts_shift"
                " WHERE shift = ? AND fn = ? AND fd IS NOT NULL ORDER BY number_in_shift",
                (shift, fn),
            ).fetchall()
            return [orjson.loads(row[0]) for row in rows]

        return await self._db.read(read)
