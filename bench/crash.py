"""Crash rounds at length: SIGKILL the adapter at random moments, hundreds of times.

    .venv/bin/python bench/crash.py --rounds 500

Each round starts ``kkt-adapter serve`` on one data dir, checks promises I1, I2, I4, I5 and I8
from the buffer's and the KKT's files, sells from three POS threads while the adapter delivers
to a flaky ``kkt-adapter mock-ofd`` (20% failures, 20 ms latency, its clock 5 s ahead), and
SIGKILLs it 0.02-0.6 s in (in half the rounds also emptying the KKT gate's unsynced stamp file,
as a power loss may). Some rounds take a ``kkt-adapter backup`` while selling, some first put
an older backup back with ``kkt-adapter restore``, some run two adapters on the data dir.
At the end the last instance drains and I3 and I5 are checked at the OFD.
The same rounds run in CI, 30 of them (``tests/acceptance/test_crash_suite.py``); the code is
shared (``tests/chaos.py``).

    .venv/bin/python bench/crash.py --device atol-web --rounds 300

runs the rounds against an ATOL register instead: ``serve --device atol-web`` in front of
``kkt-adapter mock-atol --strict`` (its own data dir and port; its FN delivers to the same
flaky OFD emulator), killing the adapter at a random moment and, in most rounds, the
register's web server too: before the adapter, after it, or under it (started again on its
port while the adapter sells). The checks read the buffer from the adapter's data dir and the
FN from mock-atol's (``tests/chaos_atol.py``; 15 rounds in CI,
``tests/acceptance/test_crash_suite_atol.py``).

Prints a JSON summary; exit code 1 if any promise was broken or nothing was acknowledged (a
run that sold nothing proves nothing); then the data dir is kept and its path printed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos import CRASH_ENV, CRASH_OFD_MODE, Ledger, Report, chaos_round, final_check
from chaos_atol import ATOL_ENV, AtolRig, atol_final_check, atol_round
from common import (
    adapter_env,
    free_port,
    http_json,
    kkt_adapter_script,
    log,
    machine_info,
    start_adapter,
    start_mock_atol,
    start_mock_ofd,
    stop,
)


class Instance:
    """A started ``kkt-adapter serve`` as the rounds need it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.proc, self.url = start_adapter(data_dir, env)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Register:
    """A started ``kkt-adapter mock-atol`` as the ATOL rounds need it."""

    def __init__(self, data_dir: Path, port: int, ofd_url: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = start_mock_atol(data_dir, port, ofd_url, {"KKT_EMULATOR_STRICT": "true"})

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def emulator_rounds(
    base: Path, ofd_url: str, rounds: int, rng: random.Random, ledger: Ledger, report: Report
) -> dict[str, Any]:
    """The rounds on the bundled emulator (see the module docstring)."""
    env = {"KKT_OFD_URL": ofd_url, **CRASH_ENV}
    data = base / "data"

    def run(command: list[str]) -> int:
        done = subprocess.run(
            [str(kkt_adapter_script()), *command],
            env=adapter_env(env),
            capture_output=True,
            timeout=120,
        )
        return done.returncode

    for n in range(rounds):
        chaos_round(lambda: Instance(data, env), run, data, ledger, rng, report)
        if (n + 1) % 25 == 0:
            log(f"{n + 1}/{rounds} rounds, {len(report.violations)} violations")
    last = Instance(data, env)
    try:
        final_check(last, data, ofd_url, ledger, report, timeout=600)
    finally:
        stop(last.proc)
    return {
        "restore_rounds": report.restores,
        "two_adapter_rounds": report.pair_rounds,
        "backups_taken": report.backups,
    }


def atol_rounds(
    base: Path, ofd_url: str, rounds: int, rng: random.Random, ledger: Ledger, report: Report
) -> dict[str, Any]:
    """The rounds against ``mock-atol`` (see the module docstring)."""
    port = free_port()
    env = {**ATOL_ENV, "KKT_ATOL_URL": f"http://127.0.0.1:{port}"}
    data, register_data = base / "data", base / "atol-data"
    started: list[Instance | Register] = []

    def start(process: Instance | Register) -> Instance | Register:
        started.append(process)
        return process

    rig = AtolRig(
        start_adapter=lambda: start(Instance(data, env)),
        start_register=lambda: start(Register(register_data, port, ofd_url)),
        data=data,
        register_data=register_data,
    )
    try:
        for n in range(rounds):
            atol_round(rig, ledger, rng, report)
            if (n + 1) % 25 == 0:
                log(f"{n + 1}/{rounds} rounds, {len(report.violations)} violations")
        atol_final_check(rig, ofd_url, ledger, report, timeout=600)
    finally:
        for process in started:
            stop(process.proc)
    return {"round_kinds": dict(sorted(rig.kinds.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--device",
        choices=["emulator", "atol-web"],
        default="emulator",
        help="the bundled emulator, or an ATOL register (mock-atol) through its web server",
    )
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kkt-bench-crash-"))
    ofd_proc, ofd_url = start_mock_ofd(base / "ofd")
    started = time.monotonic()
    report, ledger = Report(), Ledger()
    try:
        http_json("POST", f"{ofd_url}/_control/mode", CRASH_OFD_MODE)
        rounds = atol_rounds if args.device == "atol-web" else emulator_rounds
        kinds = rounds(base, ofd_url, args.rounds, random.Random(args.seed), ledger, report)
    except BaseException:
        log(f"failed; the data dirs and logs are kept in {base}")
        raise
    finally:
        stop(ofd_proc)
    summary: dict[str, Any] = {
        "benchmark": "crash",
        "device": args.device,
        "machine": machine_info(base),
        "seed": args.seed,
        "rounds": report.rounds,
        "duration_s": round(time.monotonic() - started, 1),
        "acknowledged": report.acknowledged,
        "printed_receipts": report.printed_receipts,
        "synced": report.synced,
        "ofd_unique_documents": report.ofd_unique,
        "ofd_duplicate_submissions": report.ofd_duplicate_submissions,
        "repeat_print_requests": report.repeat_prints,
        **kinds,
        "violations": report.violations[:50],
        "violation_count": len(report.violations),
        "promises_kept": (
            not report.violations
            and report.acknowledged > 0
            and report.synced == report.printed_receipts
        ),
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if summary["promises_kept"]:
        shutil.rmtree(base, ignore_errors=True)
    else:
        log(f"promises not kept: the data dirs and logs are kept in {base}")
    return 0 if summary["promises_kept"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
