"""The ATOL driver-library transport, through a fake of the vendor binding's calls.

The vendor's ``libfptr10`` cannot be installed here, so the fake implements the calls the
transport makes (``setParam``, ``processJson``, ``getParamString``, ``checkDocumentClosed``,
...) by running each JSON task on the KKT emulator's core, as ``kkt-adapter mock-atol`` does.
The same ``AtolDevice`` runs over it as over the web server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from helpers import receipt

from kkt_adapter.api.schemas import parse_receipt
from kkt_adapter.device.atol.device import AtolDevice
from kkt_adapter.device.atol.lib import AtolLibTransport
from kkt_adapter.device.emulator import EmulatedKkt
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.errors import CashOutcomeUnknown, DeviceError, InsufficientCash
from kkt_adapter.mock_atol.tasks import Exchange, TaskError, run_task
from kkt_adapter.service import new_receipt

KEY = b"k"


class IFptr:
    """The binding's constants (their values are the vendor's business; these are made up)."""

    LIBFPTR_PARAM_JSON_DATA = 65624
    LIBFPTR_PARAM_DOCUMENT_CLOSED = 65644
    LIBFPTR_PARAM_DOCUMENT_PRINTED = 65645


class FakeFptr:
    """The calls of an ``IFptr`` handle, over the KKT emulator's core."""

    def __init__(self, kkt: EmulatedKkt) -> None:
        self.kkt = kkt
        self.params: dict[int, Any] = {}
        self.error = (0, "")
        self.calls: list[str] = []

    def setParam(self, param: int, value: str) -> None:
        self.params[param] = value

    def processJson(self) -> int:
        task = json.loads(self.params[IFptr.LIBFPTR_PARAM_JSON_DATA])
        self.calls.append(task["type"])
        try:
            result = run_task(self.kkt, task, f"lib-task-{len(self.calls)}", Exchange())
        except TaskError as exc:
            self.error = (exc.code, exc.description)
            return -1
        self.params[IFptr.LIBFPTR_PARAM_JSON_DATA] = json.dumps(result)
        return 0

    def getParamString(self, param: int) -> str:
        return str(self.params.get(param, ""))

    def getParamBool(self, param: int) -> bool:
        return bool(self.params.get(param, False))

    closed, printed = True, True  # the last document's state, as a power loss may leave it

    def checkDocumentClosed(self) -> int:
        self.calls.append("checkDocumentClosed")
        self.params[IFptr.LIBFPTR_PARAM_DOCUMENT_CLOSED] = self.closed
        self.params[IFptr.LIBFPTR_PARAM_DOCUMENT_PRINTED] = self.printed
        return 0

    def cancelReceipt(self) -> int:
        self.calls.append("cancelReceipt")
        return 0

    def errorCode(self) -> int:
        return self.error[0]

    def errorDescription(self) -> str:
        return self.error[1]

    def close(self) -> int:
        return 0


@pytest.fixture
def kkt(tmp_path: Path) -> Iterator[EmulatedKkt]:
    device = EmulatedKkt(tmp_path, key=KEY, strict=True)
    yield device
    device.close()


def device_over(kkt: EmulatedKkt) -> tuple[AtolDevice, FakeFptr]:
    fptr = FakeFptr(kkt)
    return AtolDevice(AtolLibTransport(fptr, IFptr), taxation_type="osn"), fptr


def sale() -> tuple[str, dict[str, Any]]:
    new = new_receipt("key-1", parse_receipt(json.dumps(receipt()).encode(), date.today()), 10**12)
    return new.receipt_id, new.document


def test_a_receipt_is_fiscalized_through_process_json(kkt: EmulatedKkt) -> None:
    device, fptr = device_over(kkt)
    receipt_id, document = sale()
    [result] = device.print_receipts([(receipt_id, document)])
    assert isinstance(result, FiscalResult)
    assert result.receipt_id == receipt_id and result.fn == kkt.status().fn
    assert kkt.find_document(receipt_id) is not None
    assert fptr.calls == ["checkDocumentClosed", "sell"]  # settled at start, then the sale


def test_after_a_refusal_the_retry_is_a_new_task_and_prints_once(kkt: EmulatedKkt) -> None:
    device, _ = device_over(kkt)
    receipt_id, document = sale()
    kkt.set_fault("out_of_paper")
    [refused] = device.print_receipts([(receipt_id, document)])
    assert isinstance(refused, DeviceError) and refused.reason == "out_of_paper"
    kkt.set_fault(None)
    [printed] = device.print_receipts([(receipt_id, document)])
    assert isinstance(printed, FiscalResult)
    assert kkt.repeat_prints() == 0


def test_a_restarted_process_finds_the_receipt_in_the_fn_archive(kkt: EmulatedKkt) -> None:
    device, _ = device_over(kkt)
    receipt_id, document = sale()
    [printed] = device.print_receipts([(receipt_id, document)])
    assert isinstance(printed, FiscalResult)
    restarted, fptr = device_over(kkt)  # a new handle: no task outcomes in memory
    found = restarted.find_document(receipt_id)
    assert found is not None and (found.fd, found.fp, found.fn) == (
        printed.fd,
        printed.fp,
        printed.fn,
    )
    assert found.document["1020"] == document["1020"]  # money back in kopecks
    assert "sell" not in fptr.calls  # looked up, never printed again
    [entry] = restarted.journal(printed.fd - 1, 10)
    assert entry.result.receipt_id == receipt_id and entry.confirmed is False
    status = restarted.status()
    assert (status.last_fd, status.unconfirmed_count) == (printed.fd, 1)
    assert restarted.find_document("UNKNOWN00000000X") is None


