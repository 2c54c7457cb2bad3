"""Retention in the running app: the housekeeping sweep prunes synced, confirmed receipts."""

from __future__ import annotations

from pathlib import Path

import httpx
from fakes import Wall
from helpers import eventually, new_key, receipt

from kkt_adapter.api import create_app
from kkt_adapter.buffer.retention import DAY_MS
from kkt_adapter.housekeeping import SweepResult
from kkt_adapter.settings import Settings


async def test_sweep_prunes_synced_receipts_after_retention_and_keeps_counters(
    tmp_path: Path,
) -> None:
    wall = Wall()
    settings = Settings(data_dir=tmp_path / "data", retention_sweep_seconds=0.05)
    app = create_app(settings, wall_ms=wall)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as api,
    ):
        key = new_key()
        created = (await api.post("/v1/kkt/receipt", json=receipt(), headers=key)).json()
        rid = created["receipt_id"]
        assert (await api.post("/v1/kkt/buffer/sync")).status_code == 200
        runtime = app.state.runtime

        async def synced_and_confirmed() -> bool:
            # The background worker may hold the receipt, and the KKT is told after the pass.
            row = (await api.get(f"/v1/kkt/receipt/{rid}")).json()
            return row["status"] == "synced" and not await runtime.buffer.outbox.unconfirmed_fds()

        await eventually(synced_and_confirmed, bool, what="synced and confirmed to the KKT")
        # Prunable but not old enough yet: a sweep now prunes nothing.
        assert await runtime.housekeeper.sweep() == SweepResult(pruned=0, settled=0)
        assert (await api.get(f"/v1/kkt/receipt/{rid}")).status_code == 200
        wall.ms += 8 * DAY_MS

        async def receipt_status() -> int:
            return (await api.get(f"/v1/kkt/receipt/{rid}")).status_code

        # The background sweep (every 0.05 s) prunes it once the clock is past retention.
        await eventually(receipt_status, lambda code: code == 404, what="the receipt pruned")
        status = (await api.get("/v1/kkt/buffer/status")).json()
        assert status["total"] == 0 and status["synced"] == 0
        logs = (await api.get("/v1/kkt/buffer/logs", params={"receipt_id": rid})).json()
        assert logs["items"] == []  # its events went with it
