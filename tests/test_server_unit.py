"""
pkgmirror.server.Server in memory: MemoryStorage, a StubTreq upstream, a Clock and a thread
runner that runs at once (and counts its calls).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from pkgmirror import auth
from pkgmirror.config import mirror_url_allowed
from pkgmirror.mirror import MirrorSettings
from pkgmirror.model import ReleaseFile, iso_time
from pkgmirror.server import Refused, Server, ServerSettings
from pkgmirror.testing.inmemory import ScriptedResource, answer, failure_of, result_of, start
from pkgmirror.testing.memory import MemoryBlobStore, MemoryStorage

UPSTREAM = "http://127.0.0.1:8080/simple/"
T0 = 1_700_000_000.0


@attrs.define
class Runner:
    """run_in_thread that runs in the caller's thread and counts what it ran."""

    calls: int = 0

    def __call__(self, f: Callable[[], Any]) -> Deferred[Any]:
        self.calls += 1
        return maybeDeferred(f)


@attrs.define
class Rig:
    storage: MemoryStorage
    blobs: MemoryBlobStore
    clock: Clock
    site: ScriptedResource
    runner: Runner
    server: Server

    def restart(self) -> Server:
        """A new Server on the same storage, loaded: what a process restart sees."""
        server = make_server(self.storage, self.blobs, self.clock, self.site, self.runner)
        result_of(start(server.load()))
        return server

    def run(self, coroutine: Any) -> Any:
        return result_of(start(coroutine))

    def refused(self, coroutine: Any) -> Refused:
        return failure_of(start(coroutine), Refused)


def make_server(
    storage: MemoryStorage,
    blobs: MemoryBlobStore,
    clock: Clock,
    site: ScriptedResource,
    runner: Runner,
) -> Server:
    settings = ServerSettings(mirror=MirrorSettings(stale_grace=1.0), token_ttl=3600)
    return Server(storage, blobs, clock, StubTreq(site), runner, settings)


@pytest.fixture
def rig() -> Rig:
    clock = Clock()
    clock.advance(T0)
    storage, blobs, site, runner = MemoryStorage(), MemoryBlobStore(), ScriptedResource(), Runner()
    server = make_server(storage, blobs, clock, site, runner)
    result_of(start(server.load()))
    result_of(start(server.create_user("root", "rootpw")))
    return Rig(storage, blobs, clock, site, runner, server)


# ---------------------------------------------------------------- indexes


def test_create_index_validation(rig: Rig) -> None:
    s = rig.server
    assert rig.refused(s.create_index("nobody", "dev", {})).code == 404
    missing = rig.refused(s.create_index("root", "dev", {"bases": "root/gone"}))
    assert missing.code == 400 and "root/gone does not exist" in missing.message
    unknown = rig.refused(s.create_index("root", "dev", {"colour": "blue"}))
    assert unknown.code == 400
    assert unknown.message == "indexconfig got unexpected keyword arguments: colour=blue"
    assert rig.refused(s.create_index("root", "a/b", {})).code == 400
    rig.run(s.create_index("root", "dev", {}))
    assert rig.refused(s.create_index("root", "dev", {})).code == 409
    assert "root/dev" in rig.restart().indexes
    assert [c.key for c in result_of(rig.storage.list_indexes())] == ["root/dev"]


def test_mirror_urls_outside_the_allowed_prefixes_are_refused(rig: Rig) -> None:
    allowed = ("https://intranet.test/simple/", "http://127.0.0.1:8080")
    s = rig.server
    s.settings = attrs.evolve(s.settings, mirror_url_allow=allowed)
    for url in ("https://intranet.test/other/", "http://169.254.169.254/latest/"):
        refused = rig.refused(s.create_index("root", "m", {"type": "mirror", "mirror_url": url}))
        assert refused.code == 403 and "may only fetch from https://intranet.test/simple/" in (
            refused.message
        )
    assert "root/m" not in s.indexes
    rig.run(s.create_index("root", "m", {"type": "mirror", "mirror_url": allowed[0] + "x/"}))
    refused = rig.refused(s.modify_index("root/m", ["mirror_url=https://user:pw@elsewhere.test/"]))
    # The refusal names the URL without its credentials.
    assert refused.code == 403 and "not https://elsewhere.test/" in refused.message
    assert s.indexes["root/m"].mirror_url == allowed[0] + "x/"
    rig.run(s.modify_index("root/m", ["mirror_url=http://127.0.0.1:8080/simple/"]))
    # Narrowed later: the index's other settings can still change.
    s.settings = attrs.evolve(s.settings, mirror_url_allow=(allowed[0],))
    rig.run(s.modify_index("root/m", ["mirror_cache_expiry=60"]))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://intranet.test/simple/", True),
        ("https://intranet.test/simple/x/", True),
        ("https://INTRANET.test:443/simple", True),
        ("https://u:p@intranet.test/simple/", True),
        ("https://intranet.test/simpler/", False),
        ("http://intranet.test/simple/", False),
        ("https://intranet.test:8443/simple/", False),
        ("https://intranet.test.evil/simple/", False),
        ("https://evil.test/https://intranet.test/simple/", False),
    ],
)
def test_mirror_url_allowed(url: str, allowed: bool) -> None:
    assert mirror_url_allowed(url, ["https://intranet.test/simple"]) is allowed
    assert mirror_url_allowed(url, []) is True


