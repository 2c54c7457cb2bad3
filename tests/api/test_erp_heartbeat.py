"""The ERP heartbeat against small HTTP servers started by the test: one that records the
beats, one that refuses them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import free_port
from helpers import eventually

from kkt_adapter import __version__
from kkt_adapter.api import create_app
from kkt_adapter.settings import Settings


class ErpServer:
    """An aiohttp app on a free port: records every beat, answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.beats: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/erp/heartbeat"
        self._runner: web.AppRunner | None = None

    async def _beat(self, request: web.Request) -> web.Response:
        self.beats.append(await request.json())
        return web.json_response({"ok": self.status < 300}, status=self.status)

    async def start(self) -> ErpServer:
        app = web.Application()
        app.router.add_post("/erp/heartbeat", self._beat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def erp_server() -> AsyncIterator[Callable[..., Any]]:
    servers: list[ErpServer] = []

    async def start(status: int = 200) -> ErpServer:
        server = await ErpServer(status).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def adapter_for(settings: Settings) -> tuple[Any, httpx.AsyncClient]:
    app = create_app(settings)
    return app, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    )


async def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()``'s first truthy value; fails at ``timeout``."""
    return await eventually(check, bool, timeout=timeout, what=what)


async def test_heartbeat_reaches_the_erp_and_health_says_ok(
    erp_server: Callable[..., Any], tmp_path: Any
) -> None:
    erp = await erp_server()
    settings = Settings(
        data_dir=tmp_path / "data", erp_url=erp.url, erp_heartbeat_seconds=0.1, node_id="shop-7"
    )
    app, client = await adapter_for(settings)
    async with app.router.lifespan_context(app), client:
        answer = await client.post(
            "/v1/kkt/receipt",
            headers={"Idempotency-Key": "k1"},
            json={
                "pos_id": "POS-1",
                "type": "sale",
                "items": [{"name": "Cloth", "price": "10.00", "quantity": "1", "vat": "vat22"}],
                "payments": [{"method": "cash", "amount": "10.00"}],
            },
        )
        assert answer.status_code == 200

        async def two_beats_after_the_receipt_synced() -> bool:
            return sum(1 for b in erp.beats if b["buffer"]["synced"] == 1) >= 2

        await wait_for(two_beats_after_the_receipt_synced, 5, "beats")

        async def erp_ok() -> dict[str, Any] | None:
            erp_part = (await client.get("/v1/health")).json()["components"]["erp"]
            return erp_part if erp_part["status"] == "ok" else None

        component = await wait_for(erp_ok, 5, "erp ok")
    assert component["last_success_at"] is not None
    assert component["target"] == erp.url and component["beats_ok"] >= 2
    beat = erp.beats[-1]
    assert beat["node_id"] == "shop-7"
    assert beat["version"] == __version__
    assert beat["emulator"] == {"kkt": True, "ofd": True}
    assert beat["circuit_breaker"] == "CLOSED"  # the embedded OFD took the receipt
    assert beat["buffer"]["total"] == 1 and beat["buffer"]["total_capacity"] == 50_000
    assert beat["buffer"]["synced"] == 1 and beat["buffer"]["current_queued"] == 0
    assert beat["oldest_pending"] is None  # nothing left unsent
    assert beat["alerts"] == []  # the ERP answers and nothing is queued


@pytest.mark.parametrize("refusal", ["http_503", "connection_refused"])
async def test_failed_beats_warn_then_lose_the_erp(
    erp_server: Callable[..., Any], tmp_path: Any, refusal: str
) -> None:
    if refusal == "http_503":
        erp = await erp_server(status=503)
        url = erp.url
    else:
        url = f"http://127.0.0.1:{free_port()}/erp/heartbeat"  # nobody listens
    settings = Settings(
        data_dir=tmp_path / "data",
        erp_url=url,
        erp_heartbeat_seconds=0.1,
        erp_timeout_seconds=1,
        erp_lost_seconds=1.0,
    )
    app, client = await adapter_for(settings)
    async with app.router.lifespan_context(app), client:

        async def erp_state(wanted: str) -> dict[str, Any] | None:
            health = (await client.get("/v1/health")).json()
            part = health["components"]["erp"]
            return health if part["status"] == wanted and part["beats_failed"] else None

        warned = await wait_for(lambda: erp_state("warning"), 5, "erp warning")
        assert warned["status"] == "degraded"
        error = warned["components"]["erp"]["last_error"]
        if refusal == "http_503":
            assert error == "HTTP 503"
        else:  # aiohttp's error for a refused connection, as kkt_adapter.erp words it
            assert error.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1:")
        lost = await wait_for(lambda: erp_state("error"), 5, "erp error")
        assert lost["components"]["erp"]["last_success_at"] is None
        failed = lost["components"]["erp"]["beats_failed"]
        assert failed >= 2
        status = (await client.get("/v1/kkt/buffer/status")).json()
    codes = [alert["code"] for alert in status["alerts"]]
    assert "erp_heartbeat_lost" in codes
    if refusal == "http_503":
        assert len(erp.beats) >= failed  # the beats did arrive; the ERP refused them


async def test_erp_recovers_from_lost_to_ok(erp_server: Callable[..., Any], tmp_path: Any) -> None:
    erp = await erp_server(status=500)
    settings = Settings(
        data_dir=tmp_path / "data", erp_url=erp.url, erp_heartbeat_seconds=0.1, erp_lost_seconds=0.5
    )
    app, client = await adapter_for(settings)
    async with app.router.lifespan_context(app), client:

        async def erp_status() -> str:
            return str((await client.get("/v1/health")).json()["components"]["erp"]["status"])

        async def is_(wanted: str) -> bool:
            return await erp_status() == wanted

        await wait_for(lambda: is_("error"), 5, "erp error")
        erp.status = 200
        await wait_for(lambda: is_("ok"), 5, "erp ok again")
        status = (await client.get("/v1/kkt/buffer/status")).json()
    assert "erp_heartbeat_lost" not in [alert["code"] for alert in status["alerts"]]


async def test_erp_not_configured(api: httpx.AsyncClient) -> None:
    health = (await api.get("/v1/health")).json()
    assert health["components"]["erp"] == {"status": "not_configured"}
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert "erp_heartbeat_lost" not in [alert["code"] for alert in status["alerts"]]
