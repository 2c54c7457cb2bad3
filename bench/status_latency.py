"""Status latency benchmark: buffer status and health while the KKT prints.

    python bench/status_latency.py [--duration 30] [--tills 4] [--print-delay-ms 300] [--out FILE]

Starts the real ``kkt-adapter serve`` (the console script of this venv; ``PYTHONPATH`` reaches
it, so a worktree put first there is what runs) on 127.0.0.1 and a free port, with a temporary
data dir, the embedded OFD emulator and ``KKT_PRINT_DELAY_MS=300``: the emulated KKT prints one
receipt at a time, 300 ms each, like a real register. Then, for ``--duration`` seconds after a
``--warmup``:

- ``--tills`` threads each post receipts back to back (``POST /v1/kkt/receipt``, a unique
  price and ``Idempotency-Key`` each, one keep-alive connection per till), so the KKT is busy
  all the time with prints queued behind the one it prints;
- one thread polls ``GET /v1/kkt/buffer/status`` and one ``GET /v1/health``, each every
  ``--poll-ms`` (20 ms), on a keep-alive connection of its own.

Every request is timed with ``time.perf_counter`` from sending it to reading the whole answer.
Prints one JSON summary on stdout (and to ``--out``): p50/p95/p99/max per endpoint, the tills'
receipts and their latency, how old the KKT snapshot was in the health answers, the machine,
and which code ran. The target (issue 12) is p99 <= 10 ms for status and health; missing it is
reported (``met``), not an exit code. Exit code 1 when a guard fails: a status or health answer
other than 200, a till's receipt refused, or the buffer's total not matching the receipts the
tills were answered for.
"""

from __future__ import annotations

import argparse
import http.client
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

from common import adapter_env, log, machine_info, percentile, start_adapter, stop

TARGET_P99_MS = 10.0
STATUS = "/v1/kkt/buffer/status"
HEALTH = "/v1/health"


