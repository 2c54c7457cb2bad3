"""The OFD emulator's HTTP contract (DESIGN §5), in-process."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import SAMPLE_RECEIPT, priced_receipt

from kkt_adapter.api.schemas import parse_receipt
from kkt_adapter.device import EmulatedKkt
from kkt_adapter.domain import to_ffd
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.hlc import HlcStamp
from kkt_adapter.mock_ofd import create_mock_ofd_app

KEY = b"k"
ADAPTER_HLC = "0001732450000000.00012.pos-1"

Submit = Callable[..., Any]


@pytest.fixture
async def ofd(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The emulator in-process (lifespan included) behind an httpx client."""
    app = create_mock_ofd_app(tmp_path / "ofd", key=KEY)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ofd") as client:
            yield client


@pytest.fixture
def kkt(tmp_path: Path) -> EmulatedKkt:
    return EmulatedKkt(tmp_path / "kkt", key=KEY)


@pytest.fixture
def fiscalize(kkt: EmulatedKkt) -> Callable[..., FiscalResult]:
    """Print a receipt on the KKT emulator; the result's document is correctly signed."""

    def fiscalize(body: dict[str, Any] | None = None) -> FiscalResult:
        receipt_id = str(uuid.uuid4())
        receipt = parse_receipt(json.dumps(body or SAMPLE_RECEIPT).encode(), date.today())
        return kkt.print_receipt(receipt_id, to_ffd(receipt, receipt_id))

    return fiscalize


def submission(result: FiscalResult, hlc: str = ADAPTER_HLC) -> dict[str, Any]:
    return {
        "receipt_id": result.receipt_id,
        "pos_id": "POS-001",
        "fn": result.fn,
        "fd": result.fd,
        "fp": result.fp,
        "hlc": hlc,
        "document": copy.deepcopy(result.document),
    }


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or body["receipt_id"]}
    return await client.post("/ofd/v1/receipts", json=body, headers=headers)


async def stats(client: httpx.AsyncClient) -> dict[str, int]:
    answer = await client.get("/_control/stats")
    assert answer.status_code == 200
    result: dict[str, int] = answer.json()
    return result


