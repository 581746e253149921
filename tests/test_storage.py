"""
Conformance suites for IStorage and IBlobStore, run against every implementation.

Each suite is a mixin; a concrete class provides ``make_storage`` / ``make_store`` and may add
tests of what only its implementation has (files on disk, schema versions, threads).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from zope.interface.verify import verifyObject

from pkgmirror.interfaces import (
    Conflict,
    IBlobStore,
    ISpool,
    ISpoolReader,
    IStorage,
    NotFound,
    StorageError,
)
from pkgmirror.model import (
    IndexConfig,
    Link,
    MirrorFile,
    MirrorPageState,
    ProjectPage,
    ReleaseFile,
    User,
)
from pkgmirror.namelist import NameList
from pkgmirror.storage import codec
from pkgmirror.storage import sqlite as sqlite_module
from pkgmirror.storage.blobs import FileBlobStore
from pkgmirror.storage.sqlite import SchemaTooNew, SQLiteStorage
from pkgmirror.storage.threads import run_synchronously
from pkgmirror.testing.memory import MemoryBlobStore, MemoryStorage

T = TypeVar("T")


def result(d: object) -> Any:
    """The result of a Deferred that has already fired; raises its failure."""
    assert isinstance(d, Deferred)
    box: list[object] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def failure_of(d: object, *errors: type[BaseException]) -> Failure:
    assert isinstance(d, Deferred)
    box: list[object] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    assert isinstance(box[0], Failure), f"expected a failure, got {box[0]!r}"
    assert box[0].check(*errors), box[0]
    return box[0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def index_config(user: str = "alice", name: str = "dev", **kw: Any) -> IndexConfig:
    return IndexConfig(user=user, name=name, **kw)


def release_file(
    index: str = "alice/dev",
    project: str = "Foo.Bar",
    version: str = "1.0",
    filename: str | None = None,
    content: bytes | None = None,
    **kw: Any,
) -> ReleaseFile:
    filename = filename or f"foo_bar-{version}.tar.gz"
    content = content if content is not None else f"{index} {filename}".encode()
    return ReleaseFile(
        index=index,
        project=project,
        version=version,
        filename=filename,
        sha256=sha(content),
        size=len(content),
        upload_time="2026-11-24T15:09:00.000000Z",
        **kw,
    )


def mirror_file(
    index: str = "root/pypi", project: str = "foo", filename: str = "foo-1.0.tar.gz", **kw: Any
) -> MirrorFile:
    upstream_sha = sha(filename.encode())
    kw.setdefault("sha256", upstream_sha)
    return MirrorFile(
        index=index,
        project=project,
        filename=filename,
        path_key=f"{upstream_sha[:3]}/{upstream_sha[3:16]}",
        url=f"https://upstream.invalid/files/{filename}",
        **kw,
    )


def page_state(
    files: list[MirrorFile], index: str = "root/pypi", project: str = "foo", **kw: Any
) -> MirrorPageState:
    links = [
        Link(
            filename=f.filename,
            url=f.url,
            hashes={"sha256": f.sha256} if f.sha256 else {},
            requires_python=">=3.8",
            core_metadata={"sha256": "ab" * 32},
            yanked="broken" if f.filename.endswith(".zip") else None,
        )
        for f in files
    ]
    page: dict[str, Any] = {"name": project, "links": links, "versions": ["1.0"], "last_serial": 7}
    kw.setdefault("fetched_at", 1000.0)
    kw.setdefault("etag", '"v1"')
    kw.setdefault("serial", 7)
    return MirrorPageState(
        index=index,
        project=project,
        status="ok",
        page=ProjectPage(**page),
        **kw,
    )


class IStorageTestsMixin:
    """
    Behaviour every IStorage has. Concrete classes provide ``make_storage(directory)``, which
    returns a fresh, empty storage keeping any files it needs under ``directory``.
    """

    def make_storage(self, directory: Path) -> IStorage:
        raise NotImplementedError

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[IStorage]:
        storage = self.make_storage(tmp_path)
        yield storage
        result(storage.close())

    @pytest.fixture
    def stage(self, storage: IStorage) -> IStorage:
        """A storage with the users alice and bob, and the indexes alice/dev and bob/prod."""
        for user in ("alice", "bob"):
            result(storage.put_user(User(name=user, password_hash="x")))
        result(storage.put_index(index_config("alice", "dev")))
        result(storage.put_index(index_config("bob", "prod", bases=("alice/dev",))))
        return storage

    @pytest.fixture
    def mirror(self, storage: IStorage) -> IStorage:
        """A storage with the mirror index root/pypi."""
        result(storage.put_user(User(name="root")))
        result(
            storage.put_index(
                index_config("root", "pypi", type="mirror", mirror_url="https://upstream.invalid/")
            )
        )
        return storage

    def test_provides_interface(self, storage: IStorage) -> None:
        assert verifyObject(IStorage, storage)

    # settings

    def test_settings(self, storage: IStorage) -> None:
        assert result(storage.get_setting("uuid")) is None
        result(storage.put_setting("uuid", "one"))
        result(storage.put_setting("uuid", "two"))
        result(storage.put_setting("secret", "s"))
        assert result(storage.get_setting("uuid")) == "two"
        assert result(storage.get_setting("secret")) == "s"

    # users

    def test_users(self, storage: IStorage) -> None:
        carol = User(name="carol", password_hash="h1", email="c@example.org", title="C")
        result(storage.put_user(carol))
        result(storage.put_user(User(name="alice")))
        assert result(storage.get_user("carol")) == carol
        assert result(storage.get_user("nobody")) is None
        assert [u.name for u in result(storage.list_users())] == ["alice", "carol"]

        changed = attrs.evolve(carol, password_hash="h2", email=None)
        result(storage.put_user(changed))
        assert result(storage.get_user("carol")) == changed

        assert result(storage.delete_user("carol")) == []
        assert result(storage.get_user("carol")) is None
        assert [u.name for u in result(storage.list_users())] == ["alice"]
        failure_of(storage.delete_user("carol"), NotFound)

    def test_delete_user_removes_their_indexes(self, stage: IStorage) -> None:
        mine = release_file("alice/dev", content=b"mine")
        shared = release_file("alice/dev", filename="foo_bar-2.0.tar.gz", content=b"shared")
        result(stage.put_index(index_config("alice", "other")))
        result(stage.add_release_file(mine, False))
        result(stage.add_release_file(shared, False))
        result(stage.add_release_file(attrs.evolve(shared, index="bob/prod"), False))

        assert result(stage.delete_user("alice")) == [mine.sha256]
        assert [c.key for c in result(stage.list_indexes())] == ["bob/prod"]
        assert result(stage.list_release_files("alice/dev")) == []
        assert len(result(stage.list_release_files("bob/prod"))) == 1

    # indexes

    def test_indexes(self, storage: IStorage) -> None:
        configs = [
            index_config("bob", "a"),
            index_config(
                "alice",
                "z",
                bases=("root/pypi", "bob/a"),
                acl_upload=("alice", ":ANONYMOUS:"),
                title="Zed",
                volatile=False,
            ),
            index_config(
                "alice",
                "b",
                type="mirror",
                mirror_url="https://upstream.invalid/simple/",
                mirror_cache_expiry=600,
            ),
        ]
        for config in configs:
            result(storage.put_index(config))
        listed = result(storage.list_indexes())
        assert [c.key for c in listed] == ["alice/b", "alice/z", "bob/a"]
        assert listed == sorted(configs, key=lambda c: (c.user, c.name))

        replaced = attrs.evolve(configs[1], bases=(), title=None)
        result(storage.put_index(replaced))
        assert replaced in result(storage.list_indexes())

        assert result(storage.delete_index("bob", "a")) == []
        assert [c.key for c in result(storage.list_indexes())] == ["alice/b", "alice/z"]
        failure_of(storage.delete_index("bob", "a"), NotFound)

    def test_replacing_an_index_keeps_its_files(self, stage: IStorage) -> None:
        rf = release_file()
        result(stage.add_release_file(rf, False))
        result(stage.put_index(index_config("alice", "dev", title="new title")))
        assert result(stage.list_release_files("alice/dev")) == [rf]

    def test_delete_index_removes_everything_it_had(self, stage: IStorage) -> None:
        result(stage.put_index(index_config("root", "pypi", type="mirror")))
        only_dev = release_file("alice/dev", content=b"a", metadata_sha256=sha(b"a-meta"))
        in_both = release_file("alice/dev", filename="foo_bar-1.0.zip", content=b"b")
        result(stage.add_release_file(only_dev, False))
        result(stage.add_release_file(in_both, False))
        # The other index holds the same bytes, as a mirror file it has cached.
        mf = mirror_file()
        result(stage.put_mirror_page(page_state([mf]), [mf]))
        result(
            stage.set_mirror_file_cached("root/pypi", mf.path_key, mf.filename, sha(b"b"), 1, "t")
        )

        removed = result(stage.delete_index("alice", "dev"))

        assert sorted(removed) == sorted([sha(b"a"), sha(b"a-meta")])
        assert result(stage.list_release_files("alice/dev")) == []
        assert result(stage.list_stage_projects("alice/dev")) == []
        assert (
            result(stage.get_release_file("alice/dev", only_dev.path_key, only_dev.filename))
            is None
        )
        # Recreating the index starts it empty.
        result(stage.put_index(index_config("alice", "dev")))
        assert result(stage.list_release_files("alice/dev")) == []

    def test_delete_mirror_index_removes_cache(self, mirror: IStorage) -> None:
        mf = mirror_file()
        result(mirror.put_mirror_page(page_state([mf]), [mf]))
        result(
            mirror.set_mirror_file_cached("root/pypi", mf.path_key, mf.filename, sha(b"x"), 1, "t")
        )
        result(mirror.set_mirror_file_metadata("root/pypi", mf.path_key, mf.filename, sha(b"m")))
        result(mirror.put_mirror_names("root/pypi", NameList.of(["foo"]), None, 1.0))

        assert sorted(result(mirror.delete_index("root", "pypi"))) == sorted([sha(b"x"), sha(b"m")])

        result(mirror.put_index(index_config("root", "pypi", type="mirror")))
        assert result(mirror.get_mirror_page("root/pypi", "foo")) is None
        assert result(mirror.list_mirror_pages("root/pypi")) == []
        assert result(mirror.get_mirror_file("root/pypi", mf.path_key, mf.filename)) is None
        assert result(mirror.get_mirror_names("root/pypi")) is None

    # stage files

    def test_add_release_file(self, stage: IStorage) -> None:
        rf = release_file(metadata={"summary": "Foo", "classifiers": ["A", "B"]}, uploader="alice")
        assert result(stage.add_release_file(rf, False)) is True
        assert result(stage.get_release_file("alice/dev", rf.path_key, rf.filename)) == rf

        # The same bytes again change nothing, even when other details differ.
        again = attrs.evolve(rf, uploader="bob")
        assert result(stage.add_release_file(again, False)) is False
        assert result(stage.add_release_file(again, True)) is False
        assert result(stage.list_release_files("alice/dev")) == [rf]

        other = release_file(content=b"other bytes")
        failure_of(stage.add_release_file(other, False), Conflict)
        assert result(stage.list_release_files("alice/dev")) == [rf]

        assert result(stage.add_release_file(other, True)) is True
        assert result(stage.list_release_files("alice/dev")) == [other]
        assert result(stage.get_release_file("alice/dev", rf.path_key, rf.filename)) is None
        assert result(stage.get_release_file("alice/dev", other.path_key, other.filename)) == other

    def test_unreferenced(self, stage: IStorage) -> None:
        old = release_file(content=b"old", metadata_sha256=sha(b"old-meta"))
        result(stage.add_release_file(old, False))
        result(stage.add_release_file(attrs.evolve(old, index="bob/prod"), False))
        new = release_file(content=b"new")
        result(stage.add_release_file(new, True))
        candidates = [old.sha256, sha(b"old-meta"), new.sha256, sha(b"never stored")]
        assert result(stage.unreferenced(candidates)) == [sha(b"never stored")]
        result(stage.delete_release_files("bob/prod", "foo-bar"))
        assert result(stage.unreferenced(iter(candidates))) == sorted(
            [old.sha256, sha(b"old-meta"), sha(b"never stored")]
        )
        assert result(stage.unreferenced([])) == []

    def test_add_release_file_to_unknown_index(self, stage: IStorage) -> None:
        failure_of(stage.add_release_file(release_file("alice/nope"), False), NotFound)
        assert result(stage.list_release_files("alice/nope")) == []

    def test_same_file_name_in_two_indexes(self, stage: IStorage) -> None:
        a = release_file("alice/dev", content=b"a")
        b = release_file("bob/prod", content=b"b")
        assert result(stage.add_release_file(a, False)) is True
        assert result(stage.add_release_file(b, False)) is True
        assert result(stage.list_release_files("alice/dev")) == [a]
        assert result(stage.list_release_files("bob/prod")) == [b]

    def test_list_release_files(self, stage: IStorage) -> None:
        files = [
            release_file(project="zed", filename="zed-1.0.tar.gz"),
            release_file(project="Foo_Bar", version="2.0"),
            release_file(project="foo-bar", version="1.0"),
            release_file(project="foo-bar", version="1.0", filename="foo_bar-1.0-py3-none-any.whl"),
        ]
        for rf in files:
            result(stage.add_release_file(rf, False))
        everything = result(stage.list_release_files("alice/dev"))
        assert sorted(everything, key=lambda rf: rf.filename) == sorted(
            files, key=lambda rf: rf.filename
        )
        # Grouped by project.
        assert [rf.project for rf in everything] == ["foo-bar", "foo-bar", "foo-bar", "zed"]
        foo = result(stage.list_release_files("alice/dev", "Foo.Bar"))
        assert {rf.filename for rf in foo} == {f.filename for f in files[1:]}
        assert result(stage.list_release_files("alice/dev", "nothing")) == []
        assert result(stage.list_stage_projects("alice/dev")) == ["foo-bar", "zed"]
        assert result(stage.list_stage_projects("bob/prod")) == []

    def test_get_release_file_needs_the_right_path_key(self, stage: IStorage) -> None:
        rf = release_file()
        result(stage.add_release_file(rf, False))
        assert result(stage.get_release_file("alice/dev", "000/0000000000000", rf.filename)) is None
        assert result(stage.get_release_file("bob/prod", rf.path_key, rf.filename)) is None

    def test_delete_release_files(self, stage: IStorage) -> None:
        v1 = release_file(version="1.0", content=b"1", metadata_sha256=sha(b"1-meta"))
        v1_whl = release_file(version="1.0", filename="foo_bar-1.0-py3-none-any.whl", content=b"w")
        v2 = release_file(version="2.0", content=b"2")
        elsewhere = release_file("bob/prod", content=b"1")  # same bytes as v1, other index
        for rf in (v1, v1_whl, v2, elsewhere):
            result(stage.add_release_file(rf, False))

        # One file by name: its blob is kept while another index's file has the same bytes.
        one = result(stage.delete_release_files("alice/dev", "foo-bar", filename=v1.filename))
        assert one == [sha(b"1-meta")]
        assert result(stage.list_release_files("alice/dev")) == [v1_whl, v2]
        failure_of(
            stage.delete_release_files("alice/dev", "foo-bar", filename=v1.filename), NotFound
        )

        removed = result(stage.delete_release_files("alice/dev", "Foo_Bar", "1.0"))
        assert removed == [sha(b"w")]
        assert result(stage.list_release_files("alice/dev")) == [v2]
        failure_of(stage.delete_release_files("alice/dev", "foo-bar", "1.0"), NotFound)

        assert result(stage.delete_release_files("alice/dev", "foo-bar")) == [sha(b"2")]
        failure_of(stage.delete_release_files("alice/dev", "foo-bar"), NotFound)
        assert result(stage.list_stage_projects("alice/dev")) == []
        assert result(stage.list_release_files("bob/prod")) == [elsewhere]

    def test_blob_shared_by_file_and_metadata_stays_referenced(self, stage: IStorage) -> None:
        # Odd but possible: one file's bytes are another's metadata.
        a = release_file(version="1.0", content=b"a", metadata_sha256=sha(b"b"))
        b = release_file(version="2.0", content=b"b")
        result(stage.add_release_file(a, False))
        result(stage.add_release_file(b, False))
        assert result(stage.delete_release_files("alice/dev", "foo-bar", "2.0")) == []
        assert sorted(result(stage.delete_release_files("alice/dev", "foo-bar"))) == sorted(
            [sha(b"a"), sha(b"b")]
        )

    def test_set_yanked(self, stage: IStorage) -> None:
        result(stage.add_release_file(release_file(version="1.0"), False))
        result(
            stage.add_release_file(
                release_file(version="1.0", filename="foo_bar-1.0-py3-none-any.whl"), False
            )
        )
        result(stage.add_release_file(release_file(version="2.0"), False))

        assert result(stage.set_yanked("alice/dev", "FOO.bar", "1.0", "broken")) == 2
        by_version = {
            rf.filename: rf.yanked for rf in result(stage.list_release_files("alice/dev"))
        }
        assert by_version == {
            "foo_bar-1.0.tar.gz": "broken",
            "foo_bar-1.0-py3-none-any.whl": "broken",
            "foo_bar-2.0.tar.gz": None,
        }
        assert result(stage.set_yanked("alice/dev", "foo-bar", "2.0", "")) == 1
        assert result(stage.set_yanked("alice/dev", "foo-bar", "1.0", None)) == 2
        assert {rf.yanked for rf in result(stage.list_release_files("alice/dev"))} == {None, ""}
        assert result(stage.set_yanked("alice/dev", "foo-bar", "3.0", "x")) == 0

    def test_stage_yanks(self, stage: IStorage) -> None:
        assert result(stage.list_stage_yanks("alice/dev")) == []
        result(stage.set_stage_yank("alice/dev", "Foo.Bar", "1.0", "broken"))
        result(stage.set_stage_yank("alice/dev", "foo-bar", "2.0", ""))
        result(stage.set_stage_yank("alice/dev", "foo-bar", "1.0", "really broken"))
        result(stage.set_stage_yank("bob/prod", "foo-bar", "1.0", "other stage"))
        assert result(stage.list_stage_yanks("alice/dev")) == [
            ("foo-bar", "1.0", "really broken"),
            ("foo-bar", "2.0", ""),
        ]
        result(stage.set_stage_yank("alice/dev", "foo-bar", "1.0", None))
        result(stage.set_stage_yank("alice/dev", "foo-bar", "9.0", None))
        assert result(stage.list_stage_yanks("alice/dev")) == [("foo-bar", "2.0", "")]
        failure_of(stage.set_stage_yank("nobody/x", "foo", "1.0", ""), NotFound)
        result(stage.delete_index("bob", "prod"))
        result(stage.put_index(index_config("bob", "prod")))
        assert result(stage.list_stage_yanks("bob/prod")) == [], "yanks go with their index"

    # mirror cache

    def test_mirror_page_roundtrip(self, mirror: IStorage) -> None:
        files = [mirror_file(filename="foo-1.0.tar.gz"), mirror_file(filename="foo-1.0.zip")]
        state = page_state(files)
        result(mirror.put_mirror_page(state, files))
        assert result(mirror.get_mirror_page("root/pypi", "foo")) == state
        assert result(mirror.get_mirror_page("root/pypi", "bar")) is None
        for f in files:
            assert result(mirror.get_mirror_file("root/pypi", f.path_key, f.filename)) == f
        assert result(mirror.get_mirror_file("root/pypi", files[0].path_key, "x.zip")) is None

    def test_missing_mirror_page(self, mirror: IStorage) -> None:
        state = MirrorPageState(index="root/pypi", project="gone", status="missing", fetched_at=5.0)
        result(mirror.put_mirror_page(state, []))
        assert result(mirror.get_mirror_page("root/pypi", "gone")) == state

    def test_mirror_page_replaced(self, mirror: IStorage) -> None:
        f1 = mirror_file(filename="foo-1.0.tar.gz")
        f2 = mirror_file(filename="foo-2.0.tar.gz")
        result(mirror.put_mirror_page(page_state([f1]), [f1]))
        newer = page_state([f1, f2], fetched_at=2000.0, etag='"v2"', serial=9)
        result(mirror.put_mirror_page(newer, [f1, f2]))
        assert result(mirror.get_mirror_page("root/pypi", "foo")) == newer

    def test_put_mirror_page_to_unknown_index(self, mirror: IStorage) -> None:
        f = mirror_file(index="root/nope")
        failure_of(mirror.put_mirror_page(page_state([f], index="root/nope"), [f]), NotFound)
        assert result(mirror.get_mirror_page("root/nope", "foo")) is None
        assert result(mirror.get_mirror_file("root/nope", f.path_key, f.filename)) is None

    def test_touch_and_list_mirror_pages(self, mirror: IStorage) -> None:
        for project, when in (("foo", 10.0), ("bar", 20.0)):
            f = mirror_file(project=project, filename=f"{project}-1.0.tar.gz")
            result(mirror.put_mirror_page(page_state([f], project=project, fetched_at=when), [f]))
        assert result(mirror.list_mirror_pages("root/pypi")) == [("bar", 20.0), ("foo", 10.0)]

        result(mirror.touch_mirror_page("root/pypi", "foo", 30.0))
        state = result(mirror.get_mirror_page("root/pypi", "foo"))
        assert state is not None and state.fetched_at == 30.0 and state.etag == '"v1"'
        assert result(mirror.list_mirror_pages("root/pypi")) == [("bar", 20.0), ("foo", 30.0)]
        failure_of(mirror.touch_mirror_page("root/pypi", "baz", 30.0), NotFound)
        assert result(mirror.list_mirror_pages("root/other")) == []

    def test_uncache_mirror_files(self, mirror: IStorage) -> None:
        whl = mirror_file(filename="foo-1.0-py3-none-any.whl")
        sdist = mirror_file(filename="foo-1.0.tar.gz")
        other = mirror_file(filename="foo-2.0.tar.gz")
        files = [whl, sdist, other]
        result(mirror.put_mirror_page(page_state(files), files))
        for f, content in ((whl, b"w"), (sdist, b"shared"), (other, b"shared")):
            result(
                mirror.set_mirror_file_cached(
                    "root/pypi", f.path_key, f.filename, sha(content), 1, "t"
                )
            )
        result(mirror.set_mirror_file_metadata("root/pypi", whl.path_key, whl.filename, sha(b"m")))

        # The bytes of the shared blob are still used by foo-2.0.tar.gz.
        dropped = result(
            mirror.uncache_mirror_files("root/pypi", "foo", [whl.filename, sdist.filename])
        )
        assert sorted(dropped) == sorted([sha(b"w"), sha(b"m")])
        kept = result(mirror.get_mirror_file("root/pypi", whl.path_key, whl.filename))
        assert kept is not None and kept.cached_sha256 is None and kept.metadata_sha256 is None
        assert result(mirror.get_mirror_page("root/pypi", "foo")) is not None

        assert result(mirror.uncache_mirror_files("root/pypi", "foo")) == [sha(b"shared")]
        assert result(mirror.get_mirror_page("root/pypi", "foo")) is None
        assert result(mirror.uncache_mirror_files("root/pypi", "nothing")) == []

    def test_mirror_file_upsert_keeps_cached_state(self, mirror: IStorage) -> None:
        f = mirror_file(size=None, upload_time="2020-01-01T00:00:00.000000Z")
        result(mirror.put_mirror_page(page_state([f]), [f]))
        key = ("root/pypi", f.path_key, f.filename)
        result(mirror.set_mirror_file_cached(*key, sha(b"bytes"), 5, "2026-01-01T00:00:00Z"))
        result(mirror.set_mirror_file_metadata(*key, sha(b"meta")))
        cached = result(mirror.get_mirror_file(*key))
        assert cached == attrs.evolve(
            f, cached_sha256=sha(b"bytes"), size=5, metadata_sha256=sha(b"meta")
        )

        # The upstream lists the file again, with a new URL and other details.
        relisted = attrs.evolve(
            f, url="https://upstream.invalid/moved/foo-1.0.tar.gz", size=99, upload_time=None
        )
        other = mirror_file(filename="foo-2.0.tar.gz")
        result(mirror.put_mirror_page(page_state([relisted, other]), [relisted, other]))
        assert result(mirror.get_mirror_file(*key)) == attrs.evolve(cached, url=relisted.url)
        assert result(mirror.get_mirror_file("root/pypi", other.path_key, other.filename)) == other

        # Dropped from the page: still known, so old links keep working.
        result(mirror.put_mirror_page(page_state([other]), [other]))
        assert result(mirror.get_mirror_file(*key)) == attrs.evolve(cached, url=relisted.url)

    def test_mirror_file_first_seen_time(self, mirror: IStorage) -> None:
        f = mirror_file(upload_time=None, size=None)
        result(mirror.put_mirror_page(page_state([f]), [f]))
        key = ("root/pypi", f.path_key, f.filename)
        result(mirror.set_mirror_file_cached(*key, sha(b"x"), 1, "2026-01-01T00:00:00.000000Z"))
        first = result(mirror.get_mirror_file(*key))
        assert first is not None and first.upload_time == "2026-01-01T00:00:00.000000Z"
        # A later upstream time does not replace it.
        later = attrs.evolve(f, upload_time="2027-01-01T00:00:00.000000Z")
        result(mirror.put_mirror_page(page_state([later]), [later]))
        assert result(mirror.get_mirror_file(*key)) == first

    def test_set_mirror_file_state_of_unknown_file(self, mirror: IStorage) -> None:
        failure_of(
            mirror.set_mirror_file_cached(
                "root/pypi", "abc/0123456789abc", "x.whl", "0" * 64, 1, "t"
            ),
            NotFound,
        )
        failure_of(
            mirror.set_mirror_file_metadata("root/pypi", "abc/0123456789abc", "x.whl", "0" * 64),
            NotFound,
        )

    def test_mirror_names(self, mirror: IStorage) -> None:
        assert result(mirror.get_mirror_names("root/pypi")) is None
        names = NameList.of(["zed", "a", "b-c", "Ünïcode"])
        result(mirror.put_mirror_names("root/pypi", names, '"e1"', 10.0))
        found = result(mirror.get_mirror_names("root/pypi"))
        assert found == (names, '"e1"', 10.0)
        assert list(found[0]) == ["a", "b-c", "zed", "Ünïcode"]
        result(mirror.put_mirror_names("root/pypi", NameList(), None, 11.0))
        found = result(mirror.get_mirror_names("root/pypi"))
        assert found == (NameList(), None, 11.0) and list(found[0]) == []
        failure_of(mirror.put_mirror_names("root/nope", names, None, 1.0), NotFound)

    def test_a_million_mirror_names(self, mirror: IStorage) -> None:
        names = sorted(f"project-{i}" for i in range(1_000_000))
        result(mirror.put_mirror_names("root/pypi", NameList.of(names), '"big"', 12.5))
        found = result(mirror.get_mirror_names("root/pypi"))
        assert found is not None
        assert list(found[0]) == names and len(found[0]) == len(names)
        assert found[1:] == ('"big"', 12.5)

    def test_closed_storage_refuses(self, storage: IStorage) -> None:
        result(storage.close())
        failure_of(storage.get_setting("x"), StorageError)
        failure_of(storage.put_setting("x", "y"), StorageError)
        result(storage.close())


class TestMemoryStorage(IStorageTestsMixin):
    def make_storage(self, directory: Path) -> IStorage:
        return MemoryStorage()


def open_sqlite(path: Path) -> SQLiteStorage:
    return result(SQLiteStorage.open(str(path), runner=run_synchronously))


class TestSQLiteStorage(IStorageTestsMixin):
    def make_storage(self, directory: Path) -> IStorage:
        return open_sqlite(directory / "pkgmirror.sqlite")

    def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        path = tmp_path / "db.sqlite"
        storage = result(SQLiteStorage.open(FilePath(str(path)), runner=run_synchronously))
        result(storage.put_user(User(name="alice")))
        result(storage.put_index(index_config("alice", "dev")))
        result(storage.add_release_file(release_file(), False))
        result(storage.close())

        again = open_sqlite(path)
        assert result(again.get_user("alice")) == User(name="alice")
        assert result(again.list_release_files("alice/dev")) == [release_file()]
        assert result(again.get_setting("schema_version")) == str(len(sqlite_module.MIGRATIONS))
        result(again.close())

    def test_wal_and_foreign_keys(self, tmp_path: Path) -> None:
        path = tmp_path / "db.sqlite"
        result(open_sqlite(path).close())
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()

    def test_refuses_a_newer_schema(self, tmp_path: Path) -> None:
        path = tmp_path / "db.sqlite"
        storage = open_sqlite(path)
        result(storage.put_setting("schema_version", str(len(sqlite_module.MIGRATIONS) + 1)))
        result(storage.close())
        failure = failure_of(SQLiteStorage.open(str(path), runner=run_synchronously), SchemaTooNew)
        assert "newer" in str(failure.value)

    def test_migrations_run_in_order_from_the_stored_version(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "db.sqlite"
        storage = open_sqlite(path)
        result(storage.put_setting("kept", "yes"))
        result(storage.close())

        monkeypatch.setattr(
            sqlite_module,
            "MIGRATIONS",
            [
                *sqlite_module.MIGRATIONS,
                "INSERT INTO settings (key, value) VALUES ('step', 'a');",
                "UPDATE settings SET value = value || 'b' WHERE key = 'step';",
            ],
        )
        storage = open_sqlite(path)
        assert result(storage.get_setting("kept")) == "yes"
        assert result(storage.get_setting("step")) == "ab"
        assert result(storage.get_setting("schema_version")) == str(len(sqlite_module.MIGRATIONS))
        result(storage.close())
        # Nothing runs twice.
        storage = open_sqlite(path)
        assert result(storage.get_setting("step")) == "ab"
        result(storage.close())

    def test_a_failed_migration_changes_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "db.sqlite"
        result(open_sqlite(path).close())
        version = str(len(sqlite_module.MIGRATIONS))
        monkeypatch.setattr(
            sqlite_module,
            "MIGRATIONS",
            [
                *sqlite_module.MIGRATIONS,
                "INSERT INTO settings (key, value) VALUES ('half', 'done'); NOT SQL;",
            ],
        )
        failure_of(SQLiteStorage.open(str(path), runner=run_synchronously), sqlite3.Error)
        monkeypatch.undo()
        storage = open_sqlite(path)
        assert result(storage.get_setting("half")) is None
        assert result(storage.get_setting("schema_version")) == version
        result(storage.close())

    def test_runs_in_its_own_thread(self, tmp_path: Path) -> None:
        reactor = ThreadedReactor()
        storage = reactor.wait(
            SQLiteStorage.open(
                FilePath(str(tmp_path / "db.sqlite")), reactor=cast(IReactorFromThreads, reactor)
            )
        )
        try:
            callers: list[str] = []
            reactor.wait(storage.put_user(User(name="alice")))
            assert reactor.wait(storage.get_user("alice")) == User(name="alice")
            # Work goes to the storage's own thread, not the caller's or a shared pool.
            runner = storage._run
            reactor.wait(runner(lambda: callers.append(threading.current_thread().name)))
            assert "pkgmirror-sqlite" in callers[0]
        finally:
            reactor.wait(storage.close())
        # The thread is gone, so it cannot keep the process alive.
        assert not any("pkgmirror-sqlite" in t.name for t in threading.enumerate())


class ThreadedReactor:
    """Just enough reactor for deferToThreadPool: results are run when the test waits."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[..., object], tuple[object, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self._calls.put((f, args))

    def wait(self, d: Deferred[T], timeout: float = 30.0) -> T:
        box: list[T | Failure] = []
        d.addBoth(box.append)
        deadline = time.monotonic() + timeout
        while not box:
            f, args = self._calls.get(timeout=max(0.0, deadline - time.monotonic()))
            f(*args)
        value = box[0]
        if isinstance(value, Failure):
            value.raiseException()
        return cast(T, value)


