"""The OFD emulator's HTTP app: ``/ofd/v1/*`` for the adapter, ``/_control/*`` for tests.

It is an emulator and says so (title, health, the start-up line, and ``X-OFD-Emulator`` on
every answer, by which an adapter using it over the network labels it). A submission is handled in
this order: the control mode (:mod:`kkt_adapter.mock_ofd.modes`), then validation (key, body,
required tags, identity, fiscal sign), then the idempotent store
(:mod:`kkt_adapter.mock_ofd.store`). Every answer carries ``X-OFD-HLC``, the emulator's clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pydantic
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kkt_adapter.domain.ffd import missing_tags, vat_mismatches
from kkt_adapter.domain.sign import verify_sign
from kkt_adapter.errors import (
    DocumentRejected,
    IdentityConflict,
    InvalidModeSettings,
    KktAdapterError,
    OfdUnavailable,
    PayloadTooLarge,
)
from kkt_adapter.hlc import HlcStamp, HybridClock, system_wall_ms
from kkt_adapter.http_errors import ErrorAnswer, install_error_handlers, request_id
from kkt_adapter.mock_ofd.modes import Action, Control, Mode, Random
from kkt_adapter.mock_ofd.store import Answer, OfdStore, Outcome, Submission

TITLE = "kkt-adapter OFD emulator"
HLC_HEADER = "X-OFD-HLC"
EMULATOR_HEADER = "X-OFD-Emulator"
"""On every answer: the adapter labels an OFD that sends it as an emulator (I7)."""
MAX_BODY_BYTES = 1_048_576

log = logging.getLogger(__name__)
MAX_KEY_LENGTH = 200
MAX_PAGE_LIMIT = 1000


_RETRY = {"Retry-After": "1"}


class SubmissionIn(pydantic.BaseModel):
    """The body of ``POST /ofd/v1/receipts``; strict, so a type slip is reported, not coerced."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    receipt_id: Annotated[str, pydantic.Field(min_length=1, max_length=200)]
    pos_id: Annotated[str, pydantic.Field(min_length=1, max_length=200)]
    fn: Annotated[str, pydantic.Field(min_length=1, max_length=32)]
    fd: Annotated[int, pydantic.Field(ge=1)]
    fp: Annotated[str, pydantic.Field(min_length=1, max_length=32)]
    hlc: str
    document: dict[str, Any]

    @pydantic.field_validator("hlc")
    @classmethod
    def _hlc_is_a_stamp(cls, value: str) -> str:
        HlcStamp.parse(value)  # raises ValueError, reported as a field error
        return value


@dataclass
class Emulator:
    """The running emulator: store, control state, clock and the fiscal-sign key."""

    store: OfdStore
    control: Control
    clock: HybridClock
    key: bytes


