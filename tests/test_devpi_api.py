"""
devpi's JSON API in memory: the resource tree over MemoryStorage, driven with StubTreq and a
Clock. Rules devpi-client relies on: who may change what, PUSH, login slow-down, redirects.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from pkgmirror import auth
from pkgmirror.model import IndexConfig, ReleaseFile, User
from pkgmirror.server import Server
from pkgmirror.testing.memory import MemoryBlobStore, MemoryStorage
from pkgmirror.web.root import Root

BASE = "http://127.0.0.1:3141/"
# Cheap hashes: these tests are about the rules, not the KDF's cost.
FAST_N = 2**4


def _run(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "did not fire synchronously"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


@attrs.define
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@attrs.define
class App:
    server: Server
    clock: Clock
    stub: StubTreq

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        basic: tuple[str, str] | None = None,
        token: tuple[str, str] | None = None,
        flush: bool = True,
    ) -> Deferred[Any]:
        headers = {"Accept": ["application/json"], "Content-Type": ["application/json"]}
        if basic is not None:
            value = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers["Authorization"] = [f"Basic {value}"]
        if token is not None:
            value = base64.b64encode(f"{token[0]}:{token[1]}".encode()).decode()
            headers["X-Devpi-Auth"] = [value]
        data = None if body is None else json.dumps(body).encode()
        d = self.stub.request(
            method, BASE + path, data=data, headers=headers, allow_redirects=False
        )
        if flush:
            self.stub.flush()
        return d

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        response = _run(self.request(method, path, body, **kw))
        raw = _run(self._content(response))
        headers = {
            k.decode().lower(): v[-1].decode() for k, v in response.headers.getAllRawHeaders()
        }
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return Reply(response.code, headers, parsed)

    def _content(self, response: Any) -> Deferred[bytes]:
        d: Deferred[bytes] = response.content()
        self.stub.flush()
        return d


@pytest.fixture
def app() -> App:
    storage = MemoryStorage()
    blobs = MemoryBlobStore()
    clock = Clock()
    for name, password in (("root", "rootpw"), ("alice", "alicepw"), ("bob", "bobpw")):
        user = User(name=name, password_hash=auth.hash_password(password, n=FAST_N))
        _run(storage.put_user(user))
    for config in (
        IndexConfig(user="root", name="src", acl_upload=("root",)),
        IndexConfig(user="root", name="dst", acl_upload=("root",)),
        IndexConfig(user="root", name="frozen", volatile=False, acl_upload=("root",)),
        IndexConfig(user="alice", name="dev", acl_upload=("alice",)),
        IndexConfig(user="root", name="mirror", type="mirror", mirror_url="http://127.0.0.1:9/"),
    ):
        _run(storage.put_index(config))
    server = Server(storage, blobs, clock, None, lambda f: succeed(f()))
    _run(Deferred.fromCoroutine(server.load()))
    return App(server, clock, StubTreq(Root(server)))


def add_file(app: App, index: str, filename: str, data: bytes, version: str = "0.1") -> str:
    sha = _run(app.server.blobs.put_bytes(data))
    release = ReleaseFile(
        index=index,
        project="demo-pkg",
        version=version,
        filename=filename,
        sha256=sha,
        size=len(data),
        upload_time="2026-01-01T00:00:00Z",
        uploader="root",
    )
    _run(app.server.storage.add_release_file(release, overwrite=True))
    app.server.release_files_changed(index, "demo-pkg", True)
    return str(sha)


def push(app: App, source: str, target: str, **kw: Any) -> Reply:
    body = {"name": "demo-pkg", "version": "0.1", "targetindex": target}
    return app.call("PUSH", source, body, **kw)


ROOT = ("root", "rootpw")


def test_push_copies_a_release_without_copying_bytes(app: App) -> None:
    sha = add_file(app, "root/src", "demo_pkg-0.1-py3-none-any.whl", b"wheel")
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"sdist")
    add_file(app, "root/src", "demo_pkg-0.2.tar.gz", b"newer", version="0.2")
    reply = push(app, "root/src", "root/dst", basic=ROOT)
    assert reply.status == 200, reply.body
    assert reply.body["type"] == "actionlog"
    log = reply.body["result"]
    assert log[0] == [200, "register", "demo-pkg", "0.1", "->", "root/dst"]
    assert [entry[1] for entry in log[1:]] == ["store_releasefile"] * 2
    assert log[1][2] == f"root/dst/+f/{sha[:3]}/{sha[3:16]}/demo_pkg-0.1-py3-none-any.whl"

    listed = app.call("GET", "root/dst/demo-pkg", basic=ROOT).body["result"]
    assert list(listed) == ["0.1"]
    hrefs = sorted(link["href"] for link in listed["0.1"]["+links"])
    assert all(h.startswith(BASE + "root/dst/+f/") for h in hrefs)
    assert len(app.server.blobs.blobs) == 3  # type: ignore[attr-defined]

    # Deleting the original leaves the pushed copy whole.
    assert app.call("DELETE", "root/src/demo-pkg/0.1", basic=ROOT).status == 200
    assert sha in app.server.blobs.blobs  # type: ignore[attr-defined]


def test_push_to_the_same_index_slash_url(app: App) -> None:
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"sdist")
    body = {"name": "demo-pkg", "version": "0.1", "targetindex": "root/dst"}
    assert app.call("PUSH", "root/src/", body, basic=ROOT).status == 200


def test_push_into_a_non_volatile_index_never_replaces(app: App) -> None:
    add_file(app, "root/frozen", "demo_pkg-0.1.tar.gz", b"released")
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"different")
    reply = push(app, "root/src", "root/frozen", basic=ROOT)
    assert reply.status == 409
    assert "already exists in non-volatile index" in reply.body["message"]
    files = _run(app.server.storage.list_release_files("root/frozen"))
    assert [f.sha256 for f in files] == [hashlib.sha256(b"released").hexdigest()]


def test_push_over_a_volatile_file_drops_the_old_bytes(app: App) -> None:
    old = add_file(app, "root/dst", "demo_pkg-0.1.tar.gz", b"old")
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"new")
    assert push(app, "root/src", "root/dst", basic=ROOT).status == 200
    assert old not in app.server.blobs.blobs  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("credentials", "target", "status", "message"),
    [
        (None, "root/dst", 401, "authentication required"),
        (("alice", "alicepw"), "root/dst", 403, "may not upload to root/dst"),
        (ROOT, "root/mirror", 400, "mirror"),
        (ROOT, "root/nope", 404, "does not exist"),
        (ROOT, "nonsense", 400, "user/index"),
    ],
)
def test_push_refusals(
    app: App, credentials: tuple[str, str] | None, target: str, status: int, message: str
) -> None:
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"sdist")
    reply = push(app, "root/src", target, basic=credentials)
    assert reply.status == status
    assert message in reply.body["message"]
    assert _run(app.server.storage.list_release_files("root/dst")) == []


def test_push_of_a_missing_release(app: App) -> None:
    reply = push(app, "root/src", "root/dst", basic=ROOT)
    assert reply.status == 404
    assert "no release/files found for demo-pkg 0.1" in reply.body["message"]


def test_push_into_an_index_that_lets_others_upload(app: App) -> None:
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"sdist")
    assert app.call("PATCH", "alice/dev", ["acl_upload+=bob"], basic=ROOT).status == 200
    assert push(app, "root/src", "alice/dev", basic=("bob", "bobpw")).status == 200


# -- who may change what ----------------------------------------------------------------------


def test_anonymous_and_foreign_changes_are_403(app: App) -> None:
    for method, path, body in (
        ("PUT", "root/new", {}),
        ("PATCH", "root/src", ["title=x"]),
        ("DELETE", "root/src", None),
        ("PATCH", "root", {"email": "x@example.test"}),
        ("DELETE", "alice", None),
    ):
        for who in (None, ("bob", "bobpw")):
            reply = app.call(method, path, body, basic=who)
            assert reply.status == 403, (method, path, who, reply.body)
            assert reply.body["message"].startswith("no permission to ")


def test_users_may_change_themselves_and_root_anything(app: App) -> None:
    reply = app.call("PATCH", "alice", {"email": "a@example.test"}, basic=("alice", "alicepw"))
    assert reply.status == 200
    assert app.call("PUT", "alice/more", {}, basic=("alice", "alicepw")).status == 200
    assert app.call("PATCH", "alice/more", ["title=T"], basic=ROOT).status == 200
    assert app.call("DELETE", "alice/more", basic=ROOT).status == 201


def test_user_patch_ignores_what_the_server_made(app: App) -> None:
    fetched = app.call("GET", "alice").body["result"]
    fetched["email"] = "alice@example.test"
    reply = app.call("PATCH", "alice", fetched, basic=("alice", "alicepw"))
    assert reply.status == 200, reply.body
    assert app.server.users["alice"].email == "alice@example.test"
    reply = app.call("PATCH", "alice", {"shoe_size": "9"}, basic=("alice", "alicepw"))
    assert reply.status == 400


def test_password_change_takes_effect(app: App) -> None:
    reply = app.call("PATCH", "alice", {"password": "second"}, basic=("alice", "alicepw"))
    assert reply.status == 200
    assert app.call("POST", "+login", {"user": "alice", "password": "second"}).status == 200
    assert app.call("POST", "+login", {"user": "alice", "password": "alicepw"}).status == 401


def test_non_volatile_things_are_not_deleted_by_accident(app: App) -> None:
    reply = app.call("DELETE", "root/frozen", basic=ROOT)
    assert reply.status == 403 and "non-volatile" in reply.body["message"]
    app.call("PUT", "bob/keep", {"volatile": "False"}, basic=("bob", "bobpw"))
    reply = app.call("DELETE", "bob", basic=ROOT)
    assert reply.status == 403 and "keep" in reply.body["message"]
    assert "bob" in app.server.users

    add_file(app, "root/frozen", "demo_pkg-0.1.tar.gz", b"released")
    assert app.call("DELETE", "root/frozen/demo-pkg/0.1", basic=ROOT).status == 403
    assert app.call("DELETE", "root/frozen/demo-pkg/0.1?force=", basic=ROOT).status == 200


# -- tokens and logins ------------------------------------------------------------------------


def test_a_stale_token_is_401_with_the_login_url(app: App) -> None:
    token = app.server.make_token("root")
    app.clock.advance(app.server.settings.token_ttl + 1)
    reply = app.call("PUT", "root/new", {}, token=("root", token))
    assert reply.status == 401
    assert reply.headers["location"] == BASE + "+login"
    assert "expired" in reply.body["message"]
    assert "root/new" not in app.server.indexes
    status = app.call("GET", "+api", token=("root", token)).body["result"]["authstatus"]
    assert status == ["expired", "", []]


def test_repeated_failures_hold_the_answer_back(app: App) -> None:
    def login(password: str) -> Deferred[Any]:
        return app.request("POST", "+login", {"user": "alice", "password": password})

    for i in range(4):
        assert _run(login(f"guess{i}")).code == 401
    fifth = login("guess4")
    box: list[Any] = []
    fifth.addBoth(box.append)
    assert not box, "the fifth failure in a row must wait"
    app.clock.advance(0.49)
    app.stub.flush()
    assert not box
    app.clock.advance(0.02)
    app.stub.flush()
    assert box and box[0].code == 401
    # Only alice's answers wait.
    assert _run(app.request("POST", "+login", {"user": "root", "password": "rootpw"})).code == 200


# -- URLs -------------------------------------------------------------------------------------


def test_trailing_slashes_redirect_except_for_ignore_bases(app: App) -> None:
    add_file(app, "root/src", "demo_pkg-0.1.tar.gz", b"sdist")
    reply = app.call("GET", "root/src/demo-pkg/")
    assert reply.status == 302
    assert reply.headers["location"] == BASE + "root/src/demo-pkg"
    reply = app.call("GET", "root/src/demo-pkg/?ignore_bases=")
    assert reply.status == 200 and list(reply.body["result"]) == ["0.1"]
    assert app.call("GET", "root/src/").headers["location"] == BASE + "root/src"
