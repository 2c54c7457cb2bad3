"""``kkt-adapter mock-atol``: an EMULATOR of the ATOL driver's web server (``/api/v2``).

Tasks queue by the client's ``uuid`` in ``<data_dir>/mock-atol.sqlite`` and run one at a time
on the KKT emulator's core (``<data_dir>/kkt-emulator.sqlite``) on a worker thread, through the
real statuses: ``wait`` → ``inProgress`` → ``ready`` / ``error`` (``blocked`` after an injected
power loss, until the outcome is known). A task a stop caught ``inProgress`` is settled from
the FN at the next start, never run again if it prints (``interrupted_result``); queued
``wait`` tasks run. Every answer carries ``X-ATOL-Emulator: true``.

With ``ofd_url`` the emulated FN sends its documents to the OFD itself (as a real register
does over its own link) and keeps the unsent queue that ``ofdExchangeStatus`` reports.

Faults (``POST /_control/fault``): ``out_of_paper``, ``cover_open``, ``offline`` (the device
unreachable), ``power_loss`` (the next receipt is fiscalized, its task ``blocked`` for a while,
then ``ready`` with ``warnings.recovered``), ``lose_answer`` (the next ``POST`` is queued but
answered only after ``lose_answer_seconds``: the client's request times out), ``ofd_down`` (the
FN's link to the OFD is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from kkt_adapter.device.emulator import EmulatedKkt
from kkt_adapter.domain.journal import read_mark
from kkt_adapter.mock_atol.tasks import Exchange, TaskError, interrupted_result, run_task
from kkt_adapter.sqlite import connect

log = logging.getLogger(__name__)

EMULATOR_HEADER = "X-ATOL-Emulator"
STORE_FILE = "mock-atol.sqlite"
FAULTS = frozenset({"out_of_paper", "cover_open", "offline", "power_loss", "lose_answer",
                    "ofd_down"})  # fmt: skip
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (number INTEGER PRIMARY KEY AUTOINCREMENT,"
    " uuid TEXT NOT NULL UNIQUE, tasks TEXT NOT NULL, status TEXT NOT NULL,"
    " results TEXT, created_ms INTEGER NOT NULL)"
)


@dataclass
class Faults:
    active: set[str] = field(default_factory=set)
    lose_answer_seconds: float = 15.0
    blocked_polls: int = 3


class AtolEmulator:
    """The queue, the worker thread and the FN's OFD exchange (see the module docstring)."""

    def __init__(
        self, data_dir: Path, *, key: bytes, ofd_url: str | None, strict: bool = False
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.kkt = EmulatedKkt(data_dir, key=key, strict=strict)
        self.faults = Faults()
        self.exchange = Exchange()
        self._conn = connect(data_dir / STORE_FILE)
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._blocked: dict[str, int] = {}
        self._ofd_url = ofd_url.rstrip("/") if ofd_url else None
        self._threads = [threading.Thread(target=self._work, name="mock-atol", daemon=True)]
        if self._ofd_url:
            self._threads.append(
                threading.Thread(target=self._send_to_ofd, name="mock-atol-fn", daemon=True)
            )
        self._settle_interrupted()

    def _settle_interrupted(self) -> None:
        """Tasks a stop (a power loss) caught ``inProgress``: a real web server keeps them
        ``blocked`` until it learns their outcome from the register; this one learns it from
        its FN at once, before it answers anything. Never run a receipt task again: the FN
        may have closed the document (I2)."""
        with self._lock:
            caught = self._conn.execute(
                "SELECT uuid, tasks FROM requests WHERE status = 'inProgress'"
            ).fetchall()
        for uuid, tasks in caught:
            outcomes = [interrupted_result(self.kkt, task, uuid) for task in json.loads(tasks)]
            with self._lock:
                if all(outcome is None for outcome in outcomes):  # queries: run them again
                    self._conn.execute(
                        "UPDATE requests SET status = 'wait' WHERE uuid = ?", (uuid,)
                    )
                    continue
                results = [outcome or {"status": "interrupted"} for outcome in outcomes]
                final = "ready" if all(r["status"] == "ready" for r in results) else "interrupted"
                self._conn.execute(
                    "UPDATE requests SET status = ?, results = ? WHERE uuid = ?",
                    (final, json.dumps(results), uuid),
                )
            log.warning("mock-atol: task %s caught by a stop settled from the FN: %s", uuid, final)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(timeout=10)
        self.kkt.close()
        self._conn.close()

    # -- the queue ------------------------------------------------------------------------

    def add(self, uuid: str, tasks: list[Any]) -> int | None:
        """Queue ``tasks`` under ``uuid``; its number, or ``None`` if the uuid exists."""
        with self._lock:
            try:
                cursor = self._conn.execute(
                    "INSERT INTO requests (uuid, tasks, status, created_ms) VALUES (?, ?, ?, ?)",
                    (uuid, json.dumps(tasks), "wait", int(time.time() * 1000)),
                )
            except sqlite3.IntegrityError:  # the uuid exists: the client must read that one
                return None
        self._wake.set()
        return int(cursor.lastrowid or 0)

    def results(self, uuid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT status, tasks, results FROM requests WHERE uuid = ?", (uuid,)
            ).fetchone()
        if row is None:
            return None
        status, tasks, results = row[0], json.loads(row[1]), row[2]
        if status == "blocked":
            left = self._blocked.get(uuid, 0) - 1
            self._blocked[uuid] = left
            if left <= 0:
                with self._lock:
                    self._conn.execute(
                        "UPDATE requests SET status = 'ready' WHERE uuid = ?", (uuid,)
                    )
            return {"results": [{"status": "blocked"} for _ in tasks]}
        if results is not None:
            return {"results": json.loads(results)}
        return {"results": [{"status": status} for _ in tasks]}

    def cancel(self, uuid: str) -> bool | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT status FROM requests WHERE uuid = ?", (uuid,)
            ).fetchone()
            if row is None:
                return None
            if row[0] != "wait":
                return False
            self._conn.execute(
                "UPDATE requests SET status = 'canceled', results = ? WHERE uuid = ?",
                (json.dumps([{"status": "canceled"}]), uuid),
            )
            return True

    def queue_status(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(
                self._conn.execute("SELECT status, COUNT(*) FROM requests GROUP BY status")
            )
        return {
            "number": sum(counts.values()),
            "ready": counts.get("ready", 0),
            "canceled": counts.get("canceled", 0),
            "isBlocked": bool(counts.get("blocked")),
        }

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                row = self._conn.execute(
                    "SELECT uuid, tasks FROM requests WHERE status = 'wait' ORDER BY number LIMIT 1"
                ).fetchone()
                if row is not None:
                    self._conn.execute(
                        "UPDATE requests SET status = 'inProgress' WHERE uuid = ?", (row[0],)
                    )
            if row is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._run(row[0], json.loads(row[1]))

    def _run(self, uuid: str, tasks: list[Any]) -> None:
        results: list[dict[str, Any]] = []
        failed = False
        blocked = False
        for task in tasks:
            if failed:
                results.append({"status": "interrupted"})
                continue
            try:
                result = self._run_one(task, uuid)
            except TaskError as exc:
                failed = True
                results.append(
                    {"status": "error", "error": {"code": exc.code, "description": exc.description}}
                )
                continue
            if "power_loss" in self.faults.active and "fiscalParams" in result:
                self.faults.active.discard("power_loss")
                blocked = True
                result = {**result, "warnings": {"recovered": True}}
            results.append({"status": "ready", "result": result})
        final = "blocked" if blocked else "error" if failed else "ready"
        if blocked:
            self._blocked[uuid] = self.faults.blocked_polls
        with self._lock:
            self._conn.execute(
                "UPDATE requests SET status = ?, results = ? WHERE uuid = ?",
                (final, json.dumps(results), uuid),
            )

    def _run_one(self, task: Any, uuid: str) -> dict[str, Any]:
        prints = isinstance(task, dict) and task.get("type") not in (
            "getDeviceStatus", "getShiftStatus", "getFnInfo", "getFnStatus",
            "ofdExchangeStatus", "getFnDocument",
        )  # fmt: skip
        if prints and "cover_open" in self.faults.active:
            raise TaskError(45, "Открыта крышка")
        return run_task(self.kkt, task, uuid, self.exchange)

    # -- the FN's exchange with the OFD ----------------------------------------------------

    def _send_to_ofd(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(0.2):
                if "ofd_down" in self.faults.active:
                    self.exchange.last_error = "the FN's link to the OFD is down (emulated)"
                    continue
                with contextlib.suppress(Exception):
                    self._send_once(http)

    def _send_once(self, http: httpx.Client) -> None:
        status = self.kkt.status()
        if status.first_unconfirmed_fd is None:
            return
        sent: list[int] = []
        for entry in self.kkt.journal(status.first_unconfirmed_fd - 1, 50):
            if entry.confirmed:
                continue
            result = entry.result
            mark = read_mark(result.document)
            body = {
                "receipt_id": result.receipt_id,
                "pos_id": "mock-atol",
                "fn": result.fn,
                "fd": result.fd,
                "fp": result.fp,
                "hlc": mark.stamp
                if mark is not None and mark.stamp
                else f"{int(time.time() * 1000):013d}.00000.mock-atol",
                "document": result.document,
            }
            try:
                answer = http.post(
                    f"{self._ofd_url}/ofd/v1/receipts",
                    json=body,
                    headers={"Idempotency-Key": result.receipt_id},
                )
            except httpx.HTTPError as exc:
                self.exchange.last_error = f"{type(exc).__name__}: {exc}"
                break
            if answer.status_code in (200, 201) or answer.status_code == 409:
                sent.append(result.fd)
            else:
                self.exchange.last_error = f"the OFD answered HTTP {answer.status_code}"
                break
        if sent:
            self.kkt.confirm_many(status.fn, sent)
            self.exchange.last_success = datetime.now().astimezone()
            self.exchange.last_error = None


def create_mock_atol_app(
    data_dir: Path, *, key: bytes, ofd_url: str | None = None, strict: bool = False
) -> FastAPI:
    """The ATOL web-server emulator as an ASGI app (see the module docstring); ``strict``: its
    core refuses a repeat print request (``EmulatedKkt``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        emulator = await asyncio.to_thread(
            AtolEmulator, data_dir, key=key, ofd_url=ofd_url, strict=strict
        )
        emulator.start()
        app.state.emulator = emulator
        try:
            yield
        finally:
            await asyncio.to_thread(emulator.close)

    app = FastAPI(
        title="ATOL web server EMULATOR (kkt-adapter mock-atol)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.middleware("http")
    async def label(request: Request, call_next: Any) -> Response:
        answer: Response = await call_next(request)
        answer.headers[EMULATOR_HEADER] = "true"
        return answer

    def emulator_of(request: Request) -> AtolEmulator:
        found: AtolEmulator = request.app.state.emulator
        return found

    def error(status: int, code: int, description: str) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "description": description}}, status)

    @app.post("/api/v2/requests")
    async def add(request: Request) -> Response:
        emulator = emulator_of(request)
        try:
            body = json.loads(await request.body())
            uuid, tasks = body["uuid"], body["request"]
        except (ValueError, KeyError, TypeError):
            return error(420, 501, "the body must be {uuid, request: [task, ...]}")
        if isinstance(tasks, dict):
            tasks = [tasks]
        if not isinstance(uuid, str) or not uuid or not isinstance(tasks, list) or not tasks:
            return error(420, 501, "uuid must be a string and request a non-empty list")
        number = await asyncio.to_thread(emulator.add, uuid, tasks)
        if number is None:
            return error(409, 409, f"a request with uuid {uuid} exists")
        if "lose_answer" in emulator.faults.active:
            emulator.faults.active.discard("lose_answer")
            await asyncio.sleep(emulator.faults.lose_answer_seconds)  # the client gives up
        return JSONResponse({"number": number, "uuid": uuid, "isBlocked": False}, 201)

    @app.get("/api/v2/requests/{uuid}")
    async def get(uuid: str, request: Request) -> Response:
        found = await asyncio.to_thread(emulator_of(request).results, uuid)
        if found is None:
            return error(404, 404, f"no request with uuid {uuid}")
        return JSONResponse(found)

    @app.delete("/api/v2/requests/{uuid}")
    async def delete(uuid: str, request: Request) -> Response:
        canceled = await asyncio.to_thread(emulator_of(request).cancel, uuid)
        if canceled is None:
            return error(404, 404, f"no request with uuid {uuid}")
        if not canceled:
            return error(409, 409, "the request has started: it cannot be canceled")
        return Response(status_code=200)

    @app.get("/api/v2/getRequestsQueueStatus")
    async def queue_status(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(emulator_of(request).queue_status))

    @app.post("/_control/fault")
    async def fault(request: Request) -> Response:
        emulator = emulator_of(request)
        body = json.loads(await request.body() or b"{}")
        name, on = body.get("fault"), bool(body.get("on", True))
        if name not in FAULTS:
            return JSONResponse(
                {"code": "invalid_value", "message": f"fault must be one of {sorted(FAULTS)}"},
                422,
            )
        if name in ("out_of_paper", "offline"):
            await asyncio.to_thread(emulator.kkt.set_fault, name if on else None)
        (emulator.faults.active.add if on else emulator.faults.active.discard)(name)
        if "lose_answer_seconds" in body:
            emulator.faults.lose_answer_seconds = float(body["lose_answer_seconds"])
        return JSONResponse({"faults": sorted(emulator.faults.active)})

    @app.get("/_control/state")
    async def state(request: Request) -> Response:
        emulator = emulator_of(request)
        status = await asyncio.to_thread(emulator.kkt.status)
        return JSONResponse(
            {
                "emulator": True,
                "fn": status.fn,
                "last_fd": status.last_fd,
                "unconfirmed": status.unconfirmed_count,
                "faults": sorted(emulator.faults.active),
                "repeat_prints": await asyncio.to_thread(emulator.kkt.repeat_prints),
            }
        )

    return app