@pytest.mark.parametrize(
    ("closed", "printed", "done", "calls"),
    [
        (True, False, "printed", ["checkDocumentClosed", "continuePrint"]),
        (False, False, "cancelled", ["checkDocumentClosed", "cancelReceipt"]),
        (True, True, "nothing", ["checkDocumentClosed"]),
    ],
)
def test_a_document_a_power_loss_left_open_is_settled_when_the_device_starts(
    kkt: EmulatedKkt, closed: bool, printed: bool, done: str, calls: list[str]
) -> None:
    fptr = FakeFptr(kkt)
    fptr.closed, fptr.printed = closed, printed
    device = AtolDevice(AtolLibTransport(fptr, IFptr), taxation_type=None)
    assert fptr.calls == calls  # settled at start, before anything is printed
    fptr.closed, fptr.printed = closed, printed
    assert device.settle_open_document() == done
    fptr.closed, fptr.printed = True, True
    assert device.settle_open_document() == "nothing"


def test_the_expected_fd_is_written_before_the_print_and_read_back_after_a_restart(
    kkt: EmulatedKkt, tmp_path: Path
) -> None:
    from kkt_adapter.device.atol.expect import Expectations

    expectations = Expectations(tmp_path / "adapter")
    fptr = FakeFptr(kkt)
    device = AtolDevice(AtolLibTransport(fptr, IFptr), taxation_type="osn",
                        expectations=expectations)  # fmt: skip
    printed = []
    for _ in range(2):
        receipt_id, document = sale()
        [result] = device.print_receipts([(receipt_id, document)])
        assert isinstance(result, FiscalResult)
        expected = expectations.read(receipt_id)
        assert expected is not None
        assert (expected.fn, expected.fd, expected.total) == (result.fn, result.fd, 799000)
        printed.append(result)
    restarted_fptr = FakeFptr(kkt)  # a new process: the tasks' outcomes are gone
    restarted = AtolDevice(AtolLibTransport(restarted_fptr, IFptr), taxation_type="osn",
                           expectations=expectations)  # fmt: skip
    restarted_fptr.calls.clear()
    found = restarted.find_document(printed[0].receipt_id)
    assert found is not None and found.fd == printed[0].fd
    assert restarted_fptr.calls == ["getFnDocument"]  # straight to the expected FD
    expectations.close()


def test_an_archive_fiscal_sign_in_hex_bytes_is_the_printed_number() -> None:
    from kkt_adapter.device.atol.device import archive_fp

    assert archive_fp("0123456789") == "0123456789"  # digits: as they are
    assert archive_fp("31 B2 00 00 30 39") == "12345"  # the last 4 bytes, big-endian
    assert archive_fp("31B2DEADBEEF") == str(0xDEADBEEF)


def test_cash_operations_and_shift_figures_through_an_atol_register(kkt: EmulatedKkt) -> None:
    """cashIn/cashOut under the operation's task uuid, getShiftTotals for the figures, error
    80 as InsufficientCash; a retry reads the first task's result, never moves cash twice."""
    device, fptr = device_over(kkt)
    done = device.cash_operation("OP1", CashKind.CASH_IN, Kopecks(50_000), "Ivanova A.")
    assert (done.kind, done.amount, done.shift, done.number, done.drawer_cash) == (
        CashKind.CASH_IN, 50_000, 1, 1, 50_000,
    )  # fmt: skip
    again = device.cash_operation("OP1", CashKind.CASH_IN, Kopecks(50_000), None)
    assert again.drawer_cash == 50_000 and kkt.x_report().summary.cash_in.count == 1  # type: ignore[union-attr]
    found = device.find_cash_operation("OP1")
    assert found is not None and found.drawer_cash == 50_000
    with pytest.raises(InsufficientCash) as refused:
        device.cash_operation("OP2", CashKind.CASH_OUT, Kopecks(50_001), None)
    assert refused.value.details == {"drawer_cash": "500.00", "requested": "500.01"}
    assert device.find_cash_operation("OP2") is None  # failed for certain
    with pytest.raises(CashOutcomeUnknown):
        device.find_cash_operation("OP-never-sent")  # the register keeps no id: unknown
    receipt_id, document = sale()
    device.print_receipts([(receipt_id, document)])
    x = device.x_report()
    assert x.summary is not None and x.fn == kkt.status().fn
    assert x.summary.totals["sale"] == 799_000 and x.summary.vat == {}  # the register has none
    assert x.summary.drawer_cash == 50_000  # the sale was paid by card
    z = device.close_shift()
    assert z.kind == "z" and z.summary == x.summary and z.receipts == 1
    assert "getShiftTotals" in fptr.calls and "cashIn" in fptr.calls
