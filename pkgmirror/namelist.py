"""
Big project name lists (an upstream's root page: a million names) held as one string.

A million names as separate ``str`` objects cost ~70 MB and, freed, leave memory scattered; the
same names ``"\\n"``-joined cost the length of their text (~16 MB). :class:`NameList` keeps that
string and hands out names in blocks; :class:`NameSorter` sorts names that arrive in any order
without ever holding all of them as separate objects. Pure: no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Iterable, Iterator

import attrs

# Names are handed out (and sorted) in blocks of about this many characters of text.
_BLOCK_CHARS = 1 << 16


@attrs.frozen
class NameList:
    """
    Project names as written, sorted (plain ``str`` order) and unique, as one ``"\\n"``-joined
    ``text`` ("" for none). Build one with :meth:`of`; the constructor trusts its ``text``.
    """

    text: str = ""
    count: int = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "count", self.text.count("\n") + 1 if self.text else 0)

    @classmethod
    def of(cls, names: Iterable[str]) -> NameList:
        """The names sorted and de-duplicated; "" and names with a newline are left out."""
        sorter = NameSorter()
        sorter.extend(names)
        return sorter.result()

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return bool(self.text)

    def __iter__(self) -> Iterator[str]:
        for block in self.blocks():
            yield from block

    def blocks(self, chars: int = _BLOCK_CHARS) -> Iterator[list[str]]:
        """The names in order, as lists of about ``chars`` characters of names each."""
        text = self.text
        start, end = 0, len(text)
        while start < end:
            cut = text.find("\n", start + chars)
            if cut == -1:
                cut = end
            yield text[start:cut].split("\n")
            start = cut + 1

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(name) and _search(self.text, name, 0)[1]

    def starting_with(self, prefix: str, limit: int) -> list[str]:
        """The names that start with ``prefix``, in order, at most ``limit``: a bisection."""
        text = self.text
        position, _ = _search(text, prefix, 0)
        found: list[str] = []
        while position < len(text) and len(found) < limit:
            end = _line_end(text, position)
            name = text[position:end]
            if not name.startswith(prefix):
                break
            found.append(name)
            position = end + 1
        return found

    def containing(self, fragment: str, limit: int) -> list[str]:
        """
        The names that contain ``fragment``, in order, at most ``limit``: ``str.find`` over the
        text, which scans a million names in milliseconds, one hit per name.
        """
        if not fragment or "\n" in fragment:
            return []
        text = self.text
        found: list[str] = []
        position = text.find(fragment)
        while position >= 0 and len(found) < limit:
            start = text.rfind("\n", 0, position) + 1
            end = _line_end(text, position)
            found.append(text[start:end])
            position = text.find(fragment, end + 1)
        return found

    def merged(self, extra: Iterable[str]) -> NameList:
        """
        These names and ``extra`` (any order, duplicates allowed), sorted and unique. A few extra
        names are spliced into the text: no name of this list becomes an object of its own.
        """
        more = list(extra)
        if not more:
            return self
        if not self.text or len(more) > max(1000, self.count // 8):
            return NameList.of(itertools.chain(self, more))
        more = sorted({name for name in more if name and "\n" not in name})
        text = self.text
        pieces: list[str] = []
        copied = 0  # text[:copied] is in pieces
        lo = 0
        for name in more:
            lo, found = _search(text, name, lo)
            if found:
                continue
            if lo > len(text):  # after the last name
                pieces.append(text[copied:])
                pieces.append("\n" + name)
                copied = lo = len(text)
                continue
            pieces.append(text[copied:lo])
            pieces.append(name + "\n")
            copied = lo
        pieces.append(text[copied:])
        return NameList("".join(pieces))


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end == -1 else end


def _search(text: str, name: str, lo: int) -> tuple[int, bool]:
    """
    Where ``name`` is or would go in the sorted ``"\\n"``-joined ``text``, looking from the
    name that starts at ``lo``: (offset of that name's line start, found). An offset past the
    end means after the last name.
    """
    hi = len(text) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        start = text.rfind("\n", lo, mid) + 1 or lo
        end = text.find("\n", start)
        if end == -1:
            end = len(text)
        line = text[start:end]
        if line == name:
            return start, True
        if line < name:
            lo = end + 1
        else:
            hi = start
    return lo, False


def _bucket_end(names: list[str], key: str, lo: int) -> int:
    """In sorted ``names``, the end of the run from ``lo`` of names that start with ``key``."""
    if len(key) == 1:  # the one-character name itself: longer ones are in other buckets
        return bisect.bisect_right(names, key, lo)
    if key[1] != "\U0010ffff":
        return bisect.bisect_left(names, key[0] + chr(ord(key[1]) + 1), lo)
    end = lo
    while end < len(names) and names[end].startswith(key):
        end += 1
    return end


class NameSorter:
    """
    Collects names in any order (``add``/``extend``), then :meth:`result` gives them sorted and
    unique as a :class:`NameList`. Names wait in ``"\\n"``-joined buckets by their first two
    characters, so at most one bucket's names are separate objects at a time.
    """

    _PENDING = 1 << 15

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._buckets: dict[str, list[str]] = {}

    def add(self, name: str) -> None:
        self._pending.append(name)
        if len(self._pending) >= self._PENDING:
            self._flush()

    def extend(self, names: Iterable[str]) -> None:
        pending, limit = self._pending, self._PENDING
        it = iter(names)
        while block := list(itertools.islice(it, limit)):
            pending.extend(block)
            if len(pending) >= limit:
                self._flush()

    def _flush(self) -> None:
        pending = self._pending
        pending.sort()
        buckets = self._buckets
        i, n = 0, len(pending)
        while i < n and not pending[i]:
            i += 1
        while i < n:
            key = pending[i][:2]
            j = _bucket_end(pending, key, i)
            group = pending[i:j]
            if any("\n" in name for name in group):
                group = [name for name in group if "\n" not in name]
            if group:
                buckets.setdefault(key, []).append("\n".join(group))
            i = j
        pending.clear()

    def result(self) -> NameList:
        """The names so far, sorted and unique; the sorter is empty afterwards."""
        self._flush()
        buckets, self._buckets = self._buckets, {}
        # Sorting by the first two characters and then within each bucket is plain str order:
        # keys that differ, differ within the first two characters of their names (or one is a
        # whole one-character name, which sorts first).
        pieces: list[str] = []
        for key in sorted(buckets):
            # The pieces are sorted runs already: sorting them is a merge.
            names = "\n".join(buckets.pop(key)).split("\n")
            names.sort()
            if any(map(operator.eq, names, itertools.islice(names, 1, None))):
                names = list(dict.fromkeys(names))
            pieces.append("\n".join(names))
        return NameList("\n".join(pieces))


__all__ = ["NameList", "NameSorter"]
