"""The crash suite: SIGKILL the adapter at random moments of intake and delivery, 30 rounds.

A longer run is ``bench/crash.py --rounds 500``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from chaos import CRASH_ENV, CRASH_OFD_MODE, Ledger, Report, crash_round, final_check
from conftest import Process

pytestmark = pytest.mark.acceptance

# 30 in the test run; the mutation check (scripts/mutants.py) runs fewer.
ROUNDS = int(os.environ.get("CRASH_SUITE_ROUNDS", "30"))


def test_crash_rounds_keep_promises_i1_to_i4(
    start_mock_ofd: Callable[..., Process],
    start_adapter: Callable[..., Process],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ofd = start_mock_ofd()
    with ofd.client() as ofd_http:
        assert ofd_http.post("/_control/mode", json=CRASH_OFD_MODE).status_code == 200
    data = tmp_path / "data"
    env = {"KKT_OFD_URL": ofd.url, **CRASH_ENV}
    ledger, report = Ledger(), Report()
    rng = random.Random(20261125)
    for _ in range(ROUNDS):
        crash_round(lambda: start_adapter(data, env=env), data, ledger, rng, report)
        assert report.violations == [], f"round {report.rounds}: {report.violations[:2]}"
    final_check(start_adapter(data, env=env), data, ofd.url, ledger, report)
    with capsys.disabled():
        print(
            f"\ncrash suite: {report.rounds} SIGKILL rounds, {report.acknowledged} receipts "
            f"acknowledged, {report.printed_receipts} printed, {report.synced} synced, "
            f"OFD: {report.ofd_unique} unique, {report.ofd_duplicate_submissions} repeats answered "
            f"idempotently; {report.repeat_prints} repeat print requests at the KKT; "
            f"violations: {len(report.violations)}"
        )
    assert report.violations == []
    assert report.repeat_prints == 0
    assert report.rounds == ROUNDS and report.acknowledged >= ROUNDS  # sales in every round
    # Every receipt the KKT printed reached the OFD, acknowledged ones and those whose answer
    # the kill cut off alike.
    assert report.synced == report.printed_receipts >= report.acknowledged
