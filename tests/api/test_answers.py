"""The answer models (``kkt_adapter.api.answers``): the OpenAPI schema describes every answer,
and the real answers are what their models say (the models forbid unnamed fields)."""

from __future__ import annotations

from typing import Any

import httpx
from helpers import eventually, new_key, receipt

from kkt_adapter.api import answers
from kkt_adapter.api.answers import (
    AuditPage,
    BufferStatus,
    CashAnswer,
    Cleared,
    DlqPage,
    ErrorBody,
    Health,
    ReceiptAnswer,
    ReceiptPage,
    ReceiptView,
    ShiftReportPage,
    ShiftReportView,
    ShiftView,
    SyncResult,
)


async def test_every_success_answer_has_a_schema(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    empty = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                content = response.get("content", {})
                if not content or any(not media.get("schema") for media in content.values()):
                    empty.append(f"{method.upper()} {path} {status}")
    assert empty == []
    assert "/metrics" in schema["paths"]  # text, with its content type
    html = schema["paths"]["/v1/kkt/receipt/{receipt_id}/view"]["get"]["responses"]["200"]
    assert list(html["content"]) == ["text/html"]


async def test_json_answers_name_their_models_with_examples(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    paths = schema["paths"]
    expected = {
        ("post", "/v1/kkt/receipt"): "ReceiptAnswer",
        ("get", "/v1/kkt/receipt/{receipt_id}"): "ReceiptView",
        ("get", "/v1/kkt/buffer/status"): "BufferStatus",
        ("get", "/v1/health"): "Health",
        ("post", "/v1/kkt/x_report"): "ShiftReportView",
        ("post", "/v1/kkt/cash/in"): "CashAnswer",
    }
    for (method, path), model in expected.items():
        ok = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}, (method, path)
        assert components[model]["additionalProperties"] is False
    assert paths["/v1/health"]["get"]["responses"]["503"]["content"]
    assert components["ReceiptAnswer"]["properties"]["change"]["examples"] == ["50.00"]


def _valid(model: type[answers.Answer], body: Any) -> Any:
    model.model_validate(body)  # raises on a missing, extra or mistyped field
    return body


async def test_real_answers_validate_against_their_models(api: httpx.AsyncClient) -> None:
    cash = await api.post("/v1/kkt/cash/in", json={"amount": "500.00"}, headers=new_key())
    _valid(CashAnswer, cash.json())
    body = receipt(payments=[{"method": "cash", "amount": 8000}])
    created = _valid(
        ReceiptAnswer, (await api.post("/v1/kkt/receipt", json=body, headers=new_key())).json()
    )
    receipt_id = created["receipt_id"]

    async def get() -> httpx.Response:
        return await api.get(f"/v1/kkt/receipt/{receipt_id}")

    synced = await eventually(get, lambda a: a.json()["status"] == "synced", what="synced")
    view = _valid(ReceiptView, synced.json())
    assert view["refunds"]["allowed"] is True  # a sale shows its refunds
    refund = receipt(type="refund", refund_of=receipt_id)
    refund["items"][0]["line"] = 1
    refunded = await api.post("/v1/kkt/receipt", json=refund, headers=new_key())
    _valid(ReceiptView, (await api.get(f"/v1/kkt/receipt/{refunded.json()['receipt_id']}")).json())
    _valid(ReceiptPage, (await api.get(f"/v1/kkt/receipts?shift={view['fiscal']['shift']}")).json())
    _valid(ShiftReportView, (await api.post("/v1/kkt/x_report")).json())
    _valid(ShiftView, (await api.get("/v1/kkt/shift")).json())
    _valid(BufferStatus, (await api.get("/v1/kkt/buffer/status")).json())
    _valid(Health, (await api.get("/v1/health")).json())
    _valid(SyncResult, (await api.post("/v1/kkt/buffer/sync")).json())
    _valid(AuditPage, (await api.get("/v1/kkt/buffer/logs")).json())
    _valid(DlqPage, (await api.get("/v1/kkt/dlq")).json())
    _valid(Cleared, (await api.post("/v1/kkt/print_failed/clear")).json())
    closed = _valid(ShiftReportView, (await api.post("/v1/kkt/shift/close")).json())
    assert closed["drawer_cash"] == "8490.00"  # 500.00 in, 7990.00 kept (the refund: card)
    _valid(ShiftReportPage, (await api.get("/v1/kkt/shifts")).json())
    _valid(ShiftReportView, (await api.get(f"/v1/kkt/shifts/{closed['shift']}/z_report")).json())
    _valid(ShiftReportView, (await api.post("/v1/kkt/shift/open")).json())
    _valid(ErrorBody, (await api.get("/v1/kkt/receipt/nope")).json())


def test_answer_models_import_without_fastapi() -> None:
    """A client reuses them: pydantic only."""
    import subprocess
    import sys

    code = (
        "import sys; import kkt_adapter.api.answers;"
        " sys.exit('fastapi' in sys.modules or 'starlette' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
