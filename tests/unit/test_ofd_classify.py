"""Classification of OFD answers into done / duplicate / permanent / transient."""

from __future__ import annotations

import email.utils
import time

import httpx
import orjson
import pytest

from kkt_adapter.hlc import HlcStamp
from kkt_adapter.ofd import Delivered, OfdAnswer, Rejected, Submission, Transient, classify
from kkt_adapter.ofd.client import retry_after_seconds

FN, FD = "9999078900001234", 42
SENT = Submission("r-1", "POS-1", FN, FD, "0000000001", "h", {})
ACK = {"ofd_receipt_id": "o-1", "fn": FN, "fd": FD}
"""A well-formed acknowledgement of ``SENT``."""


def answer(status: int, body: object = None, **headers: str) -> tuple[int, httpx.Headers, bytes]:
    content = orjson.dumps(body) if body is not None else b""
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    return status, httpx.Headers(headers), content


def judge(status: int, body: object = None, **headers: str) -> OfdAnswer:
    """``classify`` of this answer to ``SENT``."""
    return classify(*answer(status, body, **headers), sent=SENT)


def test_200_is_delivered_with_the_ofd_stamp() -> None:
    outcome = judge(200, {**ACK, "accepted_at": "t", "hlc": "0000000001000.00002.ofd"})
    assert outcome == Delivered("o-1", HlcStamp(1000, 2, "ofd"), duplicate=False)


def test_replayed_200_and_409_are_done_as_duplicates() -> None:
    replay = judge(200, ACK, **{"Idempotent-Replayed": "true"})
    assert isinstance(replay, Delivered) and replay.duplicate
    conflict = judge(409, {"code": "duplicate"})
    assert isinstance(conflict, Delivered) and conflict.duplicate


def test_a_captive_portals_html_200_is_not_delivery() -> None:
    outcome = classify(
        200, httpx.Headers({"Content-Type": "text/html"}), b"<html>Wi-Fi login</html>", sent=SENT
    )
    assert isinstance(outcome, Transient) and outcome.status == 200
    assert "not a JSON acknowledgement" in outcome.reason and "text/html" in outcome.reason


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (None, "not a JSON acknowledgement"),
        ([ACK], "not a JSON acknowledgement"),
        ({"fn": FN, "fd": FD}, "no ofd_receipt_id"),
        ({**ACK, "ofd_receipt_id": ""}, "no ofd_receipt_id"),
        ({**ACK, "ofd_receipt_id": 7}, "no ofd_receipt_id"),
        ({"ofd_receipt_id": "o-1"}, "does not name the document sent"),
        ({**ACK, "fd": FD + 1}, "does not name the document sent"),
        ({**ACK, "fd": str(FD)}, "does not name the document sent"),
        ({**ACK, "fd": True}, "does not name the document sent"),
        ({**ACK, "fn": "9999078900009999"}, "does not name the document sent"),
    ],
)
def test_a_2xx_without_a_well_formed_acknowledgement_is_transient(body: object, says: str) -> None:
    for status in (200, 201, 204):
        outcome = judge(status, body)
        assert isinstance(outcome, Transient), (status, body, outcome)
        assert says in outcome.reason and outcome.status == status


def test_json_under_a_non_json_content_type_is_not_an_acknowledgement() -> None:
    outcome = judge(200, ACK, **{"Content-Type": "text/plain"})
    assert isinstance(outcome, Transient) and "text/plain" in outcome.reason


def test_a_409_without_a_json_body_is_not_a_duplicate() -> None:
    outcome = classify(409, httpx.Headers({"Content-Type": "text/html"}), b"<html/>", sent=SENT)
    assert isinstance(outcome, Transient) and outcome.status == 409


def test_409_conflict_is_a_different_document_and_permanent() -> None:
    outcome = judge(409, {"code": "conflict", "message": "another document"})
    assert outcome == Rejected(409, "conflict", "another document")


@pytest.mark.parametrize("status", [400, 413, 422])
def test_invalid_document_is_permanent(status: int) -> None:
    outcome = judge(status, {"code": "invalid_fiscal_sign", "message": "bad FP"})
    assert outcome == Rejected(status, "invalid_fiscal_sign", "bad FP")


@pytest.mark.parametrize("status", [401, 403, 404, 408, 429, 500, 502, 503, 504])
def test_other_answers_are_transient(status: int) -> None:
    outcome = judge(status, {"code": "x"})
    assert isinstance(outcome, Transient) and outcome.status == status


def test_retry_after_is_honoured_in_seconds_and_as_a_date() -> None:
    outcome = judge(503, None, **{"Retry-After": "7"})
    assert isinstance(outcome, Transient) and outcome.retry_after == 7
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == pytest.approx(30)
    assert retry_after_seconds("soon") is None


def test_non_json_error_body_is_still_classified() -> None:
    outcome = classify(503, httpx.Headers(), b"<html>Bad gateway</html>", sent=SENT)
    assert isinstance(outcome, Transient) and "503" in outcome.reason


async def test_connection_refused_is_transient() -> None:
    from kkt_adapter.ofd import HttpOfdClient, Submission

    client = HttpOfdClient("http://127.0.0.1:9")  # discard port: nothing listens
    outcome = await client.submit(Submission("r", "p", "fn", 1, "fp", "h", {}))
    await client.close()
    assert isinstance(outcome, Transient) and "connection" in outcome.reason


async def test_a_trickling_answer_ends_at_the_total_deadline() -> None:
    from fakes import FakeOfd

    from kkt_adapter.ofd import HttpOfdClient

    with FakeOfd(trickle_interval=0.1) as ofd:
        ofd.trickle_next = 1  # headers, then a byte every 0.1 s: no read ever times out
        client = HttpOfdClient(ofd.url, timeout_seconds=0.5)
        started = time.monotonic()
        outcome = await client.submit(SENT)
        took = time.monotonic() - started
        await client.close()
    assert isinstance(outcome, Transient) and "no complete answer within 0.5 s" in outcome.reason
    assert took < 3