def test_modify_index_refuses_cycles_and_keeps_the_old_config(rig: Rig) -> None:
    s = rig.server
    rig.run(s.create_index("root", "a", {}))
    rig.run(s.create_index("root", "b", {"bases": "root/a"}))
    rig.run(s.create_index("root", "c", {"bases": "root/b"}))
    cycle = rig.refused(s.modify_index("root/a", ["bases=root/c"]))
    assert cycle.code == 400 and "cycle" in cycle.message
    assert s.indexes["root/a"].bases == ()
    assert rig.restart().indexes["root/a"].bases == ()
    assert [c.key for c in s.order("root/c")] == ["root/c", "root/b", "root/a"]
    changed = rig.run(s.modify_index("root/a", ["volatile=False", "title=A"]))
    assert changed.volatile is False and changed.title == "A"
    assert rig.restart().indexes["root/a"] == changed
    assert rig.refused(s.modify_index("root/zzz", {})).code == 404
    assert rig.refused(s.modify_index("root/a", {"type": "mirror"})).code == 400


def test_delete_index_refused_while_it_is_a_base(rig: Rig) -> None:
    s = rig.server
    rig.run(s.create_index("root", "base", {}))
    rig.run(s.create_index("root", "dev", {"bases": "root/base"}))
    refused = rig.refused(s.delete_index("root/base"))
    assert refused.code == 409 and "root/dev" in refused.message
    assert "root/base" in rig.restart().indexes
    rig.run(s.modify_index("root/dev", ["bases-="]))
    rig.run(s.delete_index("root/base"))
    assert "root/base" not in s.indexes
    assert "root/base" not in rig.restart().indexes
    assert rig.refused(s.delete_index("root/base")).code == 404


def test_delete_user_refused_while_their_index_is_anothers_base(rig: Rig) -> None:
    s = rig.server
    rig.run(s.create_user("alice", "pw"))
    rig.run(s.create_index("alice", "shared", {}))
    rig.run(s.create_index("root", "dev", {"bases": "alice/shared"}))
    refused = rig.refused(s.delete_user("alice"))
    assert refused.code == 409 and "root/dev" in refused.message
    rig.run(s.modify_index("root/dev", ["bases-="]))
    rig.run(s.delete_user("alice"))
    restarted = rig.restart()
    assert "alice" not in restarted.users and "alice/shared" not in restarted.indexes


def test_mirror_health_survives_a_config_edit(rig: Rig) -> None:
    s = rig.server
    rig.run(s.create_index("root", "pypi", {"type": "mirror", "mirror_url": UPSTREAM}))
    s.mirrors["root/pypi"].health.failed("down")
    rig.run(s.modify_index("root/pypi", ["title=PyPI"]))
    assert s.mirrors["root/pypi"].health.is_down(), "a title edit forgets nothing"
    rig.run(s.modify_index("root/pypi", ["mirror_url=http://127.0.0.1:8081/simple/"]))
    assert not s.mirrors["root/pypi"].health.is_down(), "a new upstream starts healthy"


# ---------------------------------------------------------------- users, passwords, tokens


def test_user_validation(rig: Rig) -> None:
    s = rig.server
    assert rig.refused(s.create_user("root", "x")).code == 409
    assert rig.refused(s.create_user("../x", "x")).code == 400
    assert rig.refused(s.modify_user("nobody", {})).code == 404
    assert rig.refused(s.modify_user("root", {"shoe_size": "9"})).code == 400


def test_tokens_expire_and_survive_a_restart(rig: Rig) -> None:
    s = rig.server
    token = s.make_token("root")
    assert s.check_token(token).user == "root"
    # Another process on the same storage shares the signing secret.
    restarted = rig.restart()
    assert restarted.secret == s.secret and restarted.uuid == s.uuid
    assert restarted.check_token(token).user == "root"
    rig.clock.advance(3599)
    assert s.check_token(token).user == "root"
    rig.clock.advance(1)
    expired = s.check_token(token)
    assert expired.user is None and "expired" in expired.reason
    assert s.check_token(token[:-2] + "xx").user is None
    assert s.check_token("garbage").reason == "invalid token"


