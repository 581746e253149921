"""
In-memory IStorage and IBlobStore for tests: the same behaviour as the real ones (they pass the
same conformance suites), with Deferreds that have fired by the time a method returns.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from typing import Concatenate, ParamSpec, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.filepath import FilePath
from zope.interface import implementer

from pkgmirror.interfaces import (
    Conflict,
    IBlobStore,
    ISpool,
    ISpoolReader,
    IStorage,
    NotFound,
    StorageError,
)
from pkgmirror.model import IndexConfig, MirrorFile, MirrorPageState, ReleaseFile, User
from pkgmirror.namelist import NameList
from pkgmirror.names import normalize
from pkgmirror.storage.codec import (
    index_config_from_json,
    index_config_to_json,
    metadata_from_json,
    metadata_to_json,
    page_from_json,
    page_to_json,
)

S = TypeVar("S")
P = ParamSpec("P")
T = TypeVar("T")


def _deferred(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], Deferred[T]]:
    """Makes a method return a fired Deferred of its result, or of what it raised."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return maybeDeferred(method, self, *args, **kwargs)

    return wrapper


def _unreferenced_after(
    candidates: Iterable[str | None],
    release: Iterable[ReleaseFile],
    mirror: Iterable[MirrorFile],
) -> list[str]:
    used: set[str | None] = set()
    for rf in release:
        used.update((rf.sha256, rf.metadata_sha256))
    for mf in mirror:
        used.update((mf.cached_sha256, mf.metadata_sha256))
    return sorted({c for c in candidates if c is not None} - used)


def _blobs_of(release: Iterable[ReleaseFile], mirror: Iterable[MirrorFile]) -> set[str | None]:
    found: set[str | None] = set()
    for rf in release:
        found.update((rf.sha256, rf.metadata_sha256))
    for mf in mirror:
        found.update((mf.cached_sha256, mf.metadata_sha256))
    return found


def _merge_mirror_file(old: MirrorFile | None, new: MirrorFile) -> MirrorFile:
    """What SQLiteStorage's upsert keeps of a row already there."""
    if old is None:
        return new
    return attrs.evolve(
        new,
        sha256=new.sha256 if new.sha256 is not None else old.sha256,
        size=old.size
        if old.cached_sha256 is not None
        else (new.size if new.size is not None else old.size),
        upload_time=old.upload_time if old.upload_time is not None else new.upload_time,
        cached_sha256=old.cached_sha256 if old.cached_sha256 is not None else new.cached_sha256,
        metadata_sha256=old.metadata_sha256
        if old.metadata_sha256 is not None
        else new.metadata_sha256,
    )


