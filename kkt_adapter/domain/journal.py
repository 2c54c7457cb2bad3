"""What a fiscal document carries so the buffer can be rebuilt from the KKT's journal (I8).

Every receipt the adapter prints carries its receipt id in tag 1192 and, in tag 1084 (an
additional user attribute: name 1085, value 1086), a mark made of a digest of the POS's
Idempotency-Key, the receipt's fingerprint and its HLC stamp (taken under the device gate just
before the print, so stamps rise with FD numbers)::

    1084: {1085: "kkt-adapter", 1086: "<32 hex: sha256(key)>.<64 hex: fingerprint>.<stamp>"}

The key itself never reaches the fiscal document (it is the POS's, and a printed receipt is
public); its digest is enough to recognize a retry. When a document is recovered from the
journal into the buffer (a restored backup, a lost buffer file), its idempotency key is
stored as ``key_digest(key)``, so a POS retry under the original key replays the recovered
receipt instead of printing it again, and a different body under that key is refused as a
reused key; and the receipt gets back the stamp it was printed with, so HLC order stays FD
order across a lost buffer (I5).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kkt_adapter.domain.fiscal import FfdDocument

TAG_USER_ATTRIBUTE = "1084"
TAG_ATTRIBUTE_NAME = "1085"
TAG_ATTRIBUTE_VALUE = "1086"
MARK_NAME = "kkt-adapter"
DIGEST_PREFIX = "sha256:"
_DIGEST_HEX = 32


def key_digest(key: str) -> str:
    """The form an idempotency key is stored in for a receipt recovered from the journal."""
    return DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:_DIGEST_HEX]


@dataclass(frozen=True)
class Mark:
    """What tag 1084 tells of a receipt printed by the adapter."""

    key: str | None
    """The stored form of its idempotency key (``key_digest``), if known."""
    fingerprint: str
    stamp: str | None
    """Its HLC stamp as text, if it was printed with one."""


def mark(key: str, fingerprint: str) -> dict[str, str]:
    """Tag 1084's value for a receipt under ``key`` with ``fingerprint`` (no stamp yet)."""
    digest = key_digest(key).removeprefix(DIGEST_PREFIX)
    return {TAG_ATTRIBUTE_NAME: MARK_NAME, TAG_ATTRIBUTE_VALUE: f"{digest}.{fingerprint}"}


def stamped(document: FfdDocument, stamp: str) -> FfdDocument:
    """A copy of ``document`` whose mark carries ``stamp`` (a mark is added if it has none)."""
    attribute = document.get(TAG_USER_ATTRIBUTE)
    value = "."
    if isinstance(attribute, dict) and attribute.get(TAG_ATTRIBUTE_NAME) == MARK_NAME:
        value = ".".join(str(attribute.get(TAG_ATTRIBUTE_VALUE, ".")).split(".")[:2])
    value = f"{value}.{stamp}"
    return {
        **document,
        TAG_USER_ATTRIBUTE: {TAG_ATTRIBUTE_NAME: MARK_NAME, TAG_ATTRIBUTE_VALUE: value},
    }


def read_mark(document: FfdDocument) -> Mark | None:
    """What a journal document's tag 1084 says, if it has our mark."""
    attribute = document.get(TAG_USER_ATTRIBUTE)
    if not isinstance(attribute, dict) or attribute.get(TAG_ATTRIBUTE_NAME) != MARK_NAME:
        return None
    value = attribute.get(TAG_ATTRIBUTE_VALUE)
    if not isinstance(value, str) or value.count(".") < 1:
        return None
    digest, fingerprint, *rest = value.split(".", 2)
    key = DIGEST_PREFIX + digest if len(digest) == _DIGEST_HEX and fingerprint else None
    return Mark(key, fingerprint, rest[0] if rest and rest[0] else None)
