"""Debian's Chromium, headless and offline, for the pages the adapter serves (``/ui``, ``/docs``).

``render`` dumps the DOM once the page's script has run; ``open_page`` drives a page over
the DevTools protocol for tests that type and click. The browser reaches 127.0.0.1 only: every
other host name resolves to nothing, so a page that loads a script or a style from the
internet shows what an offline till shows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            OFFLINE)  # fmt: skip
"""Every headless run's flags: no sandbox (tests may run as root), no GPU, nothing fetched
but from 127.0.0.1."""


class PageFigures(HTMLParser):
    """Text content of every element with a ``data-testid`` (rows of tables counted), and the
    ``disabled`` state of those elements."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.rows: dict[str, int] = {}
        self.disabled: dict[str, bool] = {}
        self.classes: set[str] = set()
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        testid = named.get("data-testid")
        self.classes.update((named.get("class") or "").split())
        if tag not in VOID:
            self._open.append(testid)
        if testid is not None:
            self.texts[testid] = ""
            self.disabled[testid] = "disabled" in named
        if tag == "tr":
            for name in self._open:
                if name is not None:
                    self.rows[name] = self.rows.get(name, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in VOID:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name is not None:
                self.texts[name] += data


VOID = frozenset({"input", "br", "img", "meta", "link", "hr", "wbr", "col", "source", "area"})
"""Elements without an end tag: they open nothing that holds text."""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is required (./scripts/test installs it)"
    return path


def dump_dom(url: str, profile: Path, budget_ms: int = 5000) -> str:
    """Load the page headless and offline, let its scripts run, and return the resulting DOM."""
    dom = subprocess.run(
        [chromium(), *HEADLESS, f"--user-data-dir={profile}",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def render(url: str, profile: Path, budget_ms: int = 5000) -> PageFigures:
    """The page's figures once its script has run."""
    parsed = PageFigures()
    parsed.feed(dump_dom(url, profile, budget_ms))
    return parsed


def screenshot(url: str, profile: Path, out: Path) -> Path:
    """A PNG of the page as a 900-pixel-wide screen shows it, written to ``out``."""
    shot = subprocess.run(
        [chromium(), *HEADLESS, f"--user-data-dir={profile}", "--window-size=900,1400",
         "--hide-scrollbars", f"--screenshot={out}", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.returncode == 0 and out.exists(), shot.stderr[-2000:]
    return out


@contextmanager
def open_page(url: str, profile: Path) -> Iterator[Page]:
    """Headless Chromium on ``url``, driven over the DevTools protocol (a WebSocket on a port
    Chromium picks); closed on leaving."""
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [chromium(), *HEADLESS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(t for t in targets if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            page.call("Page.enable")
            page.call("Page.navigate", url=url)
            yield page
    finally:
        process.terminate()
        process.wait(timeout=30)


class Page:
    """A page in headless Chromium: ``evaluate`` runs an expression in it, and every
    ``confirm()`` is accepted, as an operator would."""

    def __init__(self, socket: ClientConnection) -> None:
        self._ws = socket
        self._next = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self._ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("method") == "Page.javascriptDialogOpening":
                self._ws.send(
                    json.dumps(
                        {
                            "id": 0,
                            "method": "Page.handleJavaScriptDialog",
                            "params": {"accept": True},
                        }
                    )
                )
            if message.get("id") == self._next:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        answer = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15) -> Any:
        """Evaluate until the value is truthy (an error, e.g. while the page loads, is not);
        return it."""
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
        while True:
            value = self.evaluate(guarded)
            if value:
                return value
            assert time.monotonic() < deadline, f"never true in the page: {expression}"
            time.sleep(0.2)

    def figures(self) -> PageFigures:
        parsed = PageFigures()
        parsed.feed(self.evaluate("document.documentElement.outerHTML"))
        return parsed
