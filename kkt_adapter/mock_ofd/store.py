"""The OFD emulator's SQLite store: received documents and persisted counters.

The emulator is the judge of promise I3 ("the OFD stores each fiscal document once"), so the
uniqueness of the Idempotency-Key and of the (FN, FD) pair is enforced by UNIQUE constraints,
and the look-up, the insert and the counter update of one submission run in one transaction.
Writes go through the group-committing :class:`~kkt_adapter.sqlite.Database`:
one writer thread, so two identical submissions can never interleave, and one fsync serves
every submission that queued up meanwhile.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kkt_adapter.sqlite import Database, apply_migrations, connect

FILE_NAME = "mock-ofd.sqlite"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE documents (
            seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
            idempotency_key TEXT NOT NULL UNIQUE,
            fn              TEXT NOT NULL,
            fd              INTEGER NOT NULL,
            receipt_id      TEXT NOT NULL,
            pos_id          TEXT NOT NULL,
            fp              TEXT NOT NULL,
            hlc             TEXT NOT NULL,      -- the adapter's stamp, as received
            fingerprint     TEXT NOT NULL,      -- what a repeat must match to be a repeat
            document        TEXT NOT NULL,      -- JSON keyed by FFD tags
            ofd_receipt_id  TEXT NOT NULL UNIQUE,
            accepted_at     TEXT NOT NULL,
            ofd_hlc         TEXT NOT NULL,      -- the emulator's stamp in the first answer
            UNIQUE (fn, fd)
        )
        """,
        """
        CREATE TABLE counters (
            id                    INTEGER PRIMARY KEY CHECK (id = 1),
            submissions           INTEGER NOT NULL DEFAULT 0,
            duplicate_submissions INTEGER NOT NULL DEFAULT 0,
            rejected              INTEGER NOT NULL DEFAULT 0,
            failed                INTEGER NOT NULL DEFAULT 0,
            last_hlc              TEXT                      -- keeps the clock monotonic
        )
        """,
        "INSERT INTO counters (id) VALUES (1)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the emulator's schema to ``SCHEMA_VERSION``; returns the version found before."""
    return apply_migrations(conn, MIGRATIONS, "OFD emulator")


@dataclass(frozen=True)
class Submission:
    """A validated ``POST /ofd/v1/receipts``."""

    idempotency_key: str
    receipt_id: str
    pos_id: str
    fn: str
    fd: int
    fp: str
    hlc: str
    document: dict[str, Any]
    fingerprint: str


@dataclass(frozen=True)
class Answer:
    """The body of a ``200`` for a stored document; a repeat gets exactly this again.

    It names the document it acknowledges (``fn``, ``fd``): the adapter counts only such an
    answer as delivery (I8).
    """

    ofd_receipt_id: str
    accepted_at: str
    hlc: str
    fn: str
    fd: int

    def as_dict(self) -> dict[str, str | int]:
        return {
            "ofd_receipt_id": self.ofd_receipt_id,
            "accepted_at": self.accepted_at,
            "hlc": self.hlc,
            "fn": self.fn,
            "fd": self.fd,
        }


class Outcome(enum.Enum):
    """What :meth:`OfdStore.accept` did with a submission."""

    STORED = "stored"
    REPLAYED = "replayed"
    """A repeat of a stored document: its first answer, nothing stored."""
    CONFLICT = "conflict"
    """A different document under a stored Idempotency-Key or (FN, FD): nothing stored."""


@dataclass(frozen=True)
class Stats:
    """The counters of ``GET /_control/stats``."""

    submissions: int
    unique_documents: int
    duplicate_submissions: int
    rejected: int
    failed: int


class OfdStore:
    """Documents and counters of the emulator in ``<data_dir>/mock-ofd.sqlite``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._db = Database(self.path, migrate=migrate, name="ofd")

    def open(self) -> str | None:
        """Open (creating or migrating the file); returns the last HLC stamp it issued."""
        self._db.open()
        conn = connect(self.path)
        try:
            row = conn.execute("SELECT last_hlc FROM counters WHERE id = 1").fetchone()
        finally:
            conn.close()
        return None if row is None else row["last_hlc"]

    def close(self) -> None:
        """Finish queued writes and close the file."""
        self._db.close()

    async def accept(self, submission: Submission, answer: Answer) -> tuple[Outcome, Answer | None]:
        """Store ``submission`` once, or recognize a repeat or a conflict; counts it.

        ``answer`` is stored only when the document is new (a repeat returns the stored one);
        its stamp is persisted either way as the clock's last.
        """
        return await self._db.write(lambda conn: _accept(conn, submission, answer))

    async def count(
        self, *, rejected: int = 0, failed: int = 0, last_hlc: str | None = None
    ) -> None:
        """Count a submission that was answered without reaching :meth:`accept`.

        ``last_hlc`` is the stamp the answer carries, persisted so that a restarted emulator
        never issues a lower one.
        """
        await self._db.write(
            lambda conn: _count(conn, rejected=rejected, failed=failed, last_hlc=last_hlc)
        )

    async def stats(self) -> Stats:
        """The counters, as committed."""
        return await self._db.read(_stats)

    async def received(self, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of stored documents in arrival order, and the total count."""
        return await self._db.read(lambda conn: _received(conn, page, limit))

    async def reset(self) -> None:
        """Forget every document and counter (the clock's last stamp is kept: HLC is monotonic)."""
        await self._db.write(_reset)


