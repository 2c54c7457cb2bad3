"""``kkt-adapter mock-atol``, the ATOL web-server emulator, driven through the adapter's ATOL
transport: the task queue by uuid, strict validation, the injected faults, and the emulated
FN's own exchange with the OFD emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from chaos import ofd_documents
from conftest import Process, wait_until

from kkt_adapter.device.atol.web import AtolWebTransport, OutcomeUnknown
from kkt_adapter.errors import DeviceError

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]


def sell(receipt_id: str, rubles: float = 99.9) -> dict[str, Any]:
    return {
        "type": "sell",
        "taxationType": "osn",
        "operator": {"name": "Кассир Иванова"},
        "items": [
            {"type": "position", "name": "Линза", "price": rubles, "quantity": 1,
             "amount": rubles, "tax": {"type": "vat22"}, "paymentMethod": "fullPayment",
             "paymentObject": "commodity", "measurementUnit": 0},
            {"type": "additionalAttribute", "value": receipt_id},
        ],
        "payments": [{"type": "cash", "sum": rubles}],
    }  # fmt: skip


def test_tasks_run_once_per_uuid_and_faults_give_clear_outcomes(
    start_mock_atol: Start, start_mock_ofd: Start
) -> None:
    ofd = start_mock_ofd()
    atol = start_mock_atol(ofd_url=ofd.url)
    assert "EMULATOR" in atol.output()
    client = AtolWebTransport(atol.url, deadline_s=10, poll_interval_s=0.02)
    first = client.run("u-1", sell("R1"))["fiscalParams"]
    assert first["total"] == 99.9 and first["fiscalDocumentNumber"] >= 1
    assert client.run("u-1", sell("R1"))["fiscalParams"] == first  # the same task, not again

    with pytest.raises(DeviceError) as invalid:
        client.run("u-2", {**sell("R2"), "colour": "red"})
    assert invalid.value.reason == "invalid_document" and "colour" in invalid.value.message

    with httpx.Client(base_url=atol.url) as control:
        assert control.get("/_control/state").headers["X-ATOL-Emulator"] == "true"
        for fault, reason in (("cover_open", "cover_open"), ("out_of_paper", "out_of_paper")):
            control.post("/_control/fault", json={"fault": fault})
            with pytest.raises(DeviceError) as refused:
                client.run(f"u-{fault}", sell(f"R-{fault}"[:16]))
            assert refused.value.reason == reason
            control.post("/_control/fault", json={"fault": fault, "on": False})

        control.post("/_control/fault", json={"fault": "power_loss"})
        blocked = client.run("u-power", sell("R-power"))  # blocked a few polls, then ready
        assert blocked["warnings"] == {"recovered": True}

        control.post("/_control/fault", json={"fault": "lose_answer", "lose_answer_seconds": 3})
        impatient = AtolWebTransport(atol.url, deadline_s=10, poll_interval_s=0.02, timeout_s=1)
        with pytest.raises(OutcomeUnknown):
            impatient.run("u-lost", sell("R-lost"))
        found = client.run("u-lost", sell("R-lost"))  # asked again: the first task's result
        assert found["fiscalParams"]["fiscalDocumentNumber"] > first["fiscalDocumentNumber"]
        state = control.get("/_control/state").json()
        assert state["repeat_prints"] == 0

    # The emulated FN sends its documents to the OFD itself; the exchange status says so.
    with ofd.client() as ofd_http:
        wait_until(lambda: len(ofd_documents(ofd_http)) == 3, timeout=15, what="3 at the OFD")
    polls = iter(range(1000))

    def exchanged() -> dict[str, Any] | None:
        answer = client.run(f"u-exchange-{next(polls)}", {"type": "ofdExchangeStatus"})
        return answer if answer["status"]["notSentCount"] == 0 else None

    exchange = wait_until(exchanged, timeout=5, what="nothing left unsent")
    assert exchange["errors"]["lastSuccessConnectionDateTime"] is not None
