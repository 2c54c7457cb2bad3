"""Disk use per unsent receipt: the numbers behind the default buffer capacity and free-disk
floor (docs/decisions.md, "Buffer capacity and disk").

    .venv/bin/python bench/disk_per_receipt.py [--receipts 5000] [--items 3]

Runs ``kkt-adapter serve`` with the OFD unreachable (every receipt stays unsent, the state the
capacity bounds), posts receipts of a busy till's shape (``--items`` lines, a customer e-mail,
a cashier), stops it cleanly (the WAL checkpointed into the file) and prints one JSON summary:
the buffer's bytes on disk before and after, and the bytes per receipt.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

from common import log, machine_info, start_adapter, stop

FILES = ("buffer.sqlite", "buffer.sqlite-wal", "buffer.sqlite-shm")


def on_disk(data_dir: Path) -> int:
    """Bytes the buffer's files take (allocated blocks, not apparent size)."""
    paths = (data_dir / name for name in FILES)
    return sum(path.stat().st_blocks * 512 for path in paths if path.exists())


def receipt(n: int, items: int) -> dict[str, object]:
    lines = [
        {
            "name": f"Spectacle lens 1.6 AR coating, line {i}",
            "price": "1990.00",
            "quantity": "1",
            "vat": "vat22",
            "subject": "goods",
            "payment_method": "full_payment",
        }
        for i in range(items)
    ]
    return {
        "pos_id": "POS-001",
        "type": "sale",
        "items": lines,
        "payments": [{"method": "card", "amount": f"{1990 * items}.00"}],
        "customer": {"email": f"buyer{n}@example.com"},
        "cashier": {"name": "Ivanova A."},
    }


def post(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(
        f"{url}/v1/kkt/receipt",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return int(answer.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=5000)
    parser.add_argument("--items", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kkt-disk-") as tmp:
        data = Path(tmp) / "data"
        env = {"KKT_OFD_URL": "http://127.0.0.1:9", "KKT_LOG_LEVEL": "warning"}
        proc, url = start_adapter(data, env)
        try:
            post(url, receipt(0, args.items))  # the schema, the shift, the first pages
            stop(proc)
            empty = on_disk(data)
            proc, url = start_adapter(data, env)
            for n in range(1, args.receipts + 1):
                assert post(url, receipt(n, args.items)) == 200
                if n % 1000 == 0:
                    log(f"{n} receipts")
        finally:
            stop(proc)
        full = on_disk(data)
        summary = {
            "receipts": args.receipts,
            "items_per_receipt": args.items,
            "bytes_before": empty,
            "bytes_after": full,
            "bytes_per_receipt": round((full - empty) / args.receipts),
            "machine": machine_info(data),
        }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
