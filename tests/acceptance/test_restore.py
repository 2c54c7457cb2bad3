"""Backup, restore and a lost KKT state with the real commands: the KKT's journal is the source
of truth (I8), so nothing the KKT printed is stranded, printed twice or stored twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos import device_log, ofd_documents
from conftest import Process, free_port, wait_until
from helpers import new_key, priced_receipt
from test_backup_integrity import run_command

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]


def sell(http: httpx.Client, kopecks: int) -> tuple[dict[str, str], dict[str, Any], Any]:
    key, body = new_key(), priced_receipt(kopecks)
    answer = http.post("/v1/kkt/receipt", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    return key, body, answer.json()


def synced(http: httpx.Client, count: int) -> bool:
    status = http.get("/v1/kkt/buffer/status").json()
    return bool(status["synced"] == count and status["pending"] + status["syncing"] == 0)


def one_plain_line(stderr: str) -> str:
    """The one line of reason (log records, if any, are JSON lines of their own)."""
    plain = [line for line in stderr.splitlines() if line and not line.startswith("{")]
    assert len(plain) == 1, stderr
    assert "Traceback" not in stderr
    return plain[0]


def test_backup_refuses_to_write_onto_the_live_buffer(start_adapter: Start, tmp_path: Path) -> None:
    data = tmp_path / "data"
    adapter = start_adapter(data)
    with adapter.client() as http:
        sell(http, 100)
        for own in ("buffer.sqlite", "buffer.sqlite-wal", "kkt-emulator.sqlite"):
            refused = run_command(["backup", str(data / own), "--data-dir", str(data)])
            assert refused.returncode == 2, refused.stdout + refused.stderr
            line = one_plain_line(refused.stderr)
            assert "refusing to write the backup onto" in line and own in line
        sell(http, 200)  # the live buffer is untouched
        assert http.get("/v1/kkt/buffer/status").json()["total"] == 2


def test_restore_of_an_older_backup_recovers_what_the_kkt_printed_since(
    start_adapter: Start, start_mock_ofd: Start, tmp_path: Path
) -> None:
    data, copy = tmp_path / "data", tmp_path / "copy.sqlite"
    ofd = start_mock_ofd()
    env = {"KKT_OFD_URL": ofd.url, "KKT_DELIVERY_SWEEP_SECONDS": "0.1"}
    adapter = start_adapter(data, env=env)
    with adapter.client() as http:
        [sell(http, 100 + n) for n in range(2)]
        assert run_command(["backup", str(copy), "--data-dir", str(data)]).returncode == 0
        late = [sell(http, 200 + n) for n in range(2)]
        wait_until(lambda: synced(http, 4), timeout=30, what="4 synced")
        running = run_command(["restore", str(copy), "--data-dir", str(data)])
        assert running.returncode == 2, running.stdout + running.stderr
        assert "stop it first" in one_plain_line(running.stderr)
    assert adapter.terminate() == 0

    restored = run_command(["restore", str(copy), "--data-dir", str(data)])
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored 2 receipts" in restored.stdout
    assert "2 more recovered from the KKT's journal" in restored.stdout
    assert list(data.glob("buffer-replaced-*.sqlite"))  # the replaced buffer is kept

    again = start_adapter(data, env=env)
    with again.client() as http, ofd.client() as ofd_http:
        wait_until(lambda: synced(http, 4), timeout=30, what="the recovered two synced")
        for key, body, sold in late:  # the POS retries a lost sale: replayed, not printed
            retried = http.post("/v1/kkt/receipt", json=body, headers=key)
            assert retried.status_code == 200, retried.text
            assert retried.json()["receipt_id"] == sold["receipt_id"]
            assert retried.json()["fiscal"]["fd"] == sold["fiscal"]["fd"]
        health = http.get("/v1/health").json()
        assert health["status"] == "healthy", health
        documents = ofd_documents(ofd_http)
        assert ofd_http.get("/_control/stats").json()["unique_documents"] == 4
    assert len({d["receipt_id"] for d in documents}) == len(documents) == 4  # stored once
    device_documents, repeats = device_log(data)
    assert repeats == 0
    assert len([rid for _, rid in device_documents if rid is not None]) == 4


def test_serve_refuses_a_kkt_whose_state_was_lost_in_one_line(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    offline = {"KKT_OFD_URL": f"http://127.0.0.1:{free_port()}"}  # the receipt stays unsent
    adapter = start_adapter(data, env=offline)
    with adapter.client() as http:
        fn = sell(http, 100)[2]["fiscal"]["fn"]
    assert adapter.terminate() == 0
    state = data / "kkt-emulator.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    state.write_bytes(b"")  # the KKT's state lost: it comes back as a new device, a new FN
    serve = ["serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data)]
    refused = run_command(serve)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = one_plain_line(refused.stderr)
    assert line.startswith("kkt-adapter: refusing to start: the KKT's FN is ")
    assert f"1 documents of FN {fn} to deliver" in line
    assert "listening on" not in refused.stdout
