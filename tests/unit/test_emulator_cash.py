"""Cash in and out on the KKT emulator, and the shift's figures in its X and Z reports."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kkt_adapter.device import MOSCOW, EmulatedKkt
from kkt_adapter.device.emulator import STATE_FILE
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind, CashMovement
from kkt_adapter.errors import DeviceError, InsufficientCash

KEY = b"emulator-test-key"
NOW = datetime(2026, 11, 24, 13, 38, 5, tzinfo=MOSCOW)
CASH_IN, CASH_OUT = CashKind.CASH_IN, CashKind.CASH_OUT


def sale(receipt_id: str, cash: int, card: int = 0, type_code: int = 1) -> dict[str, Any]:
    total = cash + card
    return {
        "1054": type_code,
        "1020": total,
        "1192": receipt_id,
        "1059": [{"1030": "Оправа", "1079": total, "1023": "1.000", "1043": total, "1199": 11,
                  "1200": (2 * total * 22 + 122) // 244}],
        "1031": cash,
        "1081": card,
    }  # fmt: skip


@pytest.fixture
def kkt(tmp_path: Path) -> Iterator[EmulatedKkt]:
    device = EmulatedKkt(tmp_path, key=KEY, clock=lambda: NOW)
    yield device
    device.close()


def test_cash_in_and_out_move_the_drawer_and_take_no_fd(kkt: EmulatedKkt) -> None:
    done = kkt.cash_operation("OP1", CASH_IN, Kopecks(50_000), "Ivanova A.")
    assert (done.kind, done.amount, done.number, done.drawer_cash) == (CASH_IN, 50_000, 1, 50_000)
    assert done.shift == 1 and done.at == NOW  # the shift was opened for it (auto-open)
    fd_after_open = kkt.status().last_fd
    kkt.print_receipt("R1", sale("R1", cash=10_000))
    out = kkt.cash_operation("OP2", CASH_OUT, Kopecks(20_000), None)
    assert (out.number, out.drawer_cash) == (2, 40_000)
    assert kkt.status().last_fd == fd_after_open + 1  # only the receipt took an FD
    assert [entry.result.receipt_id for entry in kkt.journal(0, 10)] == ["R1"]  # not receipts


def test_a_cash_out_beyond_the_drawer_is_refused_and_changes_nothing(kkt: EmulatedKkt) -> None:
    kkt.cash_operation("OP1", CASH_IN, Kopecks(1_000), None)
    with pytest.raises(InsufficientCash) as refused:
        kkt.cash_operation("OP2", CASH_OUT, Kopecks(1_001), None)
    assert refused.value.details == {"drawer_cash": "10.00", "requested": "10.01"}
    assert kkt.find_cash_operation("OP2") is None
    assert kkt.cash_operation("OP3", CASH_OUT, Kopecks(1_000), None).drawer_cash == 0


def test_the_operation_id_is_kept_and_never_done_twice(tmp_path: Path) -> None:
    first = EmulatedKkt(tmp_path, key=KEY, clock=lambda: NOW)
    done = first.cash_operation("OP1", CASH_IN, Kopecks(5_000), None)
    first.close()
    again = EmulatedKkt(tmp_path, key=KEY, clock=lambda: NOW)  # after a restart
    assert again.find_cash_operation("OP1") == done
    assert again.find_cash_operation("OP2") is None
    assert again.cash_operation("OP1", CASH_IN, Kopecks(5_000), None) == done  # a repeat
    assert again.x_report().summary is not None
    assert again.x_report().summary.cash_in == CashMovement(5_000, 1)  # type: ignore[union-attr]
    again.close()
    assert (tmp_path / STATE_FILE).exists()


def test_faults_and_the_shift_rules_apply_as_to_receipts(tmp_path: Path) -> None:
    kkt = EmulatedKkt(tmp_path, key=KEY, clock=lambda: NOW, auto_open_shift=False)
    with pytest.raises(DeviceError) as closed:
        kkt.cash_operation("OP1", CASH_IN, Kopecks(100), None)
    assert closed.value.reason == "shift_closed"
    kkt.open_shift()
    kkt.set_fault("out_of_paper")
    with pytest.raises(DeviceError) as paper:
        kkt.cash_operation("OP1", CASH_IN, Kopecks(100), None)
    assert paper.value.reason == "out_of_paper"
    assert kkt.find_cash_operation("OP1") is None
    kkt.close()


def test_x_and_z_reports_carry_the_shift_figures(kkt: EmulatedKkt) -> None:
    kkt.cash_operation("OP1", CASH_IN, Kopecks(10_000), None)
    kkt.print_receipt("R1", sale("R1", cash=12_200, card=5_000))
    kkt.print_receipt("R2", sale("R2", cash=2_200, type_code=2))
    kkt.cash_operation("OP2", CASH_OUT, Kopecks(3_000), None)
    x = kkt.x_report()
    assert x.summary is not None and x.fn == kkt.status().fn
    assert x.summary.counts == {"sale": 1, "refund": 1, "expense": 0, "expense_refund": 0}
    assert x.summary.payments["sale"]["card"] == 5_000
    assert x.summary.vat["sale"]["vat22"].amount == 17_200
    assert x.summary.drawer_cash == 10_000 + 12_200 - 2_200 - 3_000
    z = kkt.close_shift()
    assert z.summary == x.summary and z.receipts == 2 and z.totals["sale"] == 17_200
    next_shift = kkt.cash_operation("OP3", CASH_IN, Kopecks(100), None)
    assert next_shift.shift == z.shift + 1 and next_shift.drawer_cash == 100  # per shift


operations = st.lists(
    st.tuples(
        st.sampled_from(["sale", "refund", "cash_in", "cash_out"]),
        st.integers(min_value=1, max_value=10**7),
        st.integers(min_value=0, max_value=10**6),
    ),
    max_size=15,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_the_z_reports_cash_is_the_sum_of_its_documents(
    steps: list[tuple[str, int, int]],
) -> None:
    """Any sequence of sales, refunds, cash in and out: the Z report's drawer equals what the
    documents the emulator accepted add up to, and a refused cash out changes nothing."""
    with tempfile.TemporaryDirectory() as data_dir:
        kkt = EmulatedKkt(Path(data_dir), key=KEY, clock=lambda: NOW)
        drawer = 0
        try:
            for n, (kind, amount, card) in enumerate(steps):
                if kind in ("sale", "refund"):
                    code = 1 if kind == "sale" else 2
                    kkt.print_receipt(
                        f"R{n}", sale(f"R{n}", cash=amount, card=card, type_code=code)
                    )
                    drawer += amount if kind == "sale" else -amount
                elif kind == "cash_in":
                    drawer += kkt.cash_operation(f"O{n}", CASH_IN, Kopecks(amount), None).amount
                elif amount > drawer:
                    with pytest.raises(InsufficientCash):
                        kkt.cash_operation(f"O{n}", CASH_OUT, Kopecks(amount), None)
                else:
                    assert kkt.cash_operation(
                        f"O{n}", CASH_OUT, Kopecks(amount), None
                    ).drawer_cash == (drawer - amount)
                    drawer -= amount
            kkt.open_shift() if not kkt.status().shift_open else None
            z = kkt.close_shift()
        finally:
            kkt.close()
    assert z.summary is not None and z.summary.drawer_cash == drawer
