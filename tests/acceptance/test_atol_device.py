"""``kkt-adapter serve --device atol-web`` against ``kkt-adapter mock-atol`` (the ATOL web-server
emulator) and ``kkt-adapter mock-ofd``: the register fiscalizes, its own FN delivers to the
OFD (delivery ``device``), and the adapter watches the FN's exchange status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos import ofd_documents
from conftest import Process, free_port, wait_until
from helpers import new_key, priced_receipt, receipt
from test_backup_integrity import run_command

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]
FAST = {"KKT_DELIVERY_SWEEP_SECONDS": "0.1"}


def status(http: httpx.Client) -> dict[str, Any]:
    answer: dict[str, Any] = http.get("/v1/kkt/buffer/status").json()
    return answer


def test_sales_through_an_atol_register_reach_the_ofd_through_its_fn(
    start_adapter: Start, start_mock_atol: Start, start_mock_ofd: Start
) -> None:
    ofd = start_mock_ofd()
    atol = start_mock_atol(ofd_url=ofd.url)
    env = {"KKT_DEVICE": "atol-web", "KKT_ATOL_URL": atol.url, "KKT_ATOL_TAXATION_TYPE": "osn",
           **FAST}  # fmt: skip
    adapter = start_adapter(env=env)
    with adapter.client() as http, httpx.Client(base_url=atol.url) as control:
        opened = http.post("/v1/kkt/shift/open", json={"cashier": "Иванова"})
        assert opened.status_code == 200, opened.text
        sold = http.post("/v1/kkt/receipt", json=priced_receipt(9990), headers=new_key())
        assert sold.status_code == 200, sold.text
        refund = http.post("/v1/kkt/receipt", json=receipt(type="refund"), headers=new_key())
        assert refund.status_code == 200, refund.text
        assert refund.json()["fiscal"]["fd"] == sold.json()["fiscal"]["fd"] + 1

        key, body = new_key(), priced_receipt(500)
        control.post("/_control/fault", json={"fault": "out_of_paper"})
        refused = http.post("/v1/kkt/receipt", json=body, headers=key)
        assert refused.status_code == 503, refused.text
        assert refused.json()["details"]["reason"] == "out_of_paper"
        control.post("/_control/fault", json={"fault": "out_of_paper", "on": False})
        retried = http.post("/v1/kkt/receipt", json=body, headers=key)  # a new task prints it
        assert retried.status_code == 200, retried.text

        done = wait_until(
            lambda: (s := status(http))["synced"] == 3 and s, timeout=30, what="3 synced"
        )
        assert done["delivery"] == "device" and done["circuit_breaker"] == "not_used"
        x = http.post("/v1/kkt/x_report")
        assert x.status_code == 200, x.text
        closed = http.post("/v1/kkt/shift/close", json={})
        assert closed.status_code == 200, closed.text
        state = control.get("/_control/state").json()
        assert state["repeat_prints"] == 0
    with ofd.client() as ofd_http:
        documents = ofd_documents(ofd_http)
    assert sorted(d["fd"] for d in documents) == sorted(
        [sold.json()["fiscal"]["fd"], refund.json()["fiscal"]["fd"], retried.json()["fiscal"]["fd"]]
    )


def test_an_offline_spell_at_the_register_keeps_receipts_pending_then_all_are_synced_once(
    start_adapter: Start, start_mock_atol: Start, start_mock_ofd: Start
) -> None:
    ofd = start_mock_ofd()
    atol = start_mock_atol(ofd_url=ofd.url)
    env = {"KKT_DEVICE": "atol-web", "KKT_ATOL_URL": atol.url, **FAST}
    adapter = start_adapter(env=env)
    with adapter.client() as http, httpx.Client(base_url=atol.url) as control:
        control.post("/_control/fault", json={"fault": "ofd_down"})
        for n in range(5):
            answer = http.post("/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key())
            assert answer.status_code == 200, answer.text
        offline = wait_until(
            lambda: (s := status(http))["network_status"] == "degraded" and s,
            timeout=30,
            what="the FN's link reported down",
        )
        assert offline["pending"] == 5 and offline["synced"] == 0
        # The FN's own count of unsent documents, as health reads it between prints.
        wait_until(
            lambda: (
                http.get("/v1/health").json()["components"]["kkt"]["unconfirmed_documents"] == 5
            ),
            timeout=15,
            what="the FN's 5 unsent documents in health",
        )
        control.post("/_control/fault", json={"fault": "ofd_down", "on": False})
        wait_until(lambda: status(http)["synced"] == 5, timeout=30, what="5 synced")
    with ofd.client() as ofd_http:
        ids = [d["receipt_id"] for d in ofd_documents(ofd_http)]
    assert len(ids) == len(set(ids)) == 5


def test_a_power_loss_and_a_lost_answer_give_the_receipt_once_never_twice(
    start_adapter: Start, start_mock_atol: Start, start_mock_ofd: Start
) -> None:
    ofd = start_mock_ofd()
    atol = start_mock_atol(ofd_url=ofd.url)
    env = {"KKT_DEVICE": "atol-web", "KKT_ATOL_URL": atol.url, **FAST}
    adapter = start_adapter(env=env)
    with adapter.client() as http, httpx.Client(base_url=atol.url) as control:
        control.post("/_control/fault", json={"fault": "power_loss"})
        blocked = http.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key())
        assert blocked.status_code == 200, blocked.text  # blocked, then recovered by the server
        # The answer to the task is lost (the request times out): the adapter asks for the
        # same task by its uuid and records its result instead of printing again.
        control.post("/_control/fault", json={"fault": "lose_answer", "lose_answer_seconds": 11})
        lost = http.post("/v1/kkt/receipt", json=priced_receipt(200), headers=new_key())
        assert lost.status_code == 200, lost.text
        assert lost.json()["fiscal"]["fd"] == blocked.json()["fiscal"]["fd"] + 1
        wait_until(lambda: status(http)["synced"] == 2, timeout=30, what="2 synced")
        assert control.get("/_control/state").json()["repeat_prints"] == 0
    with ofd.client() as ofd_http:
        assert len(ofd_documents(ofd_http)) == 2


def test_the_atol_library_transport_without_the_vendors_binding_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    serve = ["serve", "--host", "127.0.0.1", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "data")]  # fmt: skip
    refused = run_command(serve, env={"KKT_DEVICE": "atol-lib"})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    plain = [line for line in refused.stderr.splitlines() if line and not line.startswith("{")]
    assert len(plain) == 1 and "libfptr10" in plain[0], refused.stderr


def test_corrections_and_device_faults_through_an_atol_register(
    start_adapter: Start, start_mock_atol: Start, start_mock_ofd: Start
) -> None:
    ofd = start_mock_ofd()
    atol = start_mock_atol(ofd_url=ofd.url)
    env = {"KKT_DEVICE": "atol-web", "KKT_ATOL_URL": atol.url, **FAST}
    adapter = start_adapter(env=env)
    with adapter.client() as http, httpx.Client(base_url=atol.url) as control:
        for correction in (
            {"kind": "self", "date": "2026-11-20"},
            {"kind": "order", "date": "2026-11-21", "number": "ORD-7"},
        ):
            answer = http.post(
                "/v1/kkt/receipt", json=receipt(correction=correction), headers=new_key()
            )
            assert answer.status_code == 200, answer.text
        for fault, reason in (("cover_open", "cover_open"), ("offline", "offline")):
            control.post("/_control/fault", json={"fault": fault})
            key, body = new_key(), priced_receipt(300)
            refused = http.post("/v1/kkt/receipt", json=body, headers=key)
            assert refused.status_code == 503, refused.text
            assert refused.json()["details"]["reason"] == reason
            control.post("/_control/fault", json={"fault": fault, "on": False})
            assert http.post("/v1/kkt/receipt", json=body, headers=key).status_code == 200
        wait_until(lambda: status(http)["synced"] == 4, timeout=30, what="4 synced")
        assert control.get("/_control/state").json()["repeat_prints"] == 0
