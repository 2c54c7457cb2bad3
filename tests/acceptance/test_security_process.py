"""The real ``serve``: the binding rule, JSON log lines on stderr, tokens over TCP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Process, adapter_env, free_port, kkt_adapter_command
from helpers import new_key, receipt

pytestmark = pytest.mark.acceptance

TOKEN = "acceptance-token-0123456789"


def test_serve_on_a_network_address_without_tokens_exits_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [*kkt_adapter_command(), "serve", "--host", "0.0.0.0", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        env=adapter_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2
    reason = run.stderr.strip()
    assert "\n" not in reason and "0.0.0.0" in reason and "--insecure" in reason
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_logs_are_json_lines_and_the_listening_line_stays_plain(
    start_adapter: Callable[..., Process],
) -> None:
    adapter = start_adapter(env={"KKT_API_TOKEN": TOKEN})
    with adapter.client() as http:
        assert http.post("/v1/kkt/receipt", json=receipt(), headers=new_key()).status_code == 401
        sold = http.post(
            "/v1/kkt/receipt",
            json=receipt(),
            headers={**new_key(), "Authorization": f"Bearer {TOKEN}"},
        )
        assert sold.status_code == 200
        assert http.get("/v1/health").status_code == 200
    assert adapter.terminate() == 0
    lines = adapter.output().splitlines()
    listening = [line for line in lines if " listening on " in line]
    assert listening == [f"kkt-adapter listening on {adapter.url}"]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    messages = [r["message"] for r in records if r["logger"] == "kkt_adapter"]
    assert len([m for m in messages if m.startswith("KKT: EMULATOR (")]) == 1  # the KKT's line
    assert len([m for m in messages if m.startswith("OFD: EMULATOR, in-process")]) == 1
    assert messages[-1] == "stopped cleanly"
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's lines too
    others = [line for line in lines if not line.startswith("{") and line not in listening]
    assert others == [], others


def test_no_token_warning_at_start(start_adapter: Callable[..., Process]) -> None:
    adapter = start_adapter()
    assert adapter.terminate() == 0
    assert "no KKT_API_TOKEN or KKT_ADMIN_TOKEN set" in adapter.output()
    assert "(loopback only)" in adapter.output()


def test_an_open_api_answers_only_to_loopback_host_names(
    start_adapter: Callable[..., Process],
) -> None:
    adapter = start_adapter()  # no token: what a DNS-rebinding page could otherwise reach
    with adapter.client() as http:
        rebound = http.get("/v1/kkt/buffer/status", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 421 and rebound.json()["code"] == "host_not_allowed"
        sold = http.post(
            "/v1/kkt/receipt", json=receipt(), headers={**new_key(), "Host": "evil.example"}
        )
        assert sold.status_code == 421 and sold.json()["code"] == "host_not_allowed"
        assert http.get("/v1/kkt/buffer/status").json()["total"] == 0
        local = http.get(
            "/v1/health", headers={"Host": f"localhost:{adapter.url.rsplit(':', 1)[1]}"}
        )
        assert local.status_code == 200
