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

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pkgmirror.interfaces import IBlobStore, ISpool, NotFound
from pkgmirror.storage.threads import Runner, in_thread_pool

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
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


@implementer(ISpool)
@attrs.define(eq=False)
class FileSpool:
    """A blob being written to a temporary file; made by :meth:`FileBlobStore.new_spool`."""

    path: FilePath[str]
    _store: FileBlobStore
    _file: io.FileIO
    _hash: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    size: int = 0
    _done: bool = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("spool already committed or aborted")
        # Unbuffered, so readers tailing ``path`` see every byte as soon as it is written.
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) or 0 :]
        self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def commit(self, expected_sha256: str | None = None) -> Deferred[str]:
        if self._done:
            return fail(ValueError("spool already committed or aborted"))
        self._done = True
        sha256 = self.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            d = self._store._finish(self, None)

            def mismatch(_: object) -> str:
                raise ValueError(f"sha256 mismatch: expected {expected_sha256}, got {sha256}")

            return d.addCallback(mismatch)
        return self._store._finish(self, sha256).addCallback(lambda _: sha256)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        # Closing and unlinking a local file are quick and must happen even if the reactor is
        # about to stop, so they are not deferred to a thread.
        _discard(self._file, self.path.path)
        self._store._forget(self)


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
        # "xb": a fresh name must not clobber anything. Opening a local file is quick enough for
        # the reactor thread, like the appends that follow.
        # Known as live before it exists, so a concurrent sweep can never take it for stale.
        self._live.add(name)
        try:
            file = open(path.path, "xb", buffering=0)
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