def test_token_of_a_deleted_user_is_refused(rig: Rig) -> None:
    s = rig.server
    rig.run(s.create_user("alice", "pw"))
    token = s.make_token("alice")
    rig.run(s.delete_user("alice"))
    check = s.check_token(token)
    assert check.user is None and "no longer exists" in check.reason


def test_a_token_from_another_secret_is_refused(rig: Rig) -> None:
    foreign = auth.make_token(auth.new_secret(), "root", T0, 3600)
    assert rig.server.check_token(foreign).user is None


def test_password_checks_are_cached_briefly(rig: Rig) -> None:
    s = rig.server
    calls = rig.runner.calls
    assert rig.run(s.check_password("root", "rootpw")) is True
    assert rig.runner.calls == calls + 1
    assert rig.run(s.check_password("root", "rootpw")) is True
    assert rig.runner.calls == calls + 1, "a recent success is remembered"
    assert rig.run(s.check_password("root", "wrong")) is False
    assert rig.run(s.check_password("root", "wrong")) is False
    assert rig.runner.calls == calls + 3, "failures are never cached"
    assert rig.run(s.check_password("nobody", "x")) is False
    rig.clock.advance(61)
    assert rig.run(s.check_password("root", "rootpw")) is True
    assert rig.runner.calls == calls + 4
    # A new password ends the old one at once, cache or not.
    rig.run(s.modify_user("root", {"password": "newpw"}))
    assert rig.run(s.check_password("root", "rootpw")) is False
    assert rig.run(s.check_password("root", "newpw")) is True
    assert rig.restart().users["root"].password_hash == s.users["root"].password_hash


def test_login_delay_grows_with_failures(rig: Rig) -> None:
    s = rig.server
    delays = []
    for _ in range(8):
        s.note_login_failure("root")
        delays.append(s.login_delay("root"))
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays == sorted(delays) and delays[-1] <= 5.0 and delays[-1] > 0
    rig.clock.advance(301)
    assert s.login_delay("root") == 0.0


# ---------------------------------------------------------------- pages


def stage_file(index: str, filename: str, data: bytes, when: float) -> ReleaseFile:
    return ReleaseFile(
        index=index,
        project="corp-tool",
        version="1.0",
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        upload_time=iso_time(when),
    )


def upstream_page(project: str, *filenames: str) -> bytes:
    return json.dumps(
        {
            "meta": {"api-version": "1.1"},
            "name": project,
            "files": [{"filename": f, "url": f"../../files/{f}", "hashes": {}} for f in filenames],
        }
    ).encode()


def test_private_prefixes_never_ask_the_mirror(rig: Rig) -> None:
    s = rig.server
    json_type = "application/vnd.pypi.simple.v1+json"
    rig.site.route(
        "/simple/corp-tool/", answer(upstream_page("corp-tool", "corp_tool-9.0.tar.gz"), json_type)
    )
    rig.run(s.create_index("root", "pypi", {"type": "mirror", "mirror_url": UPSTREAM}))
    rig.run(s.create_index("root", "local", {"bases": "root/pypi", "private_prefixes": "corp-"}))
    missing = rig.refused(s.project_page("root/local", "corp-tool"))
    assert missing.code == 404 and "private" in missing.message
    assert rig.site.seen == [], "the mirror was not asked"

    upload = stage_file("root/local", "corp_tool-1.0.tar.gz", b"ours", T0)
    assert result_of(rig.storage.add_release_file(upload, False))
    s.release_files_changed("root/local", "corp-tool", True)
    page = rig.run(s.project_page("root/local", "corp-tool")).page
    assert [link.filename for link in page.links] == ["corp_tool-1.0.tar.gz"]
    assert rig.site.seen == []
    # The mirror itself still serves it to those who ask it directly.
    direct = rig.run(s.project_page("root/pypi", "corp-tool")).page
    assert [link.filename for link in direct.links] == ["corp_tool-9.0.tar.gz"]


def test_unreachable_upstream_is_503_with_retry_after(rig: Rig) -> None:
    s = rig.server
    rig.site.route("/simple/demo/", answer(b"down", code=502))
    rig.run(s.create_index("root", "pypi", {"type": "mirror", "mirror_url": UPSTREAM}))
    refused = rig.refused(s.project_page("root/pypi", "demo"))
    assert refused.code == 503 and "502" in refused.message
    assert int(refused.headers["Retry-After"]) >= 1
    asked = len(rig.site.seen)
    again = rig.refused(s.project_page("root/pypi", "other"))
    assert again.code == 503 and len(rig.site.seen) == asked, "no request while down"


