"""
The contracts between pkgmirror's layers. Only ``Interface`` classes live here.

Every method that can touch a disk or a network returns a Deferred; its docstring says what the
Deferred fires with and how it fails. Implementations must not block the reactor thread.
Nothing here assumes SQLite or a local file system: a PostgreSQL ``IStorage`` and an S3
``IBlobStore`` are meant to fit behind the same contracts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from pkgmirror.model import IndexConfig, MirrorFile, MirrorPageState, ReleaseFile, User
    from pkgmirror.namelist import NameList


class StorageError(Exception):
    """Base class of the failures storage reports."""


class Conflict(StorageError):
    """A write collided with what is stored (a file name taken by other bytes, a duplicate)."""


class NotFound(StorageError):
    """The thing named does not exist."""


class IStorage(Interface):
    """
    Metadata: users, indexes, stage files, mirror cache state, server settings.

    Every write is one transaction: it happens whole or not at all. Every method returns a
    Deferred and runs its queries off the reactor thread.
    """

    def get_setting(key: str) -> Deferred[str | None]:
        """Deferred[str | None]: a server-wide setting (schema version, token secret, uuid)."""

    def put_setting(key: str, value: str) -> Deferred[None]:
        """Deferred[None]."""

    # users
    def list_users() -> Deferred[list[User]]:
        """Deferred[list[User]] in name order."""

    def get_user(name: str) -> Deferred[User | None]:
        """Deferred[User | None]."""

    def put_user(user: User) -> Deferred[None]:
        """Deferred[None]: create or replace the user of that name."""

    def delete_user(name: str) -> Deferred[list[str]]:
        """
        Deferred[list[str]]: removes the user and all their indexes (as ``delete_index``), firing
        with the sha256 of blobs no longer referenced. Fails with NotFound.
        """

    # indexes
    def list_indexes() -> Deferred[list[IndexConfig]]:
        """Deferred[list[IndexConfig]] ordered by user, then name."""

    def put_index(config: IndexConfig) -> Deferred[None]:
        """Deferred[None]: create or replace the index ``config.user/config.name``."""

    def delete_index(user: str, name: str) -> Deferred[list[str]]:
        """
        Deferred[list[str]]: removes the index, its stage files and its mirror cache, firing with
        the sha256 of blobs no other index references any more. Fails with NotFound.
        """

    # stage files
    def add_release_file(release_file: ReleaseFile, overwrite: bool) -> Deferred[bool]:
        """
        Deferred[bool]: stores a ReleaseFile. Fires True when stored, False when the same file
        name with the same sha256 was there already (nothing changed). When the name is taken by
        other bytes: replaces it if ``overwrite``, else fails with Conflict. Fails with NotFound
        when the index does not exist.
        """

    def list_release_files(index: str, project: str | None = None) -> Deferred[list[ReleaseFile]]:
        """Deferred[list[ReleaseFile]] of one stage (of one project when given)."""

    def get_release_file(index: str, path_key: str, filename: str) -> Deferred[ReleaseFile | None]:
        """Deferred[ReleaseFile | None] by the key in its URL."""

    def list_stage_projects(index: str) -> Deferred[list[str]]:
        """Deferred[list[str]]: normalised names of the projects a stage has files of."""

    def delete_release_files(
        index: str, project: str, version: str | None = None, filename: str | None = None
    ) -> Deferred[list[str]]:
        """
        Deferred[list[str]]: deletes a project's files (of one version, or the one file named
        ``filename``, when given), firing with the sha256 of blobs no longer referenced
        anywhere. Fails with NotFound if none matched.
        """

    def set_yanked(index: str, project: str, version: str, reason: str | None) -> Deferred[int]:
        """
        Deferred[int]: yanks (reason "" or text) or un-yanks (None); fires with how many files
        that version has (0: no such version), whether or not they were yanked already.
        """

    def set_stage_yank(
        index: str, project: str, version: str, reason: str | None
    ) -> Deferred[None]:
        """
        Deferred[None]: a stage yanks (reason "" or text) or un-yanks (None) a release it does
        not own (one of a mirror or a base), for the pages it and the indexes on it serve.
        Fails with NotFound when the index does not exist.
        """

    def list_stage_yanks(index: str) -> Deferred[list[tuple[str, str, str]]]:
        """Deferred[list[tuple[str, str, str]]]: (project, version, reason) a stage yanks."""

    # mirror cache
    def get_mirror_page(index: str, project: str) -> Deferred[MirrorPageState | None]:
        """Deferred[MirrorPageState | None]."""

    def put_mirror_page(state: MirrorPageState, files: Iterable[MirrorFile]) -> Deferred[None]:
        """
        Deferred[None]: stores a MirrorPageState and upserts the MirrorFile rows of its links
        (``files``, a list), keeping what is already known of files still listed (cached bytes,
        first-seen time). Files no longer listed are kept too. Fails with NotFound when the index
        does not exist.
        """

    def touch_mirror_page(index: str, project: str, fetched_at: float) -> Deferred[None]:
        """
        Deferred[None]: an upstream said 304 Not Modified; the page is fresh again. Fails with
        NotFound when no page is cached.
        """

    def list_mirror_pages(index: str) -> Deferred[list[tuple[str, float]]]:
        """Deferred[list[tuple[str, float]]]: (project, fetched_at) of every cached page."""

    def get_mirror_file(index: str, path_key: str, filename: str) -> Deferred[MirrorFile | None]:
        """Deferred[MirrorFile | None]."""

    def set_mirror_file_cached(
        index: str, path_key: str, filename: str, sha256: str, size: int, upload_time: str
    ) -> Deferred[None]:
        """
        Deferred[None]: the bytes of that mirror file are now in the blob store (sets its size;
        keeps an upload time already known). Fails with NotFound when there is no such file.
        """

    def set_mirror_file_metadata(
        index: str, path_key: str, filename: str, sha256: str
    ) -> Deferred[None]:
        """
        Deferred[None]: the core metadata of that file is in the blob store under sha256. Fails
        with NotFound when there is no such file.
        """

    def uncache_mirror_files(
        index: str, project: str, filenames: Iterable[str] | None = None
    ) -> Deferred[list[str]]:
        """
        Deferred[list[str]]: forgets the cached bytes and core metadata of a project's mirror
        files (those named, or all of them; then its cached page too), so they are fetched
        again when next asked; fires with the sha256 of blobs no longer referenced.
        """

    def get_mirror_names(index: str) -> Deferred[tuple[NameList, str | None, float] | None]:
        """Deferred[tuple[NameList, str | None, float] | None]: names, etag, fetched_at."""

    def put_mirror_names(
        index: str, names: NameList, etag: str | None, fetched_at: float
    ) -> Deferred[None]:
        """
        Deferred[None]: replaces a mirror's upstream name list (kept as its text: a million
        names are one string, not a million). Fails with NotFound when the index does not exist.
        """

    def unreferenced(sha256s: Iterable[str]) -> Deferred[list[str]]:
        """
        Deferred[list[str]], sorted: those of the given blobs that no stage file and no cached
        mirror file references (as file or as core metadata). For what the deleting methods
        cannot report: the bytes an overwritten file had, say.
        """

    def close() -> Deferred[None]:
        """Deferred[None]: finishes pending work and releases connections."""


class ISpool(Interface):
    """
    A blob being written: bytes go in as they arrive, nothing is visible until ``commit``.

    Two ways in. ``write`` blocks until the bytes are stored; callers already off the reactor
    thread use it (an upload copied in a thread). ``append`` returns at once; the bytes are
    stored (and hashed) off the reactor thread, in order (a download from an upstream). The
    two are not mixed on one spool.
    """

    size = Attribute("int: bytes written or appended so far")
    path = Attribute(
        "FilePath | None: a local file holding the bytes written, when there is one, for"
        " checks that read a finished upload in place. Nothing requires one."
    )

    def write(data: bytes) -> None:
        """Store bytes; blocking."""

    def append(data: bytes) -> bool:
        """
        Queue bytes to be stored, without blocking. False once the backlog not yet stored is
        large: the caller should pause its source until ``when_drained`` calls back.
        """

    def when_drained(callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the reactor thread) once the backlog is small again."""

    def flush() -> Deferred[None]:
        """Deferred[None]: fires once every appended byte is stored; fails if storing failed."""

    def hexdigest() -> str:
        """The sha256 of what was stored so far (after ``flush``, for appended bytes)."""

    def reader() -> ISpoolReader | None:
        """
        A reader of the bytes stored so far, which stays usable after ``commit``; None once
        the spool is committed or aborted (read the blob then).
        """

    def commit(expected_sha256: str | None = None) -> Deferred[str]:
        """
        Deferred[str]: stores what is still queued, then makes the blob durable and visible
        under its sha256 (fsync, then an atomic rename), firing with the sha256. If
        ``expected_sha256`` is given and differs, fails with ValueError and nothing is stored.
        """

    def abort() -> None:
        """Discard everything written. Safe to call more than once, or after commit."""


