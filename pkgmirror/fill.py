"""
A cache fill: one upstream download of one file, spooled to disk, hash-checked, then committed.

Any number of readers follow a fill while it runs (see ``pkgmirror.web.tail``). They may read
every byte the fill received except the last one, which is released only once the whole body
has arrived and its sha256 matched: a client can never complete a download of bad bytes.
Readers that keep up are handed the newest bytes from memory; the others read the spool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

from pkgmirror.interfaces import ISpool
from pkgmirror.upstream import FileStart

RECENT_BYTES = 4 * 1024 * 1024


class FillFailed(Exception):
    """The fill ended without a verified file. One-line reason."""


class FileFill:
    """
    State of one download. ``started`` fires with the upstream's FileStart once it answered
    200 (or fails); ``finished`` fires with the verified sha256 (or fails with FillFailed);
    ``stored`` fires with it once the blob is committed and readable from the store (or fails).
    Listeners are called after every change (bytes, verification, failure).
    """

    def __init__(self, spool: ISpool, expected_sha256: str | None) -> None:
        self.spool = spool
        self.expected_sha256 = expected_sha256
        self.start: FileStart | None = None
        self.verified = False
        self.failure: Failure | None = None
        self.sha256: str | None = None
        self._listeners: list[Callable[[], None]] = []
        self._started: list[Deferred[FileStart]] = []
        self._finished: list[Deferred[str]] = []
        self._stored: list[Deferred[str]] = []
        self.stored_sha256: str | None = None
        # The newest bytes received, (offset, chunk), at most about RECENT_BYTES of them.
        self._recent: deque[tuple[int, bytes]] = deque()
        self._recent_size = 0
        self._source: IPushProducer | None = None
        self._source_paused = False

    @property
    def done(self) -> bool:
        return self.verified or self.failure is not None

    @property
    def readable(self) -> int:
        """How many bytes readers may send now."""
        if self.verified:
            return self.spool.size
        return max(0, self.spool.size - 1)

    def when_started(self) -> Deferred[FileStart]:
        d: Deferred[FileStart] = Deferred()
        if self.start is not None:
            d.callback(self.start)
        elif self.failure is not None:
            d.errback(self.failure)
        else:
            self._started.append(d)
        return d

    def when_finished(self) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        if self.verified and self.sha256 is not None:
            d.callback(self.sha256)
        elif self.failure is not None:
            d.errback(self.failure)
        else:
            self._finished.append(d)
        return d

    def when_stored(self) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        if self.stored_sha256 is not None:
            d.callback(self.stored_sha256)
        elif self.failure is not None:
            d.errback(self.failure)
        else:
            self._stored.append(d)
        return d

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    # called by the mirror as the download goes
    def started(self, start: FileStart) -> None:
        self.start = start
        for d in self._started:
            d.callback(start)
        self._started.clear()

    def source(self, producer: IPushProducer) -> None:
        """What sends the bytes: paused while the spool's backlog is large."""
        self._source = producer

    def data(self, chunk: bytes) -> None:
        offset = self.spool.size
        keeping_up = self.spool.append(chunk)
        if not keeping_up and self._source is not None and not self._source_paused:
            self._source_paused = True
            self._source.pauseProducing()
            self.spool.when_drained(self._resume_source)
        self._recent.append((offset, chunk))
        self._recent_size += len(chunk)
        while self._recent_size - len(self._recent[0][1]) >= RECENT_BYTES:
            self._recent_size -= len(self._recent.popleft()[1])
        self._notify()

    def _resume_source(self) -> None:
        if self._source_paused and self._source is not None and not self.done:
            self._source_paused = False
            self._source.resumeProducing()

    def recent(self, offset: int, length: int) -> bytes | None:
        """
        Up to ``length`` bytes from ``offset`` (never past the end of one received chunk) when
        they are still held in memory, else None: read them from the spool.
        """
        for start, chunk in reversed(self._recent):
            if start <= offset:
                if offset >= start + len(chunk):
                    return None
                return chunk[offset - start : offset - start + length]
        return None

    def _forget_recent(self) -> None:
        self._recent.clear()
        self._recent_size = 0

    def succeeded(self, sha256: str) -> None:
        self.sha256 = sha256
        self.verified = True
        self._notify()
        for d in self._finished:
            d.callback(sha256)
        self._finished.clear()

    def committed(self) -> None:
        """The verified bytes are in the blob store now."""
        assert self.sha256 is not None
        self.stored_sha256 = self.sha256
        self._forget_recent()
        for d in self._stored:
            d.callback(self.sha256)
        self._stored.clear()

    def failed(self, reason: str) -> None:
        self.failure = Failure(FillFailed(reason))
        self.spool.abort()
        self._forget_recent()
        for d in self._started:
            d.errback(self.failure)
        self._started.clear()
        self._notify()
        for d2 in self._finished + self._stored:
            d2.errback(self.failure)
        self._finished.clear()
        self._stored.clear()
