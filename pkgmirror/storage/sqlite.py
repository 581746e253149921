"""
IStorage over one SQLite file.

All queries run in one thread that owns the connection (SQLite serialises writers anyway, and
one thread needs no locking of our own). Each write method is one ``BEGIN IMMEDIATE``
transaction. The schema is versioned by the ``schema_version`` setting and grows only through
:data:`MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pkgmirror.interfaces import Conflict, IStorage, NotFound, StorageError
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
from pkgmirror.storage.threads import Runner, in_thread_pool

P = ParamSpec("P")
T = TypeVar("T")


class SchemaTooNew(StorageError):
    """The database was written by a newer pkgmirror; opening it could corrupt it."""


_SCHEMA_1 = """
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    email TEXT,
    created TEXT,
    title TEXT,
    description TEXT
);

CREATE TABLE indexes (
    key TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE UNIQUE INDEX indexes_by_user ON indexes (user, name);

CREATE TABLE release_files (
    idx TEXT NOT NULL REFERENCES indexes (key) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    path_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    upload_time TEXT NOT NULL,
    requires_python TEXT,
    yanked TEXT,
    metadata_sha256 TEXT,
    uploader TEXT,
    metadata TEXT NOT NULL,
    PRIMARY KEY (idx, filename)
);
CREATE INDEX release_files_by_project ON release_files (idx, project, version);
CREATE INDEX release_files_by_sha256 ON release_files (sha256);
CREATE INDEX release_files_by_metadata ON release_files (metadata_sha256);

CREATE TABLE mirror_pages (
    idx TEXT NOT NULL REFERENCES indexes (key) ON DELETE CASCADE,
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    etag TEXT,
    serial INTEGER,
    page TEXT,
    PRIMARY KEY (idx, project)
);

CREATE TABLE mirror_files (
    idx TEXT NOT NULL REFERENCES indexes (key) ON DELETE CASCADE,
    path_key TEXT NOT NULL,
    filename TEXT NOT NULL,
    project TEXT NOT NULL,
    url TEXT NOT NULL,
    sha256 TEXT,
    size INTEGER,
    upload_time TEXT,
    cached_sha256 TEXT,
    metadata_sha256 TEXT,
    PRIMARY KEY (idx, path_key, filename)
);
CREATE INDEX mirror_files_by_project ON mirror_files (idx, project);
CREATE INDEX mirror_files_by_cached ON mirror_files (cached_sha256);
CREATE INDEX mirror_files_by_metadata ON mirror_files (metadata_sha256);

-- One row per mirror: a million rows would take far longer to write and read than one
-- compressed blob, and the list is only ever used whole.
CREATE TABLE mirror_names (
    idx TEXT PRIMARY KEY REFERENCES indexes (key) ON DELETE CASCADE,
    names BLOB NOT NULL,
    etag TEXT,
    fetched_at REAL NOT NULL
);
"""

# Yanks a stage puts on releases it does not own (from mirrors or bases).
_SCHEMA_2 = """
CREATE TABLE stage_yanks (
    idx TEXT NOT NULL REFERENCES indexes (key) ON DELETE CASCADE,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (idx, project, version)
);
"""

MIGRATIONS: list[str] = [_SCHEMA_1, _SCHEMA_2]
"""
SQL scripts; script ``n`` (counting from 1) takes the schema from version ``n - 1`` to ``n``.
Append only: never edit a script that has shipped.
"""

SCHEMA_VERSION_KEY = "schema_version"


def _schema_version(conn: sqlite3.Connection) -> int:
    if (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'"
        ).fetchone()
        is None
    ):
        return 0
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (SCHEMA_VERSION_KEY,)).fetchone()
    return 0 if row is None else int(row[0])


def _migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    version = _schema_version(conn)
    if version > len(migrations):
        raise SchemaTooNew(
            f"database schema version {version} is newer than this pkgmirror knows "
            f"({len(migrations)}); upgrade pkgmirror or use a backup"
        )
    for number in range(version + 1, len(migrations) + 1):
        # executescript commits whatever is pending before it starts, so the transaction has to
        # be part of the script itself.
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{migrations[number - 1]}\n;\n"
            "INSERT INTO settings (key, value) VALUES "
            f"('{SCHEMA_VERSION_KEY}', '{number}') "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value;\n"
            "COMMIT;"
        )
        try:
            conn.executescript(script)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _connect(path: str, migrations: Sequence[str]) -> sqlite3.Connection:
    # Only the storage thread uses the connection; check_same_thread would only get in the way
    # of a synchronous runner used by tests and offline tools.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        _migrate(conn, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


# --- row conversions ------------------------------------------------------------------------

_USER_COLUMNS = "name, password_hash, email, created, title, description"
_RELEASE_COLUMNS = (
    "idx, project, version, filename, sha256, size, upload_time, requires_python, yanked, "
    "metadata_sha256, uploader, metadata"
)
_MIRROR_FILE_COLUMNS = (
    "idx, project, filename, path_key, url, sha256, size, upload_time, cached_sha256, "
    "metadata_sha256"
)


def _user(row: Sequence[Any]) -> User:
    return User(*row)


def _release_file(row: Sequence[Any]) -> ReleaseFile:
    (index, project, version, filename, sha256, size, upload_time, requires_python, yanked,
     metadata_sha256, uploader, metadata) = row  # fmt: skip
    return ReleaseFile(
        index=index,
        project=project,
        version=version,
        filename=filename,
        sha256=sha256,
        size=size,
        upload_time=upload_time,
        requires_python=requires_python,
        yanked=yanked,
        metadata_sha256=metadata_sha256,
        uploader=uploader,
        metadata=metadata_from_json(metadata),
    )


def _mirror_file(row: Sequence[Any]) -> MirrorFile:
    return MirrorFile(*row)


# --- queries, each run in the storage thread -------------------------------------------------


def _require_index(conn: sqlite3.Connection, index: str) -> None:
    if conn.execute("SELECT 1 FROM indexes WHERE key = ?", (index,)).fetchone() is None:
        raise NotFound(f"no index {index}")


def _unreferenced(conn: sqlite3.Connection, candidates: Iterable[str | None]) -> list[str]:
    query = """
        SELECT NOT EXISTS (SELECT 1 FROM release_files WHERE sha256 = :s)
           AND NOT EXISTS (SELECT 1 FROM release_files WHERE metadata_sha256 = :s)
           AND NOT EXISTS (SELECT 1 FROM mirror_files WHERE cached_sha256 = :s)
           AND NOT EXISTS (SELECT 1 FROM mirror_files WHERE metadata_sha256 = :s)
    """
    return sorted(
        sha
        for sha in {c for c in candidates if c is not None}
        if conn.execute(query, {"s": sha}).fetchone()[0]
    )


def _index_blobs(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> set[str]:
    """The blobs the rows of some indexes (``where`` on column ``idx``) reference."""
    found: set[str] = set()
    for sql in (
        f"SELECT sha256, metadata_sha256 FROM release_files WHERE {where}",
        f"SELECT cached_sha256, metadata_sha256 FROM mirror_files WHERE {where}",
    ):
        for a, b in conn.execute(sql, params):
            found.update(x for x in (a, b) if x is not None)
    return found


def _get_setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else cast(str, row[0])


def _put_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _list_users(conn: sqlite3.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")]


def _get_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else _user(row)


def _put_user(conn: sqlite3.Connection, user: User) -> None:
    conn.execute(
        f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, "
        "email = excluded.email, created = excluded.created, title = excluded.title, "
        "description = excluded.description",
        attrs.astuple(user),
    )


def _delete_user(conn: sqlite3.Connection, name: str) -> list[str]:
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
        raise NotFound(f"no user {name}")
    where = "idx IN (SELECT key FROM indexes WHERE user = ?)"
    candidates = _index_blobs(conn, where, (name,))
    conn.execute("DELETE FROM indexes WHERE user = ?", (name,))
    conn.execute("DELETE FROM users WHERE name = ?", (name,))
    return _unreferenced(conn, candidates)


def _list_indexes(conn: sqlite3.Connection) -> list[IndexConfig]:
    return [
        index_config_from_json(r[0])
        for r in conn.execute("SELECT config FROM indexes ORDER BY user, name")
    ]


def _put_index(conn: sqlite3.Connection, config: IndexConfig) -> None:
    # An upsert, not INSERT OR REPLACE: REPLACE deletes the old row first, and the foreign keys
    # would cascade that delete to the index's files.
    conn.execute(
        "INSERT INTO indexes (key, user, name, config) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET config = excluded.config",
        (config.key, config.user, config.name, index_config_to_json(config)),
    )


def _delete_index(conn: sqlite3.Connection, user: str, name: str) -> list[str]:
    key = f"{user}/{name}"
    _require_index(conn, key)
    candidates = _index_blobs(conn, "idx = ?", (key,))
    conn.execute("DELETE FROM indexes WHERE key = ?", (key,))
    return _unreferenced(conn, candidates)


def _add_release_file(conn: sqlite3.Connection, rf: ReleaseFile, overwrite: bool) -> bool:
    _require_index(conn, rf.index)
    row = conn.execute(
        "SELECT sha256 FROM release_files WHERE idx = ? AND filename = ?", (rf.index, rf.filename)
    ).fetchone()
    if row is not None:
        if row[0] == rf.sha256:
            return False
        if not overwrite:
            raise Conflict(f"{rf.filename} already exists in {rf.index} with other contents")
        conn.execute(
            "DELETE FROM release_files WHERE idx = ? AND filename = ?", (rf.index, rf.filename)
        )
    conn.execute(
        f"INSERT INTO release_files ({_RELEASE_COLUMNS}, path_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rf.index,
            rf.project,
            rf.version,
            rf.filename,
            rf.sha256,
            rf.size,
            rf.upload_time,
            rf.requires_python,
            rf.yanked,
            rf.metadata_sha256,
            rf.uploader,
            metadata_to_json(rf.metadata),
            rf.path_key,
        ),
    )
    return True


def _list_release_files(
    conn: sqlite3.Connection, index: str, project: str | None
) -> list[ReleaseFile]:
    if project is None:
        rows = conn.execute(
            f"SELECT {_RELEASE_COLUMNS} FROM release_files WHERE idx = ? "
            "ORDER BY project, filename",
            (index,),
        )
    else:
        rows = conn.execute(
            f"SELECT {_RELEASE_COLUMNS} FROM release_files WHERE idx = ? AND project = ? "
            "ORDER BY project, filename",
            (index, normalize(project)),
        )
    return [_release_file(r) for r in rows]


def _get_release_file(
    conn: sqlite3.Connection, index: str, path_key: str, filename: str
) -> ReleaseFile | None:
    row = conn.execute(
        f"SELECT {_RELEASE_COLUMNS} FROM release_files "
        "WHERE idx = ? AND filename = ? AND path_key = ?",
        (index, filename, path_key),
    ).fetchone()
    return None if row is None else _release_file(row)


def _list_stage_projects(conn: sqlite3.Connection, index: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT project FROM release_files WHERE idx = ? ORDER BY project", (index,)
        )
    ]


def _delete_release_files(
    conn: sqlite3.Connection,
    index: str,
    project: str,
    version: str | None,
    filename: str | None = None,
) -> list[str]:
    where = "idx = ? AND project = ?"
    params: tuple[str, ...] = (index, normalize(project))
    if version is not None:
        where += " AND version = ?"
        params += (version,)
    if filename is not None:
        where += " AND filename = ?"
        params += (filename,)
    candidates: set[str] = set()
    for a, b in conn.execute(
        f"SELECT sha256, metadata_sha256 FROM release_files WHERE {where}", params
    ):
        candidates.update(x for x in (a, b) if x is not None)
    if conn.execute(f"DELETE FROM release_files WHERE {where}", params).rowcount == 0:
        what = filename or (project if version is None else f"{project} {version}")
        raise NotFound(f"no files of {what} in {index}")
    return _unreferenced(conn, candidates)


def _set_yanked(
    conn: sqlite3.Connection, index: str, project: str, version: str, reason: str | None
) -> int:
    cursor = conn.execute(
        "UPDATE release_files SET yanked = ? WHERE idx = ? AND project = ? AND version = ?",
        (reason, index, normalize(project), version),
    )
    return cursor.rowcount


def _set_stage_yank(
    conn: sqlite3.Connection, index: str, project: str, version: str, reason: str | None
) -> None:
    _require_index(conn, index)
    if reason is None:
        conn.execute(
            "DELETE FROM stage_yanks WHERE idx = ? AND project = ? AND version = ?",
            (index, normalize(project), version),
        )
    else:
        conn.execute(
            "INSERT INTO stage_yanks (idx, project, version, reason) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (idx, project, version) DO UPDATE SET reason = excluded.reason",
            (index, normalize(project), version, reason),
        )


def _list_stage_yanks(conn: sqlite3.Connection, index: str) -> list[tuple[str, str, str]]:
    return [
        (p, v, r)
        for p, v, r in conn.execute(
            "SELECT project, version, reason FROM stage_yanks WHERE idx = ? "
            "ORDER BY project, version",
            (index,),
        )
    ]


def _uncache_mirror_files(
    conn: sqlite3.Connection, index: str, project: str, filenames: Sequence[str] | None
) -> list[str]:
    where = "idx = ? AND project = ?"
    params: tuple[str, ...] = (index, project)
    if filenames is not None:
        if not filenames:
            return []
        where += f" AND filename IN ({', '.join('?' * len(filenames))})"
        params += tuple(filenames)
    candidates: set[str] = set()
    for a, b in conn.execute(
        f"SELECT cached_sha256, metadata_sha256 FROM mirror_files WHERE {where}", params
    ):
        candidates.update(x for x in (a, b) if x is not None)
    conn.execute(
        f"UPDATE mirror_files SET cached_sha256 = NULL, metadata_sha256 = NULL WHERE {where}",
        params,
    )
    if filenames is None:
        conn.execute("DELETE FROM mirror_pages WHERE idx = ? AND project = ?", (index, project))
    return _unreferenced(conn, candidates)


def _get_mirror_page(conn: sqlite3.Connection, index: str, project: str) -> MirrorPageState | None:
    row = conn.execute(
        "SELECT status, fetched_at, page, etag, serial FROM mirror_pages "
        "WHERE idx = ? AND project = ?",
        (index, project),
    ).fetchone()
    if row is None:
        return None
    status, fetched_at, page, etag, serial = row
    return MirrorPageState(
        index=index,
        project=project,
        status=status,
        fetched_at=fetched_at,
        page=None if page is None else page_from_json(page),
        etag=etag,
        serial=serial,
    )


# What an upsert keeps of a row already there: what we learnt by downloading (the cached blob,
# its real size, its metadata) and the first time we saw the file.
_UPSERT_MIRROR_FILE = f"""
    INSERT INTO mirror_files ({_MIRROR_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (idx, path_key, filename) DO UPDATE SET
        project = excluded.project,
        url = excluded.url,
        sha256 = COALESCE(excluded.sha256, mirror_files.sha256),
        size = CASE WHEN mirror_files.cached_sha256 IS NOT NULL THEN mirror_files.size
                    ELSE COALESCE(excluded.size, mirror_files.size) END,
        upload_time = COALESCE(mirror_files.upload_time, excluded.upload_time),
        cached_sha256 = COALESCE(mirror_files.cached_sha256, excluded.cached_sha256),
        metadata_sha256 = COALESCE(mirror_files.metadata_sha256, excluded.metadata_sha256)
"""


def _put_mirror_page(
    conn: sqlite3.Connection, state: MirrorPageState, files: Sequence[MirrorFile]
) -> None:
    _require_index(conn, state.index)
    conn.execute(
        "INSERT INTO mirror_pages (idx, project, status, fetched_at, etag, serial, page) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (idx, project) DO UPDATE SET status = excluded.status, "
        "fetched_at = excluded.fetched_at, etag = excluded.etag, serial = excluded.serial, "
        "page = excluded.page",
        (
            state.index,
            state.project,
            state.status,
            state.fetched_at,
            state.etag,
            state.serial,
            None if state.page is None else page_to_json(state.page),
        ),
    )
    conn.executemany(_UPSERT_MIRROR_FILE, [attrs.astuple(f) for f in files])


def _touch_mirror_page(conn: sqlite3.Connection, index: str, project: str, when: float) -> None:
    cursor = conn.execute(
        "UPDATE mirror_pages SET fetched_at = ? WHERE idx = ? AND project = ?",
        (when, index, project),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no cached page of {project} in {index}")


def _list_mirror_pages(conn: sqlite3.Connection, index: str) -> list[tuple[str, float]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT project, fetched_at FROM mirror_pages WHERE idx = ? ORDER BY project",
            (index,),
        )
    ]


def _get_mirror_file(
    conn: sqlite3.Connection, index: str, path_key: str, filename: str
) -> MirrorFile | None:
    row = conn.execute(
        f"SELECT {_MIRROR_FILE_COLUMNS} FROM mirror_files "
        "WHERE idx = ? AND path_key = ? AND filename = ?",
        (index, path_key, filename),
    ).fetchone()
    return None if row is None else _mirror_file(row)


def _update_mirror_file(
    conn: sqlite3.Connection, sets: str, params: tuple[Any, ...], key: tuple[str, str, str]
) -> None:
    cursor = conn.execute(
        f"UPDATE mirror_files SET {sets} WHERE idx = ? AND path_key = ? AND filename = ?",
        params + key,
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no mirror file {key[1]}/{key[2]} in {key[0]}")


def _get_mirror_names(
    conn: sqlite3.Connection, index: str
) -> tuple[NameList, str | None, float] | None:
    row = conn.execute(
        "SELECT names, etag, fetched_at FROM mirror_names WHERE idx = ?", (index,)
    ).fetchone()
    if row is None:
        return None
    # Stored from a NameList: sorted and unique already.
    return (NameList(zlib.decompress(row[0]).decode("utf-8")), row[1], row[2])


def _put_mirror_names(
    conn: sqlite3.Connection,
    index: str,
    names: NameList,
    etag: str | None,
    fetched_at: float,
) -> None:
    _require_index(conn, index)
    # Level 1: on name lists it compresses as well as the default level, in half the time.
    # In slices, so the text is never encoded whole (a million names: 16 MB more).
    compressor = zlib.compressobj(1)
    text = names.text
    parts = [
        compressor.compress(text[i : i + _NAMES_SLICE].encode("utf-8"))
        for i in range(0, len(text), _NAMES_SLICE)
    ]
    parts.append(compressor.flush())
    conn.execute(
        "INSERT INTO mirror_names (idx, names, etag, fetched_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (idx) DO UPDATE SET names = excluded.names, etag = excluded.etag, "
        "fetched_at = excluded.fetched_at",
        (index, b"".join(parts), etag, fetched_at),
    )


_NAMES_SLICE = 1 << 20


# --- the storage ------------------------------------------------------------------------------


@implementer(IStorage)
@attrs.define
class SQLiteStorage:
    """
    Build one with :meth:`open`; call :meth:`close` when done (the storage thread keeps the
    process alive otherwise, until reactor shutdown stops it).

    Updates of something that does not exist (``touch_mirror_page``, ``set_mirror_file_*``) and
    writes into an index that does not exist fail with NotFound.
    """

    _run: Runner
    _conn: sqlite3.Connection
    _pool: ThreadPool | None = None
    _stop_pool: Callable[[], None] | None = None
    _closed: bool = False

    @classmethod
    def open(
        cls,
        path: FilePath[str] | str,
        reactor: IReactorFromThreads | None = None,
        runner: Runner | None = None,
    ) -> Deferred[SQLiteStorage]:
        """
        Opens (creating when absent, migrating when old) the database at ``path``.

        Returns a Deferred firing with the storage once the schema is current, or failing with
        SchemaTooNew or sqlite3.Error. Queries run in a new single-thread pool, with results
        delivered through ``reactor`` (the global reactor when None). Pass ``runner`` (e.g.
        :func:`pkgmirror.storage.threads.run_synchronously`) to run them some other way
        instead; then no thread is started and ``reactor`` is not used.
        """
        db_path = path.path if isinstance(path, FilePath) else path
        pool: ThreadPool | None = None
        stop_pool: Callable[[], None] | None = None
        if runner is None:
            if reactor is None:
                from twisted.internet import reactor as global_reactor

                reactor = cast(IReactorFromThreads, global_reactor)
            pool = ThreadPool(1, 1, name=f"pkgmirror-sqlite {db_path}")
            pool.start()
            stop_pool = _pool_stopper(reactor, pool)
            runner = in_thread_pool(reactor, pool)
        d = runner(_connect, db_path, list(MIGRATIONS))

        def opened(conn: sqlite3.Connection) -> SQLiteStorage:
            assert runner is not None
            return cls(run=runner, conn=conn, pool=pool, stop_pool=stop_pool)

        def failed(failure: Failure) -> Failure:
            if stop_pool is not None:
                stop_pool()
            return failure

        return d.addCallbacks(opened, failed)

    def _read(
        self, f: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> Deferred[T]:
        if self._closed:
            return fail(StorageError("storage is closed"))
        return self._run(f, self._conn, *args, **kw)

    def _write(
        self, f: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> Deferred[T]:
        if self._closed:
            return fail(StorageError("storage is closed"))
        conn = self._conn

        def transaction() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = f(conn, *args, **kw)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._run(transaction)

    def get_setting(self, key: str) -> Deferred[str | None]:
        return self._read(_get_setting, key)

    def put_setting(self, key: str, value: str) -> Deferred[None]:
        return self._write(_put_setting, key, value)

    def list_users(self) -> Deferred[list[User]]:
        return self._read(_list_users)

    def get_user(self, name: str) -> Deferred[User | None]:
        return self._read(_get_user, name)

    def put_user(self, user: User) -> Deferred[None]:
        return self._write(_put_user, user)

    def delete_user(self, name: str) -> Deferred[list[str]]:
        return self._write(_delete_user, name)

    def list_indexes(self) -> Deferred[list[IndexConfig]]:
        return self._read(_list_indexes)

    def put_index(self, config: IndexConfig) -> Deferred[None]:
        return self._write(_put_index, config)

    def delete_index(self, user: str, name: str) -> Deferred[list[str]]:
        return self._write(_delete_index, user, name)

    def add_release_file(self, release_file: ReleaseFile, overwrite: bool) -> Deferred[bool]:
        return self._write(_add_release_file, release_file, overwrite)

    def list_release_files(
        self, index: str, project: str | None = None
    ) -> Deferred[list[ReleaseFile]]:
        return self._read(_list_release_files, index, project)

    def get_release_file(
        self, index: str, path_key: str, filename: str
    ) -> Deferred[ReleaseFile | None]:
        return self._read(_get_release_file, index, path_key, filename)

    def list_stage_projects(self, index: str) -> Deferred[list[str]]:
        return self._read(_list_stage_projects, index)

    def delete_release_files(
        self, index: str, project: str, version: str | None = None, filename: str | None = None
    ) -> Deferred[list[str]]:
        return self._write(_delete_release_files, index, project, version, filename)

    def set_yanked(
        self, index: str, project: str, version: str, reason: str | None
    ) -> Deferred[int]:
        return self._write(_set_yanked, index, project, version, reason)

    def set_stage_yank(
        self, index: str, project: str, version: str, reason: str | None
    ) -> Deferred[None]:
        return self._write(_set_stage_yank, index, project, version, reason)

    def list_stage_yanks(self, index: str) -> Deferred[list[tuple[str, str, str]]]:
        return self._read(_list_stage_yanks, index)

    def uncache_mirror_files(
        self, index: str, project: str, filenames: Iterable[str] | None = None
    ) -> Deferred[list[str]]:
        names = None if filenames is None else tuple(filenames)
        return self._write(_uncache_mirror_files, index, project, names)

    def get_mirror_page(self, index: str, project: str) -> Deferred[MirrorPageState | None]:
        return self._read(_get_mirror_page, index, project)

    def put_mirror_page(
        self, state: MirrorPageState, files: Iterable[MirrorFile]
    ) -> Deferred[None]:
        return self._write(_put_mirror_page, state, list(files))

    def touch_mirror_page(self, index: str, project: str, fetched_at: float) -> Deferred[None]:
        return self._write(_touch_mirror_page, index, project, fetched_at)

    def list_mirror_pages(self, index: str) -> Deferred[list[tuple[str, float]]]:
        return self._read(_list_mirror_pages, index)

    def get_mirror_file(
        self, index: str, path_key: str, filename: str
    ) -> Deferred[MirrorFile | None]:
        return self._read(_get_mirror_file, index, path_key, filename)

    def set_mirror_file_cached(
        self, index: str, path_key: str, filename: str, sha256: str, size: int, upload_time: str
    ) -> Deferred[None]:
        """Also sets the size; keeps an upload time already known."""
        return self._write(
            _update_mirror_file,
            "cached_sha256 = ?, size = ?, upload_time = COALESCE(upload_time, ?)",
            (sha256, size, upload_time),
            (index, path_key, filename),
        )

    def set_mirror_file_metadata(
        self, index: str, path_key: str, filename: str, sha256: str
    ) -> Deferred[None]:
        return self._write(
            _update_mirror_file, "metadata_sha256 = ?", (sha256,), (index, path_key, filename)
        )

    def get_mirror_names(self, index: str) -> Deferred[tuple[NameList, str | None, float] | None]:
        return self._read(_get_mirror_names, index)

    def put_mirror_names(
        self, index: str, names: NameList, etag: str | None, fetched_at: float
    ) -> Deferred[None]:
        return self._write(_put_mirror_names, index, names, etag, fetched_at)

    def unreferenced(self, sha256s: Iterable[str]) -> Deferred[list[str]]:
        return self._read(_unreferenced, tuple(sha256s))

    def close(self) -> Deferred[None]:
        """Waits for queued queries, closes the connection and stops the thread. Idempotent."""
        if self._closed:
            return succeed(None)
        d = self._run(self._conn.close)
        self._closed = True
        stop_pool = self._stop_pool

        def stop(result: object) -> object:
            if stop_pool is not None:
                stop_pool()
            return result

        return d.addBoth(stop).addCallback(lambda _: None)


def _pool_stopper(reactor: IReactorFromThreads, pool: ThreadPool) -> Callable[[], None]:
    """
    A function that stops ``pool`` once; also called at reactor shutdown, since the pool's
    non-daemon thread would otherwise keep a process that forgot ``close()`` from exiting.
    """
    trigger: list[Any] = []

    def stop() -> None:
        if trigger and IReactorCore.providedBy(reactor):
            cast(IReactorCore, reactor).removeSystemEventTrigger(trigger.pop())
        if not pool.joined:
            pool.stop()

    def at_shutdown() -> None:
        trigger.clear()
        stop()

    if IReactorCore.providedBy(reactor):
        trigger.append(
            cast(IReactorCore, reactor).addSystemEventTrigger("during", "shutdown", at_shutdown)
        )
    return stop
