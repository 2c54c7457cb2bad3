"""Retention in the running app: the housekeeping sweep prunes synced, confirmed receipts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from helpers import new_key, receipt

from kkt_adapter.api import create_app
from kkt_adapter.buffer.retention import DAY_MS
from kkt_adapter.settings import Settings


class Wall:
    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.ms


async def test_sweep_prunes_synced_receipts_after_retention_and_keeps_counters(
    tmp_path: Path,
) -> None:
    wall = Wall()
    settings = Settings(data_dir=tmp_path / "data", retention_sweep_seconds=0.05)
    app = create_app(settings, wall_ms=wall)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://a") as api,
    ):
        key = new_key()
        created = (await api.post("/v1/kkt/receipt", json=receipt(), headers=key)).json()
        rid = created["receipt_id"]
        assert (await api.post("/v1/kkt/buffer/sync")).status_code == 200
        runtime = app.state.runtime
        for _ in range(100):  # the KKT is told after the pass
            if not await runtime.outbox.unconfirmed_fds():
                break
            await asyncio.sleep(0.05)
        row = (await api.get(f"/v1/kkt/receipt/{rid}")).json()
        assert row["status"] == "synced"
        await asyncio.sleep(0.3)  # sweeps run: nothing is old enough yet
        assert (await api.get(f"/v1/kkt/receipt/{rid}")).status_code == 200
        wall.ms += 8 * DAY_MS
        for _ in range(100):
            if (await api.get(f"/v1/kkt/receipt/{rid}")).status_code == 404:
                break
            await asyncio.sleep(0.05)
        assert (await api.get(f"/v1/kkt/receipt/{rid}")).status_code == 404
        status = (await api.get("/v1/kkt/buffer/status")).json()
        assert status["total"] == 0 and status["synced"] == 0
        logs = (await api.get("/v1/kkt/buffer/logs", params={"receipt_id": rid})).json()
        assert logs["items"] == []  # its events went with it