class ISpoolReader(Interface):
    """Reads a spool's bytes while it is being written: followers of a download catching up."""

    def read(offset: int, length: int) -> Deferred[bytes]:
        """
        Deferred[bytes]: ``length`` bytes from ``offset``, once stored (they must have been
        written or appended already). One read at a time.
        """

    def close() -> None:
        """Release the reader; a read under way still completes."""


class IBlobStore(Interface):
    """Content-addressed bytes (package files, core-metadata files), keyed by sha256 hex."""

    def has(sha256: str) -> Deferred[bool]:
        """Deferred[bool]."""

    def size(sha256: str) -> Deferred[int | None]:
        """Deferred[int | None]: the blob's size, None when absent."""

    def local_path(sha256: str) -> FilePath[str] | None:
        """
        FilePath | None, synchronously: where the blob can be read on this machine, if it can.
        A remote store answers None and readers use ``read``.
        """

    def read(sha256: str) -> Deferred[bytes]:
        """Deferred[bytes]: a small blob whole (core metadata). Fails with NotFound."""

    def new_spool() -> ISpool:
        """A fresh ISpool."""

    def put_bytes(data: bytes) -> Deferred[str]:
        """Deferred[str]: stores small bytes, firing with their sha256."""

    def delete(sha256: str) -> Deferred[None]:
        """Deferred[None]: removes a blob; absent blobs are fine."""

    def discard_stale_spools() -> Deferred[int]:
        """Deferred[int]: removes temporary files left by a crash; fires with how many."""

    def list_prefix(prefix: str) -> Deferred[list[str]]:
        """
        Deferred[list[str]], sorted: the sha256 of every stored blob that starts with
        ``prefix`` (two hex digits), so that all blobs can be walked in 256 bounded steps.
        Fails with ValueError for any other prefix.
        """
