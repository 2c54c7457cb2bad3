"""Intake benchmark: receipts/s and latency of ``POST /v1/kkt/receipt`` on this machine.

    python bench/intake.py [--requests N] [--concurrency C] [--warmup W] [--cases LIST]
                           [--duration-cap 120s] [--out FILE] [--tmp-dir DIR]

Measures, in one run:

1. this machine's raw fsync'd SQLite commit rate (WAL, synchronous=FULL, one INSERT per
   committed transaction) in a temporary directory on the same filesystem as the adapter's
   data dir;
2. the real ``kkt-adapter serve`` (console script of this venv) on 127.0.0.1, print delay 0
   and a buffer large enough never to refuse, in three cases, each with a fresh adapter and
   data dir, the delivering ones first:
   - ``separate-ofd``: the OFD emulator in a process of its own takes every delivery while the
     receipts come in (production: delivery runs beside intake);
   - ``embedded-ofd``: the OFD emulator inside the adapter takes them (``serve`` without
     ``--ofd-url``: the emulator's work shares the adapter's process);
   - ``ofd-unreachable``: nothing listens at the OFD address (the shop is offline: the breaker
     opens and intake runs alone);
   after a warm-up, exactly N receipts over C persistent keep-alive HTTP/1.1 connections, each a
   unique receipt with a unique ``Idempotency-Key``; per-request latency from the first byte
   written to the last byte of the response read.

Prints one JSON summary on stdout (and to ``--out``); human progress goes to stderr. Target
(per case): receipts/s ≥ 0.25 × the raw commit rate and p99 ≤ 50 ms. Stops at N requests or at
the duration cap, whichever comes first. Exit code 0 when every case completed and its
correctness guard (buffer total and receipts readable back) held, 1 otherwise; missing the
targets is reported in the JSON, not as an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# bench/ is a directory of scripts, not a package: make its helpers importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    free_port,
    http_json,
    log,
    machine_info,
    percentile,
    process_cpu_seconds,
    raw_commit_rate,
    start_adapter,
    start_mock_ofd,
    stop,
)

TARGET_RATIO_MIN = 0.25
TARGET_P99_MAX_MS = 50.0
REQUEST_TIMEOUT_S = 30.0
SAMPLED_RECEIPTS = 5
CASES = ("separate-ofd", "embedded-ofd", "ofd-unreachable")

# ---------------------------------------------------------------------------------------------
# The load generator.
#
# Written by hand on purpose: the machine this runs on has two cores that the load generator
# shares with the system under test. A general HTTP client (httpx, requests, aiohttp) spends
# tens of microseconds of Python per request on header objects, URL parsing, cookie and
# redirect handling, and that CPU is taken from the adapter, so the benchmark would measure the
# client as much as the server. This client pre-builds every request's bytes before the clock
# starts (a template with only the Idempotency-Key and the price varying), writes them on a
# persistent keep-alive connection, reads the status line and headers up to CRLF CRLF and then
# exactly Content-Length bytes. Its own CPU time is measured and reported next to the adapter's.
# ---------------------------------------------------------------------------------------------


def _amount(kopecks: int) -> str:
    return f"{kopecks // 100}.{kopecks % 100:02d}"


def _body_template() -> tuple[str, str, str]:
    """The receipt of ``tests.helpers.priced_receipt`` as JSON, split around its two amounts."""
    marker = "@@AMOUNT@@"
    body = {
        "pos_id": "POS-BENCH",
        "type": "sale",
        "items": [{"name": "Lens cloth", "price": marker, "quantity": "1", "vat": "vat22"}],
        "payments": [{"method": "cash", "amount": marker}],
        "customer": {"email": "buyer@example.com"},
        "cashier": {"name": "Ivanova A.", "inn": None},
    }
    first, middle, last = json.dumps(body, separators=(",", ":")).split(marker)
    return first, middle, last


def build_requests(host_header: str, run_id: str, start: int, count: int) -> list[bytes]:
    """``count`` POST requests, each with a unique key and a unique price (so a unique body)."""
    first, middle, last = _body_template()
    head = (
        "POST /v1/kkt/receipt HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        "Content-Type: application/json\r\n"
        "Idempotency-Key: {key}\r\n"
        "Content-Length: {length}\r\n"
        "\r\n"
    )
    out = []
    for i in range(start, start + count):
        amount = _amount(100 + i)  # 1.00, 1.01, ...: unique per request
        body = f"{first}{amount}{middle}{amount}{last}".encode()
        key = f"bench-{run_id}-{i:09d}"
        out.append(head.format(key=key, length=len(body)).encode() + body)
    return out


class ProtocolError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, server asked to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    try:
        status = int(head[9:12])
    except ValueError:
        raise ProtocolError(f"bad status line: {head[:64]!r}") from None
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        length = int(lower[at + 17 : end])
        body = await reader.readexactly(length) if length else b""
    elif b"\r\ntransfer-encoding: chunked" in lower:
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        raise ProtocolError("response without Content-Length or chunked body")
    return status, body, close


@dataclass
class LoadResult:
    completed: int = 0
    ok: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    sampled_ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    stopped_by: str = "count"


async def run_load(
    host: str, port: int, requests: list[bytes], concurrency: int, cap_s: float
) -> LoadResult:
    """Send every request once over ``concurrency`` keep-alive connections; stop at the cap."""
    result = LoadResult()
    total = len(requests)
    sample_at = {0, total // 4, total // 2, (3 * total) // 4, total - 1}
    next_index = 0
    deadline = time.perf_counter() + cap_s
    perf_ns = time.perf_counter_ns
    latencies = result.latencies_ns

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < total:
                if time.perf_counter() > deadline:
                    result.stopped_by = "duration_cap"
                    return
                i = next_index
                next_index += 1
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        started = perf_ns()
                        writer.write(requests[i])
                        status, body, close = await read_response(reader)
                        latencies.append(perf_ns() - started)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError) as exc:
                    result.completed += 1
                    result.errors[type(exc).__name__] += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"request {i}: {exc!r}")
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.completed += 1
                if status == 200:
                    result.ok += 1
                    if i in sample_at:
                        result.sampled_ids.append(json.loads(body)["receipt_id"])
                else:
                    result.errors[str(status)] += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"request {i}: {status} {body[:300]!r}")
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - wall_started
    result.cpu_s = time.process_time() - cpu_started
    return result


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---------------------------------------------------------------------------------------------
# The correctness guard: the receipts we timed really are in the buffer.
# ---------------------------------------------------------------------------------------------


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300].decode(errors="replace")


def verify(base_url: str, expected_total: int, receipt_ids: list[str]) -> dict[str, Any]:
    status, buffer = get_json(f"{base_url}/v1/kkt/buffer/status")
    total = buffer.get("total") if status == 200 and isinstance(buffer, dict) else None
    found = 0
    problems = []
    if total != expected_total:
        problems.append(f"buffer total {total!r} (HTTP {status}), expected {expected_total}")
    for receipt_id in receipt_ids:
        status, body = get_json(f"{base_url}/v1/kkt/receipt/{receipt_id}")
        if status == 200 and isinstance(body, dict) and body.get("receipt_id") == receipt_id:
            found += 1
        else:
            problems.append(f"receipt {receipt_id}: HTTP {status} {str(body)[:200]}")
    return {
        "buffer_total": total,
        "expected_total": expected_total,
        "receipts_checked": len(receipt_ids),
        "receipts_found": found,
        "ok": not problems,
        "problems": problems,
    }


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


def parse_seconds(text: str) -> float:
    text = text.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Intake benchmark of kkt-adapter: receipts/s, p50/p99 vs raw commit rate."
    )
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests a case")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--warmup", type=int, default=500, help="requests before measuring")
    parser.add_argument(
        "--duration-cap", type=parse_seconds, default=120.0, help="stop measuring after (120s)"
    )
    parser.add_argument("--raw-commits", type=int, default=2000, help="raw commit-rate sample")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    parser.add_argument(
        "--tmp-dir", type=Path, help="where the temporary data dir goes (default: system temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    parser.add_argument(
        "--cases",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=list(CASES),
        help=f"comma list of cases to run, in this order (default: {','.join(CASES)})",
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0 or args.duration_cap <= 0:
        parser.error("--requests and --concurrency must be ≥ 1, --warmup ≥ 0, the cap > 0")
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or not args.cases:
        parser.error(f"--cases takes some of {', '.join(CASES)}; got {unknown or 'none'}")
    return args


def ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def run_case(case: str, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """One case: its own adapter (and OFD emulator), warm-up, the measured load, the guard."""
    data_dir = base / case / "data"
    ofd_proc = None
    ofd_url = None
    env: dict[str, str] = {}
    if case == "separate-ofd":
        ofd_proc, ofd_url = start_mock_ofd(base / case / "ofd")
        env["KKT_OFD_URL"] = ofd_url
    elif case == "ofd-unreachable":
        env["KKT_OFD_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run_id = uuid.uuid4().hex[:12]
    try:
        proc, url = start_adapter(data_dir, env)
        log(f"[{case}] kkt-adapter (pid {proc.pid}) listening on {url}")
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            host_header = f"{host}:{port}"
            warm = build_requests(host_header, run_id, 0, args.warmup)
            measured = build_requests(host_header, run_id, args.warmup, args.requests)
            warm_result = LoadResult()
            if warm:
                log(f"[{case}] warm-up: {args.warmup} requests")
                warm_result = run_async(
                    run_load(host, port, warm, args.concurrency, args.duration_cap)
                )
            log(f"[{case}] measuring: {args.requests} requests over {args.concurrency} connections")
            server_cpu_started = process_cpu_seconds(proc.pid)
            result: LoadResult = run_async(
                run_load(host, port, measured, args.concurrency, args.duration_cap)
            )
            server_cpu_ended = process_cpu_seconds(proc.pid)
            _, buffer = http_json("GET", f"{url}/v1/kkt/buffer/status")
            log(
                f"[{case}] done: {result.completed} requests, {result.ok} ok, "
                f"{sum(result.errors.values())} errors in {result.wall_s:.2f}s; "
                f"{buffer.get('synced')} delivered by the end"
            )
            guard = verify(url, warm_result.ok + result.ok, result.sampled_ids)
            if not guard["ok"]:
                log(f"[{case}] correctness guard FAILED: {guard['problems']}")
        finally:
            exit_code = stop(proc)
            log(f"[{case}] kkt-adapter stopped (exit {exit_code})")
    finally:
        if ofd_proc is not None:
            stop(ofd_proc)
    server_cpu = (
        round(server_cpu_ended - server_cpu_started, 3)
        if server_cpu_started is not None and server_cpu_ended is not None
        else None
    )
    return {
        "case": case,
        "ofd": ofd_url or env.get("KKT_OFD_URL", "embedded emulator"),
        "warm": warm_result,
        "result": result,
        "guard": guard,
        "server_cpu": server_cpu,
        "delivered_by_end": buffer.get("synced"),
        "breaker_at_end": buffer.get("circuit_breaker"),
        "machine": machine_info(data_dir),
    }


def case_summary(run: dict[str, Any], args: argparse.Namespace, raw_rate: float) -> dict[str, Any]:
    result: LoadResult = run["result"]
    warm: LoadResult = run["warm"]
    guard = run["guard"]
    latencies = sorted(result.latencies_ns)
    # Warm-up failures are failures too: a run that only works once warm is not a good run.
    errors = sum(result.errors.values()) + sum(warm.errors.values())
    receipts_per_s = result.ok / result.wall_s if result.wall_s > 0 else 0.0
    ratio = receipts_per_s / raw_rate if raw_rate > 0 else 0.0
    p99_ms = ms(percentile(latencies, 99)) if latencies else None
    ratio_met = ratio >= TARGET_RATIO_MIN
    p99_met = p99_ms is not None and p99_ms <= TARGET_P99_MAX_MS
    complete = result.completed == args.requests and errors == 0
    return {
        "case": run["case"],
        "ofd": run["ofd"],
        "requests": args.requests,
        "requests_completed": result.completed,
        "requests_ok": result.ok,
        "warmup": args.warmup,
        "warmup_errors": dict(warm.errors),
        "errors": errors,
        "errors_by_kind": dict(result.errors + warm.errors),
        "error_samples": (warm.error_samples + result.error_samples)[:5],
        "stopped_by": result.stopped_by,
        "duration_s": round(result.wall_s, 3),
        "receipts_per_s": round(receipts_per_s, 1),
        "latency_ms": {
            "p50": ms(percentile(latencies, 50)) if latencies else None,
            "p90": ms(percentile(latencies, 90)) if latencies else None,
            "p99": p99_ms,
            "max": ms(latencies[-1]) if latencies else None,
            "mean": ms(sum(latencies) / len(latencies)) if latencies else None,
        },
        "ratio_to_raw_commit_rate": round(ratio, 3),
        "delivered_by_end": run["delivered_by_end"],
        "breaker_at_end": run["breaker_at_end"],
        "cpu_seconds": {"adapter": run["server_cpu"], "load_generator": round(result.cpu_s, 3)},
        "correctness_guard": guard,
        "targets": {
            "ratio_min": TARGET_RATIO_MIN,
            "p99_max_ms": TARGET_P99_MAX_MS,
            "ratio_met": ratio_met,
            "p99_met": p99_met,
            "all_requests_ok": complete,
            "met": ratio_met and p99_met and complete and guard["ok"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kkt-bench-intake-", dir=args.tmp_dir))
    runs: list[dict[str, Any]] = []
    try:
        # The disk's commit rate wanders between runs (here 4,500-7,000/s): two samples
        # before the load and one after it, and the median is the one the ratio uses.
        log(f"raw SQLite commit rate ({args.raw_commits} fsync'd commits, x2) in {base}")
        raw_samples = [raw_commit_rate(base / "raw", args.raw_commits) for _ in range(2)]
        log(f"raw commit rate before the load: {[round(r) for r in raw_samples]} commits/s")
        for case in args.cases:
            runs.append(run_case(case, args, base))
        raw_samples.append(raw_commit_rate(base / "raw", args.raw_commits))
        raw_rate = statistics.median(raw_samples)
        log(f"raw commit rate samples {[round(r) for r in raw_samples]}, median {raw_rate:.0f}")
    except BaseException:
        log(f"failed; data dirs and server logs kept in {base}")
        raise
    cases = [case_summary(run, args, raw_rate) for run in runs]
    summary = {
        "benchmark": "intake",
        "machine": runs[0]["machine"],
        "raw_commit_rate_per_s": round(raw_rate, 1),
        "raw_commit_rate_samples": [round(r, 1) for r in raw_samples],
        "concurrency": args.concurrency,
        "print_delay_ms": 0,
        "cases": cases,
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    failed = [c["case"] for c in cases if not c["correctness_guard"]["ok"]] + [
        c["case"] for c in cases if c["requests_completed"] != args.requests
    ]
    if failed or args.keep:
        log(f"data dirs and server logs kept in {base}" + (f" ({failed} failed)" if failed else ""))
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
