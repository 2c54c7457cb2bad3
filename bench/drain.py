"""Drain benchmark: how fast a buffer filled while the OFD was down is delivered once it is back.

    python bench/drain.py [--receipts N] [--latency-ms 0,20] [--out FILE]

For each OFD latency in ``--latency-ms`` (one scenario each, fresh processes and data dirs):

1. start the OFD emulator (``kkt-adapter mock-ofd``) and the adapter (``kkt-adapter serve``
   with ``KKT_OFD_URL`` pointing at it), both console scripts of this venv, on 127.0.0.1 and
   free ports, temporary data dirs, print delay 0 and a buffer that never refuses;
2. put the emulator in ``fail`` mode (503 to everything) and create N receipts through
   ``POST /v1/kkt/receipt`` (the raw-socket load generator of ``bench/intake.py``, 16
   keep-alive connections); wait until ``GET /v1/kkt/buffer/status`` shows N pending;
3. restore the emulator (``success`` with the scenario's ``latency_ms``), call
   ``POST /v1/kkt/buffer/sync`` (in a thread: it returns after its own pass, and the
   background worker delivers too) and poll the buffer status until N are synced. The drain
   time runs from just before the restore to the first poll that sees N synced;
4. read the emulator's ``/_control/stats`` and every stored document (``/_control/received``,
   paged): ``unique_documents`` must be N and no receipt id may be stored twice.

Prints one JSON summary on stdout (and to ``--out``); progress goes to stderr. Targets:
≥ 1,000 receipts/s at 0 ms OFD latency, ≥ 300 receipts/s at 20 ms, 0 duplicate documents.
Exit code 0 when every scenario completed and its correctness guard held, 1 otherwise;
missing a throughput target is reported in the JSON (``met``), not as an exit code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# bench/ is a directory of scripts, not a package: make its helpers importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_BUFFER_CAPACITY,
    http_json,
    log,
    machine_info,
    process_cpu_seconds,
    start_adapter,
    start_mock_ofd,
    stop,
)
from intake import build_requests, run_async, run_load

# OFD latency (ms) -> receipts/s the drain must reach (the targets).
TARGETS_PER_S = {0: 1000.0, 20: 300.0}
INTAKE_CONCURRENCY = 16
INTAKE_CAP_S = 300.0
PENDING_DEADLINE_S = 60.0
POLL_INTERVAL_S = 0.05
RECEIVED_PAGE = 1000  # the emulator's largest page


def parse_latencies(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("a comma list of latencies ≥ 0 ms, e.g. 0,20")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Drain benchmark of kkt-adapter: receipts/s delivered after an OFD outage."
    )
    parser.add_argument("--receipts", type=int, default=5000, help="receipts buffered offline")
    parser.add_argument(
        "--latency-ms",
        type=parse_latencies,
        default=[0, 20],
        help="OFD emulator latencies, comma list, one scenario each (default 0,20)",
    )
    parser.add_argument(
        "--deadline", type=float, default=600.0, help="seconds a drain may take (default 600)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    parser.add_argument(
        "--tmp-dir", type=Path, help="where the temporary data dirs go (default: system temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="KKT_DELIVERY_CONCURRENCY for the adapter (default: the adapter's own default)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="KKT_DELIVERY_BATCH_SIZE for the adapter (default: the adapter's own default)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record both processes with py-spy during the drain into this directory "
        "(raw folded stacks; perturbs the figures, which are then marked profiled)",
    )
    parser.add_argument("--profile-gil", action="store_true", help="py-spy --gil samples only")
    parser.add_argument("--profile-seconds", type=int, default=8, help="py-spy duration")
    args = parser.parse_args(argv)
    if args.receipts < 1 or args.deadline <= 0:
        parser.error("--receipts must be ≥ 1 and --deadline > 0")
    return args


# ---------------------------------------------------------------------------------------------
# One scenario.
# ---------------------------------------------------------------------------------------------


class ScenarioFailed(Exception):
    pass


def buffer_status(adapter_url: str) -> dict[str, Any]:
    status, body = http_json("GET", f"{adapter_url}/v1/kkt/buffer/status")
    if status != 200 or not isinstance(body, dict):
        raise ScenarioFailed(f"buffer status: HTTP {status} {str(body)[:200]}")
    return body


def wait_status(adapter_url: str, ready: Any, deadline_s: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        status = buffer_status(adapter_url)
        if ready(status):
            return status
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"{what}: not reached in {deadline_s}s (last {_counts(status)})")
        time.sleep(POLL_INTERVAL_S)


def _counts(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("total", "pending", "syncing", "synced", "failed", "dlq")
    return {k: status.get(k) for k in keys}


def set_mode(ofd_url: str, mode: str, latency_ms: int = 0) -> None:
    status, body = http_json(
        "POST", f"{ofd_url}/_control/mode", {"mode": mode, "latency_ms": latency_ms}
    )
    if status != 200:
        raise ScenarioFailed(f"mock-ofd mode {mode}: HTTP {status} {str(body)[:200]}")


def received_ids(ofd_url: str) -> list[str]:
    """Every receipt id the emulator stored, page by page."""
    ids: list[str] = []
    page = 1
    while True:
        status, body = http_json(
            "GET", f"{ofd_url}/_control/received?page={page}&limit={RECEIVED_PAGE}"
        )
        if status != 200 or not isinstance(body, dict):
            raise ScenarioFailed(f"mock-ofd received page {page}: HTTP {status}")
        items = body["items"]
        ids.extend(item["receipt_id"] for item in items)
        if not items or len(ids) >= int(body["total"]):
            return ids
        page += 1


def start_profilers(
    args: argparse.Namespace, latency_ms: int, pids: dict[str, int]
) -> list[subprocess.Popen[bytes]]:
    if args.profile is None:
        return []
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit(f"{py_spy} not found: pip install py-spy into this venv")
    args.profile.mkdir(parents=True, exist_ok=True)
    kind = "gil" if args.profile_gil else "all"
    procs = []
    for name, pid in pids.items():
        out = args.profile / f"{name}-latency{latency_ms}-{kind}.txt"
        cmd = [
            str(py_spy), "record", "-p", str(pid), "-d", str(args.profile_seconds),
            "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking",
        ]  # fmt: skip
        if args.profile_gil:
            cmd.append("--gil")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def adapter_settings(args: argparse.Namespace, ofd_url: str) -> dict[str, str]:
    env = {"KKT_OFD_URL": ofd_url}
    if args.concurrency is not None:
        env["KKT_DELIVERY_CONCURRENCY"] = str(args.concurrency)
    if args.batch_size is not None:
        env["KKT_DELIVERY_BATCH_SIZE"] = str(args.batch_size)
    return env


def run_scenario(
    args: argparse.Namespace, base: Path, latency_ms: int, run_id: str
) -> tuple[dict[str, Any], Path]:
    n = args.receipts
    scenario_dir = base / f"latency-{latency_ms}"
    adapter_dir = scenario_dir / "adapter"
    ofd_proc, ofd_url = start_mock_ofd(scenario_dir / "ofd")
    log(f"[{latency_ms} ms] mock-ofd (pid {ofd_proc.pid}) on {ofd_url}")
    adapter_proc = None
    try:
        set_mode(ofd_url, "fail")
        adapter_proc, url = start_adapter(adapter_dir, adapter_settings(args, ofd_url))
        log(f"[{latency_ms} ms] kkt-adapter (pid {adapter_proc.pid}) on {url}; OFD failing")

        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        requests = build_requests(f"{host}:{port}", f"{run_id}-{latency_ms}", 0, n)
        log(f"[{latency_ms} ms] creating {n} receipts over {INTAKE_CONCURRENCY} connections")
        load = run_async(run_load(host, port, requests, INTAKE_CONCURRENCY, INTAKE_CAP_S))
        if load.ok != n:
            raise ScenarioFailed(
                f"intake: {load.ok}/{n} ok, errors {dict(load.errors)} {load.error_samples}"
            )
        log(f"[{latency_ms} ms] {n} receipts in {load.wall_s:.2f}s; waiting for {n} pending")
        offline = wait_status(
            url, lambda s: s["pending"] == n, PENDING_DEADLINE_S, f"{n} receipts pending"
        )
        if (offline["total"], offline["synced"]) != (n, 0):
            raise ScenarioFailed(f"unexpected buffer before the restore: {_counts(offline)}")
        offline_stats = http_json("GET", f"{ofd_url}/_control/stats")[1]
        if offline_stats.get("unique_documents") != 0:
            raise ScenarioFailed(f"documents stored while failing: {offline_stats}")

        pids = {"adapter": adapter_proc.pid, "mock-ofd": ofd_proc.pid}
        cpu_before = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        profilers = start_profilers(args, latency_ms, pids)

        log(f"[{latency_ms} ms] restoring the OFD (latency {latency_ms} ms) and syncing")
        restored = time.perf_counter()
        set_mode(ofd_url, "success", latency_ms)
        manual: dict[str, Any] = {}

        def manual_sync() -> None:
            started = time.perf_counter()
            status, body = http_json(
                "POST", f"{url}/v1/kkt/buffer/sync", timeout=args.deadline + 60
            )
            manual.update(
                {"http_status": status, "answer": body, "returned_after_s": None}
                if status != 200
                else {
                    "http_status": status,
                    "answer": body,
                    "returned_after_s": round(time.perf_counter() - restored, 3),
                    "call_seconds": round(time.perf_counter() - started, 3),
                }
            )

        sync_thread = threading.Thread(target=manual_sync, daemon=True)
        sync_thread.start()
        last_log = restored
        deadline = restored + args.deadline
        while True:
            status = buffer_status(url)
            now = time.perf_counter()
            if status["synced"] >= n:
                drained = now
                break
            if now > deadline:
                raise ScenarioFailed(f"drain not done in {args.deadline}s: {_counts(status)}")
            if now - last_log >= 2.0:
                log(f"[{latency_ms} ms] {status['synced']}/{n} synced after {now - restored:.1f}s")
                last_log = now
            time.sleep(POLL_INTERVAL_S)
        cpu_after = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        drain_s = drained - restored
        log(f"[{latency_ms} ms] all {n} synced in {drain_s:.2f}s ({n / drain_s:.0f}/s)")
        sync_thread.join(timeout=args.deadline + 60)
        for profiler in profilers:
            profiler.wait(timeout=args.profile_seconds + 30)

        stats = http_json("GET", f"{ofd_url}/_control/stats")[1]
        ids = received_ids(ofd_url)
        final = buffer_status(url)
    finally:
        if adapter_proc is not None:
            log(f"[{latency_ms} ms] kkt-adapter stopped (exit {stop(adapter_proc)})")
        log(f"[{latency_ms} ms] mock-ofd stopped (exit {stop(ofd_proc)})")

    stored_twice = len(ids) - len(set(ids))
    rate = n / drain_s
    target = TARGETS_PER_S.get(latency_ms)
    guard_ok = stats["unique_documents"] == n and stored_twice == 0 and len(set(ids)) == n
    cpu = {
        name: round(cpu_after[name] - cpu_before[name], 3)
        if cpu_after[name] is not None and cpu_before[name] is not None
        else None
        for name in cpu_before
    }
    result = {
        "latency_ms": latency_ms,
        "receipts": n,
        "drain_seconds": round(drain_s, 3),
        "receipts_per_s": round(rate, 1),
        "unique_documents": stats["unique_documents"],
        "duplicate_submissions": stats["duplicate_submissions"],
        "stored_twice": stored_twice,
        "received_documents": len(ids),
        "target_receipts_per_s": target,
        "met": (rate >= target and guard_ok) if target is not None else None,
        "guard_ok": guard_ok,
        "intake": {
            "seconds": round(load.wall_s, 3),
            "receipts_per_s": round(n / load.wall_s, 1),
        },
        "offline_ofd_stats": offline_stats,
        "ofd_stats": stats,
        "final_buffer": _counts(final),
        "manual_sync": manual,
        "cpu_seconds_during_drain": cpu,
        "profiled": args.profile is not None,
    }
    return result, scenario_dir


def _default(setting: str) -> object:
    """The adapter's default for ``setting``, read from its settings model."""
    from kkt_adapter.settings import Settings

    return Settings.model_fields[setting].default


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kkt-bench-drain-", dir=args.tmp_dir))
    run_id = uuid.uuid4().hex[:12]
    scenarios: list[dict[str, Any]] = []
    failures: list[str] = []
    machine = machine_info(base)
    for latency_ms in args.latency_ms:
        try:
            result, _ = run_scenario(args, base, latency_ms, run_id)
            scenarios.append(result)
            if not result["guard_ok"]:
                failures.append(f"latency {latency_ms}: duplicate or missing documents")
        except ScenarioFailed as exc:
            log(f"[{latency_ms} ms] FAILED: {exc}")
            failures.append(f"latency {latency_ms}: {exc}")
            scenarios.append(
                {"latency_ms": latency_ms, "receipts": args.receipts, "error": str(exc)}
            )
    if failures or args.keep:
        log(f"data dirs and logs kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)

    settings = {
        "adapter_env": {
            "KKT_BUFFER_CAPACITY": BENCH_BUFFER_CAPACITY,
            "KKT_PRINT_DELAY_MS": 0,
            "KKT_DELIVERY_CONCURRENCY": args.concurrency
            or f"default ({_default('delivery_concurrency')})",
            "KKT_DELIVERY_BATCH_SIZE": args.batch_size
            or f"default ({_default('delivery_batch_size')})",
            "other": "defaults (breaker, backoff, sweep, lease)",
        },
        "intake_concurrency": INTAKE_CONCURRENCY,
        "ofd": "kkt-adapter mock-ofd, separate process, fail mode while buffering",
        "drain_clock": "from just before the OFD restore to the first status poll showing all "
        f"synced (polled every {POLL_INTERVAL_S * 1000:.0f} ms); POST /v1/kkt/buffer/sync "
        "runs concurrently",
    }
    summary = {
        "benchmark": "drain",
        "machine": machine,
        "scenarios": scenarios,
        "settings": settings,
        "failures": failures,
        "met": not failures and all(s.get("met") is not False for s in scenarios),
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
