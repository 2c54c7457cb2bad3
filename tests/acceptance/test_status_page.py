"""The status page in a real headless Chromium: the figures it shows equal the API's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser import Page, open_page, render
from conftest import Process, wait_until
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance


SHOWN = ("pending", "syncing", "synced", "failed", "dlq", "total", "percent_full",
         "current_queued", "total_capacity", "circuit_breaker", "network_status")  # fmt: skip


def test_status_page_shows_the_buffer_status(
    start_adapter: Callable[..., Process], tmp_path: Path
) -> None:
    # One failed call opens the breaker for an hour: once the two receipts below wait for the
    # OFD, nothing changes any more, so the page and the API show the same moment.
    adapter = start_adapter(env={"KKT_BREAKER_FAILURES": "1", "KKT_BREAKER_OPEN_SECONDS": "3600"})
    with adapter.client() as http:
        http.post("/ofd-emulator/_control/mode", json={"mode": "success", "reject_next": 1})
        for n in range(6):
            http.post("/v1/kkt/receipt", json=priced_receipt(500 + n), headers=new_key())
        wait_until(
            lambda: (
                (s := http.get("/v1/kkt/buffer/status").json())["synced"] == 5 and s["dlq"] == 1
            ),
            timeout=30,
            what="5 synced and 1 in the DLQ",
        )
        http.post("/ofd-emulator/_control/mode", json={"mode": "fail"})
        for n in range(2):  # two stay pending, so "oldest pending" shows something
            http.post("/v1/kkt/receipt", json=priced_receipt(700 + n), headers=new_key())
        before = wait_until(
            lambda: (
                (s := http.get("/v1/kkt/buffer/status").json())["circuit_breaker"] == "OPEN"
                and (s["pending"], s["syncing"]) == (2, 0)
                and s
            ),
            timeout=30,
            what="the breaker open with two receipts pending",
        )
        page = render(f"{adapter.url}/ui", tmp_path / "chromium")
        status = http.get("/v1/kkt/buffer/status").json()
        kkt = http.get("/v1/health").json()["components"]["kkt"]
        shift = http.get("/v1/kkt/shift").json()
    assert {k: status[k] for k in SHOWN} == {k: before[k] for k in SHOWN}  # nothing moved
    shown = page.texts
    assert shown["updated"] not in ("never", "") and not shown["updated"].startswith("failed")
    for key in ("pending", "syncing", "synced", "failed", "dlq", "total"):
        assert shown[key] == str(status[key]), key
    assert (shown["pending"], shown["synced"], shown["dlq"], shown["total"]) == ("2", "5", "1", "8")
    assert float(shown["percent-full"]) == status["percent_full"]  # JS writes 0.0 as "0"
    assert shown["current-queued"] == str(status["current_queued"])
    assert shown["total-capacity"] == str(status["total_capacity"])
    assert (shown["circuit-breaker"], shown["network-status"]) == ("OPEN", "offline")
    assert shown["oldest-id"] == status["oldest_pending"]["receipt_id"]
    assert page.rows.get("alerts", 0) == len(status["alerts"]) > 0
    assert page.rows.get("dlq-items", 0) == 1
    assert page.rows.get("events", 0) == 20
    assert shown["emulator-banner"].startswith("EMULATOR: this adapter uses an emulated KKT")
    # The shift and the FN, as the API shows them.
    assert (shown["shift-state"], shown["shift-number"]) == ("open", str(shift["shift"]))
    assert shown["shift-opened-at"] == shift["opened_at"]
    assert (shown["fn"], shown["fn-valid-until"]) == (kkt["fn"], kkt["fn_valid_until"])
    assert shown["ffd-version"] == kkt["ffd_version"]
    assert shown["fn-unconfirmed"] == str(kkt["unconfirmed_documents"]) != "0"
    assert shown["fn-oldest-unconfirmed"] == kkt["oldest_unconfirmed_at"]
    # No token is configured: the API is open, and so are the operator's acts.
    assert not page.disabled["action-sync"] and not page.disabled["action-close-shift"]


POS = "pos-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
SHOWN_ACTS = ("action-sync", "action-close-shift")


def test_status_page_acts_with_the_token_given(
    start_adapter: Callable[..., Process], tmp_path: Path
) -> None:
    adapter = start_adapter(env={"KKT_API_TOKEN": POS, "KKT_ADMIN_TOKEN": ADMIN})
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with adapter.client(headers=admin) as http:
        http.post("/ofd-emulator/_control/mode", json={"mode": "success", "reject_next": 1})
        for n in range(2):
            http.post("/v1/kkt/receipt", json=priced_receipt(500 + n), headers=new_key())
        wait_until(
            lambda: (
                (s := http.get("/v1/kkt/buffer/status").json())["dlq"] == 1 and s["synced"] == 1
            ),
            timeout=30,
            what="1 synced and 1 in the DLQ",
        )
        with open_page(f"{adapter.url}/ui", tmp_path / "chromium") as page:
            # Without a token the page shows nothing and offers no act.
            page.wait_for("document.querySelector('[data-testid=updated]').textContent"
                          ".startsWith('failed')")  # fmt: skip
            before = page.figures()
            assert all(before.disabled[act] for act in SHOWN_ACTS)
            assert before.texts["shift-state"] == "…" and before.rows.get("dlq-items", 0) == 0
            # The POS token reads, but an admin act is refused and says so.
            give_token(page, POS)
            page.wait_for(text_of("shift-state") + " === 'open'")
            click(page, "action-sync")
            page.wait_for(text_of("action-result") + ".includes('403')")
            # The admin token: requeue the DLQ entry, sync, close the shift.
            give_token(page, ADMIN)
            page.wait_for("document.querySelector('[data-testid=requeue]') !== null")
            assert not any(page.figures().disabled[act] for act in SHOWN_ACTS)
            click(page, "requeue")
            page.wait_for(text_of("action-result") + ".startsWith('requeue')")
            click(page, "action-sync")
            page.wait_for(text_of("action-result") + " === 'sync: done'")
            wait_until(  # the worker may be delivering the requeued one itself
                lambda: (
                    (s := http.get("/v1/kkt/buffer/status").json())["synced"] == 2
                    and s["dlq"] == 0
                    and s["last_sync"] is not None
                ),
                timeout=30,
                what="the requeued receipt synced",
            )
            click(page, "action-close-shift")  # its confirm() is accepted
            page.wait_for(text_of("action-result") + " === 'close shift: done'")
            assert http.get("/v1/kkt/shift").json()["open"] is False
            page.wait_for(text_of("shift-state") + " === 'closed'")
            assert page.evaluate("sessionStorage.getItem('kkt-token')") == ADMIN


def text_of(testid: str) -> str:
    return f"document.querySelector('[data-testid={testid}]').textContent"


def give_token(page: Page, token: str) -> None:
    page.evaluate(
        f"document.querySelector('[data-testid=token]').value = {token!r};"
        "document.getElementById('token-form').requestSubmit()"
    )


def click(page: Page, testid: str) -> None:
    page.evaluate(f"document.querySelector('[data-testid={testid}]').click()")
