"""The ATOL web-server transport against a small in-memory server (an httpx transport): one
task per uuid, a retry finds the same task, and every fate of a task has one outcome."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from kkt_adapter.device.atol.web import AtolWebTransport, OutcomeUnknown
from kkt_adapter.errors import DeviceError

TASK = {"type": "sell", "items": []}
RESULT = {"fiscalParams": {"fiscalDocumentNumber": 7}}


class FakeWebServer:
    """The web server's queue as the vendor's OpenAPI describes it (docs/atol.md)."""

    def __init__(self) -> None:
        self.tasks: dict[str, list[dict[str, Any]]] = {}
        self.posts = 0
        self.polls_until_done = 2
        self.final: dict[str, Any] = {"status": "ready", "result": RESULT}
        self.post_status: int | None = None
        self.down = False
        self.drop_answer = False
        self._polls: dict[str, int] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.drop_answer and request.method == "POST":
            self.drop_answer = False
            self.handle_post(request)
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        if request.method == "POST":
            return self.handle_post(request)
        return self.handle_get(request)

    def handle_post(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/v2/requests":
            self.posts += 1
            if self.post_status is not None:
                error = {"error": {"code": 501, "description": "bad field items"}}
                return httpx.Response(self.post_status, json=error)
            body = json.loads(request.content)
            if body["uuid"] in self.tasks:
                return httpx.Response(409, json={"error": {"code": 409, "description": "exists"}})
            self.tasks[body["uuid"]] = body["request"]
            return httpx.Response(201, json={"number": 1, "uuid": body["uuid"]})
        return httpx.Response(405)

    def handle_get(self, request: httpx.Request) -> httpx.Response:
        uuid = request.url.path.rsplit("/", 1)[-1]
        if uuid not in self.tasks:
            return httpx.Response(404, json={"error": {"code": 404, "description": "unknown"}})
        self._polls[uuid] = self._polls.get(uuid, 0) + 1
        if self._polls[uuid] <= self.polls_until_done:
            return httpx.Response(200, json={"results": [{"status": "inProgress"}]})
        return httpx.Response(200, json={"results": [self.final]})


@pytest.fixture
def server() -> FakeWebServer:
    return FakeWebServer()


def transport(server: FakeWebServer, deadline_s: float = 5) -> AtolWebTransport:
    return AtolWebTransport(
        "http://127.0.0.1:16732",
        deadline_s=deadline_s,
        poll_interval_s=0,
        transport=httpx.MockTransport(server.handle),
    )


def test_a_task_runs_to_its_result(server: FakeWebServer) -> None:
    assert transport(server).run("u1", TASK) == RESULT
    assert server.tasks == {"u1": [TASK]} and server.posts == 1


def test_a_retry_under_the_same_uuid_reads_the_first_task_and_queues_nothing(
    server: FakeWebServer,
) -> None:
    first = transport(server)
    first.submit("u1", TASK)  # the answer to the task is lost: the adapter died here
    again = transport(server)
    assert again.submit("u1", TASK) is False  # 409: the task exists
    assert again.run("u1", TASK) == RESULT
    assert len(server.tasks) == 1 and server.posts == 3


@pytest.mark.parametrize(
    ("code", "reason", "retry_after"),
    [
        (44, "out_of_paper", 5),
        (68, "shift_expired", 5),
        (120, "fn_expired", None),
        (999, "device_error", 5),
    ],
)
def test_a_refused_task_is_a_device_error_with_a_stable_reason(
    server: FakeWebServer, code: int, reason: str, retry_after: int | None
) -> None:
    server.final = {"status": "error", "error": {"code": code, "description": "Нет бумаги"}}
    with pytest.raises(DeviceError) as refused:
        transport(server).run("u1", TASK)
    assert (refused.value.reason, refused.value.retry_after) == (reason, retry_after)
    assert f"ATOL error {code}: Нет бумаги" in refused.value.message


def test_an_older_server_error_shape_is_read_too(server: FakeWebServer) -> None:
    server.final = {"status": "error", "errorCode": 45, "errorDescription": "Открыта крышка"}
    with pytest.raises(DeviceError) as refused:
        transport(server).run("u1", TASK)
    assert refused.value.reason == "cover_open"


def test_a_task_blocked_past_the_deadline_has_an_unknown_outcome(server: FakeWebServer) -> None:
    server.final, server.polls_until_done = {"status": "blocked"}, 0
    with pytest.raises(OutcomeUnknown, match="still blocked"):
        transport(server, deadline_s=0).run("u1", TASK)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(420, "invalid_document"), (408, "busy"), (401, "device_config")],
)
def test_a_task_the_server_refuses_is_a_device_error(
    server: FakeWebServer, status: int, reason: str
) -> None:
    server.post_status = status
    with pytest.raises(DeviceError) as refused:
        transport(server).run("u1", TASK)
    assert refused.value.reason == reason
    assert f"HTTP {status} error 501: bad field items" in refused.value.message


def test_an_unreachable_server_is_offline_and_a_lost_task_is_unknown(
    server: FakeWebServer,
) -> None:
    server.down = True
    with pytest.raises(DeviceError) as refused:
        transport(server).run("u1", TASK)
    assert refused.value.reason == "offline"
    server.down = False
    with pytest.raises(OutcomeUnknown, match="does not know task u2"):
        transport(server).wait("u2")  # never queued (or deleted): prove it before printing


def test_a_lost_answer_to_the_post_is_an_unknown_outcome_then_the_same_task(
    server: FakeWebServer,
) -> None:
    server.drop_answer = True
    client = transport(server)
    with pytest.raises(OutcomeUnknown, match="no answer to task u1"):
        client.run("u1", TASK)  # the task arrived; its answer did not
    assert client.run("u1", TASK) == RESULT  # asked again: 409, then the first task's result
    assert len(server.tasks) == 1
