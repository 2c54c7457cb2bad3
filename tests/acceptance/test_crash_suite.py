"""The crash suite: SIGKILL the adapter at random moments of intake and delivery, 30 rounds:
some restore an older backup first (``kkt-adapter restore``), some run two adapters on the
one data dir and kill both.

A longer run is ``bench/crash.py --rounds 500``.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from chaos import CRASH_ENV, CRASH_OFD_MODE, Ledger, Report, chaos_round, final_check
from conftest import Process, adapter_env, kkt_adapter_command

pytestmark = pytest.mark.acceptance

# 30 in the test run; the mutation check (scripts/mutants.py) runs fewer.
ROUNDS = int(os.environ.get("CRASH_SUITE_ROUNDS", "30"))


def test_crash_rounds_keep_promises_i1_to_i5_and_i8(
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

    def run(args: list[str]) -> int:
        done = subprocess.run(
            [*kkt_adapter_command(), *args],
            env=adapter_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode

    for _ in range(ROUNDS):
        chaos_round(lambda: start_adapter(data, env=env), run, data, ledger, rng, report)
        assert report.violations == [], f"round {report.rounds}: {report.violations[:2]}"
    final_check(start_adapter(data, env=env), data, ofd.url, ledger, report)
    with capsys.disabled():
        print(
            f"\ncrash suite: {report.rounds} SIGKILL rounds ({report.restores} after a restore, "
            f"{report.pair_rounds} with two adapters, {report.backups} backups taken), "
            f"{report.acknowledged} receipts "
            f"acknowledged, {report.printed_receipts} printed, {report.synced} synced, "
            f"OFD: {report.ofd_unique} unique, {report.ofd_duplicate_submissions} repeats answered "
            f"idempotently; {report.repeat_prints} repeat print requests at the KKT; "
            f"violations: {len(report.violations)}"
        )
    assert report.violations == []
    assert report.repeat_prints == 0
    assert report.rounds == ROUNDS and report.acknowledged >= ROUNDS  # sales in every round
    if ROUNDS >= 30:  # the kinds of round this suite promises to have run
        assert report.restores >= 2 and report.pair_rounds >= 2 and report.backups >= 2
    # Every receipt the KKT printed reached the OFD, acknowledged ones and those whose answer
    # the kill cut off alike.
    assert report.synced == report.printed_receipts >= report.acknowledged