_SELECT_IDENTITY = (
    "SELECT seq, fingerprint, ofd_receipt_id, accepted_at, ofd_hlc, fn, fd FROM documents"
)


def _accept(
    conn: sqlite3.Connection, submission: Submission, answer: Answer
) -> tuple[Outcome, Answer | None]:
    by_key = conn.execute(
        f"{_SELECT_IDENTITY} WHERE idempotency_key = ?", (submission.idempotency_key,)
    ).fetchone()
    by_fd = conn.execute(
        f"{_SELECT_IDENTITY} WHERE fn = ? AND fd = ?", (submission.fn, submission.fd)
    ).fetchone()
    existing = by_key or by_fd
    if existing is None:
        _insert(conn, submission, answer)
        _count(conn, last_hlc=answer.hlc)
        return Outcome.STORED, answer
    # Both identities must point at the same stored document, and it must be this one.
    same_row = by_key is None or by_fd is None or by_key["seq"] == by_fd["seq"]
    if not same_row or existing["fingerprint"] != submission.fingerprint:
        _count(conn, rejected=1, last_hlc=answer.hlc)
        return Outcome.CONFLICT, None
    _count(conn, duplicates=1, last_hlc=answer.hlc)
    stored = Answer(
        existing["ofd_receipt_id"],
        existing["accepted_at"],
        existing["ofd_hlc"],
        existing["fn"],
        int(existing["fd"]),
    )
    return Outcome.REPLAYED, stored


def _insert(conn: sqlite3.Connection, submission: Submission, answer: Answer) -> None:
    conn.execute(
        "INSERT INTO documents (idempotency_key, fn, fd, receipt_id, pos_id, fp, hlc,"
        " fingerprint, document, ofd_receipt_id, accepted_at, ofd_hlc)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            submission.idempotency_key,
            submission.fn,
            submission.fd,
            submission.receipt_id,
            submission.pos_id,
            submission.fp,
            submission.hlc,
            submission.fingerprint,
            orjson.dumps(submission.document).decode(),
            answer.ofd_receipt_id,
            answer.accepted_at,
            answer.hlc,
        ),
    )


def _count(
    conn: sqlite3.Connection,
    *,
    duplicates: int = 0,
    rejected: int = 0,
    failed: int = 0,
    last_hlc: str | None = None,
) -> None:
    conn.execute(
        "UPDATE counters SET submissions = submissions + 1,"
        " duplicate_submissions = duplicate_submissions + ?,"
        " rejected = rejected + ?, failed = failed + ?,"
        " last_hlc = COALESCE(?, last_hlc) WHERE id = 1",
        (duplicates, rejected, failed, last_hlc),
    )


def _stats(conn: sqlite3.Connection) -> Stats:
    row = conn.execute(
        "SELECT submissions, duplicate_submissions, rejected, failed,"
        " (SELECT COUNT(*) FROM documents) AS unique_documents FROM counters WHERE id = 1"
    ).fetchone()
    return Stats(
        submissions=row["submissions"],
        unique_documents=row["unique_documents"],
        duplicate_submissions=row["duplicate_submissions"],
        rejected=row["rejected"],
        failed=row["failed"],
    )


def _received(conn: sqlite3.Connection, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    total = int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    rows = conn.execute(
        "SELECT receipt_id, idempotency_key, pos_id, fn, fd, fp, hlc, ofd_receipt_id,"
        " accepted_at, document FROM documents ORDER BY seq LIMIT ? OFFSET ?",
        (limit, (page - 1) * limit),
    ).fetchall()
    items = [{**dict(row), "document": orjson.loads(row["document"])} for row in rows]
    return items, total


def _reset(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM documents")
    conn.execute(
        "UPDATE counters SET submissions = 0, duplicate_submissions = 0, rejected = 0,"
        " failed = 0 WHERE id = 1"
    )
