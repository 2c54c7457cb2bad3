"""Every connection that writes to the buffer, the KKT emulator's state or the OFD emulator's
store does so in WAL mode with ``synchronous=FULL`` (promise I1). ``kill -9`` cannot tell
``synchronous=OFF`` from ``FULL`` (the page cache survives a killed process, not a power
loss), so the settings themselves are asserted, on every write of a running adapter."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from helpers import adapter, eventually, new_key, priced_receipt

from kkt_adapter.settings import Settings

WRITES = ("BEGIN", "COMMIT", "INSERT", "UPDATE", "DELETE")


class Recorded(sqlite3.Connection):
    """A connection that notes its durability settings whenever it begins or commits a
    transaction or writes outside one."""

    seen: list[tuple[str, str, int]]

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith(WRITES):
            self.seen.append(self.settings())
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.seen.append(self.settings())
        return super().executemany(sql, *args)

    def settings(self) -> tuple[str, str, int]:
        path = super().execute("PRAGMA database_list").fetchone()[2]
        journal = super().execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = super().execute("PRAGMA synchronous").fetchone()[0]
        return Path(path).name, str(journal).lower(), int(synchronous)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    """The (file, journal mode, synchronous) of every write through ``sqlite3.connect``."""
    seen: list[tuple[str, str, int]] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **{**kwargs, "factory": Recorded})
        conn.seen = seen  # type: ignore[attr-defined]
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return seen


async def test_every_write_is_in_wal_mode_with_synchronous_full(
    recorded: list[tuple[str, str, int]], settings: Settings
) -> None:
    async with adapter(settings) as api:
        for kopecks in (100, 200, 300):
            sold = await api.post(
                "/v1/kkt/receipt", json=priced_receipt(kopecks), headers=new_key()
            )
            assert sold.status_code == 200, sold.text
        await eventually(
            lambda: api.get("/v1/kkt/buffer/status"),
            lambda answer: answer.json()["synced"] == 3,
            what="3 receipts delivered to the embedded OFD emulator",
        )
        assert (await api.post("/v1/kkt/shift/close")).status_code == 200
        assert (await api.get("/v1/kkt/buffer/logs")).status_code == 200
    files = {name for name, _, _ in recorded}
    assert files == {"buffer.sqlite", "kkt-emulator.sqlite", "mock-ofd.sqlite"}
    wrong = sorted({entry for entry in recorded if entry[1:] != ("wal", 2)})
    assert wrong == [], "writes without WAL and synchronous=FULL (2)"
