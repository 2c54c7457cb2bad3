"""Backup of a running buffer, and the start-up integrity check, with the real commands."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Process, adapter_env, free_port, kkt_adapter_command, wait_until
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]


def run_command(
    args: list[str], timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A ``kkt-adapter`` command run to its end (for commands expected to exit)."""
    return subprocess.run(
        [*kkt_adapter_command(), *args],
        env=adapter_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_backup_of_a_running_buffer_is_a_sound_copy(start_adapter: Start, tmp_path: Path) -> None:
    data = tmp_path / "data"
    adapter = start_adapter(data)
    acknowledged: list[str] = []
    refused: list[str] = []  # what the seller saw instead of a 200, asserted below
    stop = threading.Event()

    def sell() -> None:  # receipts keep coming while the backup runs
        try:
            with adapter.client() as http:
                n = 0
                while not stop.is_set():
                    answer = http.post(
                        "/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key()
                    )
                    if answer.status_code != 200:
                        refused.append(answer.text)
                        return
                    acknowledged.append(answer.json()["receipt_id"])
                    n += 1
        except Exception as exc:
            refused.append(repr(exc))

    seller = threading.Thread(target=sell)
    seller.start()
    try:
        wait_until(
            lambda: len(acknowledged) >= 20 or not seller.is_alive(),
            timeout=30,
            what="20 receipts sold",
        )
        assert refused == [] and len(acknowledged) >= 20
        before = set(acknowledged)
        backups = tmp_path / "backups"
        backups.mkdir()
        result = run_command(["backup", str(backups), "--data-dir", str(data)])
    finally:
        stop.set()
        seller.join(timeout=30)
    assert not seller.is_alive() and refused == []
    assert result.returncode == 0, result.stderr
    copies = list(backups.glob("buffer-*.sqlite"))
    assert len(copies) == 1
    assert str(copies[0]) in result.stdout and "backed up" in result.stdout
    with sqlite3.connect(copies[0]) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {row[0] for row in conn.execute("SELECT id FROM receipts")}
        kept = dict(conn.execute("SELECT status, n FROM status_counts"))
        real = dict(conn.execute("SELECT status, COUNT(*) FROM receipts GROUP BY status"))
    assert before <= ids  # everything acknowledged before the backup is in it
    assert f"backed up {len(ids)} receipts" in result.stdout
    assert {s: n for s, n in kept.items() if n} == real
    assert adapter.proc is not None and adapter.proc.poll() is None  # it kept running
    assert adapter.terminate() == 0


def test_serve_refuses_a_corrupt_buffer_and_starts_on_a_restored_backup(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    adapter = start_adapter(data)
    with adapter.client() as http:
        for n in range(60):
            answer = http.post("/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key())
            assert answer.status_code == 200
    good_copy = tmp_path / "good.sqlite"
    assert run_command(["backup", str(good_copy), "--data-dir", str(data)]).returncode == 0
    assert adapter.terminate() == 0

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    buffer_file = broken / "buffer.sqlite"
    with sqlite3.connect(buffer_file) as conn:  # everything into the main file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = buffer_file.stat().st_size
    assert size > 64 * 1024
    with open(buffer_file, "r+b") as file:
        file.seek(size // 3)
        file.write(os.urandom(size // 3))

    port = free_port()
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(broken)]
    refused = run_command(serve)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    # One line of reason (log records, if any, are JSON lines of their own).
    message = [line for line in refused.stderr.splitlines() if line.startswith("kkt-adapter:")]
    assert len(message) == 1, refused.stderr
    assert "damaged" in message[0] and "kkt-adapter backup" in message[0]
    assert "move the file" in message[0]
    assert "listening on" not in refused.stdout

    for suffix in ("-wal", "-shm"):
        Path(f"{buffer_file}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(good_copy, buffer_file)
    restored = start_adapter(broken)
    with restored.client() as http:
        status = http.get("/v1/kkt/buffer/status").json()
    assert status["total"] == 60
    assert restored.terminate() == 0


def _overwrite_with_noise(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _delete_the_device_row(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM device_state")


@pytest.mark.parametrize(
    ("damage", "says"),
    [(_overwrite_with_noise, "not a database"), (_delete_the_device_row, "no device state")],
)
def test_serve_refuses_a_damaged_kkt_emulator_state_file_in_one_line(
    start_adapter: Start, tmp_path: Path, damage: Callable[[Path], None], says: str
) -> None:
    data = tmp_path / "data"
    adapter = start_adapter(data)
    with adapter.client() as http:
        assert http.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key()).is_success
    assert adapter.terminate() == 0
    state_file = data / "kkt-emulator.sqlite"
    with sqlite3.connect(state_file) as conn:  # everything into the main file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(state_file)

    serve = ["serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data)]
    refused = run_command(serve)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    # One line of reason (log records, if any, are JSON lines of their own).
    plain = [line for line in refused.stderr.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, refused.stderr
    assert plain[0].startswith("kkt-adapter: the KKT emulator's state file")
    assert str(state_file) in plain[0] and says in plain[0]
    assert "listening on" not in refused.stdout
