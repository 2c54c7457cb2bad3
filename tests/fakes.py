"""What the tests share: fakes at the package's edges (the wall clock, a scripted OFD, a
device that is never called), buffers on a temporary dir, and test-only helpers that have no
place in the package (``begin_intake``, ``receipt_from_json``).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from kkt_adapter.buffer import Buffer, IntakeStart, NewReceipt
from kkt_adapter.buffer.store import IntakeTx
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.receipt import (
    Correction,
    Item,
    ItemPaymentMethod,
    Payment,
    PaymentMethod,
    Receipt,
    ReceiptType,
    Subject,
    Vat,
)
from kkt_adapter.ofd import Delivered, OfdAnswer, Submission
from kkt_adapter.sqlite import Staged


class Wall:
    """A settable wall clock in milliseconds (now, unless told otherwise)."""

    def __init__(self, ms: int | None = None) -> None:
        self.ms = int(time.time() * 1000) if ms is None else ms

    def __call__(self) -> int:
        return self.ms


class Clock:
    """A settable monotonic clock in seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedOfd:
    """An OFD client answering each submission with the next scripted answer (then: delivered);
    remembers what it was sent."""

    emulator = False

    def __init__(self, *answers: OfdAnswer) -> None:
        self.answers = list(answers)
        self.sent: list[Submission] = []

    async def submit(self, submission: Submission) -> OfdAnswer:
        self.sent.append(submission)
        return self.answers.pop(0) if self.answers else Delivered("o", None, False)

    async def close(self) -> None:
        return None


@contextlib.contextmanager
def open_buffer(data_dir: Path, wall: Callable[[], int], capacity: int = 100) -> Iterator[Buffer]:
    """A buffer on ``data_dir`` with node id ``n1`` and this wall clock, closed afterwards."""
    buffer = Buffer(data_dir, capacity=capacity, node_id="n1", wall=wall)
    buffer.open()
    try:
        yield buffer
    finally:
        buffer.close()


class NoDevice:
    """The device side of a staged intake that never goes outside its transaction."""

    def post(self, call: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        raise AssertionError("this intake was not meant to reach the device")


async def begin_intake(buffer: Buffer, new: NewReceipt) -> IntakeStart:
    """Record ``new`` as ``accepted`` (or resolve its key) and stop there, as a crash would."""

    def steps(tx: IntakeTx) -> Staged:
        return tx.begin(new)
        yield  # a staged write that never yields

    start: IntakeStart = await buffer.intake(steps, NoDevice())
    return start


def write_directly(path: Path, write: Callable[[sqlite3.Connection], Any]) -> Any:
    """Run ``write`` in a transaction on a connection of the test's own to ``path``."""
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
        return write(conn)


def receipt_from_json(data: dict[str, Any]) -> Receipt:
    """Inverse of :func:`receipt_to_json` (trusted input: our own storage)."""
    corr = data["correction"]
    return Receipt(
        pos_id=data["pos_id"],
        type=ReceiptType(data["type"]),
        items=tuple(
            Item(
                i["name"],
                Kopecks(i["price"]),
                i["quantity_milli"],
                Vat(i["vat"]),
                Subject(i["subject"]),
                ItemPaymentMethod(i["payment_method"]),
                i["sku"],
                i["mark_code"],
            )
            for i in data["items"]
        ),
        payments=tuple(
            Payment(PaymentMethod(p["method"]), Kopecks(p["amount"])) for p in data["payments"]
        ),
        customer_email=data["customer_email"],
        customer_phone=data["customer_phone"],
        cashier_name=data["cashier_name"],
        cashier_inn=data["cashier_inn"],
        correction=None
        if corr is None
        else Correction(corr["kind"], date.fromisoformat(corr["date"]), corr["number"]),
        dated=date.fromisoformat(data["dated"]),
    )


class FakeOfd:
    """A tiny OFD over HTTP on a free 127.0.0.1 port, answering as the test says.

    ``mode``: ``ack`` (a well-formed acknowledgement naming the document sent), ``html`` (a
    captive portal's ``200 text/html``). ``trickle_next``: that many next submissions get the
    headers of a ``200``, then one byte every ``trickle_interval`` seconds for
    ``trickle_seconds`` (a stalled proxy); the body never completes while the client waits.
    ``submissions`` lists the receipt ids in arrival order; ``acknowledged`` those answered
    ``ack``.
    """

    def __init__(
        self, mode: str = "ack", *, trickle_interval: float = 0.3, trickle_seconds: float = 60.0
    ) -> None:
        self.mode = mode
        self.trickle_next = 0
        self.trickle_interval = trickle_interval
        self.trickle_seconds = trickle_seconds
        self.submissions: list[str] = []
        self.acknowledged: list[str] = []
        self.trickled: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeOfd:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, body: dict[str, Any]) -> tuple[str, bytes]:
        """What to do with one submission: ``trickle``, or a (content type, body) to send."""
        with self._lock:
            self.submissions.append(body["receipt_id"])
            if self.trickle_next > 0:
                self.trickle_next -= 1
                self.trickled.append(body["receipt_id"])
                return "trickle", b""
            if self.mode == "html":
                return "text/html", b"<html><body>Sign in to the shop Wi-Fi</body></html>"
            self.acknowledged.append(body["receipt_id"])
        ack = {"ofd_receipt_id": f"FAKE-{body['receipt_id']}", "fn": body["fn"], "fd": body["fd"]}
        return "application/json", json.dumps(ack).encode()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                kind, content = fake._answer(json.loads(self.rfile.read(length)))
                if kind == "trickle":
                    self._trickle()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                deadline = time.monotonic() + fake.trickle_seconds
                try:
                    while time.monotonic() < deadline and not fake._stopping.is_set():
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(fake.trickle_interval)
                except OSError:
                    pass  # the client gave up: what a deadline is for
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler
