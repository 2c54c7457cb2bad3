"""What the adapter makes of an OFD that answers badly, with the real ``kkt-adapter serve``
against a fake OFD on a free port: a captive portal's ``200 text/html`` is not delivery (I8)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Process, wait_until
from fakes import FakeOfd
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance

FAST_RETRIES = {
    "KKT_BACKOFF_BASE_SECONDS": "0.05",
    "KKT_BACKOFF_CAP_SECONDS": "0.3",
    "KKT_BREAKER_OPEN_SECONDS": "0.5",
    "KKT_DELIVERY_SWEEP_SECONDS": "0.1",
}


def sell(http: httpx.Client, kopecks: int) -> str:
    answer = http.post("/v1/kkt/receipt", json=priced_receipt(kopecks), headers=new_key())
    assert answer.status_code == 200, answer.text
    receipt_id: str = answer.json()["receipt_id"]
    return receipt_id


def receipt(http: httpx.Client, receipt_id: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/v1/kkt/receipt/{receipt_id}").json()
    return body


def unconfirmed_on_the_kkt(http: httpx.Client) -> int:
    count: int = http.get("/v1/health").json()["components"]["kkt"]["unconfirmed_documents"]
    return count


def test_a_captive_portals_html_200_is_not_delivery_until_the_ofd_acknowledges(
    start_adapter: Callable[..., Process],
) -> None:
    with FakeOfd(mode="html") as ofd:
        adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, **FAST_RETRIES})
        with adapter.client() as http:
            sold = [sell(http, 100 + n) for n in range(2)]
            wait_until(
                lambda: all(receipt(http, rid)["ofd"]["attempts"] >= 2 for rid in sold),
                timeout=30,
                what="two answered attempts each",
            )
            for rid in sold:
                row = receipt(http, rid)
                assert row["status"] in ("pending", "syncing"), row
                assert row["ofd"]["ofd_receipt_id"] is None
                assert "HTTP 200 with text/html, not a JSON acknowledgement" in row["last_error"]
            assert http.get("/v1/kkt/buffer/status").json()["synced"] == 0
            # The FN still counts them as unsent (health shows the KKT as read after the prints).
            wait_until(lambda: unconfirmed_on_the_kkt(http) == 2, timeout=10, what="both unsent")
            assert not ofd.acknowledged

            ofd.mode = "ack"
            wait_until(
                lambda: all(receipt(http, rid)["status"] == "synced" for rid in sold),
                timeout=30,
                what="delivery once the OFD acknowledges",
            )
            wait_until(lambda: unconfirmed_on_the_kkt(http) == 0, timeout=30, what="confirm")
            for rid in sold:
                row = receipt(http, rid)
                assert row["ofd"]["ofd_receipt_id"] == f"FAKE-{rid}"
                assert row["last_error"] is None
    assert sorted(ofd.acknowledged) == sorted(sold)


def test_a_trickling_ofd_answer_is_cut_at_the_deadline_and_holds_up_nothing_else(
    start_adapter: Callable[..., Process],
) -> None:
    # Headers, then a byte every 0.3 s for a minute: no read ever times out.
    with FakeOfd(trickle_interval=0.3, trickle_seconds=60) as ofd:
        ofd.trickle_next = 1
        env = {"KKT_OFD_URL": ofd.url, "KKT_OFD_TIMEOUT_SECONDS": "2", **FAST_RETRIES}
        adapter = start_adapter(env=env)
        with adapter.client() as http:
            slow = sell(http, 100)
            wait_until(lambda: ofd.trickled == [slow], timeout=10, what="the trickled answer")
            others = [sell(http, 200 + n) for n in range(3)]
            wait_until(
                lambda: all(receipt(http, rid)["status"] == "synced" for rid in others),
                timeout=15,
                what="the other receipts delivered while one answer trickles",
            )
            wait_until(
                lambda: receipt(http, slow)["status"] == "synced",
                timeout=15,
                what="the slow one retried after its deadline",
            )
            events = http.get("/v1/kkt/buffer/logs", params={"receipt_id": slow}).json()
    retries = [e for e in events["items"] if e["event"] == "retry"]
    assert retries and "no complete answer within 2.0 s" in retries[0]["message"], events
    assert ofd.submissions.count(slow) == 2 and sorted(ofd.acknowledged) == sorted([slow, *others])


def ofd_component(http: httpx.Client) -> dict[str, Any]:
    component: dict[str, Any] = http.get("/v1/health").json()["components"]["ofd"]
    return component


def test_an_external_ofd_emulator_is_labelled_as_one_and_a_real_ofd_is_not(
    start_mock_ofd: Callable[..., Process], start_adapter: Callable[..., Process], tmp_path: Path
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(tmp_path / "a", env={"KKT_OFD_URL": ofd.url, **FAST_RETRIES})
    with adapter.client() as http:
        labelled = wait_until(
            lambda: ofd_component(http)["emulator"], timeout=10, what="the OFD emulator labelled"
        )
        assert labelled is True and ofd_component(http)["target"] == ofd.url
    warnings = [m for m in adapter.messages("kkt_adapter") if m.startswith("OFD: EMULATOR")]
    assert len(warnings) == 1 and ofd.url in warnings[0], adapter.messages("kkt_adapter")

    with FakeOfd() as real:  # an OFD that does not say it is an emulator
        other = start_adapter(tmp_path / "b", env={"KKT_OFD_URL": real.url, **FAST_RETRIES})
        with other.client() as http:
            sold = sell(http, 100)
            wait_until(lambda: receipt(http, sold)["status"] == "synced", timeout=15, what="sync")
            assert ofd_component(http)["emulator"] is False
