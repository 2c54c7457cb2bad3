"""Tag 1084: what a printed receipt carries so the buffer can be rebuilt from the journal."""

from __future__ import annotations

from kkt_adapter.domain.journal import Mark, key_digest, mark, read_mark, stamped


def test_a_mark_carries_the_key_digest_the_fingerprint_and_then_the_stamp() -> None:
    document = {"1192": "R1", "1084": mark("key-1", "f" * 64)}
    assert read_mark(document) == Mark(key_digest("key-1"), "f" * 64, None)
    printed = stamped(document, "0001796029453682.00036.n1")
    assert read_mark(printed) == Mark(key_digest("key-1"), "f" * 64, "0001796029453682.00036.n1")
    assert document["1084"] == mark("key-1", "f" * 64)  # the original is left as it was
    again = stamped(printed, "0001796029453699.00000.n1")  # a retried print: the new stamp
    assert read_mark(again) == Mark(key_digest("key-1"), "f" * 64, "0001796029453699.00000.n1")
    assert "key-1" not in str(printed)  # the key itself never reaches the fiscal document


def test_documents_without_our_mark() -> None:
    assert read_mark({"1192": "R1"}) is None
    assert read_mark({"1084": {"1085": "someone-else", "1086": "x.y"}}) is None
    bare = stamped({"1192": "R1"}, "0001.00000.n1")  # only a stamp: no key to replay by
    assert read_mark(bare) == Mark(None, "", "0001.00000.n1")
    assert key_digest("k").startswith("sha256:") and len(key_digest("k")) == 7 + 32
