"""The Python client without an adapter: its retry policy, its error mapping, and its requests
and retries against ``httpx.MockTransport`` (the adapter itself: tests/acceptance)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from helpers import SAMPLE_RECEIPT

from kkt_adapter.api.answers import Health, ReceiptAnswer, ShiftReportView
from kkt_adapter.client import (
    AsyncKktClient,
    BufferFull,
    Conflict,
    KktClient,
    KktError,
    KktUnavailable,
    NotFound,
    RefundExceedsSale,
    RefundRefused,
    RequestInProgress,
    RetryPolicy,
    ServerError,
    UnexpectedAnswer,
    Unreachable,
    ValidationRefused,
    retry_delay,
)
from kkt_adapter.client.errors import CONNECT_FAILED, NO_ANSWER, NO_ERROR_BODY, error_for
from kkt_adapter.client.retry import retry_after_seconds

POLICY = RetryPolicy(max_retries=3, deadline=20.0, backoff=0.5, backoff_cap=1.5)

ANSWER: dict[str, Any] = {
    "receipt_id": "06H2RESY9CJ8B47Q",
    "status": "pending",
    "change": "0.00",
    "fiscal": {
        "fn": "9999078900001234",
        "fd": 2,
        "fp": "1234567890",
        "shift": 1,
        "number_in_shift": 1,
        "datetime": "2026-11-24T13:15:00+03:00",
        "qr": "t=20261124T1315&s=7990.00&fn=9999078900001234&i=2&fp=1234567890&n=1",
    },
    "ofd": {"status": "pending", "queue_position": 1},
}


def refusal(
    status: int, code: str, retry_after: int | None = None, details: Any = None
) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    body = {"code": code, "message": f"{code} here", "details": details, "request_id": "rq-1"}
    return httpx.Response(status, json=body, headers=headers)


def answered(status: int, code: str, retry_after: float | None = None) -> KktError:
    return error_for(status, code)(
        code, "m", status=status, request_id="r", retry_after=retry_after
    )


# -- the policy -------------------------------------------------------------------------------


def test_an_answer_with_retry_after_is_retried_after_exactly_that_long() -> None:
    for error in (answered(503, "buffer_full", 7), answered(409, "request_in_progress", 1)):
        delay = retry_delay(POLICY, error, retries=0, elapsed=0.0, replayable=False)
        assert delay == error.retry_after


def test_refusals_without_retry_after_are_final() -> None:
    for status, code in (
        (422, "invalid_money"),
        (409, "refund_exceeds_sale"),
        (404, "not_found"),
        (503, "kkt_unavailable"),  # a refused document: the adapter sends no Retry-After
        (500, "internal_error"),
    ):
        error = answered(status, code)
        assert retry_delay(POLICY, error, retries=0, elapsed=0.0, replayable=True) is None, code


def test_no_answer_backs_off_doubling_to_the_cap_when_a_resend_does_nothing_twice() -> None:
    lost = Unreachable(NO_ANSWER, "read timeout")
    delays = [retry_delay(POLICY, lost, retries=n, elapsed=0.0, replayable=True) for n in range(4)]
    assert delays == [0.5, 1.0, 1.5, None]  # capped at 1.5; max_retries=3 ends it
    assert retry_delay(POLICY, lost, retries=0, elapsed=0.0, replayable=False) is None
    unsent = Unreachable(CONNECT_FAILED, "connection refused")
    assert retry_delay(POLICY, unsent, retries=0, elapsed=0.0, replayable=False) == 0.5


def test_a_proxy_error_without_the_adapters_body_backs_off() -> None:
    proxy = error_for(502, NO_ERROR_BODY)(NO_ERROR_BODY, "Bad Gateway", status=502)
    assert retry_delay(POLICY, proxy, retries=1, elapsed=0.0, replayable=False) == 1.0


def test_no_retry_is_scheduled_past_the_deadline() -> None:
    error = answered(503, "buffer_full", 30)
    assert retry_delay(POLICY, error, retries=0, elapsed=0.0, replayable=True) is None
    error = answered(503, "buffer_full", 5)
    assert retry_delay(POLICY, error, retries=0, elapsed=15.0, replayable=True) == 5
    assert retry_delay(POLICY, error, retries=0, elapsed=15.1, replayable=True) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds(" 2 ") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# -- the error classes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (503, "buffer_full", BufferFull),
        (503, "kkt_unavailable", KktUnavailable),
        (409, "request_in_progress", RequestInProgress),
        (409, "refund_exceeds_sale", RefundExceedsSale),
        (409, "refund_of_something_new", RefundRefused),
        (409, "a_new_conflict", Conflict),
        (422, "invalid_money", ValidationRefused),
        (422, "buffer_full", ValidationRefused),  # the code's class only at its own status
        (404, "not_found", NotFound),
        (500, "internal_error", ServerError),
        (418, "teapot", KktError),
    ],
)
def test_an_error_answer_becomes_its_codes_class_else_its_status_family(
    status: int, code: str, cls: type[KktError]
) -> None:
    assert error_for(status, code) is cls


# -- requests and retries through a mock transport --------------------------------------------


class Recorder:
    """A mock adapter answering from a script, recording what it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sent_keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]