@implementer(IStorage)
@attrs.define
class MemoryStorage:
    """
    IStorage in dictionaries. Values go through the same JSON encoding as in SQLite, so what
    comes back is what a real storage would give back.
    """

    _settings: dict[str, str] = attrs.field(factory=dict)
    _users: dict[str, User] = attrs.field(factory=dict)
    _indexes: dict[str, IndexConfig] = attrs.field(factory=dict)
    _release: dict[tuple[str, str], ReleaseFile] = attrs.field(factory=dict)
    _pages: dict[tuple[str, str], MirrorPageState] = attrs.field(factory=dict)
    _mirror_files: dict[tuple[str, str, str], MirrorFile] = attrs.field(factory=dict)
    _names: dict[str, tuple[NameList, str | None, float]] = attrs.field(factory=dict)
    _yanks: dict[tuple[str, str, str], str] = attrs.field(factory=dict)
    _closed: bool = False

    def _check(self) -> None:
        if self._closed:
            raise StorageError("storage is closed")

    def _require_index(self, index: str) -> None:
        if index not in self._indexes:
            raise NotFound(f"no index {index}")

    def _drop_indexes(self, keys: set[str]) -> list[str]:
        candidates = _blobs_of(
            [rf for (i, _), rf in self._release.items() if i in keys],
            [mf for (i, _, _), mf in self._mirror_files.items() if i in keys],
        )
        for key in keys:
            del self._indexes[key]
        self._release = {k: v for k, v in self._release.items() if k[0] not in keys}
        self._pages = {k: v for k, v in self._pages.items() if k[0] not in keys}
        self._mirror_files = {k: v for k, v in self._mirror_files.items() if k[0] not in keys}
        for key in keys:
            self._names.pop(key, None)
        self._yanks = {k: v for k, v in self._yanks.items() if k[0] not in keys}
        return _unreferenced_after(candidates, self._release.values(), self._mirror_files.values())

    # settings
    @_deferred
    def get_setting(self, key: str) -> str | None:
        self._check()
        return self._settings.get(key)

    @_deferred
    def put_setting(self, key: str, value: str) -> None:
        self._check()
        self._settings[key] = value

    # users
    @_deferred
    def list_users(self) -> list[User]:
        self._check()
        return [self._users[k] for k in sorted(self._users)]

    @_deferred
    def get_user(self, name: str) -> User | None:
        self._check()
        return self._users.get(name)

    @_deferred
    def put_user(self, user: User) -> None:
        self._check()
        self._users[user.name] = user

    @_deferred
    def delete_user(self, name: str) -> list[str]:
        self._check()
        if name not in self._users:
            raise NotFound(f"no user {name}")
        del self._users[name]
        return self._drop_indexes({k for k, c in self._indexes.items() if c.user == name})

    # indexes
    @_deferred
    def list_indexes(self) -> list[IndexConfig]:
        self._check()
        return sorted(self._indexes.values(), key=lambda c: (c.user, c.name))

    @_deferred
    def put_index(self, config: IndexConfig) -> None:
        self._check()
        self._indexes[config.key] = index_config_from_json(index_config_to_json(config))

    @_deferred
    def delete_index(self, user: str, name: str) -> list[str]:
        self._check()
        key = f"{user}/{name}"
        self._require_index(key)
        return self._drop_indexes({key})

    # stage files
    @_deferred
    def add_release_file(self, release_file: ReleaseFile, overwrite: bool) -> bool:
        self._check()
        rf = release_file
        self._require_index(rf.index)
        old = self._release.get((rf.index, rf.filename))
        if old is not None:
            if old.sha256 == rf.sha256:
                return False
            if not overwrite:
                raise Conflict(f"{rf.filename} already exists in {rf.index} with other contents")
        metadata = metadata_from_json(metadata_to_json(rf.metadata))
        self._release[(rf.index, rf.filename)] = attrs.evolve(rf, metadata=metadata)
        return True

    @_deferred
    def list_release_files(self, index: str, project: str | None = None) -> list[ReleaseFile]:
        self._check()
        wanted = None if project is None else normalize(project)
        found = [
            rf
            for (i, _), rf in self._release.items()
            if i == index and (wanted is None or rf.project == wanted)
        ]
        return sorted(found, key=lambda rf: (rf.project, rf.filename))

    @_deferred
    def get_release_file(self, index: str, path_key: str, filename: str) -> ReleaseFile | None:
        self._check()
        rf = self._release.get((index, filename))
        return rf if rf is not None and rf.path_key == path_key else None

    @_deferred
    def list_stage_projects(self, index: str) -> list[str]:
        self._check()
        return sorted({rf.project for (i, _), rf in self._release.items() if i == index})

    @_deferred
    def delete_release_files(
        self, index: str, project: str, version: str | None = None, filename: str | None = None
    ) -> list[str]:
        self._check()
        name = normalize(project)
        doomed = {
            k: rf
            for k, rf in self._release.items()
            if k[0] == index
            and rf.project == name
            and (version is None or rf.version == version)
            and (filename is None or rf.filename == filename)
        }
        if not doomed:
            what = filename or (project if version is None else f"{project} {version}")
            raise NotFound(f"no files of {what} in {index}")
        for k in doomed:
            del self._release[k]
        return _unreferenced_after(
            _blobs_of(doomed.values(), ()), self._release.values(), self._mirror_files.values()
        )

    @_deferred
    def set_yanked(self, index: str, project: str, version: str, reason: str | None) -> int:
        self._check()
        name = normalize(project)
        keys = [
            k
            for k, rf in self._release.items()
            if k[0] == index and rf.project == name and rf.version == version
        ]
        for k in keys:
            self._release[k] = attrs.evolve(self._release[k], yanked=reason)
        return len(keys)

    @_deferred
    def set_stage_yank(self, index: str, project: str, version: str, reason: str | None) -> None:
        self._check()
        self._require_index(index)
        key = (index, normalize(project), version)
        if reason is None:
            self._yanks.pop(key, None)
        else:
            self._yanks[key] = reason

    @_deferred
    def list_stage_yanks(self, index: str) -> list[tuple[str, str, str]]:
        self._check()
        return sorted((p, v, r) for (i, p, v), r in self._yanks.items() if i == index)

    # mirror cache
    @_deferred
    def get_mirror_page(self, index: str, project: str) -> MirrorPageState | None:
        self._check()
        return self._pages.get((index, project))

    @_deferred
    def put_mirror_page(self, state: MirrorPageState, files: Iterable[MirrorFile]) -> None:
        self._check()
        self._require_index(state.index)
        page = None if state.page is None else page_from_json(page_to_json(state.page))
        self._pages[(state.index, state.project)] = attrs.evolve(
            state, page=page, fetched_at=float(state.fetched_at)
        )
        for f in files:
            key = (f.index, f.path_key, f.filename)
            self._mirror_files[key] = _merge_mirror_file(self._mirror_files.get(key), f)

    @_deferred
    def touch_mirror_page(self, index: str, project: str, fetched_at: float) -> None:
        self._check()
        state = self._pages.get((index, project))
        if state is None:
            raise NotFound(f"no cached page of {project} in {index}")
        self._pages[(index, project)] = attrs.evolve(state, fetched_at=float(fetched_at))

    @_deferred
    def list_mirror_pages(self, index: str) -> list[tuple[str, float]]:
        self._check()
        return sorted((p, s.fetched_at) for (i, p), s in self._pages.items() if i == index)

    @_deferred
    def get_mirror_file(self, index: str, path_key: str, filename: str) -> MirrorFile | None:
        self._check()
        return self._mirror_files.get((index, path_key, filename))

    @_deferred
    def set_mirror_file_cached(
        self, index: str, path_key: str, filename: str, sha256: str, size: int, upload_time: str
    ) -> None:
        self._check()
        key = (index, path_key, filename)
        old = self._mirror_files.get(key)
        if old is None:
            raise NotFound(f"no mirror file {path_key}/{filename} in {index}")
        self._mirror_files[key] = attrs.evolve(
            old,
            cached_sha256=sha256,
            size=size,
            upload_time=old.upload_time if old.upload_time is not None else upload_time,
        )

    @_deferred
    def set_mirror_file_metadata(
        self, index: str, path_key: str, filename: str, sha256: str
    ) -> None:
        self._check()
        key = (index, path_key, filename)
        old = self._mirror_files.get(key)
        if old is None:
            raise NotFound(f"no mirror file {path_key}/{filename} in {index}")
        self._mirror_files[key] = attrs.evolve(old, metadata_sha256=sha256)

    @_deferred
    def uncache_mirror_files(
        self, index: str, project: str, filenames: Iterable[str] | None = None
    ) -> list[str]:
        self._check()
        wanted = None if filenames is None else set(filenames)
        candidates: set[str | None] = set()
        for key, mf in list(self._mirror_files.items()):
            if key[0] != index or mf.project != project:
                continue
            if wanted is not None and mf.filename not in wanted:
                continue
            candidates.update((mf.cached_sha256, mf.metadata_sha256))
            self._mirror_files[key] = attrs.evolve(mf, cached_sha256=None, metadata_sha256=None)
        if wanted is None:
            self._pages.pop((index, project), None)
        return _unreferenced_after(candidates, self._release.values(), self._mirror_files.values())

    @_deferred
    def get_mirror_names(self, index: str) -> tuple[NameList, str | None, float] | None:
        self._check()
        return self._names.get(index)

    @_deferred
    def put_mirror_names(
        self, index: str, names: NameList, etag: str | None, fetched_at: float
    ) -> None:
        self._check()
        self._require_index(index)
        self._names[index] = (names, etag, float(fetched_at))

    @_deferred
    def unreferenced(self, sha256s: Iterable[str]) -> list[str]:
        self._check()
        return _unreferenced_after(sha256s, self._release.values(), self._mirror_files.values())

    @_deferred
    def close(self) -> None:
        self._closed = True


