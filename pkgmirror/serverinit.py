"""
Server directories: recognising ours, refusing foreign ones, and initialising new ones.

Runs before the reactor (``pkgmirror init``, or twistd's option parsing), so it is synchronous.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from pkgmirror import __version__, auth
from pkgmirror.config import ConfigError, check_mirror_url
from pkgmirror.model import IndexConfig, User

if TYPE_CHECKING:
    from pkgmirror.gc import GcReport

MARKER = ".pkgmirror-serverdir"
DATABASE = "pkgmirror.sqlite"
BLOBS = "blobs"
STORAGES = ("sqlite",)
ROLES = ("standalone",)
PYPI_URL_ENV = "PKGMIRROR_PYPI_URL"

T = TypeVar("T")


class InitError(Exception):
    """A server directory we cannot use or create. One-line message for the terminal."""


def _result(d: Deferred[T]) -> T:
    """The result of a Deferred that has already fired (a synchronous runner)."""
    box: list[Any] = []
    d.addBoth(box.append)
    if not box:
        raise RuntimeError("storage did not answer synchronously")
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]  # type: ignore[no-any-return]


def is_serverdir(path: FilePath[str]) -> bool:
    return path.child(MARKER).exists()


def check_or_init_serverdir(path: FilePath[str]) -> bool:
    """
    Accepts a pkgmirror server directory; initialises a missing or empty one with defaults
    (root with an empty password, root/pypi from PKGMIRROR_PYPI_URL). True when it initialised.
    """
    if path.exists() and not path.isdir():
        raise InitError(f"serverdir {path.path} is not a directory")
    if path.exists() and is_serverdir(path):
        _check_marker(path)
        return False
    if path.exists() and any(True for _ in os.scandir(path.path)):
        raise InitError(
            f"serverdir {path.path} is not empty and is not a pkgmirror server directory "
            f"(no {MARKER}): use an empty directory or run 'pkgmirror init'"
        )
    init_serverdir(path.path, None, "sqlite", "standalone", False, None)
    return True


def _check_marker(path: FilePath[str]) -> None:
    try:
        data = json.loads(path.child(MARKER).getContent())
    except ValueError:
        raise InitError(f"{path.child(MARKER).path} is damaged") from None
    if data.get("layout", 1) > 1:
        raise InitError(
            f"serverdir {path.path} was made by a newer pkgmirror ({data.get('version')})"
        )


def init_serverdir(
    serverdir: str,
    root_password: str | None,
    storage: str,
    role: str,
    no_root_pypi: bool,
    pypi_url: str | None,
) -> None:
    """Creates a server directory with user root and (unless told not to) mirror root/pypi."""
    from pkgmirror.storage.sqlite import SQLiteStorage
    from pkgmirror.storage.threads import run_synchronously

    if storage not in STORAGES:
        raise InitError(f"unknown storage {storage!r}: this version supports {', '.join(STORAGES)}")
    if role not in ROLES:
        raise InitError(f"unknown role {role!r}: this version supports {', '.join(ROLES)}")
    path = FilePath(os.path.expanduser(serverdir))
    if path.exists() and is_serverdir(path):
        raise InitError(f"serverdir {path.path} is already initialised")
    if path.exists() and any(True for _ in os.scandir(path.path)):
        raise InitError(f"serverdir {path.path} is not empty")
    url = pypi_url or os.environ.get(PYPI_URL_ENV) or None
    if url:
        try:
            url = check_mirror_url(url)
        except ConfigError as e:
            raise InitError(str(e)) from None
    try:
        path.makedirs(ignoreExistingDirectory=True)
        path.child(BLOBS).makedirs(ignoreExistingDirectory=True)
    except OSError as e:
        raise InitError(f"cannot create serverdir {path.path}: {e.strerror}") from None
    db = _result(SQLiteStorage.open(path.child(DATABASE), runner=run_synchronously))
    try:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pw_hash = auth.hash_password(root_password) if root_password else ""
        _result(db.put_user(User(name="root", password_hash=pw_hash, created=created)))
        if not no_root_pypi:
            _result(
                db.put_index(
                    IndexConfig(
                        user="root",
                        name="pypi",
                        type="mirror",
                        volatile=False,
                        mirror_url=url,
                        title="Public package index mirror",
                    )
                )
            )
    finally:
        _result(db.close())
    marker = {"pkgmirror": True, "version": __version__, "layout": 1, "storage": storage}
    path.child(MARKER).setContent(json.dumps(marker).encode())


def gc_serverdir(serverdir: str, dry_run: bool) -> GcReport:
    """
    Removes the blobs of ``serverdir`` that nothing references, and interrupted writes. Refuses
    (InitError) while a server runs on it, and holds it meanwhile so that none starts.
    """
    from pkgmirror.gc import collect
    from pkgmirror.serverlock import ServerDirInUse, hold
    from pkgmirror.storage.blobs import FileBlobStore
    from pkgmirror.storage.sqlite import SQLiteStorage
    from pkgmirror.storage.threads import run_synchronously

    path = FilePath(os.path.expanduser(serverdir))
    if not is_serverdir(path):
        raise InitError(f"{path.path} is not a pkgmirror server directory")
    try:
        lock = hold(path)
    except ServerDirInUse as e:
        raise InitError(f"{e}: stop it first") from None
    except OSError as e:
        raise InitError(f"cannot use serverdir {path.path}: {e.strerror}") from None
    try:
        db = _result(SQLiteStorage.open(path.child(DATABASE), runner=run_synchronously))
        try:
            blobs = FileBlobStore(path.child(BLOBS), runner=run_synchronously)
            return _result(Deferred.fromCoroutine(collect(db, blobs, dry_run=dry_run)))
        finally:
            _result(db.close())
    finally:
        os.close(lock)
