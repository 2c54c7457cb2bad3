"""Shared fixtures: the in-process API client and the real ``kkt-adapter`` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from kkt_adapter.api import create_app
from kkt_adapter.settings import Settings

STARTUP_DEADLINE_S = 15.0
# The KKT emulator of every adapter the tests build refuses a print request for a receipt it
# has printed already (and counts it): a lenient emulator answers it with the stored document,
# which would hide exactly the bug promise I2 is about.
STRICT_EMULATOR = {"KKT_EMULATOR_STRICT": "true"}
os.environ.update(STRICT_EMULATOR)

# The property tests run on CI machines whose cores other jobs share: a slow example there is
# a busy machine, not a slow generator, so neither timing check may fail the run.
hypothesis_settings.register_profile(
    "shared-cores", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("shared-cores")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kkt_adapter_command() -> list[str]:
    """The installed console script (the real command), next to this interpreter."""
    script = Path(sys.executable).parent / "kkt-adapter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kkt_adapter"]


def wait_until(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    """A ``kkt-adapter`` subcommand running as a real subprocess on a free port."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.args = args
        self.env = env
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.url = ""

    def start(self) -> Process:
        self.lines = []
        self.proc = subprocess.Popen(
            [*kkt_adapter_command(), *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        started = time.monotonic()
        self.url = wait_until(self._listening_url, timeout=STARTUP_DEADLINE_S, what=self.name)
        self.startup_seconds = time.monotonic() - started
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _listening_url(self) -> str | None:
        assert self.proc is not None
        for line in list(self.lines):
            if " listening on " in line:
                return line.split(" listening on ", 1)[1].strip()
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited early:\n" + "\n".join(self.lines))
        return None

    def output(self) -> str:
        return "\n".join(self.lines)

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines so far, parsed (plain lines, such as "listening on", left out)."""
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def messages(self, logger: str | None = None) -> list[str]:
        """The log messages so far, of ``logger`` only if given."""
        return [
            record["message"]
            for record in self.log_records()
            if logger is None or record["logger"] == logger
        ]

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def adapter_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KKT_")}
    env.update(STRICT_EMULATOR)
    env.update(extra)
    return env


@pytest.fixture
def start_adapter(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start ``kkt-adapter serve`` on a free port; every process is killed at teardown."""
    started: list[Process] = []

    def start(data_dir: Path | None = None, env: dict[str, str] | None = None) -> Process:
        data = data_dir or tmp_path / "data"
        args = ["serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data)]
        process = Process(args, adapter_env(**(env or {})), "kkt-adapter").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The adapter app in-process (lifespan included) behind an httpx client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture(name="settings")
def _settings_with_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on a temporary data dir; parametrize indirectly with a dict of overrides."""
    overrides = getattr(request, "param", {})
    return Settings(data_dir=tmp_path / "data", **overrides)


@pytest.fixture
def start_mock_ofd(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start ``kkt-adapter mock-ofd`` on a free port; every process is killed at teardown."""
    started: list[Process] = []

    def start(data_dir: Path | None = None, env: dict[str, str] | None = None) -> Process:
        data = data_dir or tmp_path / "ofd-data"
        port = str(free_port())
        args = ["mock-ofd", "--host", "127.0.0.1", "--port", port, "--data-dir", str(data)]
        process = Process(args, adapter_env(**(env or {})), "kkt-adapter mock-ofd").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def start_mock_atol(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start ``kkt-adapter mock-atol`` on a free port (or ``port``, to start it again where the
    adapter looks for it); every process is killed at teardown."""
    started: list[Process] = []

    def start(
        data_dir: Path | None = None, ofd_url: str | None = None, port: int | None = None
    ) -> Process:
        data = data_dir or tmp_path / "atol-data"
        args = ["mock-atol", "--host", "127.0.0.1", "--port", str(port or free_port()),
                "--data-dir", str(data)]  # fmt: skip
        if ofd_url:
            args += ["--ofd-url", ofd_url]
        process = Process(args, adapter_env(), "kkt-adapter mock-atol").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


class RedisServer:
    """A private ``redis-server`` on a free port (nothing kept on disk); stop and start it
    again on the same port to test an outage."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, timeout=10, what="redis-server")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis for the lease tests: started here, on a free port, by the test itself."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