@implementer(ISpool)
@attrs.define(eq=False)
class MemorySpool:
    """A spool in memory, like a remote store's: no local ``path``."""

    _store: MemoryBlobStore
    path: None = None
    _chunks: list[bytes] = attrs.field(factory=list)
    _hash: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    size: int = 0
    _done: bool = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("spool already committed or aborted")
        self._chunks.append(bytes(data))
        self._hash.update(data)
        self.size += len(data)

    def append(self, data: bytes) -> bool:
        self.write(data)
        return True

    def when_drained(self, callback: Callable[[], None]) -> None:
        callback()

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def reader(self) -> MemorySpoolReader | None:
        return None if self._done else MemorySpoolReader(self._chunks)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def commit(self, expected_sha256: str | None = None) -> Deferred[str]:
        if self._done:
            return fail(ValueError("spool already committed or aborted"))
        self._done = True
        sha256 = self.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            return fail(ValueError(f"sha256 mismatch: expected {expected_sha256}, got {sha256}"))
        self._store.blobs.setdefault(sha256, b"".join(self._chunks))
        return succeed(sha256)

    def abort(self) -> None:
        self._done = True
        self._chunks.clear()


@implementer(ISpoolReader)
@attrs.define(eq=False)
class MemorySpoolReader:
    _chunks: list[bytes]

    def read(self, offset: int, length: int) -> Deferred[bytes]:
        data = b"".join(self._chunks)
        if offset < 0 or length < 0 or offset + length > len(data):
            return fail(ValueError(f"no bytes {offset}+{length} in a spool of {len(data)}"))
        return succeed(data[offset : offset + length])

    def close(self) -> None:
        pass


