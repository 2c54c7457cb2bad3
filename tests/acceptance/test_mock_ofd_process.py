"""The OFD emulator as the real ``kkt-adapter mock-ofd`` process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import Process
from helpers import SAMPLE_RECEIPT

from kkt_adapter.api.schemas import parse_receipt
from kkt_adapter.device import EmulatedKkt
from kkt_adapter.domain import to_ffd
from kkt_adapter.hlc import HlcStamp

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]
KEY = "acceptance-emulator-key"


def signed_submission(data_dir: Path, key: str = KEY) -> dict[str, Any]:
    """A submission body whose document the KKT emulator signed with ``key``."""
    receipt_id = str(uuid.uuid4())
    receipt = parse_receipt(json.dumps(SAMPLE_RECEIPT).encode(), date.today())
    result = EmulatedKkt(data_dir, key=key.encode()).print_receipt(
        receipt_id, to_ffd(receipt, receipt_id)
    )
    return {
        "receipt_id": receipt_id,
        "pos_id": "POS-001",
        "fn": result.fn,
        "fd": result.fd,
        "fp": result.fp,
        "hlc": "0001732450000000.00000.pos-1",
        "document": result.document,
    }


def test_mock_ofd_stores_and_survives_a_restart(start_mock_ofd: Start, tmp_path: Path) -> None:
    data_dir = tmp_path / "ofd-data"
    ofd = start_mock_ofd(data_dir, env={"KKT_EMULATOR_KEY": KEY})  # start-up: bench/startup.py
    assert "WARNING: this is an OFD EMULATOR" in ofd.output()  # I7: says what it is
    body = signed_submission(tmp_path / "kkt")
    with ofd.client() as http:
        health = http.get("/ofd/v1/health").json()
        assert (health["status"], health["emulator"]) == ("ok", True)
        first = http.post("/ofd/v1/receipts", json=body, headers={"Idempotency-Key": "key-1"})
        assert first.status_code == 200, first.text
        stamp = HlcStamp.parse(first.headers["X-OFD-HLC"])
        assert stamp == HlcStamp.parse(first.json()["hlc"]) and stamp.node == "ofd-emulator"
    assert ofd.terminate() == 0
    assert (data_dir / "mock-ofd.sqlite").exists()

    again = start_mock_ofd(data_dir, env={"KKT_EMULATOR_KEY": KEY})
    with again.client() as http:
        received = http.get("/_control/received").json()
        assert [item["receipt_id"] for item in received["items"]] == [body["receipt_id"]]
        assert received["items"][0]["idempotency_key"] == "key-1"
        assert received["items"][0]["document"] == body["document"]
        repeat = http.post("/ofd/v1/receipts", json=body, headers={"Idempotency-Key": "key-1"})
        assert repeat.json() == first.json()
        assert repeat.headers["Idempotent-Replayed"] == "true"
        stats = http.get("/_control/stats").json()
    assert stats == {
        "submissions": 2,
        "unique_documents": 1,
        "duplicate_submissions": 1,
        "rejected": 0,
        "failed": 0,
    }
    assert again.terminate() == 0


def test_mock_ofd_verifies_with_its_key(start_mock_ofd: Start, tmp_path: Path) -> None:
    ofd = start_mock_ofd(env={"KKT_EMULATOR_KEY": KEY})
    body = signed_submission(tmp_path / "kkt", key="some-other-key")
    with ofd.client() as http:
        answer = http.post("/ofd/v1/receipts", json=body, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_fiscal_sign"
