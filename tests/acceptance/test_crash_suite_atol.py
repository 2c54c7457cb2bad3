"""The crash suite against an ATOL register: ``serve --device atol-web`` in front of
``mock-atol`` (its FN delivering to ``mock-ofd``), 15 rounds that SIGKILL the adapter at random
moments and, in most, the register's web server too: before the adapter, after it, or under
it (started again on its port while the adapter runs). Promises I1-I5 and I8 are checked from
the files after every restart, and I3 at the OFD at the end.

A longer run is ``bench/crash.py --device atol-web --rounds 300``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from chaos import CRASH_OFD_MODE, Ledger, Report
from chaos_atol import ATOL_ENV, AtolRig, atol_final_check, atol_round
from conftest import Process, free_port

pytestmark = pytest.mark.acceptance

ROUNDS = int(os.environ.get("CRASH_SUITE_ROUNDS", "15"))


def test_crash_rounds_against_an_atol_register_keep_promises_i1_to_i5_and_i8(
    start_mock_ofd: Callable[..., Process],
    start_mock_atol: Callable[..., Process],
    start_adapter: Callable[..., Process],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ofd = start_mock_ofd()
    with ofd.client() as ofd_http:
        assert ofd_http.post("/_control/mode", json=CRASH_OFD_MODE).status_code == 200
    port = free_port()
    data, register_data = tmp_path / "data", tmp_path / "atol-data"
    env = {**ATOL_ENV, "KKT_ATOL_URL": f"http://127.0.0.1:{port}"}
    rig = AtolRig(
        start_adapter=lambda: start_adapter(data, env=env),
        start_register=lambda: start_mock_atol(register_data, ofd_url=ofd.url, port=port),
        data=data,
        register_data=register_data,
    )
    ledger, report = Ledger(), Report()
    rng = random.Random(20261212)
    for _ in range(ROUNDS):
        atol_round(rig, ledger, rng, report)
        assert report.violations == [], f"round {report.rounds}: {report.violations[:2]}"
    atol_final_check(rig, ofd.url, ledger, report)
    with capsys.disabled():
        print(
            f"\nATOL crash suite: {report.rounds} SIGKILL rounds {dict(sorted(rig.kinds.items()))}"
            f", {report.acknowledged} receipts acknowledged, {report.printed_receipts} printed, "
            f"{report.synced} synced, OFD: {report.ofd_unique} unique, "
            f"{report.ofd_duplicate_submissions} repeats answered idempotently; "
            f"{report.repeat_prints} repeat print requests at the register; "
            f"violations: {len(report.violations)}"
        )
    assert report.violations == []
    assert report.repeat_prints == 0
    assert report.rounds == ROUNDS and report.acknowledged >= ROUNDS  # sales in every round
    if ROUNDS >= 15:  # the kinds of round this suite promises to have run
        assert len(rig.kinds) == 4 and min(rig.kinds.values()) >= 2, rig.kinds
    assert report.synced == report.printed_receipts >= report.acknowledged
