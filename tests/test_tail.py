"""
Following a cache fill (``pkgmirror.web.tail``) in memory: clients that keep up get the newest
bytes from the fill's memory, clients that fell behind read the spool, the last byte waits for
the hash, and the fill pauses the upstream while the spool's backlog is large.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from pkgmirror.fill import RECENT_BYTES, FileFill
from pkgmirror.testing.memory import MemoryBlobStore, MemorySpool, MemorySpoolReader
from pkgmirror.upstream import FileStart
from pkgmirror.web.tail import TailProducer


class Client:
    """The part of a twisted.web Request a TailProducer uses, with a client that may stall."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.finished = False
        self.producer: Any = None
        self.startedWriting = False
        self.code = 200
        self.aborted = False
        self._finish: Deferred[None] = Deferred()
        self.channel = self

    @property
    def transport(self) -> Client:
        return self

    def abortConnection(self) -> None:
        self.aborted = True

    def write(self, data: bytes) -> None:
        self.startedWriting = True
        self.received += data

    def finish(self) -> None:
        self.finished = True
        self._finish.callback(None)

    def notifyFinish(self) -> Deferred[None]:
        return self._finish

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        pass


class CountingSpool(MemorySpool):
    """Counts the reads of its readers; ``keeping_up`` is what ``append`` answers."""

    def __init__(self, store: MemoryBlobStore) -> None:
        super().__init__(store=store)
        self.reads: list[tuple[int, int]] = []
        self.keeping_up = True
        self.drained: list[Any] = []

    def append(self, data: bytes) -> bool:
        super().append(data)
        return self.keeping_up

    def when_drained(self, callback: Any) -> None:
        self.drained.append(callback)

    def reader(self) -> MemorySpoolReader | None:
        reader = super().reader()
        if reader is None:
            return None
        reads = self.reads

        class Counting(MemorySpoolReader):
            def read(self, offset: int, length: int) -> Deferred[bytes]:
                reads.append((offset, length))
                return super().read(offset, length)

        return Counting(self._chunks)


def follow(fill: FileFill) -> Client:
    client = Client()
    producer = TailProducer.open(client, fill)  # type: ignore[arg-type]
    assert producer is not None
    producer.start()
    return client


def make_fill(data: bytes) -> tuple[FileFill, CountingSpool]:
    spool = CountingSpool(MemoryBlobStore())
    fill = FileFill(spool, hashlib.sha256(data).hexdigest())
    fill.started(FileStart(len(data), None))
    return fill, spool


def test_a_client_that_keeps_up_is_served_from_memory() -> None:
    data = bytes(range(256)) * 1000
    fill, spool = make_fill(data)
    client = follow(fill)
    for i in range(0, len(data), 65536):
        fill.data(data[i : i + 65536])
        assert len(client.received) == min(i + 65536, len(data)) - 1, "all but the last byte"
    assert not client.finished
    fill.succeeded(hashlib.sha256(data).hexdigest())
    assert client.finished and bytes(client.received) == data
    assert spool.reads == [], "nothing was read back from the spool"


def test_a_late_or_stalled_client_reads_what_memory_no_longer_holds() -> None:
    chunk = b"z" * 65536
    count = RECENT_BYTES // len(chunk) + 8
    data = chunk * count
    fill, spool = make_fill(data)
    stalled = follow(fill)
    stalled.producer.pauseProducing()
    for _ in range(count):
        fill.data(chunk)
    late = follow(fill)
    stalled.producer.resumeProducing()
    fill.succeeded(hashlib.sha256(data).hexdigest())
    for client in (stalled, late):
        assert client.finished and bytes(client.received) == data
    # The first bytes were gone from memory: both read them from the spool.
    assert spool.reads and spool.reads[0][0] == 0


def test_a_failed_fill_breaks_the_download_it_already_started() -> None:
    fill, _ = make_fill(b"abc" * 10)
    client = follow(fill)
    fill.data(b"abc" * 5)
    fill.failed("the upstream's file does not match its sha256")
    assert client.aborted and not client.finished


def test_before_any_byte_a_failed_fill_is_a_502() -> None:
    fill, _ = make_fill(b"abc")
    client = follow(fill)
    fill.failed("connection refused")
    assert client.code == 502 and client.finished
    assert b"connection refused" in client.received


class Source:
    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


def test_the_upstream_waits_while_the_spool_catches_up() -> None:
    fill, spool = make_fill(b"x" * 30)
    source = Source()
    fill.source(source)
    fill.data(b"x" * 10)
    assert not source.paused
    spool.keeping_up = False
    fill.data(b"x" * 10)
    assert source.paused
    (drained,) = spool.drained
    drained()
    assert not source.paused


@pytest.mark.parametrize("offset", [0, 5, 9])
def test_recent_bytes_come_from_one_chunk_at_a_time(offset: int) -> None:
    fill, _ = make_fill(b"0123456789")
    fill.data(b"01234")
    fill.data(b"56789")
    got = fill.recent(offset, 100)
    assert got == (b"01234" if offset < 5 else b"56789")[offset % 5 :]
    assert fill.recent(10, 1) is None
