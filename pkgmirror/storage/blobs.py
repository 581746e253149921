"""
IBlobStore over a local directory.

Blobs live at ``<root>/<sha[:2]>/<sha[2:4]>/<sha>``; spools are written in ``<root>/tmp/`` on
the same file system, so a commit is an atomic rename and a reader never sees half a blob.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Sequence

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pkgmirror.interfaces import IBlobStore, ISpool, ISpoolReader, NotFound
from pkgmirror.storage.threads import Runner, in_thread_pool

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_PREFIX = re.compile(r"[0-9a-f]{2}\Z")
_SPOOL_PREFIX = "spool-"


def is_sha256(value: str) -> bool:
    """64 lower-case hex digits: the only blob names we turn into paths."""
    return _SHA256.match(value) is not None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: str) -> None:
    """Creates missing directories, making each new entry durable in its parent."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _make_dirs(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    _fsync_dir(parent)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _install(file: io.FileIO, temp: str, target: str) -> None:
    """
    Makes the finished temporary file durable and visible as ``target``. The temporary file is
    gone afterwards, even when this fails (a full disk, say).
    """
    try:
        try:
            file.flush()
            os.fsync(file.fileno())
        finally:
            file.close()
        if os.path.exists(target):
            # Same name, same bytes: someone else stored this blob first.
            _remove(temp)
            return
        directory = os.path.dirname(target)
        _make_dirs(directory)
        os.replace(temp, target)
    except BaseException:
        _remove(temp)
        raise
    # Past the rename the blob is in place: a failure to persist its directory entry is
    # reported, but nothing is left to clean up.
    _fsync_dir(directory)


def _discard(file: io.FileIO, temp: str) -> None:
    file.close()
    _remove(temp)


# Appended bytes not yet on disk past which the spool asks its source to pause (see ``append``).
HIGH_WATER = 8 * 1024 * 1024


@implementer(ISpool)
@attrs.define(eq=False)
class FileSpool:
    """
    A blob being written to a temporary file; made by :meth:`FileBlobStore.new_spool`.

    ``write`` blocks (uploads call it in a thread); ``append`` queues, and the queued bytes are
    hashed and written in the store's thread pool, one batch at a time, in order.
    """

    path: FilePath[str]
    _store: FileBlobStore
    _file: io.FileIO
    _hash: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    size: int = 0
    _done: bool = False
    # Bytes hashed and on disk (``size`` counts appended ones too).
    _written: int = 0
    _queued: list[bytes] = attrs.field(factory=list)
    _busy: bool = False
    _broken: Failure | None = None
    _waiting: list[tuple[int, Deferred[None]]] = attrs.field(factory=list)
    _drained: list[Callable[[], None]] = attrs.field(factory=list)
    _after_busy: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("spool already committed or aborted")
        self._write_all((data,))
        self.size += len(data)
        self._written = self.size

    def _write_all(self, chunks: Sequence[bytes]) -> None:
        for data in chunks:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view) or 0 :]
            self._hash.update(data)

    def append(self, data: bytes) -> bool:
        if self._done:
            raise ValueError("spool already committed or aborted")
        if self._broken is not None:
            raise ValueError(f"spool could not be written: {self._broken.getErrorMessage()}")
        self._queued.append(data)
        self.size += len(data)
        self._next()
        return self.size - self._written <= HIGH_WATER

    def when_drained(self, callback: Callable[[], None]) -> None:
        if self.size - self._written <= HIGH_WATER // 2:
            callback()
        else:
            self._drained.append(callback)

    def _next(self) -> None:
        if self._busy or not self._queued or self._broken is not None:
            return
        batch, self._queued = self._queued, []
        self._busy = True
        self._store._run(self._write_all, batch).addCallbacks(
            self._wrote, self._failed, callbackArgs=(sum(map(len, batch)),)
        )

    def _wrote(self, _: object, count: int) -> None:
        self._busy = False
        self._written += count
        ready = [d for end, d in self._waiting if end <= self._written]
        self._waiting = [(end, d) for end, d in self._waiting if end > self._written]
        if self._drained and self.size - self._written <= HIGH_WATER // 2:
            drained, self._drained = self._drained, []
            for callback in drained:
                callback()
        if self._after_busy is not None:
            self._after_busy()
        else:
            self._next()
        for d in ready:
            d.callback(None)

    def _failed(self, failure: Failure) -> None:
        self._busy = False
        self._broken = failure
        waiting, self._waiting = self._waiting, []
        for _, d in waiting:
            d.errback(failure)
        # Whoever paused for the backlog goes on, and learns of the failure at its next append.
        drained, self._drained = self._drained, []
        for callback in drained:
            callback()
        if self._after_busy is not None:
            self._after_busy()

    def _until_written(self, end: int) -> Deferred[None]:
        if self._broken is not None:
            return fail(self._broken)
        if end <= self._written:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((end, d))
        return d

    def flush(self) -> Deferred[None]:
        return self._until_written(self.size)

    def reader(self) -> SpoolReader | None:
        if self._done:
            return None
        # Its own descriptor: it stays valid when the spool's file is committed (renamed and
        # closed) while the reader is still catching up.
        return SpoolReader(self, os.dup(self._file.fileno()))

    def hexdigest(self) -> str:
        if self._written != self.size:
            raise ValueError("appended bytes are still being written: flush first")
        return self._hash.hexdigest()

    def commit(self, expected_sha256: str | None = None) -> Deferred[str]:
        if self._done:
            return fail(ValueError("spool already committed or aborted"))
        d = self.flush()
        self._done = True

        def finish(_: object) -> Deferred[str]:
            sha256 = self.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != sha256:

                def mismatch(_: object) -> str:
                    raise ValueError(f"sha256 mismatch: expected {expected_sha256}, got {sha256}")

                return self._store._finish(self, None).addCallback(mismatch)
            return self._store._finish(self, sha256).addCallback(lambda _: sha256)

        def broken(failure: Failure) -> Failure:
            self._store._finish(self, None).addErrback(lambda _: None)
            return failure

        return d.addCallbacks(finish, broken)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._queued.clear()
        failure = Failure(ValueError("spool aborted"))
        waiting, self._waiting = self._waiting, []
        for _, d in waiting:
            d.errback(failure)
        if self._busy:
            # A batch is being written in a thread: the file is closed once it is done.
            self._after_busy = self._discard
        else:
            self._discard()

    def _discard(self) -> None:
        # Closing and unlinking a local file are quick and must happen even if the reactor is
        # about to stop, so they are not deferred to a thread.
        _discard(self._file, self.path.path)
        self._store._forget(self)


