"""The per-client rate limit (both the FastAPI stack and the intake fast path), in-process."""

from __future__ import annotations

import httpx
import pytest
from helpers import new_key, receipt

from kkt_adapter.api import create_app
from kkt_adapter.settings import Settings

TIGHT = {"rate_limit_per_second": 0.5, "rate_limit_burst": 2}


@pytest.mark.parametrize("settings", [TIGHT], indirect=True)
async def test_rate_limit_answers_429_with_retry_after(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/health")).status_code == 200
    sold = await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
    assert sold.status_code == 200
    for limited in (
        await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key()),  # fast path
        await api.get("/v1/kkt/buffer/status"),  # FastAPI stack
    ):
        assert limited.status_code == 429, limited.text
        assert limited.headers["Retry-After"] == "2"  # one token at 0.5/s
        body = limited.json()
        assert body["code"] == "rate_limited"
        assert body["request_id"] == limited.headers["X-Request-ID"]
        assert body["details"] == {"limit_per_second": 0.5}
    status = await api.app.state.runtime.buffer.counts()  # type: ignore[attr-defined]
    assert status["total"] == 1  # the refused receipt never reached intake


@pytest.mark.parametrize("settings", [TIGHT], indirect=True)
async def test_rate_limit_is_per_client_address(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://localhost")

        async with client("10.0.0.1") as first, client("10.0.0.2") as second:
            codes = [(await first.get("/v1/health")).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            assert (await second.get("/v1/health")).status_code == 200


@pytest.mark.parametrize("settings", [{"rate_limit_per_second": 0, "rate_limit_burst": 1}],
                         indirect=True)  # fmt: skip
async def test_rate_limit_zero_turns_it_off(api: httpx.AsyncClient) -> None:
    codes = {(await api.get("/v1/health")).status_code for _ in range(20)}
    assert codes == {200}


async def test_openapi_documents_429_and_the_bearer_scheme(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    sync = schema["paths"]["/v1/kkt/buffer/sync"]["post"]
    assert {"401", "403", "429"} <= sync["responses"].keys()
    assert sync["security"] == [{"bearer": []}]
    health = schema["paths"]["/v1/health"]["get"]
    assert {"421", "429"} <= health["responses"].keys() and "401" not in health["responses"]
    assert "security" not in health