def create_mock_ofd_app(
    data_dir: Path,
    *,
    key: bytes,
    node_id: str = "ofd-emulator",
    rand: Random | None = None,
) -> FastAPI:
    """The OFD emulator as an ASGI app storing into ``<data_dir>/mock-ofd.sqlite``.

    ``key`` must be the KKT emulator's key (it verifies the fiscal sign); ``rand`` lets tests
    make the ``flaky`` mode deterministic.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = OfdStore(data_dir)
        last = await asyncio.to_thread(store.open)
        control = Control(rand=rand) if rand is not None else Control()

        def wall_ms() -> int:  # this machine's clock, moved as the control says
            return system_wall_ms() + control.settings.clock_offset_ms

        clock = HybridClock(node_id, last=HlcStamp.parse(last) if last else None, wall=wall_ms)
        app.state.emulator = Emulator(store, control, clock, key)
        try:
            yield
        finally:
            await asyncio.to_thread(store.close)

    app = FastAPI(
        title=TITLE,
        description="An OFD EMULATOR for tests, demos and benchmarks; not a real OFD.",
        lifespan=lifespan,
    )
    install_error_handlers(app, validation_code="invalid_request")
    app.include_router(router)
    app.add_middleware(_OfdHeaders)
    return app


router = APIRouter()


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _set_stamp(request: Request, stamp: HlcStamp) -> str:
    """Make ``stamp`` the ``X-OFD-HLC`` of this answer."""
    text = str(stamp)
    request.scope.setdefault("state", {})["ofd_hlc"] = text
    return text


@router.post("/ofd/v1/receipts")
async def submit_receipt(request: Request) -> Response:
    """Take a fiscal document: control mode, then validation, then the idempotent store."""
    emulator = _emulator(request)
    stamp = _set_stamp(request, emulator.clock.now())
    decision = emulator.control.decide()
    if decision.latency_ms:
        await asyncio.sleep(decision.latency_ms / 1000)
    if decision.action is Action.FAIL:
        await emulator.store.count(failed=1, last_hlc=stamp)
        raise OfdUnavailable("the OFD emulator is set to fail", retry_after=1)
    try:
        if decision.action is Action.REJECT:
            raise DocumentRejected("the OFD emulator is set to reject the next documents")
        body = await _body(request)
        submission, remote = _validate(request.headers.get("idempotency-key"), body)
        _check_document(submission, emulator.key)
    except KktAdapterError:
        await emulator.store.count(rejected=1, last_hlc=stamp)
        raise
    return await _store(request, emulator, submission, remote)


async def _store(
    request: Request, emulator: Emulator, submission: Submission, remote: HlcStamp
) -> Response:
    stamp = _set_stamp(request, emulator.clock.merge(remote))
    accepted_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    fresh = Answer(f"OFD-{uuid.uuid4().hex}", accepted_at, stamp, submission.fn, submission.fd)
    outcome, answer = await emulator.store.accept(submission, fresh)
    if outcome is Outcome.CONFLICT or answer is None:
        raise IdentityConflict(
            "a different document is already stored under this Idempotency-Key or (fn, fd)",
            details={
                "idempotency_key": submission.idempotency_key,
                "fn": submission.fn,
                "fd": submission.fd,
            },
        )
    headers = {"Idempotent-Replayed": "true"} if outcome is Outcome.REPLAYED else None
    return _json(answer.as_dict(), headers=headers)


def _validate(key: str | None, body: bytes) -> tuple[Submission, HlcStamp]:
    """The submission in ``body`` under ``key``; raises a 422 error naming what is wrong."""
    if key is None or not key.strip():
        raise DocumentRejected(
            "the Idempotency-Key header is required", code="idempotency_key_missing"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise DocumentRejected(
            f"the Idempotency-Key is longer than {MAX_KEY_LENGTH} characters",
            code="invalid_request",
            details={"field": "Idempotency-Key"},
        )
    try:
        parsed = SubmissionIn.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise _invalid_request(exc) from None
    identity = {name: getattr(parsed, name) for name in ("receipt_id", "pos_id", "fn", "fd", "fp")}
    # A repeat is the same fiscal document: the POS id is the adapter's label, not part of it
    # (a receipt recovered from the KKT's journal no longer knows its till).
    fiscal = {name: value for name, value in identity.items() if name != "pos_id"}
    fingerprint = hashlib.sha256(
        orjson.dumps({**fiscal, "document": parsed.document}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    submission = Submission(
        idempotency_key=key,
        hlc=parsed.hlc,
        document=parsed.document,
        fingerprint=fingerprint,
        **identity,
    )
    return submission, HlcStamp.parse(parsed.hlc)


def _invalid_request(exc: pydantic.ValidationError) -> DocumentRejected:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "reason": e["msg"]}
        for e in exc.errors()[:10]
    ]
    return DocumentRejected(
        "the submission is invalid",
        code="invalid_request",
        details={"field": errors[0]["field"] if errors else None, "errors": errors},
    )


_IDENTITY_TAGS = (("1192", "receipt_id"), ("1041", "fn"), ("1040", "fd"), ("1077", "fp"))


def _check_document(submission: Submission, key: bytes) -> None:
    """Required tags present, VAT sums match the lines, identity fields match the document,
    fiscal sign verifies."""
    document = submission.document
    missing = missing_tags(document)
    if missing:
        raise DocumentRejected(
            "the document lacks required tags", code="missing_tags", details={"missing": missing}
        )
    wrong = vat_mismatches(document)
    if wrong:
        first = wrong[0]
        raise DocumentRejected(
            f"VAT sum tag {first['tag']} is {first['found']}, its lines give {first['expected']}",
            details={**first, "mismatches": wrong},
        )
    for tag, field in _IDENTITY_TAGS:
        claimed = getattr(submission, field)
        # type() too: JSON true would otherwise equal fd 1.
        if type(document.get(tag)) is not type(claimed) or document.get(tag) != claimed:
            raise DocumentRejected(
                f"document tag {tag} does not match {field}",
                code="document_mismatch",
                details={"field": field, "tag": tag},
            )
    if not verify_sign(key, document):
        raise DocumentRejected(
            "the fiscal sign (tag 1077) does not match the document",
            code="invalid_fiscal_sign",
            details={"fp": submission.fp},
        )


@router.get("/ofd/v1/health")
async def health(request: Request) -> Response:
    """The emulator's own health; 503 while it is set to fail, as a down OFD would be."""
    settings = _emulator(request).control.settings
    failing = settings.mode is Mode.FAIL
    body = {
        "status": "unavailable" if failing else "ok",
        "emulator": True,
        "mode": settings.mode.value,
        "control": settings.as_dict(),
    }
    return _json(body, 503 if failing else 200, _RETRY if failing else None)