def test_stored_values_ignore_keys_they_do_not_know() -> None:
    """A database written by a newer pkgmirror, with more fields, still reads."""
    config = index_config("alice", "dev", bases=("root/pypi",), acl_upload=("alice",))
    data = json.loads(codec.index_config_to_json(config))
    data["added_in_a_later_version"] = [1, 2]
    assert codec.index_config_from_json(json.dumps(data)) == config

    state = page_state([mirror_file()])
    assert state.page is not None
    page = json.loads(codec.page_to_json(state.page))
    page["new_page_field"] = True
    page["links"][0]["new_link_field"] = "x"
    assert codec.page_from_json(json.dumps(page)) == state.page


# --- blob stores ----------------------------------------------------------------------------


class IBlobStoreTestsMixin:
    """
    Behaviour every IBlobStore has. Concrete classes provide ``make_store(directory)``, which
    returns an empty store keeping any files under ``directory``.
    """

    def make_store(self, directory: Path) -> IBlobStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> IBlobStore:
        return self.make_store(tmp_path)

    def test_provides_interface(self, store: IBlobStore) -> None:
        assert verifyObject(IBlobStore, store)
        spool = store.new_spool()
        assert verifyObject(ISpool, spool)
        spool.abort()

    def test_spool_commit(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.write(b"hello ")
        assert spool.size == 6
        assert spool.hexdigest() == sha(b"hello ")
        assert not result(store.has(sha(b"hello ")))
        spool.write(b"world")
        digest = sha(b"hello world")
        assert spool.size == 11 and spool.hexdigest() == digest
        assert not result(store.has(digest))

        assert result(spool.commit(digest)) == digest
        assert result(store.has(digest))
        assert result(store.read(digest)) == b"hello world"
        assert result(store.size(digest)) == 11
        local = store.local_path(digest)
        assert local is None or cast(FilePath[str], local).getContent() == b"hello world"
        spool.abort()  # harmless after commit
        assert result(store.has(digest))

    def test_spool_commit_without_expectation(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.write(b"x" * 100_000)
        assert result(spool.commit()) == sha(b"x" * 100_000)
        assert result(store.size(sha(b"x" * 100_000))) == 100_000

    def test_spool_hash_mismatch(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.write(b"evil")
        failure = failure_of(spool.commit(sha(b"good")), ValueError)
        assert "mismatch" in str(failure.value)
        assert not result(store.has(sha(b"evil")))
        assert not result(store.has(sha(b"good")))

    def test_spool_abort(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.write(b"partial")
        spool.abort()
        spool.abort()
        assert not result(store.has(sha(b"partial")))
        failure_of(spool.commit(), ValueError)
        with pytest.raises(ValueError):
            spool.write(b"more")

    def test_committing_twice_fails(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.write(b"once")
        result(spool.commit())
        failure_of(spool.commit(), ValueError)
        with pytest.raises(ValueError):
            spool.write(b"more")

    def test_commit_of_a_blob_already_there(self, store: IBlobStore) -> None:
        assert result(store.put_bytes(b"same")) == sha(b"same")
        spool = store.new_spool()
        spool.write(b"same")
        assert result(spool.commit(sha(b"same").upper())) == sha(b"same")
        assert result(store.read(sha(b"same"))) == b"same"

    def test_concurrent_spools(self, store: IBlobStore) -> None:
        a, b = store.new_spool(), store.new_spool()
        a.write(b"a")
        b.write(b"b")
        a.write(b"a")
        assert result(b.commit()) == sha(b"b")
        assert result(a.commit()) == sha(b"aa")
        assert result(store.read(sha(b"aa"))) == b"aa"

    def test_put_bytes_read_delete(self, store: IBlobStore) -> None:
        digest = result(store.put_bytes(b"Metadata-Version: 2.1\n"))
        assert digest == sha(b"Metadata-Version: 2.1\n")
        assert result(store.read(digest)) == b"Metadata-Version: 2.1\n"
        assert result(store.put_bytes(b"Metadata-Version: 2.1\n")) == digest
        result(store.delete(digest))
        assert not result(store.has(digest))
        assert result(store.size(digest)) is None
        assert store.local_path(digest) is None
        failure_of(store.read(digest), NotFound)
        result(store.delete(digest))

    def test_empty_blob(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        assert result(spool.commit()) == sha(b"")
        assert result(store.read(sha(b""))) == b""
        assert result(store.size(sha(b""))) == 0

    @pytest.mark.parametrize("name", ["../../etc/passwd", "", "AB" * 32, "zz" * 32, "a" * 63])
    def test_malformed_names_name_nothing(self, store: IBlobStore, name: str) -> None:
        assert not result(store.has(name))
        assert result(store.size(name)) is None
        assert store.local_path(name) is None
        failure_of(store.read(name), NotFound)
        result(store.delete(name))

    def test_discard_stale_spools_keeps_live_ones(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.write(b"still arriving")
        assert result(store.discard_stale_spools()) == 0
        spool.write(b"!")
        assert result(spool.commit()) == sha(b"still arriving!")

    def test_list_prefix_names_the_stored_blobs_in_256_steps(self, store: IBlobStore) -> None:
        names = {result(store.put_bytes(f"blob {i}".encode())) for i in range(300)}
        spool = store.new_spool()
        spool.write(b"not committed: not listed")
        listed = [result(store.list_prefix(f"{i:02x}")) for i in range(256)]
        assert all(step == sorted(step) for step in listed)
        assert [n for step in listed for n in step] == sorted(names)
        for bad in ("", "a", "abc", "AB", "zz", "../"):
            failure_of(store.list_prefix(bad), ValueError)
        spool.abort()

    def test_appended_bytes_are_read_back_and_committed(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        assert verifyObject(ISpool, spool)
        reader = spool.reader()
        assert reader is not None and verifyObject(ISpoolReader, reader)
        for part in (b"wheel ", b"bytes ", b"arriving"):
            spool.append(part)
        assert spool.size == 20
        assert result(reader.read(6, 6)) == b"bytes "
        result(spool.flush())
        assert spool.hexdigest() == sha(b"wheel bytes arriving")
        assert result(spool.commit()) == sha(b"wheel bytes arriving")
        # A follower still catching up reads on after the commit; new ones read the blob.
        assert result(reader.read(12, 8)) == b"arriving"
        reader.close()
        assert spool.reader() is None
        assert result(store.read(sha(b"wheel bytes arriving"))) == b"wheel bytes arriving"

    def test_a_reader_gets_only_what_the_spool_holds(self, store: IBlobStore) -> None:
        spool = store.new_spool()
        spool.append(b"short")
        reader = spool.reader()
        assert reader is not None
        failure_of(reader.read(3, 10), ValueError)
        spool.abort()
        assert spool.reader() is None
        with pytest.raises(ValueError):
            spool.append(b"more")


class TestMemoryBlobStore(IBlobStoreTestsMixin):
    def make_store(self, directory: Path) -> IBlobStore:
        return MemoryBlobStore()


def file_store(root: Path) -> FileBlobStore:
    return FileBlobStore(FilePath(str(root)), runner=run_synchronously)


class TestFileBlobStore(IBlobStoreTestsMixin):
    def make_store(self, directory: Path) -> IBlobStore:
        return file_store(directory / "blobs")

    def test_layout(self, tmp_path: Path) -> None:
        store = file_store(tmp_path)
        spool = store.new_spool()
        assert spool.path.parent() == FilePath(str(tmp_path / "tmp"))
        spool.write(b"layout")
        digest = result(spool.commit())
        expected = tmp_path / digest[:2] / digest[2:4] / digest
        assert expected.read_bytes() == b"layout"
        assert store.local_path(digest) == FilePath(str(expected))
        assert os.listdir(tmp_path / "tmp") == []

    def test_spool_path_grows_while_writing(self, tmp_path: Path) -> None:
        store = file_store(tmp_path)
        spool = store.new_spool()
        spool.write(b"first part ")
        assert spool.path.getContent() == b"first part "
        spool.write(b"second part")
        assert spool.path.getContent() == b"first part second part"
        result(spool.commit())
        assert not os.path.exists(spool.path.path)

        aborted = store.new_spool()
        aborted.write(b"x")
        aborted.abort()
        assert not os.path.exists(aborted.path.path)

    def test_list_prefix_lists_only_blobs_where_their_name_puts_them(self, tmp_path: Path) -> None:
        store = file_store(tmp_path)
        name = result(store.put_bytes(b"a blob"))
        folder = tmp_path / name[:2] / name[2:4]
        (folder / "notes.txt").write_text("not a blob")
        misplaced = name[:2] + "00" + name[4:] if name[2:4] != "00" else name[:2] + "11" + name[4:]
        (folder / misplaced).write_bytes(b"a blob under the wrong folder")
        assert result(store.list_prefix(name[:2])) == [name]

    def test_appends_are_written_off_the_callers_thread_in_order(self, tmp_path: Path) -> None:
        jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

        def later(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            jobs.append((f, args, d))
            return d

        def run_jobs() -> None:
            while jobs:
                f, args, d = jobs.pop(0)
                d.callback(f(*args))

        store = FileBlobStore(FilePath(str(tmp_path)), runner=later)
        spool = store.new_spool()
        assert spool.append(b"a" * 1000) is True
        spool.append(b"b" * 1000)
        # Nothing touched the disk in the caller's thread; the digest is not known yet.
        assert spool.path.getContent() == b""
        with pytest.raises(ValueError):
            spool.hexdigest()
        flushed = spool.flush()
        run_jobs()
        assert result(flushed) is None
        assert spool.path.getContent() == b"a" * 1000 + b"b" * 1000
        assert len(spool.path.getContent()) == spool.size

        # A backlog past the high-water mark asks the source to pause until it drains.
        drained: list[bool] = []
        big = b"x" * (1024 * 1024)
        answers = [spool.append(big) for _ in range(10)]
        assert answers[-1] is False
        spool.when_drained(lambda: drained.append(True))
        assert drained == []
        run_jobs()
        assert drained == [True]
        committed = spool.commit()
        run_jobs()
        assert result(committed) == sha(b"a" * 1000 + b"b" * 1000 + big * 10)

    def test_a_failed_write_fails_the_spool(self, tmp_path: Path) -> None:
        store = file_store(tmp_path)
        spool = store.new_spool()
        spool._file.close()  # the disk is gone, say
        spool.append(b"lost")
        failure_of(spool.flush(), ValueError, OSError)
        with pytest.raises(ValueError, match="could not be written"):
            spool.append(b"more")
        failure_of(spool.commit(), ValueError, OSError)
        assert os.listdir(tmp_path / "tmp") == []

    def test_mismatch_leaves_no_file(self, tmp_path: Path) -> None:
        store = file_store(tmp_path)
        spool = store.new_spool()
        spool.write(b"evil")
        failure_of(spool.commit(sha(b"good")), ValueError)
        assert os.listdir(tmp_path / "tmp") == []
        assert sorted(os.listdir(tmp_path)) == ["tmp"]

    def test_failed_commit_leaves_no_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = file_store(tmp_path)
        spool = store.new_spool()
        spool.write(b"no room")

        def disk_full(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", disk_full)
        failure_of(spool.commit(), OSError)
        monkeypatch.undo()
        assert os.listdir(tmp_path / "tmp") == []
        assert not result(store.has(sha(b"no room")))

    def test_crash_leaves_spools_that_are_discarded(self, tmp_path: Path) -> None:
        before_crash = file_store(tmp_path)
        spool = before_crash.new_spool()
        spool.write(b"half a download")
        leftover = spool.path.path
        # A new process opens the same directory; the spool object is gone with the old one.
        after = file_store(tmp_path)
        assert os.path.exists(leftover)
        assert not result(after.has(sha(b"half a download")))
        assert result(after.discard_stale_spools()) == 1
        assert not os.path.exists(leftover)
        assert os.listdir(tmp_path / "tmp") == []
        assert not result(after.has(sha(b"half a download")))
        assert result(after.discard_stale_spools()) == 0

    def test_with_a_real_thread_pool(self, tmp_path: Path) -> None:
        reactor = ThreadedReactor()
        pool = ThreadPool(1, 2, name="test-blobs")
        pool.start()
        try:
            store = FileBlobStore(
                FilePath(str(tmp_path)), reactor=cast(IReactorFromThreads, reactor), threadpool=pool
            )
            spool = store.new_spool()
            spool.write(b"threaded")
            assert reactor.wait(spool.commit(sha(b"threaded"))) == sha(b"threaded")
            assert reactor.wait(store.read(sha(b"threaded"))) == b"threaded"
            with pytest.raises(ValueError):
                bad = store.new_spool()
                bad.write(b"x")
                reactor.wait(bad.commit(sha(b"y")))
            assert os.listdir(tmp_path / "tmp") == []
        finally:
            pool.stop()


# --- the fake and the real storage agree ------------------------------------------------------

_INDEXES = ("alice/dev", "bob/prod")
_CONTENTS = (b"a", b"b", b"c")
_FILES = ("foo-1.0.tar.gz", "foo-2.0.tar.gz", "bar-1.0.tar.gz")


def _outcome(d: object) -> tuple[str, object]:
    """A Deferred's result, or the kind of its failure, for comparing two storages."""
    assert isinstance(d, Deferred)
    box: list[object] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        return ("failed", box[0].type)
    return ("ok", box[0])


class StorageAgreement(RuleBasedStateMachine):
    """Random operations on MemoryStorage and SQLiteStorage give the same answers."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryStorage()
        self.sqlite = open_sqlite(Path(":memory:"))
        self.both: tuple[IStorage, IStorage] = (self.memory, self.sqlite)
        self.same("put_user", User(name="alice"))
        self.same("put_user", User(name="bob"))
        for key in _INDEXES:
            user, name = key.split("/")
            self.same("put_index", index_config(user, name))

    def same(self, method: str, *args: object) -> object:
        """Calls ``method`` on both storages; both give the same result or the same failure."""
        memory, real = (_outcome(getattr(s, method)(*args)) for s in self.both)
        assert memory == real, (method, args)
        return memory

    def teardown(self) -> None:
        result(self.sqlite.close())

    @rule(
        index=st.sampled_from(_INDEXES),
        filename=st.sampled_from(_FILES),
        content=st.sampled_from(_CONTENTS),
        meta=st.sampled_from((None, *_CONTENTS)),
        overwrite=st.booleans(),
    )
    def add(
        self, index: str, filename: str, content: bytes, meta: bytes | None, overwrite: bool
    ) -> None:
        project, version = filename.removesuffix(".tar.gz").split("-")
        rf = release_file(
            index,
            project,
            version,
            filename,
            content,
            metadata_sha256=None if meta is None else sha(meta),
        )
        self.same("add_release_file", rf, overwrite)

    @rule(
        index=st.sampled_from(_INDEXES),
        project=st.sampled_from(("foo", "bar")),
        version=st.sampled_from((None, "1.0", "2.0")),
        filename=st.sampled_from((None, *_FILES)),
    )
    def delete_files(
        self, index: str, project: str, version: str | None, filename: str | None
    ) -> None:
        self.same("delete_release_files", index, project, version, filename)

    @rule(
        index=st.sampled_from(_INDEXES),
        version=st.sampled_from(("1.0", "2.0")),
        reason=st.sampled_from((None, "", "bad")),
    )
    def yank(self, index: str, version: str, reason: str | None) -> None:
        self.same("set_yanked", index, "foo", version, reason)

    @rule(
        index=st.sampled_from(_INDEXES),
        filenames=st.lists(st.sampled_from(_FILES), unique=True),
        upload_time=st.sampled_from((None, "t1", "t2")),
        when=st.floats(0, 1e9),
    )
    def put_page(
        self, index: str, filenames: list[str], upload_time: str | None, when: float
    ) -> None:
        files = [mirror_file(index, "foo", f, upload_time=upload_time) for f in filenames]
        state = page_state(files, index=index, fetched_at=when)
        self.same("put_mirror_page", state, files)

    @rule(
        index=st.sampled_from(_INDEXES),
        filename=st.sampled_from(_FILES),
        content=st.sampled_from(_CONTENTS),
        metadata=st.booleans(),
    )
    def cache_file(self, index: str, filename: str, content: bytes, metadata: bool) -> None:
        f = mirror_file(index, "foo", filename)
        if metadata:
            self.same("set_mirror_file_metadata", index, f.path_key, filename, sha(content))
        else:
            args = (index, f.path_key, filename, sha(content), len(content), "t0")
            self.same("set_mirror_file_cached", *args)

    @rule(index=st.sampled_from(_INDEXES))
    def delete_and_recreate_index(self, index: str) -> None:
        user, name = index.split("/")
        self.same("delete_index", user, name)
        self.same("put_index", index_config(user, name))

    @invariant()
    def same_contents(self) -> None:
        for index in _INDEXES:
            self.same("list_release_files", index)
            self.same("list_stage_projects", index)
            self.same("list_mirror_pages", index)
            self.same("get_mirror_page", index, "foo")
            self.same("unreferenced", [sha(c) for c in _CONTENTS])
            for filename in _FILES:
                f = mirror_file(index, "foo", filename)
                self.same("get_mirror_file", index, f.path_key, f.filename)


StorageAgreement.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
TestStorageAgreement = StorageAgreement.TestCase
