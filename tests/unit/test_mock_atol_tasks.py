"""The ATOL emulator takes exactly what the adapter's mapping sends, and nothing looser."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from helpers import receipt

from kkt_adapter.api.schemas import parse_receipt
from kkt_adapter.device.atol import mapping
from kkt_adapter.device.atol.mapping import receipt_task
from kkt_adapter.device.emulator import EmulatedKkt
from kkt_adapter.domain.journal import stamped
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.domain.vat import RECEIPT_SUM_TAGS
from kkt_adapter.mock_atol.app import AtolEmulator
from kkt_adapter.mock_atol.tasks import Exchange, TaskError, parse_task, receipt_document, run_task
from kkt_adapter.service import new_receipt

QUERY = {"type": "getShiftStatus"}


def task_of(**changes: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    body = receipt(**changes)
    new = new_receipt("key-1", parse_receipt(json.dumps(body).encode(), date.today()), 10**12)
    document = stamped(new.document, "0001764000000000.00001.n1")
    return new.receipt_id, document, receipt_task(new.receipt_id, document, taxation_type="osn")


@pytest.mark.parametrize("kind", ["sale", "refund", "expense", "expense_refund"])
def test_every_receipt_task_the_mapping_makes_is_taken_and_read_back(kind: str) -> None:
    receipt_id, document, task = task_of(type=kind)
    parsed = parse_task(task)
    read_id, read = receipt_document(parsed, "uuid-1")  # type: ignore[arg-type]
    assert read_id == receipt_id
    for tag in ("1054", "1020", "1031", "1081", "1192", "1084", "1021", "1008"):
        assert read.get(tag) == document.get(tag), tag
    assert [i["1043"] for i in read["1059"]] == [i["1043"] for i in document["1059"]]
    assert [i["1199"] for i in read["1059"]] == [i["1199"] for i in document["1059"]]
    # The register computes the VAT sums as the adapter does (the fiscal sign covers them).
    assert [i.get("1200") for i in read["1059"]] == [i.get("1200") for i in document["1059"]]
    for tag in RECEIPT_SUM_TAGS:
        assert read.get(tag) == document.get(tag), tag


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda t: t | {"colour": "red"}, "colour"),
        (lambda t: t | {"payments": []}, "payments"),
        (lambda t: t | {"taxationType": "flat"}, "taxationType"),
        (lambda t: {**t, "items": [{**t["items"][0], "tax": {"type": "vat18"}}]}, "tax.type"),
    ],
)
def test_anything_a_register_would_refuse_is_refused_naming_the_field(
    change: Any, field: str
) -> None:
    _, _, task = task_of()
    with pytest.raises(TaskError) as refused:
        parse_task(change(task))
    assert refused.value.code == 501 and field in refused.value.description


def test_the_fn_archive_gives_every_fd_a_shift_opening_too(tmp_path: Path) -> None:
    """Found by the ATOL crash suite: the archive answered only receipts, so the adapter's
    search of the FN's archive for a receipt (after a crash) failed at the shift's opening,
    and its start-up with it."""
    kkt = EmulatedKkt(tmp_path, key=b"test-key", strict=True)
    receipt_id, _, task = task_of()
    printed = run_task(kkt, task, "uuid-1", Exchange())  # opens the shift: FD 1, then FD 2
    assert printed["fiscalParams"]["fiscalDocumentNumber"] == 2
    archive = [
        mapping.fn_document(
            run_task(kkt, {"type": "getFnDocument", "fiscalDocumentNumber": fd}, "q", Exchange())
        )
        for fd in (1, 2)
    ]
    assert [(d.fd, d.kind, d.receipt_id) for d in archive] == [
        (1, "openShift", None),
        (2, "receipt", receipt_id),
    ]
    with pytest.raises(TaskError) as beyond:
        run_task(kkt, {"type": "getFnDocument", "fiscalDocumentNumber": 3}, "q", Exchange())
    assert beyond.value.code == 401
    kkt.close()


def test_a_receipt_task_a_stop_caught_mid_run_is_settled_from_the_fn_never_run_again(
    tmp_path: Path,
) -> None:
    """Found by the ATOL crash suite: mock-atol killed while a receipt task ran put the task
    back to ``wait`` and ran it again at its next start, a second print of a receipt the FN
    had closed (a real register prints it twice; the strict core refused and counted it)."""
    printed_id, _, printed_task = task_of()
    lost_id, _, lost_task = task_of(items=[{"name": "Другой", "price": "2.00", "quantity": "1",
                                            "vat": "vat22"}],
                                    payments=[{"method": "cash", "amount": "2.00"}])  # fmt: skip
    emulator = AtolEmulator(tmp_path, key=b"test-key", ofd_url=None, strict=True)
    for uuid, task in (("printed", printed_task), ("lost", lost_task), ("query", QUERY)):
        emulator.add(uuid, [task])
    # The stop came while all three were in progress; the FN closed only the first receipt.
    fiscalized = run_task(emulator.kkt, printed_task, "printed", Exchange())
    emulator._conn.execute("UPDATE requests SET status = 'inProgress'")
    emulator.close()

    again = AtolEmulator(tmp_path, key=b"test-key", ofd_url=None, strict=True)
    printed = again.results("printed")
    assert printed is not None and printed["results"][0]["status"] == "ready"
    assert printed["results"][0]["result"]["fiscalParams"] == fiscalized["fiscalParams"]
    assert again.results("lost") == {"results": [{"status": "interrupted"}]}
    assert again.results("query") == {"results": [{"status": "wait"}]}  # a query runs again
    assert again.kkt.find_document(lost_id) is None and again.kkt.repeat_prints() == 0
    assert again.kkt.find_document(printed_id) is not None
    again.close()


# -- cash in and out, shift totals -------------------------------------------------------------


def test_cash_tasks_keep_the_drawer_and_refuse_a_cash_out_beyond_it(tmp_path: Path) -> None:
    kkt = EmulatedKkt(tmp_path, key=b"test-key", strict=True)
    task = mapping.cash_task(CashKind.CASH_IN, 50_000, mapping.Operator("Ivanova A."))
    done = run_task(kkt, task, "cash-1", Exchange())
    assert mapping.cash_sum(done) == 50_000 and done["warnings"]["shiftAutoOpened"] is True
    out = run_task(kkt, mapping.cash_task(CashKind.CASH_OUT, 20_000), "cash-2", Exchange())
    assert mapping.cash_sum(out) == 30_000
    with pytest.raises(TaskError) as refused:
        run_task(kkt, mapping.cash_task(CashKind.CASH_OUT, 30_001), "cash-3", Exchange())
    assert refused.value.code == 80
    assert (
        mapping.device_error(
            {"code": refused.value.code, "description": refused.value.description}
        ).reason
        == "insufficient_cash"
    )
    with pytest.raises(TaskError) as bad:
        run_task(kkt, {"type": "cashIn", "cashSum": 0}, "cash-4", Exchange())
    assert bad.value.code == 501
    shift, totals = mapping.shift_totals(
        run_task(kkt, mapping.shift_totals_task(), "q", Exchange())
    )
    assert shift == 1 and totals.drawer_cash == 30_000
    assert (totals.cash_in.count, totals.cash_out.amount) == (1, 20_000)
    kkt.close()


def test_a_cash_task_caught_mid_run_is_settled_from_the_core(tmp_path: Path) -> None:
    from kkt_adapter.mock_atol.tasks import interrupted_result

    kkt = EmulatedKkt(tmp_path, key=b"test-key", strict=True)
    task = mapping.cash_task(CashKind.CASH_IN, 1_000)
    assert interrupted_result(kkt, task, "cash-1") == {"status": "interrupted"}
    run_task(kkt, task, "cash-1", Exchange())
    settled = interrupted_result(kkt, task, "cash-1")
    assert settled is not None and settled["status"] == "ready"
    assert mapping.cash_sum(settled["result"]) == 1_000
    kkt.close()