async def set_mode(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/_control/mode", json=body)


def ofd_stamp(answer: httpx.Response) -> HlcStamp:
    """The emulator's clock in ``X-OFD-HLC``: a well-formed stamp of the emulator's node."""
    stamp = HlcStamp.parse(answer.headers["X-OFD-HLC"])
    assert stamp.node == "ofd-emulator"
    return stamp


async def test_first_submission_is_stored_and_answered(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    document = fiscalize()
    answer = await post(ofd, submission(document))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"ofd_receipt_id", "accepted_at", "hlc", "fn", "fd"}
    assert (body["fn"], body["fd"]) == (document.fn, document.fd)  # names what it acknowledges
    assert body["accepted_at"].endswith("+00:00")
    assert HlcStamp.parse(body["hlc"]).node == "ofd-emulator"
    assert answer.headers["X-OFD-HLC"] == body["hlc"]
    assert "Idempotent-Replayed" not in answer.headers
    assert answer.headers["X-OFD-Emulator"] == "kkt-adapter"  # it says what it is (I7)
    assert await stats(ofd) == {
        "submissions": 1,
        "unique_documents": 1,
        "duplicate_submissions": 0,
        "rejected": 0,
        "failed": 0,
    }


async def test_answer_stamp_merges_the_adapter_clock(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    future = HlcStamp(int(time.time() * 1000) + 3_600_000, 7, "pos-1")
    answer = await post(ofd, submission(fiscalize(), hlc=str(future)))
    stamp = HlcStamp.parse(answer.json()["hlc"])
    assert (stamp.wall_ms, stamp.counter) == (future.wall_ms, 8)


async def test_repeat_by_key_replays_the_first_answer(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    first = await post(ofd, body)
    again = await post(ofd, body)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    counters = await stats(ofd)
    assert (counters["submissions"], counters["unique_documents"]) == (2, 1)
    assert counters["duplicate_submissions"] == 1


async def test_repeat_by_fn_fd_under_a_new_key_replays(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    first = await post(ofd, body)
    again = await post(ofd, body, key="another-key")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    # The replay carries the first answer's stamp; its header, the emulator's clock now.
    assert ofd_stamp(again) > HlcStamp.parse(first.json()["hlc"])
    assert await stats(ofd) == {
        "submissions": 2,
        "unique_documents": 1,
        "duplicate_submissions": 1,
        "rejected": 0,
        "failed": 0,
    }


async def test_different_document_under_a_stored_key_is_a_conflict(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    first = submission(fiscalize())
    stored = await post(ofd, first)
    answer = await post(ofd, submission(fiscalize(priced_receipt(500))), key=first["receipt_id"])
    assert answer.status_code == 409
    assert answer.json()["code"] == "conflict"
    assert ofd_stamp(answer) > HlcStamp.parse(stored.json()["hlc"])  # the clock moved on
    counters = await stats(ofd)
    assert (counters["unique_documents"], counters["rejected"]) == (1, 1)


async def test_different_document_with_a_stored_fn_fd_is_a_conflict(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult], tmp_path: Path
) -> None:
    body = submission(fiscalize())
    await post(ofd, body)
    twin = EmulatedKkt(tmp_path / "twin", key=KEY, fn=body["fn"])  # same FN, same FD, another
    receipt = parse_receipt(json.dumps(SAMPLE_RECEIPT).encode(), date.today())
    other = submission(twin.print_receipt("other-receipt", to_ffd(receipt, "other-receipt")))
    twin.close()
    assert (other["fn"], other["fd"]) == (body["fn"], body["fd"])
    answer = await post(ofd, other, key="new-key")
    assert answer.status_code == 409
    assert answer.json()["details"]["fd"] == body["fd"]


async def test_the_same_document_from_another_till_label_is_a_repeat(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    stored = await post(ofd, body)
    # Recovered from the KKT's journal, a receipt no longer knows its POS: still a repeat.
    again = await post(ofd, {**body, "pos_id": "(recovered from the KKT)"})
    assert again.status_code == 200, again.text
    assert again.json()["ofd_receipt_id"] == stored.json()["ofd_receipt_id"]
    assert (await stats(ofd))["unique_documents"] == 1


async def test_missing_tags_are_listed(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    del body["document"]["1020"]
    del body["document"]["1059"][0]["1030"]
    answer = await post(ofd, body)
    assert answer.status_code == 422
    assert answer.json()["code"] == "missing_tags"
    assert answer.json()["details"]["missing"] == ["1020", "1059[0].1030"]
    assert (await stats(ofd))["rejected"] == 1


async def test_vat_sums_that_do_not_match_the_lines_are_rejected_naming_the_tag(
    ofd: httpx.AsyncClient, kkt: EmulatedKkt
) -> None:
    receipt = parse_receipt(json.dumps(SAMPLE_RECEIPT).encode(), date.today())
    document = to_ffd(receipt, "vat-1")
    document["1102"] += 1  # signed by the KKT as it is: only the VAT sum is wrong
    body = submission(kkt.print_receipt("vat-1", document))
    answer = await post(ofd, body)
    assert answer.status_code == 422
    assert answer.json()["code"] == "document_rejected"
    assert "1102" in answer.json()["message"]
    details = answer.json()["details"]
    assert (details["tag"], details["found"]) == ("1102", details["expected"] + 1)
    assert (await stats(ofd))["rejected"] == 1


async def test_every_rate_with_its_vat_sums_is_accepted(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    rates = ["vat22", "vat10", "vat5", "vat7", "vat0", "none"]
    rates += ["vat22_122", "vat10_110", "vat5_105", "vat7_107"]
    items = [{"name": r, "price": "123.45", "quantity": "3", "vat": r} for r in rates]
    total = len(rates) * 37035  # 123.45 x 3 each, in kopecks
    amount = f"{total // 100}.{total % 100:02d}"
    body = {**SAMPLE_RECEIPT, "items": items, "payments": [{"method": "card", "amount": amount}]}
    result = fiscalize(body)
    assert {"1102", "1103", "1104", "1105", "1106", "1107"} <= result.document.keys()
    answer = await post(ofd, submission(result))
    assert answer.status_code == 200, answer.text


async def test_altered_total_breaks_the_fiscal_sign(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    body["document"]["1020"] += 100
    answer = await post(ofd, body)
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_fiscal_sign"
    assert (await stats(ofd))["unique_documents"] == 0


@pytest.mark.parametrize(
    ("field", "value", "tag"),
    [("fd", 9999, "1040"), ("fn", "0000000000000000", "1041"), ("fp", "0123456789", "1077")],
)
async def test_identity_must_match_the_document(
    ofd: httpx.AsyncClient,
    fiscalize: Callable[..., FiscalResult],
    field: str,
    value: Any,
    tag: str,
) -> None:
    answer = await post(ofd, {**submission(fiscalize()), field: value})
    assert answer.status_code == 422
    assert answer.json()["code"] == "document_mismatch"
    assert answer.json()["details"] == {"field": field, "tag": tag}


async def test_receipt_id_must_match_tag_1192(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    answer = await post(ofd, {**submission(fiscalize()), "receipt_id": "other"}, key="k1")
    assert answer.status_code == 422
    assert answer.json()["details"]["tag"] == "1192"


async def test_idempotency_key_is_required(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    answer = await ofd.post("/ofd/v1/receipts", json=submission(fiscalize()))
    assert answer.status_code == 422
    assert answer.json()["code"] == "idempotency_key_missing"
    assert answer.json()["request_id"] == answer.headers["X-Request-ID"]


@pytest.mark.parametrize("hlc", ["yesterday", "", None])
async def test_invalid_or_missing_hlc_is_refused(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult], hlc: str | None
) -> None:
    body = submission(fiscalize())
    if hlc is None:
        del body["hlc"]
    else:
        body["hlc"] = hlc
    answer = await post(ofd, body)
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"
    assert answer.json()["details"]["field"] == "hlc"


@pytest.mark.parametrize(
    "content", [b"not json", b"[]", b'{"receipt_id": "x"}', b'{"fd": "1", "extra": 1}']
)
async def test_malformed_bodies_are_invalid_requests(
    ofd: httpx.AsyncClient, content: bytes
) -> None:
    answer = await ofd.post("/ofd/v1/receipts", content=content, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"


async def test_fail_mode_answers_503_with_retry_after(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    mode = await set_mode(ofd, mode="fail")
    assert mode.json()["mode"] == "fail"
    answer = await post(ofd, submission(fiscalize()))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["code"] == "ofd_unavailable"
    assert "hlc" not in answer.json()  # an error body: the stamp is in the header only
    assert ofd_stamp(answer) > ofd_stamp(mode)
    health = await ofd.get("/ofd/v1/health")
    assert health.status_code == 503 and health.json()["emulator"] is True
    counters = await stats(ofd)
    assert (counters["failed"], counters["unique_documents"]) == (1, 0)


async def test_reject_next_rejects_once_then_accepts(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    await set_mode(ofd, reject_next=1)
    body = submission(fiscalize())
    rejected = await post(ofd, body)
    assert rejected.status_code == 422
    assert rejected.json()["code"] == "document_rejected"
    accepted = await post(ofd, body)
    assert accepted.status_code == 200
    assert "Idempotent-Replayed" not in accepted.headers


async def test_fail_next_fails_n_then_accepts(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    await set_mode(ofd, fail_next=2)
    body = submission(fiscalize())
    codes = [(await post(ofd, body)).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


@pytest.mark.parametrize(("rate", "status"), [(1.0, 503), (0.0, 200)])
async def test_flaky_extremes(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult], rate: float, status: int
) -> None:
    await set_mode(ofd, mode="flaky", failure_rate=rate)
    codes = {(await post(ofd, submission(fiscalize()))).status_code for _ in range(5)}
    assert codes == {status}


async def test_latency_is_applied(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    await set_mode(ofd, latency_ms=200)
    started = time.monotonic()
    answer = await post(ofd, submission(fiscalize()))
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_concurrent_identical_submissions_store_once(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    answers = await asyncio.gather(*(post(ofd, body) for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert sum("Idempotent-Replayed" in a.headers for a in answers) == 49
    assert await stats(ofd) == {
        "submissions": 50,
        "unique_documents": 1,
        "duplicate_submissions": 49,
        "rejected": 0,
        "failed": 0,
    }


async def test_received_lists_documents_in_arrival_order_by_page(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    bodies = [submission(fiscalize(priced_receipt(100 + i))) for i in range(3)]
    answers = [await post(ofd, body) for body in bodies]
    page = (await ofd.get("/_control/received", params={"page": 2, "limit": 2})).json()
    assert (page["page"], page["limit"], page["total"]) == (2, 2, 3)
    [item] = page["items"]
    assert item["receipt_id"] == bodies[2]["receipt_id"]
    assert item["document"] == bodies[2]["document"]
    assert item["ofd_receipt_id"] == answers[2].json()["ofd_receipt_id"]
    assert item["hlc"] == ADAPTER_HLC
    first = (await ofd.get("/_control/received")).json()
    assert [i["fd"] for i in first["items"]] == [b["fd"] for b in bodies]


@pytest.mark.parametrize("params", [{"limit": 1001}, {"page": 0}, {"limit": "x"}])
async def test_received_paging_is_validated(ofd: httpx.AsyncClient, params: dict[str, Any]) -> None:
    answer = await ofd.get("/_control/received", params=params)
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"


async def test_reset_forgets_documents_counters_and_mode(
    ofd: httpx.AsyncClient, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    await post(ofd, body)
    await set_mode(ofd, mode="flaky", failure_rate=0.5, latency_ms=5)
    answer = await ofd.post("/_control/reset")
    assert answer.status_code == 200
    assert await stats(ofd) == {
        "submissions": 0,
        "unique_documents": 0,
        "duplicate_submissions": 0,
        "rejected": 0,
        "failed": 0,
    }
    assert (await ofd.get("/_control/received")).json()["total"] == 0
    assert (await ofd.get("/ofd/v1/health")).json()["mode"] == "success"
    assert (await post(ofd, body)).headers.get("Idempotent-Replayed") is None


async def test_health_is_labelled_as_an_emulator(ofd: httpx.AsyncClient) -> None:
    answer = await ofd.get("/ofd/v1/health")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["emulator"], body["mode"]) == ("ok", True, "success")
    ofd_stamp(answer)
    openapi = (await ofd.get("/openapi.json")).json()
    assert openapi["info"]["title"] == "kkt-adapter OFD emulator"


async def test_mode_body_with_mode_resets_omitted_fields(ofd: httpx.AsyncClient) -> None:
    await set_mode(ofd, mode="flaky", failure_rate=0.9, latency_ms=10)
    assert (await set_mode(ofd, reject_next=2)).json()["failure_rate"] == 0.9
    settings = (await set_mode(ofd, mode="success")).json()
    assert settings == {
        "mode": "success",
        "failure_rate": 0.3,
        "latency_ms": 0,
        "fail_next": 0,
        "reject_next": 0,
        "clock_offset_ms": 0,
    }


async def test_clock_offset_moves_the_emulators_stamps(ofd: httpx.AsyncClient) -> None:
    before = HlcStamp.parse((await ofd.get("/ofd/v1/health")).headers["X-OFD-HLC"])
    await set_mode(ofd, clock_offset_ms=3_600_000)
    ahead = HlcStamp.parse((await ofd.get("/ofd/v1/health")).headers["X-OFD-HLC"])
    assert 3_600_000 <= ahead.wall_ms - before.wall_ms < 3_660_000
    await set_mode(ofd, clock_offset_ms=-3_600_000)  # back: the stamps still never go back
    behind = HlcStamp.parse((await ofd.get("/ofd/v1/health")).headers["X-OFD-HLC"])
    assert behind.wall_ms == ahead.wall_ms and behind.counter > ahead.counter
    refused = await set_mode(ofd, clock_offset_ms=86_400_001)
    assert refused.status_code == 422 and refused.json()["details"]["field"] == "clock_offset_ms"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"mode": "sometimes"}', "mode"),
        (b'{"failure_rate": 2}', "failure_rate"),
        (b"[1]", "body"),
    ],
)
async def test_invalid_mode_bodies_are_refused(
    ofd: httpx.AsyncClient, content: bytes, field: str
) -> None:
    answer = await ofd.post("/_control/mode", content=content)
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"
    assert answer.json()["details"]["field"] == field


async def test_documents_and_counters_survive_a_restart(
    tmp_path: Path, fiscalize: Callable[..., FiscalResult]
) -> None:
    body = submission(fiscalize())
    stamps = []
    for _ in range(2):
        app = create_mock_ofd_app(tmp_path / "ofd", key=KEY)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ofd") as client:
                answer = await post(client, body)
                stamps.append(answer.json()["hlc"])
                counters = await stats(client)
    assert stamps[0] == stamps[1]
    assert (counters["submissions"], counters["unique_documents"]) == (2, 1)


async def test_oversized_body_is_413_with_request_id(ofd: httpx.AsyncClient) -> None:
    answer = await ofd.post(
        "/ofd/v1/receipts",
        content=b"x" * 1_048_577,
        headers={"Idempotency-Key": "k", "X-Request-ID": "req-1"},
    )
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"
    assert answer.json()["request_id"] == "req-1"
    assert answer.headers["X-Request-ID"] == "req-1"


def test_emulator_imports_without_the_adapter_api() -> None:
    # The adapter embeds the emulator, so the emulator must not import the adapter's API.
    code = "import sys, kkt_adapter.mock_ofd; assert 'kkt_adapter.api' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
