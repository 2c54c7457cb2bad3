"""The KKT's journal is the source of truth (I8), in process: a buffer that lost documents gets
them back from the journal, a retry of a lost sale replays, and a KKT that contradicts the
buffer is refused."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos import device_log
from helpers import adapter, eventually, new_key, priced_receipt

from kkt_adapter.buffer.retention import backup
from kkt_adapter.errors import StartupRefused
from kkt_adapter.settings import Settings


async def sell(api: httpx.AsyncClient, kopecks: int) -> tuple[dict[str, str], dict[str, Any]]:
    key, body = new_key(), priced_receipt(kopecks)
    answer = await api.post("/v1/kkt/receipt", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    sold: dict[str, Any] = answer.json()
    return key, {"body": body, **sold}


async def status(api: httpx.AsyncClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await api.get("/v1/kkt/buffer/status")).json()
    return answer


async def health(api: httpx.AsyncClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await api.get("/v1/health")).json()
    return answer


def put_backup_in_place(data: Path, copy: Path) -> None:
    """What the docs said to do before ``kkt-adapter restore``: the copy over the buffer."""
    for suffix in ("-wal", "-shm"):
        (data / f"buffer.sqlite{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, data / "buffer.sqlite")


async def test_a_restored_older_backup_gets_the_later_documents_back_from_the_kkt(
    settings: Settings, tmp_path: Path
) -> None:
    data, copy = settings.data_dir, tmp_path / "copy.sqlite"
    async with adapter(settings) as api:
        early = [await sell(api, 100 + n) for n in range(2)]
        backup(data / "buffer.sqlite", copy)
        late = [await sell(api, 200 + n) for n in range(2)]
        await eventually(lambda: status(api), lambda s: s["synced"] == 4, what="4 synced")
    put_backup_in_place(data, copy)
    async with adapter(settings) as api:
        current = await eventually(
            lambda: status(api), lambda s: s["synced"] == 4, what="the lost two back and synced"
        )
        assert (current["total"], current["pending"]) == (4, 0)
        for key, sold in late:
            row = (await api.get(f"/v1/kkt/receipt/{sold['receipt_id']}")).json()
            assert row["fiscal"]["fd"] == sold["fiscal"]["fd"]
            # The POS retries a lost sale: replayed from the recovered receipt, not printed.
            retried = await api.post("/v1/kkt/receipt", json=sold["body"], headers=key)
            assert retried.status_code == 200, retried.text
            assert retried.json()["receipt_id"] == sold["receipt_id"]
            assert retried.json()["fiscal"]["fd"] == sold["fiscal"]["fd"]
            other = await api.post("/v1/kkt/receipt", json=priced_receipt(999), headers=key)
            assert other.status_code == 422, other.text  # another body under that key
            assert other.json()["code"] == "idempotency_key_reused"
        kkt = (await health(api))["components"]["kkt"]
        assert kkt["journal"]["recovered"] == 2 and kkt["problems"] == []
        assert (await health(api))["status"] == "healthy"
    documents, repeats = device_log(data)
    assert repeats == 0 and len(documents) == len(early) + len(late) + 1  # + the shift opening


async def test_a_receipt_marked_print_failed_that_the_kkt_printed_is_recorded(
    settings: Settings,
) -> None:
    data = settings.data_dir
    async with adapter(settings) as api:
        _, sold = await sell(api, 100)
    with contextlib.closing(sqlite3.connect(data / "buffer.sqlite")) as conn, conn:
        conn.execute(
            "UPDATE receipts SET status = 'print_failed', fd = NULL, fn = NULL WHERE id = ?",
            (sold["receipt_id"],),
        )
    async with adapter(settings) as api:
        row = await eventually(
            lambda: api.get(f"/v1/kkt/receipt/{sold['receipt_id']}"),
            lambda r: r.json()["status"] == "synced",
            what="recorded and synced",
        )
        assert row.json()["fiscal"]["fd"] == sold["fiscal"]["fd"]


async def test_a_kkt_with_another_fn_is_refused_while_documents_wait(settings: Settings) -> None:
    data = settings.data_dir
    async with adapter(settings) as api:
        ofd = await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})  # pending
        assert ofd.status_code == 200, ofd.text
        await sell(api, 100)
    (data / "kkt-emulator.sqlite").unlink()  # the KKT's state lost: a new FN next start
    with pytest.raises(StartupRefused, match="the buffer still has 1 documents of FN"):
        async with adapter(settings):
            pass


async def test_a_kkt_whose_fds_went_back_is_refused(settings: Settings, tmp_path: Path) -> None:
    data, kkt_copy = settings.data_dir, tmp_path / "kkt.sqlite"
    async with adapter(settings) as api:
        await sell(api, 100)
        with (
            contextlib.closing(sqlite3.connect(data / "kkt-emulator.sqlite")) as kkt,
            contextlib.closing(sqlite3.connect(kkt_copy)) as out,
        ):
            kkt.backup(out)
        await sell(api, 200)
    for suffix in ("-wal", "-shm"):
        (data / f"kkt-emulator.sqlite{suffix}").unlink(missing_ok=True)
    shutil.copyfile(kkt_copy, data / "kkt-emulator.sqlite")  # the KKT's state went back
    with pytest.raises(StartupRefused, match="below FD 3 that the buffer holds"):
        async with adapter(settings):
            pass


async def test_a_journal_document_without_a_receipt_id_is_a_gap_in_health(
    settings: Settings,
) -> None:
    data = settings.data_dir
    async with adapter(settings) as api:
        _, sold = await sell(api, 100)
    with contextlib.closing(sqlite3.connect(data / "kkt-emulator.sqlite")) as kkt, kkt:
        row = kkt.execute(
            "SELECT * FROM documents WHERE receipt_id = ?", (sold["receipt_id"],)
        ).fetchone()
        fd = int(kkt.execute("SELECT next_fd FROM device_state").fetchone()[0])
        kkt.execute(  # a receipt another program printed: no tag 1192
            "INSERT INTO documents (fd, kind, receipt_id, created_at, shift, number_in_shift,"
            " fp, total, type_code, document) VALUES (?, 'receipt', NULL, ?, ?, ?, ?, ?, ?, ?)",
            (fd, *row[3:5], 99, *row[6:10]),
        )
        kkt.execute("UPDATE device_state SET next_fd = ?", (fd + 1,))
    async with adapter(settings) as api:
        current = await health(api)
        assert current["status"] == "degraded"
        assert current["components"]["kkt"]["problems"] == ["journal_gap"]
        assert current["components"]["kkt"]["journal"]["gaps"] == [fd]
        [alert] = [a for a in (await status(api))["alerts"] if a["code"] == "kkt_journal_gap"]
        assert alert["level"] == "critical" and str(fd) in alert["message"]
        # A chain's Prometheus sees it too (deploy/prometheus: the rule of the same name).
        metrics = (await api.get("/metrics")).text
        assert 'kkt_journal_problem{code="kkt_journal_gap"} 1.0' in metrics
        assert 'kkt_journal_problem{code="kkt_journal_unchecked"} 0.0' in metrics


async def test_a_document_recovered_between_two_recorded_ones_is_stamped_between_them(
    settings: Settings,
) -> None:
    data = settings.data_dir
    async with adapter(settings) as api:
        await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})  # keep them here
        sold = [(await sell(api, 100 + n))[1] for n in range(3)]
    middle = sold[1]["receipt_id"]
    with contextlib.closing(sqlite3.connect(data / "buffer.sqlite")) as conn, conn:
        conn.execute("DELETE FROM idempotency_keys WHERE receipt_id = ?", (middle,))
        conn.execute("DELETE FROM buffer_events WHERE receipt_id = ?", (middle,))
        conn.execute("DELETE FROM receipts WHERE id = ?", (middle,))  # the buffer lost it
    async with adapter(settings) as api:
        assert (await health(api))["components"]["kkt"]["journal"]["recovered"] == 1
    with contextlib.closing(sqlite3.connect(data / "buffer.sqlite")) as conn:
        stamps = conn.execute(
            "SELECT fd, hlc_wall, hlc_counter, hlc_node FROM receipts ORDER BY fd"
        ).fetchall()
    assert [fd for fd, *_ in stamps] == [s["fiscal"]["fd"] for s in sold]
    ordered = [tuple(stamp) for _, *stamp in stamps]
    assert ordered == sorted(ordered) and len(set(ordered)) == 3  # HLC order = FD order (I5)
