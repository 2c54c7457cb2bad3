"""A log line written while a request is served carries that request's id."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from helpers import new_key, priced_receipt

from kkt_adapter.logs import JsonFormatter


@pytest.mark.parametrize("settings", [{"buffer_capacity": 1}], indirect=True)
async def test_log_lines_in_a_request_carry_its_request_id(api: httpx.AsyncClient) -> None:
    await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})  # keep it unsent
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kkt_adapter.http_errors")  # where refusals are logged
    logger.addHandler(handler)
    try:
        await api.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key())
        full = await api.post(
            "/v1/kkt/receipt",
            json=priced_receipt(200),
            headers={**new_key(), "X-Request-ID": "req-full-1"},
        )
    finally:
        logger.removeHandler(handler)
    assert full.status_code == 503 and full.json()["code"] == "buffer_full"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(
        line["request_id"] == "req-full-1" and "buffer_full" in line["message"] for line in lines
    )
