"""Classification of OFD answers into done / duplicate / permanent / transient."""

from __future__ import annotations

import email.utils

import httpx
import orjson
import pytest

from kkt_adapter.hlc import HlcStamp
from kkt_adapter.ofd import Delivered, Rejected, Transient, classify
from kkt_adapter.ofd.client import retry_after_seconds


def answer(status: int, body: object = None, **headers: str) -> tuple[int, httpx.Headers, bytes]:
    content = orjson.dumps(body) if body is not None else b""
    return status, httpx.Headers(headers), content


def test_200_is_delivered_with_the_ofd_stamp() -> None:
    outcome = classify(
        *answer(
            200, {"ofd_receipt_id": "o-1", "accepted_at": "t", "hlc": "0000000001000.00002.ofd"}
        )
    )
    assert outcome == Delivered("o-1", HlcStamp(1000, 2, "ofd"), duplicate=False)


def test_replayed_200_and_409_are_done_as_duplicates() -> None:
    replay = classify(*answer(200, {"ofd_receipt_id": "o-1"}, **{"Idempotent-Replayed": "true"}))
    assert isinstance(replay, Delivered) and replay.duplicate
    conflict = classify(*answer(409, {"code": "duplicate"}))
    assert isinstance(conflict, Delivered) and conflict.duplicate


def test_409_conflict_is_a_different_document_and_permanent() -> None:
    outcome = classify(*answer(409, {"code": "conflict", "message": "another document"}))
    assert outcome == Rejected(409, "conflict", "another document")


@pytest.mark.parametrize("status", [400, 413, 422])
def test_invalid_document_is_permanent(status: int) -> None:
    outcome = classify(*answer(status, {"code": "invalid_fiscal_sign", "message": "bad FP"}))
    assert outcome == Rejected(status, "invalid_fiscal_sign", "bad FP")


@pytest.mark.parametrize("status", [401, 403, 404, 408, 429, 500, 502, 503, 504])
def test_other_answers_are_transient(status: int) -> None:
    outcome = classify(*answer(status, {"code": "x"}))
    assert isinstance(outcome, Transient) and outcome.status == status


def test_retry_after_is_honoured_in_seconds_and_as_a_date() -> None:
    outcome = classify(*answer(503, None, **{"Retry-After": "7"}))
    assert isinstance(outcome, Transient) and outcome.retry_after == 7
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == pytest.approx(30)
    assert retry_after_seconds("soon") is None


def test_non_json_error_body_is_still_classified() -> None:
    outcome = classify(503, httpx.Headers(), b"<html>Bad gateway</html>")
    assert isinstance(outcome, Transient) and "503" in outcome.reason


async def test_connection_refused_is_transient() -> None:
    from kkt_adapter.ofd import HttpOfdClient, Submission

    client = HttpOfdClient("http://127.0.0.1:9")  # discard port: nothing listens
    outcome = await client.submit(Submission("r", "p", "fn", 1, "fp", "h", {}))
    await client.close()
    assert isinstance(outcome, Transient) and "connection" in outcome.reason