@implementer(ISpoolReader)
@attrs.define(eq=False)
class SpoolReader:
    """Reads what a FileSpool holds, in the store's thread pool, through its own descriptor."""

    _spool: FileSpool
    _fd: int
    _reading: bool = False
    _closed: bool = False

    def read(self, offset: int, length: int) -> Deferred[bytes]:
        if self._closed or self._reading:
            return fail(ValueError("reader closed or already reading"))
        if offset < 0 or length < 0 or offset + length > self._spool.size:
            return fail(ValueError(f"no bytes {offset}+{length} in a spool of {self._spool.size}"))
        self._reading = True

        def read(_: object) -> Deferred[bytes]:
            return self._spool._store._run(os.pread, self._fd, length, offset)

        def done(result: object) -> object:
            self._reading = False
            if self._closed:
                os.close(self._fd)
            return result

        return self._spool._until_written(offset + length).addCallback(read).addBoth(done)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._reading:
                os.close(self._fd)


@implementer(IBlobStore)
@attrs.define
class FileBlobStore:
    """
    Blobs in the directory ``root`` (created when absent).

    Blocking work runs through ``runner`` when given; else in ``threadpool``, or the reactor's
    own thread pool, with results delivered through ``reactor``. Malformed sha256 values name
    no blob: ``has`` is False, ``read`` fails with NotFound, ``delete`` does nothing.
    """

    _root: FilePath[str]
    _reactor: IReactorFromThreads | None = None
    _threadpool: ThreadPool | None = None
    _runner: Runner | None = None
    _live: set[str] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        if self._runner is None:
            if self._reactor is None:
                raise TypeError("FileBlobStore needs a reactor or a runner")
            pool = self._threadpool
            if pool is None:
                pool = self._reactor.getThreadPool()  # type: ignore[attr-defined]
            self._runner = in_thread_pool(self._reactor, pool)
        self._tmp.makedirs(ignoreExistingDirectory=True)

    @property
    def _tmp(self) -> FilePath[str]:
        return self._root.child("tmp")

    @property
    def _run(self) -> Runner:
        assert self._runner is not None
        return self._runner

    def _blob_path(self, sha256: str) -> str:
        return os.path.join(self._root.path, sha256[:2], sha256[2:4], sha256)

    def _forget(self, spool: FileSpool) -> None:
        self._live.discard(spool.path.basename())

    def _finish(self, spool: FileSpool, sha256: str | None) -> Deferred[None]:
        """Installs the spool's file as blob ``sha256``, or discards it when None."""
        # The spool is still "live" until the thread is done with it, so a concurrent
        # discard_stale_spools leaves it alone.
        if sha256 is None:
            d = self._run(_discard, spool._file, spool.path.path)
        else:
            d = self._run(_install, spool._file, spool.path.path, self._blob_path(sha256))

        def forget(result: object) -> object:
            self._forget(spool)
            return result

        return d.addBoth(forget)

    def has(self, sha256: str) -> Deferred[bool]:
        if not is_sha256(sha256):
            return succeed(False)
        return self._run(os.path.isfile, self._blob_path(sha256))

    def size(self, sha256: str) -> Deferred[int | None]:
        if not is_sha256(sha256):
            return succeed(None)

        def stat(path: str) -> int | None:
            try:
                return os.stat(path).st_size
            except FileNotFoundError:
                return None

        return self._run(stat, self._blob_path(sha256))

    def local_path(self, sha256: str) -> FilePath[str] | None:
        if not is_sha256(sha256):
            return None
        path = FilePath(self._blob_path(sha256))
        return path if path.isfile() else None

    def read(self, sha256: str) -> Deferred[bytes]:
        if not is_sha256(sha256):
            return fail(NotFound(f"no blob {sha256!r}"))

        def read(path: str) -> bytes:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                raise NotFound(f"no blob {sha256}") from None

        return self._run(read, self._blob_path(sha256))

    def new_spool(self) -> FileSpool:
        name = f"{_SPOOL_PREFIX}{uuid.uuid4().hex}"
        path = self._tmp.child(name)
        # "x": a fresh name must not clobber anything. Opening a local file is quick enough for
        # the reactor thread, like the appends that follow.
        # Known as live before it exists, so a concurrent sweep can never take it for stale.
        self._live.add(name)
        try:
            # Readable too: its readers share the open file (see ``FileSpool.reader``).
            file = open(path.path, "xb+", buffering=0)
        except BaseException:
            self._live.discard(name)
            raise
        return FileSpool(path=path, store=self, file=file)

    def put_bytes(self, data: bytes) -> Deferred[str]:
        sha256 = hashlib.sha256(data).hexdigest()
        name = f"{_SPOOL_PREFIX}{uuid.uuid4().hex}"
        self._live.add(name)
        temp = self._tmp.child(name).path

        def store() -> None:
            file = open(temp, "xb", buffering=0)
            try:
                view = memoryview(data)
                while view:
                    view = view[file.write(view) or 0 :]
            except BaseException:
                _discard(file, temp)
                raise
            _install(file, temp, self._blob_path(sha256))

        def forget(result: object) -> object:
            self._live.discard(name)
            return result

        return self._run(store).addBoth(forget).addCallback(lambda _: sha256)

    def delete(self, sha256: str) -> Deferred[None]:
        if not is_sha256(sha256):
            return succeed(None)
        return self._run(_remove, self._blob_path(sha256))

    def list_prefix(self, prefix: str) -> Deferred[list[str]]:
        if not _PREFIX.match(prefix):
            return fail(ValueError(f"not a two hex digit prefix: {prefix!r}"))
        top = os.path.join(self._root.path, prefix)

        def walk() -> list[str]:
            found: list[str] = []
            try:
                middles = os.listdir(top)
            except FileNotFoundError:
                return found
            for middle in middles:
                try:
                    names = os.listdir(os.path.join(top, middle))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                # Only files where their name says they are: anything else is not ours.
                found.extend(
                    n for n in names if is_sha256(n) and n[:2] == prefix and n[2:4] == middle
                )
            return sorted(found)

        return self._run(walk)

    def discard_stale_spools(self) -> Deferred[int]:
        """Safe at any time: spools this store is still writing or committing are kept."""
        live = self._live
        tmp = self._tmp.path

        def sweep() -> int:
            removed = 0
            for name in os.listdir(tmp):
                # A membership test of a set another thread changes is atomic in CPython; names
                # are added before their files exist and dropped after they are gone.
                if name in live:
                    continue
                try:
                    os.unlink(os.path.join(tmp, name))
                except FileNotFoundError:
                    continue
                except OSError:
                    continue  # not ours (a directory, say): leave it
                removed += 1
            return removed

        return self._run(sweep)