@router.post("/_control/mode")
async def set_mode(request: Request) -> Response:
    """Change the failure mode; a body with ``mode`` resets omitted fields to their defaults,
    a body without it changes only the fields it names. Returns the resulting settings."""
    try:
        update = orjson.loads(await _body(request))
    except orjson.JSONDecodeError:
        update = None
    if not isinstance(update, dict):
        refusal = ErrorAnswer(
            422, "invalid_request", "the body must be a JSON object", details={"field": "body"}
        )
        return refusal.response(request_id(request))
    try:
        settings = _emulator(request).control.update(update)
    except InvalidModeSettings as exc:
        details = {"field": exc.field, "reason": exc.reason}
        return ErrorAnswer(422, "invalid_request", str(exc), details=details).response(
            request_id(request)
        )
    return _json(settings.as_dict())


@router.get("/_control/stats")
async def stats(request: Request) -> Response:
    """Persisted counters: every submission, stored documents, repeats, 4xx and 503 answers."""
    return _json(asdict(await _emulator(request).store.stats()))


@router.get("/_control/received")
async def received(
    request: Request,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = 100,
) -> Response:
    """Stored documents in arrival order, one page at a time."""
    items, total = await _emulator(request).store.received(page, limit)
    return _json({"items": items, "page": page, "limit": limit, "total": total})


@router.post("/_control/reset")
async def reset(request: Request) -> Response:
    """Forget every document and counter; the mode goes back to success."""
    emulator = _emulator(request)
    await emulator.store.reset()
    emulator.control.reset()
    return _json({"status": "reset", "mode": emulator.control.settings.as_dict()})


async def _body(request: Request) -> bytes:
    """The request body, refused with 413 beyond ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    return body


class _OfdHeaders:
    """Gives each request an id (``X-Request-ID``, kept if the caller sent a sane one) and
    adds ``X-OFD-Emulator`` and ``X-OFD-HLC`` to every answer (the stamp the handler used,
    else a fresh one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        state = scope.setdefault("state", {})
        state["request_id"] = _request_id(scope)

        async def send_with_stamp(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", state["request_id"].encode()))
                headers.append((EMULATOR_HEADER.lower().encode(), b"kkt-adapter"))
                stamp = state.get("ofd_hlc") or _current_stamp(scope)
                if stamp:
                    headers.append((HLC_HEADER.lower().encode(), stamp.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_stamp)


def _current_stamp(scope: Scope) -> str:
    emulator: Emulator | None = getattr(scope["app"].state, "emulator", None)
    return str(emulator.clock.now()) if emulator is not None else ""


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and 0 < len(value) <= 64 and value.isascii():
            return str(value.decode())
    return secrets.token_hex(8)
