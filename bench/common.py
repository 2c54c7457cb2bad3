"""Helpers shared by the benchmarks in ``bench/``.

Benchmarks are not tests: they measure, they never assert correctness of features (beyond a
guard that the work they timed really happened). Every benchmark states the machine it ran on
(``machine_info``), targets 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STARTUP_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
# Large enough that the buffer never refuses a receipt during a benchmark run.
BENCH_BUFFER_CAPACITY = 10_000_000


def log(message: str) -> None:
    """Human progress goes to stderr; stdout carries only the JSON summary."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _filesystem(path: Path) -> dict[str, str]:
    """The mount (device, type, mount point) holding ``path``: longest matching mount point."""
    target = str(path.resolve())
    best: dict[str, str] = {"device": "unknown", "type": "unknown", "mount_point": "unknown"}
    best_len = -1
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best_len:
            best = {"device": device, "type": fstype, "mount_point": mount_point}
            best_len = len(mount_point)
    return best


def machine_info(data_dir: Path | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, Python, OS, data-dir filesystem."""
    try:
        usable_cores: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable_cores = None
    memory = _memory_bytes()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable_cores,
        "memory_gib": round(memory / 2**30, 2) if memory else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "kernel": platform.release(),
    }
    if data_dir is not None:
        info["data_dir"] = str(data_dir)
        info["data_dir_filesystem"] = _filesystem(data_dir)
    return info


# --------------------------------------------------------------------------- raw fsync rate


def raw_commit_rate(dir: Path, n: int = 2000) -> float:
    """This machine's raw fsync'd SQLite commit rate, in commits per second.

    One SQLite file in ``dir`` in WAL mode with ``synchronous=FULL``; ``n`` transactions of one
    small INSERT each, every one committed (and so fsync'd) on its own. This is the ceiling a
    design without group commit could reach; the adapter is judged against it.
    """
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / "raw_commit_rate.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"cannot put {path} in WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL)")
        payload = b"x" * 200
        for i in range(min(50, n)):  # warm the file and the page cache
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"warm-{i}", payload))
            conn.execute("COMMIT")
        started = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"key-{i}", payload))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return n / elapsed


# --------------------------------------------------------------------------- the adapter


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kkt_adapter_script() -> Path:
    """The installed console script next to this interpreter (the real command)."""
    script = Path(sys.executable).parent / "kkt-adapter"
    if not script.exists():
        raise SystemExit(
            f"{script} not found: install the package into this venv first "
            "(pip install -e .) and run the benchmark with that venv's python"
        )
    return script


def adapter_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any KKT_* setting, plus the benchmark's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KKT_")}
    env["KKT_BUFFER_CAPACITY"] = str(BENCH_BUFFER_CAPACITY)
    env["KKT_PRINT_DELAY_MS"] = "0"
    env["KKT_RATE_LIMIT_PER_SECOND"] = "0"  # one load generator is one client: do not throttle it
    env.update(extra or {})
    return env


def start_adapter(
    data_dir: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``kkt-adapter serve`` on 127.0.0.1 and a free port; return the process and its URL.

    Output goes to ``<data_dir>.log`` (read on failure). Waits for the ``listening on`` line
    with a deadline; kills the process if it does not come.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    args = [
        str(kkt_adapter_script()),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--data-dir",
        str(data_dir),
    ]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            args, env=adapter_env(env), stdout=log_file, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if " listening on " in line:
                url = line.split(" listening on ", 1)[1].strip()
                return proc, url
        if proc.poll() is not None:
            raise RuntimeError(f"kkt-adapter exited early ({proc.returncode}):\n{text[-4000:]}")
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(
                f"kkt-adapter not listening after {STARTUP_DEADLINE_S}s:\n{text[-4000:]}"
            )
        time.sleep(0.05)


def stop(proc: subprocess.Popen[Any]) -> int | None:
    """SIGTERM and wait for a clean exit; SIGKILL if it does not come. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=STOP_DEADLINE_S)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # After the ")" of comm, field 3 (state) is index 0, so utime (14) and stime (15) are 11, 12.
    return (int(fields[11]) + int(fields[12])) / ticks


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of already sorted values; nan when empty."""
    if not sorted_values:
        return math.nan
    if p <= 0:
        return sorted_values[0]
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --------------------------------------------------------------------------- the OFD emulator


def start_mock_ofd(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``kkt-adapter mock-ofd`` on 127.0.0.1 and a free port; return the process and URL.

    Same conventions as :func:`start_adapter`: output to ``<data_dir>.log``, the URL taken from
    the ``listening on`` line, a startup deadline, no ``KKT_*`` setting inherited (so the
    emulator verifies fiscal signs with the same built-in key as the adapter).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    args = [
        str(kkt_adapter_script()),
        "mock-ofd",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KKT_")}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if " listening on " in line:
                return proc, line.split(" listening on ", 1)[1].strip()
        if proc.poll() is not None:
            raise RuntimeError(f"mock-ofd exited early ({proc.returncode}):\n{text[-4000:]}")
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(
                f"mock-ofd not listening after {STARTUP_DEADLINE_S}s:\n{text[-4000:]}"
            )
        time.sleep(0.05)


def start_mock_atol(
    data_dir: Path, port: int, ofd_url: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run ``kkt-adapter mock-atol --strict`` on 127.0.0.1:``port`` (the same port each time it
    is started again, so the adapter's ``KKT_ATOL_URL`` stays right), its FN delivering to
    ``ofd_url``; output appended to ``<data_dir>.log``; waits for ``listening on``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    args = [
        str(kkt_adapter_script()),
        "mock-atol",
        "--strict",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--ofd-url",
        ofd_url,
        "--log-level",
        "warning",
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KKT_")}
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            args, env={**clean, **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        text = log_path.read_bytes()[offset:].decode(errors="replace")
        if " listening on " in text:
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"mock-atol exited early ({proc.returncode}):\n{text[-4000:]}")
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(
                f"mock-atol not listening after {STARTUP_DEADLINE_S}s:\n{text[-4000:]}"
            )
        time.sleep(0.05)


# --------------------------------------------------------------------------- small HTTP calls


def http_json(method: str, url: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
    """One JSON request with the standard library: (status, decoded body or error text)."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300].decode(errors="replace")