@implementer(IBlobStore)
@attrs.define
class MemoryBlobStore:
    """
    IBlobStore in a dict (``blobs``, sha256 to bytes, public for tests to inspect or corrupt).

    ``local_path`` answers None, like a remote store: readers must use ``read``.
    """

    blobs: dict[str, bytes] = attrs.field(factory=dict)

    def has(self, sha256: str) -> Deferred[bool]:
        return succeed(sha256 in self.blobs)

    def size(self, sha256: str) -> Deferred[int | None]:
        data = self.blobs.get(sha256)
        return succeed(None if data is None else len(data))

    def local_path(self, sha256: str) -> FilePath[str] | None:
        return None

    def read(self, sha256: str) -> Deferred[bytes]:
        data = self.blobs.get(sha256)
        if data is None:
            return fail(NotFound(f"no blob {sha256!r}"))
        return succeed(data)

    def new_spool(self) -> MemorySpool:
        return MemorySpool(store=self)

    def put_bytes(self, data: bytes) -> Deferred[str]:
        sha256 = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha256, bytes(data))
        return succeed(sha256)

    def delete(self, sha256: str) -> Deferred[None]:
        self.blobs.pop(sha256, None)
        return succeed(None)

    def discard_stale_spools(self) -> Deferred[int]:
        # Memory does not survive a crash, so nothing is ever stale.
        return succeed(0)

    def list_prefix(self, prefix: str) -> Deferred[list[str]]:
        if len(prefix) != 2 or any(c not in "0123456789abcdef" for c in prefix):
            return fail(ValueError(f"not a two hex digit prefix: {prefix!r}"))
        return succeed(sorted(k for k in self.blobs if k.startswith(prefix)))


__all__ = ["MemoryBlobStore", "MemorySpool", "MemoryStorage"]
