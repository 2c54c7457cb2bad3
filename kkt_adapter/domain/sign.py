"""Fiscal sign and QR payload of a fiscal document: pure functions, no I/O.

The fiscal sign (FFD tag 1077) is a keyed hash of the canonical document truncated to 10
decimal digits. Anyone holding the same key (the OFD emulator) recomputes it from the document
as received and so detects a document altered after fiscalization.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import Any

import orjson

SIGN_TAG = "1077"
_SIGN_MODULUS = 10**10

# The canonical form is defined by the json.dumps call below: documents signed with it must
# keep verifying. orjson writes the same bytes several times faster except for floats under
# 1e-4 ("0.00001", "1e-7" against "1e-05", "1e-07"), NaN and infinities (null, where json
# refuses), integers beyond 64 bits and types json does not know; those documents take the
# json path. The check is deliberately loose: a false alarm only costs speed.
_JSON_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_ORJSON_CANONICAL = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_EXPONENT = re.compile(rb"[0-9]e-")


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The document without its fiscal sign as canonical JSON (sorted keys, compact, UTF-8).

    Sorted keys and fixed separators make the bytes independent of how the document was
    built or transported, so signer and verifier agree on what was signed.
    """
    unsigned = {tag: value for tag, value in document.items() if tag != SIGN_TAG}
    try:
        fast = orjson.dumps(unsigned, option=_ORJSON_CANONICAL)
    except orjson.JSONEncodeError:
        pass
    else:
        if not _may_differ_from_json(fast):
            return fast
    return _JSON_CANONICAL.encode(unsigned).encode("utf-8")


def _may_differ_from_json(data: bytes) -> bool:
    # Substring tests first: a regex alone would be slower than the serialization it guards.
    if b"null" in data or b"0.0000" in data:
        return True
    return b"e-" in data and _EXPONENT.search(data) is not None


def fiscal_sign(key: bytes, document: dict[str, Any]) -> str:
    """HMAC-SHA256 of the canonical document, first 8 bytes mod 10**10, as 10 digits."""
    digest = hmac.new(key, canonical_bytes(document), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % _SIGN_MODULUS:010d}"


def verify_sign(key: bytes, document: dict[str, Any]) -> bool:
    """True when the document's tag 1077 matches a recomputation (constant-time compare)."""
    claimed = document.get(SIGN_TAG)
    if not isinstance(claimed, str):
        return False
    expected = fiscal_sign(key, document)
    return hmac.compare_digest(claimed.encode("utf-8"), expected.encode("utf-8"))


def qr_string(
    dt: datetime,
    total_kopecks: int,
    fn: str,
    fd: int,
    fp: str,
    receipt_type_code: int,
) -> str:
    """The receipt's QR payload, e.g. ``t=20261124T1338&s=7990.00&fn=...&i=42&fp=...&n=1``.

    ``dt`` is written as its own wall time (the device's local time), not converted.
    """
    if total_kopecks < 0:
        raise ValueError(f"total must not be negative: {total_kopecks}")
    # Integer arithmetic only: a float would round some kopeck amounts wrongly.
    rubles, kopecks = divmod(total_kopecks, 100)
    return (
        f"t={dt:%Y%m%dT%H%M}&s={rubles}.{kopecks:02d}&fn={fn}&i={fd}&fp={fp}&n={receipt_type_code}"
    )