def test_min_release_age_uses_the_server_clock(rig: Rig) -> None:
    s = rig.server
    rig.run(s.create_index("root", "local", {"min_release_age": "1h"}))
    fresh = stage_file("root/local", "corp_tool-1.0.tar.gz", b"new", T0 - 60)
    result_of(rig.storage.add_release_file(fresh, False))
    s.release_files_changed("root/local", "corp-tool", True)
    resolved = rig.run(s.project_page("root/local", "corp-tool"))
    assert resolved.page.links == () and resolved.hidden
    rig.clock.advance(3600)
    assert len(rig.run(s.project_page("root/local", "corp-tool")).page.links) == 1


@pytest.mark.parametrize("deleted", ["index", "user"])
def test_a_recreated_index_does_not_list_the_old_ones_files(rig: Rig, deleted: str) -> None:
    s = rig.server
    rig.run(s.create_user("alice", ""))
    rig.run(s.create_index("alice", "local", {}))
    upload = stage_file("alice/local", "corp_tool-1.0.tar.gz", b"old", T0)
    result_of(rig.storage.add_release_file(upload, False))
    s.release_files_changed("alice/local", "corp-tool", True)
    assert len(rig.run(s.project_page("alice/local", "corp-tool")).page.links) == 1
    if deleted == "index":
        rig.run(s.delete_index("alice/local"))
    else:
        rig.run(s.delete_user("alice"))
        rig.run(s.create_user("alice", ""))
    rig.run(s.create_index("alice", "local", {}))
    gone = rig.refused(s.project_page("alice/local", "corp-tool"))
    assert gone.code == 404


def test_a_new_mirror_url_is_asked_before_the_old_upstreams_pages_are_served(rig: Rig) -> None:
    s = rig.server
    json_type = "application/vnd.pypi.simple.v1+json"
    rig.site.route("/simple/demo/", answer(upstream_page("demo", "demo-1.0.tar.gz"), json_type))
    rig.site.route(
        "/other/simple/demo/", answer(upstream_page("demo", "demo-2.0.tar.gz"), json_type)
    )
    rig.run(s.create_index("root", "pypi", {"type": "mirror", "mirror_url": UPSTREAM}))
    first = rig.run(s.project_page("root/pypi", "demo")).page
    assert [link.filename for link in first.links] == ["demo-1.0.tar.gz"]
    # Well within the cache expiry, the mirror is pointed at another upstream.
    rig.clock.advance(10)
    rig.run(s.modify_index("root/pypi", ["mirror_url=http://127.0.0.1:8080/other/simple/"]))
    again = rig.run(s.project_page("root/pypi", "demo")).page
    assert [link.filename for link in again.links] == ["demo-2.0.tar.gz"]


def test_a_stage_lists_its_mirrors_names_and_its_own_sorted_once_each(rig: Rig) -> None:
    s = rig.server
    listed = ["zeta", "Alpha", "corp-tool", "beta", "zeta", "b"]
    body = json.dumps({"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in listed]})
    rig.site.route("/simple/", answer(body.encode(), "application/vnd.pypi.simple.v1+json"))
    rig.run(s.create_index("root", "pypi", {"type": "mirror", "mirror_url": UPSTREAM}))
    rig.run(s.create_index("root", "local", {"bases": "root/pypi"}))
    assert list(rig.run(s.project_names("root/pypi"))) == sorted(set(listed))
    assert list(rig.run(s.project_names("root/local"))) == sorted(set(listed))

    for filename in ("corp_tool-1.0.tar.gz", "corp_tool-1.1.tar.gz"):
        upload = stage_file("root/local", filename, filename.encode(), T0)
        assert result_of(rig.storage.add_release_file(upload, False))
        s.release_files_changed("root/local", "corp-tool", True)
    upload = attrs.evolve(stage_file("root/local", "mine-1.0.tar.gz", b"m", T0), project="mine")
    assert result_of(rig.storage.add_release_file(upload, False))
    s.release_files_changed("root/local", "mine", True)
    expected = sorted({*listed, "mine"})
    assert list(rig.run(s.project_names("root/local"))) == expected
    # The mirror's own list is not changed by its stage's projects.
    assert list(rig.run(s.project_names("root/pypi"))) == sorted(set(listed))

    # After a restart the names come from storage: the upstream is not asked again.
    asked = len(rig.site.seen)
    assert list(rig.run(rig.restart().project_names("root/local"))) == expected
    assert len(rig.site.seen) == asked
