"""``kkt-adapter status`` and ``kkt-adapter sync``: a running adapter, through the package's
own client (``kkt_adapter.client``), shown with Rich."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kkt_adapter.client import KktClient

console = Console()


def status_table(status: dict[str, Any], health: dict[str, Any]) -> Table:
    """A readable table of the buffer status and health."""
    table = Table(title="kkt-adapter", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    ofd = health["components"]["ofd"]
    kkt = health["components"]["kkt"]
    rows = [
        ("health", health["status"]),
        ("KKT", f"{'EMULATOR ' if kkt.get('emulator') else ''}FN {kkt.get('fn', '?')}"),
        ("OFD", f"{ofd.get('target')} ({status['network_status']})"),
        ("circuit breaker", status["circuit_breaker"]),
        ("buffer", f"{status['current_queued']}/{status['total_capacity']} "
                   f"({status['percent_full']}% full)"),
        ("pending / syncing", f"{status['pending']} / {status['syncing']}"),
        ("synced", str(status["synced"])),
        ("failed (DLQ)", f"{status['failed']} ({status['dlq']})"),
        ("oldest pending", _oldest(status["oldest_pending"])),
        ("last sync", _last_sync(status["last_sync"])),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    for alert in status["alerts"]:
        table.add_row(f"alert: {alert['level']}", f"{alert['code']}: {alert['message']}")
    return table


def _oldest(oldest: dict[str, Any] | None) -> str:
    if oldest is None:
        return "-"
    return f"{oldest['receipt_id']} ({oldest['age_hours']:.2f} h)"


def _last_sync(last: dict[str, Any] | None) -> str:
    if last is None:
        return "never"
    return (
        f"{last['timestamp']}: {last['synced_count']} synced, {last['failed_count']} failed "
        f"in {last['duration_seconds']} s ({last['kind']})"
    )


def _status(client: KktClient) -> dict[str, Any]:
    return client.buffer_status().model_dump(mode="json")


def show_status(client: KktClient) -> None:
    status, health = _status(client), client.health().model_dump(mode="json")
    console.print(status_table(status, health))


def run_sync(client: KktClient, timeout: float) -> dict[str, Any]:
    """Start a manual sync and show a progress bar while the buffer drains.

    The sync request runs in a thread, so the bar moves while it works; the background worker
    may deliver some receipts too, so the bar follows the buffer, not the request. The answer's
    ``remaining`` is what is left when the drain ends (or the timeout).
    """
    before = _status(client)
    to_send = before["pending"] + before["syncing"]
    answer: dict[str, Any] = {}
    failure: list[Exception] = []

    def sync() -> None:
        try:
            answer.update(client.sync_now().model_dump(mode="json"))
        except Exception as exc:  # re-raised below, in the caller's thread
            failure.append(exc)

    request = threading.Thread(target=sync, daemon=True)
    left = to_send
    with Progress(
        TextColumn("delivering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    ) as progress:  # fmt: skip
        bar = progress.add_task("sync", total=max(to_send, 1))
        request.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = _status(client)
            left = now["pending"] + now["syncing"]
            progress.update(bar, completed=max(to_send - left, 0))
            if left == 0 and not request.is_alive():
                break
            time.sleep(0.25)
    request.join(timeout=max(deadline - time.monotonic(), 0))
    if failure:
        raise failure[0]
    return {**answer, "remaining": left}
