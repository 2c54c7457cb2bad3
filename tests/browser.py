"""Debian's Chromium, headless and offline, for the pages the adapter serves (``/ui``, ``/docs``).

The browser reaches 127.0.0.1 only: every other host name resolves to nothing, so a page that
loads a script or a style from the internet shows what an offline till shows.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


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
    assert path, "Debian's chromium is required (.ci/run installs it)"
    return path


def dump_dom(url: str, profile: Path, budget_ms: int = 5000) -> str:
    """Load the page headless and offline, let its scripts run, and return the resulting DOM."""
    dom = subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", OFFLINE, f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def render(url: str, profile: Path, budget_ms: int = 5000) -> PageFigures:
    """The page's figures once its script has run."""
    parsed = PageFigures()
    parsed.feed(dump_dom(url, profile, budget_ms))
    return parsed