class Connection:
    """One keep-alive HTTP/1.1 connection to the adapter, timing each request."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._http = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None, key: str = "") -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if key:
            headers["Idempotency-Key"] = key
        started = time.perf_counter()
        self._http.request(method, path, body=body, headers=headers)
        response = self._http.getresponse()
        data = response.read()
        return response.status, time.perf_counter() - started, data

    def close(self) -> None:
        self._http.close()


def receipt_body(kopecks: int, pos_id: str) -> bytes:
    amount = f"{kopecks // 100}.{kopecks % 100:02d}"
    return json.dumps(
        {
            "pos_id": pos_id,
            "type": "sale",
            "items": [{"name": "Lens cloth", "price": amount, "quantity": "1", "vat": "vat22"}],
            "payments": [{"method": "cash", "amount": amount}],
        }
    ).encode()


class Run:
    """Shared state of the load threads: when to measure, when to stop, what was seen."""

    def __init__(self, url: str, measure_from: float, stop_at: float) -> None:
        self.url = url
        self.measure_from = measure_from
        self.stop_at = stop_at
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {STATUS: [], HEALTH: [], "receipt": []}
        self.errors: list[str] = []
        self.receipts_ok = 0
        self.snapshot_ages: list[float] = []

    def record(self, what: str, seconds: float, started: float) -> None:
        if started >= self.measure_from:
            with self.lock:
                self.samples[what].append(seconds)

    def error(self, message: str) -> None:
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(message)


def till(run: Run, n: int) -> None:
    """Post receipts back to back until the end of the run."""
    connection = Connection(run.url)
    price = 100_000 * (n + 1)
    try:
        while time.monotonic() < run.stop_at:
            started = time.monotonic()
            price += 1
            status, seconds, data = connection.call(
                "POST", "/v1/kkt/receipt", receipt_body(price, f"POS-{n}"), str(uuid.uuid4())
            )
            if status != 200:
                run.error(f"till {n}: {status} {data[:200]!r}")
                continue
            with run.lock:
                run.receipts_ok += 1
            run.record("receipt", seconds, started)
    finally:
        connection.close()


def poller(run: Run, path: str, every_s: float) -> None:
    """Poll ``path`` every ``every_s`` until the end of the run."""
    connection = Connection(run.url)
    try:
        while time.monotonic() < run.stop_at:
            started = time.monotonic()
            status, seconds, data = connection.call("GET", path)
            if status != 200:
                run.error(f"{path}: {status} {data[:200]!r}")
            else:
                run.record(path, seconds, started)
                if path == HEALTH and started >= run.measure_from:
                    age = json.loads(data)["components"]["kkt"].get("age_seconds")
                    if age is not None:
                        with run.lock:
                            run.snapshot_ages.append(age)
            time.sleep(max(every_s - (time.monotonic() - started), 0))
    finally:
        connection.close()


def latency_ms(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        **{
            f"p{p}_ms": round(percentile(ordered, p) * 1000, 2) if ordered else None
            for p in (50, 95, 99)
        },
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
    }


def code_under_test(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Which ``kkt_adapter`` the adapter process imports, and its git commit (asked from
    ``cwd``, an empty directory: the console script does not import from the caller's)."""
    python = Path(sys.executable)
    found = subprocess.run(
        [str(python), "-c", "import kkt_adapter; print(kkt_adapter.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(found).parent
    commit = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {"package": str(package), "commit": commit or None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--tills", type=int, default=4, help="tills posting receipts")
    parser.add_argument("--print-delay-ms", type=int, default=300, help="emulated print time")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="poll interval per endpoint")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    parser.add_argument("--tmp-dir", type=Path, help="where the data dir goes")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="kkt-bench-status-", dir=args.tmp_dir))
    settings = {"KKT_PRINT_DELAY_MS": str(args.print_delay_ms)}
    try:
        machine = machine_info(base)
        code = code_under_test(adapter_env(settings), base)
        log(f"starting kkt-adapter serve ({code['package']}), print delay {args.print_delay_ms} ms")
        proc, url = start_adapter(base / "data", settings)
        try:
            run = Run(
                url, time.monotonic() + args.warmup, time.monotonic() + args.warmup + args.duration
            )
            threads = [threading.Thread(target=till, args=(run, n)) for n in range(args.tills)]
            threads += [
                threading.Thread(target=poller, args=(run, path, args.poll_ms / 1000))
                for path in (STATUS, HEALTH)
            ]
            log(f"{args.tills} tills posting, status and health polled, {args.duration:.0f} s")
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            final = Connection(url)
            status_code, _, data = final.call("GET", STATUS)
            final.close()
            total = json.loads(data)["total"] if status_code == 200 else None
        finally:
            stop(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    endpoints = {STATUS: latency_ms(run.samples[STATUS]), HEALTH: latency_ms(run.samples[HEALTH])}
    guards = {
        "no_errors": not run.errors,
        "buffer_total_matches": total == run.receipts_ok,
        "measured": all(e["count"] for e in endpoints.values()),
    }
    ages = sorted(run.snapshot_ages)
    summary = {
        "benchmark": "status_latency",
        "machine": machine,
        "code": code,
        "settings": {
            "print_delay_ms": args.print_delay_ms,
            "tills": args.tills,
            "poll_ms": args.poll_ms,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
        "endpoints": endpoints,
        "receipts": {
            "answered_ok": run.receipts_ok,
            "per_s": round(len(run.samples["receipt"]) / args.duration, 2),
            "latency": latency_ms(run.samples["receipt"]),
        },
        "kkt_snapshot_age_s": None
        if not ages
        else {"p50": percentile(ages, 50), "p99": percentile(ages, 99), "max": ages[-1]},
        "errors": run.errors,
        "guards": guards,
        "target": {
            "p99_ms": TARGET_P99_MS,
            "met": all(
                e["p99_ms"] is not None and e["p99_ms"] <= TARGET_P99_MS for e in endpoints.values()
            ),
        },
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(guards.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
