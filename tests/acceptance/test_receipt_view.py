"""The customer's copy of a receipt in a real headless Chromium: it renders its lines and
fiscal attributes, and the QR code on the screen decodes to the receipt's QR string."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zxingcpp
from browser import render, screenshot
from conftest import Process
from helpers import new_key, receipt
from PIL import Image

pytestmark = pytest.mark.acceptance


def test_receipt_view_renders_and_its_qr_decodes(
    start_adapter: Callable[..., Process], tmp_path: Path
) -> None:
    adapter = start_adapter()
    body = receipt(
        items=[
            {"name": "Frame Ray-Ban RB5154", "price": "7990.00", "quantity": "1", "vat": "vat22"},
            {"name": "Lens cloth", "price": "150.00", "quantity": "2", "vat": "vat10"},
        ],
        payments=[{"method": "card", "amount": "8290.00"}],
    )
    with adapter.client() as http:
        sold = http.post("/v1/kkt/receipt", json=body, headers=new_key()).json()
    fiscal = sold["fiscal"]
    url = f"{adapter.url}/v1/kkt/receipt/{sold['receipt_id']}/view"

    page = render(url, tmp_path / "dom")
    assert page.rows.get("lines", 0) == 2
    assert "Frame Ray-Ban RB5154" in page.texts["lines"] and "НДС 10%" in page.texts["lines"]
    assert page.texts["total"] == "8290.00"
    assert (page.texts["fn"], page.texts["fd"], page.texts["fp"]) == (
        fiscal["fn"], str(fiscal["fd"]), fiscal["fp"],
    )  # fmt: skip
    assert page.texts["shift"] == str(fiscal["shift"])
    assert page.texts["number-in-shift"] == str(fiscal["number_in_shift"])
    assert page.texts["emulator"].startswith("EMULATOR")

    image = Image.open(screenshot(url, tmp_path / "shot", tmp_path / "view.png"))
    decoded = [found.text for found in zxingcpp.read_barcodes(image)]
    assert decoded == [fiscal["qr"]]