def client(adapter: Recorder, slept: list[float], **kwargs: Any) -> KktClient:
    return KktClient(
        "http://kkt.test",
        transport=httpx.MockTransport(adapter),
        retry=POLICY,
        sleep=slept.append,
        clock=lambda: 0.0,
        **kwargs,
    )


def test_a_receipt_is_retried_with_one_key_as_retry_after_says_and_a_new_one_gets_another() -> None:
    adapter = Recorder(
        refusal(503, "buffer_full", 2),
        refusal(409, "request_in_progress", 1),
        httpx.Response(200, json=ANSWER),
        httpx.Response(200, json=ANSWER),
    )
    slept: list[float] = []
    with client(adapter, slept) as kkt:
        answer = kkt.create_receipt(SAMPLE_RECEIPT)
        kkt.create_receipt(SAMPLE_RECEIPT)
    assert isinstance(answer, ReceiptAnswer) and answer.fiscal.fd == 2
    assert slept == [2.0, 1.0]
    first, *retries, second = adapter.sent_keys()
    assert first is not None and retries == [first, first] and second not in (None, first)
    assert json.loads(adapter.requests[0].content) == SAMPLE_RECEIPT


def test_a_timed_out_receipt_is_sent_again_with_the_same_key() -> None:
    adapter = Recorder(httpx.ReadTimeout("no answer"), httpx.Response(200, json=ANSWER))
    slept: list[float] = []
    with client(adapter, slept) as kkt:
        kkt.create_receipt(SAMPLE_RECEIPT, idempotency_key="pos-key-1")
    assert adapter.sent_keys() == ["pos-key-1", "pos-key-1"]
    assert slept == [0.5]


def test_a_refusal_raises_at_once_with_its_code_details_and_key() -> None:
    details = {"field": "items[0].price", "reason": "more than 2 fraction digits"}
    adapter = Recorder(refusal(422, "invalid_money", details=details))
    slept: list[float] = []
    with client(adapter, slept) as kkt, pytest.raises(ValidationRefused) as raised:
        kkt.create_receipt(SAMPLE_RECEIPT, idempotency_key="pos-key-2")
    error = raised.value
    assert (error.code, error.status, error.details) == ("invalid_money", 422, details)
    assert (error.request_id, error.idempotency_key, error.retry_after) == (
        "rq-1",
        "pos-key-2",
        None,
    )
    assert len(adapter.requests) == 1 and slept == []


def test_giving_up_raises_the_last_refusal_with_its_retry_after() -> None:
    adapter = Recorder(refusal(503, "buffer_full", 30))
    slept: list[float] = []
    with client(adapter, slept) as kkt, pytest.raises(BufferFull) as raised:
        kkt.create_receipt(SAMPLE_RECEIPT)
    assert raised.value.retry_after == 30.0 and slept == []  # 30 s is past the 20 s deadline
    assert raised.value.idempotency_key == adapter.sent_keys()[0]


def test_an_action_without_a_key_is_not_sent_again_after_a_lost_answer() -> None:
    adapter = Recorder(httpx.ReadTimeout("no answer"))
    slept: list[float] = []
    with client(adapter, slept) as kkt, pytest.raises(Unreachable) as raised:
        kkt.close_shift()
    assert raised.value.code == NO_ANSWER and len(adapter.requests) == 1


