"""HTTP client to the OFD and the classification of its answers.

Answer classes (DESIGN §5): a 2xx is done only when it is a well-formed acknowledgement (I8): a
JSON object naming the document sent (its ``fn`` and ``fd``) and giving an ``ofd_receipt_id``;
any other 2xx - a captive portal's ``200 text/html``, a proxy's empty 204, an answer about
another document - is transient, with the reason why. A 409 with a JSON body is done as a
duplicate (the OFD already has the document), except one whose code is ``conflict``: the OFD
holds a *different* document under this identity, which must not pass for delivered; that one,
400, 413 and 422 are permanent rejections of the document (DLQ); everything else - 408, 429,
5xx, timeouts, connection errors, and also 401/403/404, which say the OFD endpoint or
credentials are wrong rather than the document - is transient: retried with backoff and counted
by the circuit breaker.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import orjson

from kkt_adapter.domain.lifecycle import CallOutcome
from kkt_adapter.hlc import HlcStamp
from kkt_adapter.settings import default_of

log = logging.getLogger("kkt_adapter")

RECEIPTS_PATH = "/ofd/v1/receipts"
HEALTH_PATH = "/ofd/v1/health"
EMULATOR_HEADER = "x-ofd-emulator"
"""The OFD emulator (``kkt-adapter mock-ofd``) sends it on every answer (I7)."""
IDENTIFY_SECONDS = 2.0
PERMANENT_STATUSES = frozenset({400, 413, 422})


@dataclass(frozen=True)
class Submission:
    """One fiscal document on its way to the OFD."""

    receipt_id: str
    pos_id: str
    fn: str
    fd: int
    fp: str
    hlc: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Delivered:
    """The OFD holds the document (``duplicate``: it already had it)."""

    ofd_receipt_id: str | None
    hlc: HlcStamp | None
    """The OFD's clock in its answer, merged into the buffer's (I5)."""
    duplicate: bool


@dataclass(frozen=True)
class Rejected:
    """The OFD refused the document itself: it goes to the DLQ."""

    status: int
    code: str
    reason: str


@dataclass(frozen=True)
class Transient:
    """The OFD could not take the document now: retry later."""

    reason: str
    status: int | None = None
    retry_after: float | None = None


OfdAnswer = Delivered | Rejected | Transient
"""What one submission to the OFD came to."""


def call_outcome(answer: OfdAnswer) -> CallOutcome:
    """The answer in the one vocabulary of OFD call outcomes (metrics, logs)."""
    if isinstance(answer, Delivered):
        return CallOutcome.DUPLICATE if answer.duplicate else CallOutcome.DELIVERED
    return CallOutcome.REJECTED if isinstance(answer, Rejected) else CallOutcome.TRANSIENT


class OfdClient(Protocol):
    """What the delivery worker needs from an OFD."""

    emulator: bool
    """Whether the OFD is known to be an emulator (I7): it said so in an answer."""

    async def submit(self, submission: Submission) -> OfdAnswer: ...

    async def close(self) -> None: ...


def _body(submission: Submission) -> bytes:
    return orjson.dumps(
        {
            "receipt_id": submission.receipt_id,
            "pos_id": submission.pos_id,
            "fn": submission.fn,
            "fd": submission.fd,
            "fp": submission.fp,
            "hlc": submission.hlc,
            "document": submission.document,
        }
    )


def _headers(submission: Submission) -> dict[str, str]:
    return {"Idempotency-Key": submission.receipt_id, "Content-Type": "application/json"}


def _past_deadline(seconds: float) -> Transient:
    return Transient(f"timeout: no complete answer within {seconds} s")


class HttpOfdClient:
    """The OFD over the network, with connection reuse.

    Every submission has a total deadline (``timeout_seconds``, ``KKT_OFD_TIMEOUT_SECONDS``),
    answer body included: a per-read timeout never fires on an answer that trickles in a byte
    every few seconds, and one such answer used to hold its whole delivery pass. Connecting
    has 5 s of it at most.

    aiohttp rather than httpx here: delivery throughput is bound by the client's CPU, and on
    the same machine and load httpx spent about 1.3 ms of CPU per request, aiohttp about 0.1 ms
    (16 keep-alive connections to the OFD emulator), which capped draining at about 450
    receipts/s with httpx.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 32,
        timeout_seconds: float = float(default_of("ofd_timeout_seconds")),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.emulator = False
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _note(self, headers: Mapping[str, str]) -> None:
        """Learn from an answer whether the OFD is an emulator; say so once when it is."""
        if not self.emulator and headers.get(EMULATOR_HEADER):
            self.emulator = True
            log.warning("OFD: EMULATOR at %s - documents do not reach a real OFD", self.base_url)

    async def identify(self) -> None:
        """Ask the OFD's health whether it is an emulator (at start-up, before any delivery);
        no answer changes nothing: the first delivery's answer says it too."""
        try:
            async with asyncio.timeout(min(IDENTIFY_SECONDS, self.timeout_seconds)):
                async with self._open().get(self.base_url + HEALTH_PATH) as answer:
                    self._note(answer.headers)
        except (TimeoutError, aiohttp.ClientError):
            return

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: it must belong to the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout_seconds, connect=min(5.0, self.timeout_seconds)
                ),
            )
        return self._session

    async def submit(self, submission: Submission) -> OfdAnswer:
        url = self.base_url + RECEIPTS_PATH
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self._open().post(
                    url, data=_body(submission), headers=_headers(submission)
                ) as answer:
                    content = await answer.read()
                    self._note(answer.headers)
                    return classify(answer.status, answer.headers, content, sent=submission)
        except TimeoutError:
            return _past_deadline(self.timeout_seconds)
        except aiohttp.ClientError as exc:
            return Transient(f"connection error: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class AsgiOfdClient:
    """An OFD app in this process (the embedded emulator), called through httpx's ASGI
    transport: the same requests and answers as over the network, without a socket."""

    def __init__(
        self, app: Any, *, timeout_seconds: float = float(default_of("ofd_timeout_seconds"))
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.emulator = True  # only the embedded OFD emulator runs in this process
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ofd-emulator"
        )

    async def submit(self, submission: Submission) -> OfdAnswer:
        try:  # the same total deadline as over the network (the emulator's latency_ms)
            async with asyncio.timeout(self.timeout_seconds):
                answer = await self._http.post(
                    RECEIPTS_PATH, content=_body(submission), headers=_headers(submission)
                )
        except TimeoutError:
            return _past_deadline(self.timeout_seconds)
        return classify(answer.status_code, answer.headers, answer.content, sent=submission)

    async def close(self) -> None:
        await self._http.aclose()


def classify(
    status: int, headers: Mapping[str, str], content: bytes, *, sent: Submission
) -> OfdAnswer:
    """Turn the OFD's answer to ``sent`` into an outcome (pure; see the module docstring).

    ``headers`` must look names up case-insensitively (httpx and aiohttp headers do).
    """
    body = _json_object(content) if _is_json(headers) else None
    if 200 <= status < 300 or status == 409:
        not_acknowledged = _not_an_acknowledgement(status, headers, body, sent)
        if not_acknowledged is not None:
            return Transient(not_acknowledged, status)
    body = body or {}
    hlc = _stamp(body.get("hlc")) or _stamp(headers.get("x-ofd-hlc"))
    conflict = status == 409 and body.get("code") == "conflict"
    if 200 <= status < 300 or (status == 409 and not conflict):
        return Delivered(
            ofd_receipt_id=_text(body.get("ofd_receipt_id")),
            hlc=hlc,
            duplicate=status == 409 or headers.get("idempotent-replayed") == "true",
        )
    code = _text(body.get("code")) or f"http_{status}"
    reason = _text(body.get("message")) or _text(body.get("detail")) or f"HTTP {status}"
    if status in PERMANENT_STATUSES or conflict:
        return Rejected(status, code, reason)
    return Transient(f"{code}: {reason}", status, retry_after_seconds(headers.get("retry-after")))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _not_an_acknowledgement(
    status: int, headers: Mapping[str, str], body: dict[str, Any] | None, sent: Submission
) -> str | None:
    """Why a 2xx (or 409) answer to ``sent`` is not an acknowledgement; ``None`` if it is.

    A 409 need only be a JSON object (its ``code`` says duplicate or conflict); a 2xx must
    name the document sent and give the OFD's receipt id.
    """
    if body is None:
        kind = headers.get("content-type") or "no content type"
        return f"OFD answered HTTP {status} with {kind}, not a JSON acknowledgement"
    if status == 409:
        return None
    if not _text(body.get("ofd_receipt_id")):
        return f"OFD answered HTTP {status} with no ofd_receipt_id: not an acknowledgement"
    fn, fd = body.get("fn"), body.get("fd")
    # type() too: JSON true would otherwise equal FD 1, and "42" is not 42.
    if type(fn) is not str or type(fd) is not int or (fn, fd) != (sent.fn, sent.fd):
        return (
            f"OFD answered HTTP {status} for fn {fn!r} fd {fd!r}: does not name the document"
            f" sent (fn {sent.fn} fd {sent.fd})"
        )
    return None


def _is_json(headers: Mapping[str, str]) -> bool:
    """A JSON media type, or none given (an error body is read as JSON if it parses)."""
    kind = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    return kind == "" or kind == "application/json" or kind.endswith("+json")


def _json_object(content: bytes) -> dict[str, Any] | None:
    """The body as a JSON object; ``None`` if it is anything else."""
    try:
        value = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _stamp(value: object) -> HlcStamp | None:
    if not isinstance(value, str):
        return None
    try:
        return HlcStamp.parse(value)
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
