"""pkgmirror.blobcache: the in-memory copies of small blobs."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from pkgmirror.blobcache import SmallBlobs


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@given(st.lists(st.binary(max_size=40), max_size=60), st.integers(1, 200))
def test_kept_bytes_are_exact_and_bounded(blobs: list[bytes], max_total: int) -> None:
    kept = SmallBlobs(max_item=30, max_total=max_total)
    for data in blobs:
        kept.put(sha(data), data)
        assert kept.total <= max_total
    for data in blobs:
        got = kept.get(sha(data))
        assert got is None or got == data
        if len(data) > 30:
            assert got is None


def test_least_recently_used_go_first() -> None:
    kept = SmallBlobs(max_item=10, max_total=30)
    a, b, c, d = (bytes([n]) * 10 for n in range(4))
    for data in (a, b, c):
        kept.put(sha(data), data)
    assert kept.get(sha(a)) == a  # a is now the most recently used
    kept.put(sha(d), d)
    assert kept.get(sha(b)) is None
    assert [kept.get(sha(x)) for x in (a, c, d)] == [a, c, d]
    assert len(kept) == 3 and kept.total == 30
