"""The status page in a real headless Chromium: the figures it shows equal the API's."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Process, wait_until
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance


class PageFigures(HTMLParser):
    """Text content of every element with a ``data-testid`` (rows of tables counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.rows: dict[str, int] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        testid = dict(attrs).get("data-testid")
        self._open.append(testid)
        if testid is not None:
            self.texts[testid] = ""
        if tag == "tr":
            for name in self._open:
                if name is not None:
                    self.rows[name] = self.rows.get(name, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name is not None:
                self.texts[name] += data


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is required (./scripts/test installs it)"
    return path


def render(url: str, profile: Path) -> PageFigures:
    """Load the page headless, let its script run, and parse the resulting DOM."""
    dom = subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
            "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = PageFigures()
    parsed.feed(dom.stdout)
    return parsed


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
    assert {k: status[k] for k in SHOWN} == {k: before[k] for k in SHOWN}  # nothing moved
    shown = page.texts
    assert shown["updated"] not in ("never", "") and not shown["updated"].startswith("failed")
    for key in ("pending", "syncing", "synced", "failed", "dlq", "total"):
        assert shown[key] == str(status[key]), key
    assert (shown["pending"], shown["synced"], shown["dlq"], shown["total"]) == ("2", "5", "1", "8")
    assert shown["percent-full"] == str(status["percent_full"])
    assert shown["current-queued"] == str(status["current_queued"])
    assert shown["total-capacity"] == str(status["total_capacity"])
    assert (shown["circuit-breaker"], shown["network-status"]) == ("OPEN", "offline")
    assert shown["oldest-id"] == status["oldest_pending"]["receipt_id"]
    assert page.rows.get("alerts", 0) == len(status["alerts"]) > 0
    assert page.rows.get("dlq-items", 0) == 1
    assert page.rows.get("events", 0) == 20
    assert shown["emulator-banner"].startswith("EMULATOR: this adapter uses an emulated KKT")
