"""The fiscal document and what a KKT records for a fiscalized receipt.

Shared by the buffer (which keeps them) and the device drivers (which produce them), so
neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

FfdDocument = dict[str, Any]
"""A fiscal document as a JSON object keyed by FFD tag numbers as strings ("1054", ...)."""


@dataclass(frozen=True)
class FiscalResult:
    """What the device recorded for one fiscalized receipt."""

    receipt_id: str
    fn: str
    fd: int
    fp: str
    shift: int
    number_in_shift: int
    datetime: datetime
    qr: str
    document: FfdDocument
    """The complete fiscal document, fiscal tags (1040, 1041, 1038, 1042, 1012, 1077) included."""
