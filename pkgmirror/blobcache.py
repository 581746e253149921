"""
Small blobs (core metadata files, small wheels) kept in memory, so that serving them costs no
file I/O and none of static.File's producer machinery: most of what pip and uv fetch from a
warm index is small.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

# Blobs up to this size are kept; the whole cache holds at most MAX_TOTAL bytes.
MAX_ITEM = 64 * 1024
MAX_TOTAL = 32 * 1024 * 1024


@attrs.define
class SmallBlobs:
    """
    The least recently used go first. Blobs are content-addressed: a kept copy is never stale,
    even of a blob deleted since (nothing refers to it any more, so nothing asks for it).
    """

    max_item: int = MAX_ITEM
    max_total: int = MAX_TOTAL
    _items: OrderedDict[str, bytes] = attrs.field(factory=OrderedDict)
    _total: int = 0

    def get(self, sha256: str) -> bytes | None:
        data = self._items.get(sha256)
        if data is not None:
            self._items.move_to_end(sha256)
        return data

    def put(self, sha256: str, data: bytes) -> None:
        if len(data) > self.max_item or sha256 in self._items:
            return
        self._items[sha256] = data
        self._total += len(data)
        while self._total > self.max_total:
            _, dropped = self._items.popitem(last=False)
            self._total -= len(dropped)

    @property
    def total(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._items)
