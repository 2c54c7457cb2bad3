"""The ATOL driver's web server as a transport for JSON tasks (``KKT_DEVICE=atol-web``).

The web server (driver v10, default port 16732; its successor "Web Requests" keeps the same
``/api/v2``) queues tasks by a client-chosen ``uuid``:

    POST /api/v2/requests      {uuid, request: [task]}  -> 201; 409 if the uuid exists
    GET  /api/v2/requests/{uuid}                       -> {results: [{status, error, result}]}

``run(uuid, task)`` posts the task and polls its result until a final status, within a
deadline. The uuid is derived from the receipt id by the caller, so a retry after a lost
answer or a crash finds the *same* task (409, then its result) instead of queueing a second
one: a fresh uuid per attempt is the classic double-receipt bug of real integrations (I2).

Outcomes: the task's ``result`` (``ready``); ``DeviceError`` when the register refused it
(``error``, ``interrupted``, ``canceled``, or the server refused the task: 420 invalid, 408
busy, 401/403/404 configuration); ``OutcomeUnknown`` when no final status came within the
deadline (``wait``, ``inProgress``, ``blocked``: the link or the FN was lost mid-task) or the
server could not be reached after the post may have arrived: then the caller must settle from
the device, never print again.

Written on httpx (synchronous: device calls run on the device's own thread). Verified against
``kkt-adapter mock-atol`` and the vendor's published OpenAPI descriptions, not against a real
register; see docs/atol.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from kkt_adapter.device.atol.mapping import device_error
from kkt_adapter.errors import DeviceError

FINAL = frozenset({"ready", "error", "interrupted", "canceled"})
FIRST_POLL_S = 0.005
"""The first pause before reading a task's state again, doubled up to the poll interval: a
query takes a register milliseconds, and a flat 50 ms per task made the archive search
after a crash (up to 50 tasks) take 2.7 s of the adapter's start-up against mock-atol."""
WAITING = frozenset({"wait", "inProgress", "blocked"})


class OutcomeUnknown(RuntimeError):
    """The task may or may not have run on the register: settle from the device (I2)."""


@dataclass(frozen=True)
class TaskState:
    """One task's state as the web server reports it."""

    status: str
    result: dict[str, Any] | None
    error_code: int | None
    error_text: str


class AtolWebTransport:
    """JSON tasks through the ATOL driver's web server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        device_id: str | None = None,
        deadline_s: float = 120.0,
        poll_interval_s: float = 0.05,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.Client(
            base_url=url.rstrip("/"), auth=auth, timeout=timeout_s, transport=transport
        )
        self._params = {"deviceID": device_id} if device_id else {}
        self._deadline_s = deadline_s
        self._poll_s = poll_interval_s

    def close(self) -> None:
        self._client.close()

    def run(self, uuid: str, task: dict[str, Any]) -> dict[str, Any]:
        """Run ``task`` under ``uuid`` (or find the one already queued under it) and return
        its result; ``DeviceError`` if refused, ``OutcomeUnknown`` if its fate is unknown."""
        self.submit(uuid, task)
        return self.wait(uuid)

    def submit(self, uuid: str, task: dict[str, Any]) -> bool:
        """Queue ``task`` under ``uuid``; False if that uuid was queued already (its result is
        then the one to read, never a second task)."""
        try:
            answer = self._client.post(
                "/api/v2/requests", params=self._params, json={"uuid": uuid, "request": [task]}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the task did not arrive
            raise DeviceError(
                f"the ATOL web server does not answer: {exc}", reason="offline"
            ) from exc
        except httpx.TransportError as exc:  # sent, answer lost: it may have arrived
            raise OutcomeUnknown(f"no answer to task {uuid}: {exc!r}") from exc
        if answer.status_code in (200, 201):
            return True
        if answer.status_code == 409:
            return False
        code, text = _error_of(answer)
        reason, retry_after = _REFUSED.get(answer.status_code, ("device_error", 5))
        raise DeviceError(
            f"the ATOL web server refused task {uuid}: HTTP {answer.status_code}"
            f"{f' error {code}' if code is not None else ''}: {text}",
            reason=reason,
            retry_after=retry_after,
        )

    def state(self, uuid: str) -> TaskState | None:
        """The task's current state, or ``None`` if the server does not know the uuid."""
        try:
            answer = self._client.get(f"/api/v2/requests/{uuid}", params=self._params)
        except httpx.TransportError as exc:
            raise OutcomeUnknown(f"cannot read task {uuid}: {exc}") from exc
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            _, text = _error_of(answer)
            raise OutcomeUnknown(f"cannot read task {uuid}: HTTP {answer.status_code}: {text}")
        return _parse_state(uuid, answer)

    def wait(self, uuid: str) -> dict[str, Any]:
        """Poll ``uuid`` until a final status or the deadline; its result if ``ready``."""
        deadline = time.monotonic() + self._deadline_s
        pause = FIRST_POLL_S
        while True:
            state = self.state(uuid)
            if state is None:
                raise OutcomeUnknown(f"the ATOL web server does not know task {uuid}")
            if state.status == "ready":
                return state.result or {}
            if state.status in FINAL:
                if state.error_code is None:  # interrupted or canceled without an error
                    raise DeviceError(f"task {uuid} was {state.status}", reason="interrupted")
                refused = device_error({"code": state.error_code, "description": state.error_text})
                raise DeviceError(
                    f"the KKT refused task {uuid} ({state.status}): {refused.message}",
                    reason=refused.reason,
                    retry_after=refused.retry_after,
                )
            if time.monotonic() > deadline:
                raise OutcomeUnknown(
                    f"task {uuid} is still {state.status} after {self._deadline_s:.0f} s"
                )
            time.sleep(min(pause, self._poll_s))
            pause *= 2


# HTTP refusals of the web server itself: (our reason, Retry-After); a task's own errors are
# mapped by ``mapping.device_error``.
_REFUSED: dict[int, tuple[str, int | None]] = {
    401: ("device_config", None),
    403: ("device_config", None),
    404: ("device_config", None),
    408: ("busy", 5),
    420: ("invalid_document", None),
}


def _error_of(answer: httpx.Response) -> tuple[int | None, str]:
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        return None, answer.text[:200]
    code = error.get("code")
    return (code if isinstance(code, int) else None), str(error.get("description", ""))


def _parse_state(uuid: str, answer: httpx.Response) -> TaskState:
    try:
        body = answer.json()
        [first, *_] = body["results"]
        status = str(first["status"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OutcomeUnknown(f"unreadable state of task {uuid}: {answer.text[:200]}") from exc
    error = first.get("error") or {}
    code = error.get("code", first.get("errorCode"))
    text = error.get("description", first.get("errorDescription", ""))
    result = first.get("result")
    if status not in FINAL | WAITING:
        raise OutcomeUnknown(f"task {uuid} has an unknown status {status!r}")
    return TaskState(
        status=status,
        result=result if isinstance(result, dict) else None,
        error_code=code if isinstance(code, int) and code != 0 else None,
        error_text=str(text or ""),
    )