def test_reads_tolerate_fields_a_newer_adapter_adds() -> None:
    newer = {**ANSWER, "loyalty": {"points": 3}}
    newer["fiscal"] = {**ANSWER["fiscal"], "fn_model": "FN-1.2"}
    adapter = Recorder(httpx.Response(200, json=newer), httpx.Response(200, json={"shift": 1}))
    slept: list[float] = []
    with client(adapter, slept) as kkt:
        assert kkt.create_receipt(SAMPLE_RECEIPT).fiscal.fn == "9999078900001234"
        with pytest.raises(UnexpectedAnswer) as raised:
            kkt.x_report()  # missing fields are not tolerated
    assert raised.value.status == 200 and raised.value.details


def test_an_unhealthy_adapter_is_a_health_answer_not_an_error() -> None:
    component = {"status": "error", "problems": ["out_of_paper"]}
    body = {
        "status": "unhealthy",
        "components": {
            "kkt": component,
            "ofd": {
                "status": "ok", "delivery": "relay", "circuit_breaker": "CLOSED",
                "network_status": "online", "consecutive_failures": 0, "last_success_at": None,
                "last_failure_at": None, "last_error": None, "target": "embedded",
                "emulator": True,
                "sync_leader": {
                    "leader": True, "backend": "sqlite", "holder": "h", "current_holder": "h",
                    "fence": 1, "since": None, "error": None,
                },
            },
            "buffer": {
                "status": "ok", "storage": "ok", "storage_error": None, "percent_full": 0.0,
                "current_queued": 0, "total_capacity": 10,
            },
            "erp": {"status": "not_configured"},
        },
    }  # fmt: skip
    adapter = Recorder(httpx.Response(503, json=body))
    slept: list[float] = []
    with client(adapter, slept) as kkt:
        health = kkt.health()
    assert isinstance(health, Health) and health.status == "unhealthy" and slept == []


def test_tokens_money_and_paths_go_out_as_the_api_wants() -> None:
    cash = {
        "operation_id": "op", "kind": "cash_in", "amount": "500.00", "shift": 1, "number": 1,
        "at": "2026-11-24T09:00:00+03:00", "drawer_cash": "500.00",
    }  # fmt: skip
    adapter = Recorder(httpx.Response(200, json=cash), refusal(404, "not_found"))
    slept: list[float] = []
    with client(adapter, slept, token="pos-7f1c2a4e9b0d4c1a") as kkt:
        kkt.cash_in(Decimal("500.00"), cashier="Ivanova A.")
        with pytest.raises(NotFound):
            kkt.get_receipt("a/b")
        url = kkt.receipt_view_url("06H2RESY9CJ8B47Q")
    sent, lookup = adapter.requests
    assert sent.headers["authorization"] == "Bearer pos-7f1c2a4e9b0d4c1a"
    assert json.loads(sent.content) == {"amount": "500.00", "cashier": "Ivanova A."}
    assert sent.headers["idempotency-key"] and sent.url.path == "/v1/kkt/cash/in"
    assert lookup.url.raw_path == b"/v1/kkt/receipt/a%2Fb"
    assert url == "http://kkt.test/v1/kkt/receipt/06H2RESY9CJ8B47Q/view"


async def test_the_async_client_retries_the_same_way() -> None:
    adapter = Recorder(
        httpx.ConnectError("refused"),
        refusal(503, "kkt_unavailable", 5, {"reason": "out_of_paper"}),
        httpx.Response(200, json=ANSWER),
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def handler(request: httpx.Request) -> httpx.Response:
        return adapter(request)

    transport = httpx.MockTransport(handler)
    async with AsyncKktClient(
        "http://kkt.test", transport=transport, retry=POLICY, sleep=sleep, clock=lambda: 0.0
    ) as kkt:
        answer = await kkt.create_receipt(SAMPLE_RECEIPT)
    assert answer.receipt_id == ANSWER["receipt_id"]
    assert slept == [0.5, 5.0]
    assert len(set(adapter.sent_keys())) == 1 and None not in adapter.sent_keys()


def test_shift_reports_are_typed() -> None:
    report = {
        "kind": "x", "shift": 1, "fn": "9999078900001234", "fd": 3,
        "opened_at": None, "closed_at": None, "receipts": 1, "totals": {"sale": "9.90"},
    }  # fmt: skip
    adapter = Recorder(httpx.Response(200, json=report))
    slept: list[float] = []
    with client(adapter, slept) as kkt:
        x = kkt.x_report()
    assert isinstance(x, ShiftReportView) and x.totals == {"sale": "9.90"}
    assert adapter.requests[0].method == "POST"
