"""
Mirror probing in memory: a bare PEP 503 upstream (no sizes, no times, no metadata) served by
StubTreq, MemoryStorage, a Clock. The mirror learns sizes, Last-Modified times and wheel METADATA
with HEAD and range requests, waits for them only ``probe_wait`` seconds, and lets late results
reach the page afterwards. Also the pure helpers and the PEP 792 merge rule.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pkgmirror.config import make_index_config
from pkgmirror.metadata import extract_core_metadata
from pkgmirror.mirror import (
    Mirror,
    MirrorSettings,
    ProbeOutcome,
    apply_probes,
    carry_forward,
    path_key_for,
    with_first_seen,
)
from pkgmirror.model import Link, ProjectPage, parse_iso_time
from pkgmirror.stage import merge_pages
from pkgmirror.storage.blobs import FileBlobStore
from pkgmirror.storage.threads import run_synchronously
from pkgmirror.testing.dists import build_sdist, build_wheel
from pkgmirror.testing.inmemory import serve_bytes
from pkgmirror.testing.memory import MemoryBlobStore, MemoryStorage
from pkgmirror.upstream import Upstream

BASE = "http://up.test/simple/"
MODIFIED = "Tue, 01 Jan 2019 00:00:00 GMT"
MODIFIED_TS = 1546300800.0


class BareUpstream(Resource):
    """A PEP 503 page of what is in ``directory``, and its files with Range, HEAD, dates."""

    isLeaf = True

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.requests: list[tuple[bytes, str, bytes | None]] = []
        self.hold_files = False
        self.held: list[Request] = []
        self.etag = b'"v1"'
        self.ranges = True

    def render(self, request: Request) -> Any:  # type: ignore[override]
        path = request.path.decode()
        self.requests.append((request.method, path, request.getHeader(b"range")))
        if path.startswith("/simple/"):
            if request.getHeader(b"if-none-match") == self.etag:
                request.setResponseCode(304)
                return b""
            request.setHeader(b"Content-Type", b"text/html")
            request.setHeader(b"ETag", self.etag)
            links = "".join(
                f'<a href="/files/{p.name}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">'
                f"{p.name}</a>\n"
                for p in sorted(self.directory.iterdir())
            )
            return f"<!DOCTYPE html><html><body>{links}</body></html>".encode()
        if self.hold_files:
            self.held.append(request)
            return NOT_DONE_YET
        return self.file(request)

    def file(self, request: Request) -> bytes:
        data = (self.directory / request.path.decode().rsplit("/", 1)[1]).read_bytes()
        request.setHeader(b"Last-Modified", MODIFIED.encode())
        return serve_bytes(request, data, ranges=self.ranges)

    def release(self) -> None:
        held, self.held = self.held, []
        for request in held:
            body = self.file(request)
            if body:
                request.write(body)
            request.finish()


@attrs.define
class Rig:
    upstream: BareUpstream
    stub: StubTreq
    clock: Clock
    storage: MemoryStorage
    blobs: MemoryBlobStore
    mirror: Mirror
    directory: Path

    def run(self, coro: Any) -> Any:
        results: list[Any] = []
        Deferred.fromCoroutine(coro).addBoth(results.append)
        self.stub.flush()
        return results

    def settle(self) -> None:
        for _ in range(5):
            self.stub.flush()


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    build_wheel(tmp_path, "demo", "1.0", requires_dist=["dep>=1"])
    build_wheel(tmp_path, "demo", "2.0")
    build_sdist(tmp_path, "demo", "2.0")
    upstream = BareUpstream(tmp_path)
    stub = StubTreq(upstream)
    clock = Clock()
    clock.advance(2_000_000_000)
    storage = MemoryStorage()
    blobs = MemoryBlobStore()
    config = make_index_config("root", "pypi", {"type": "mirror", "mirror_url": BASE})
    storage.put_index(config)
    mirror = Mirror(
        config,
        storage,
        blobs,
        Upstream(stub, clock, BASE),
        clock,
        MirrorSettings(probe_wait=3.0, probe_concurrency=2),
    )
    return Rig(upstream, stub, clock, storage, blobs, mirror, tmp_path)


def test_bare_page_gets_sizes_times_and_metadata(rig: Rig) -> None:
    (state,) = rig.run(rig.mirror.get_state("demo"))
    assert state.page is not None
    for link in state.page.links:
        source = rig.directory / link.filename
        assert link.size == source.stat().st_size
        assert parse_iso_time(link.upload_time) == MODIFIED_TS
        if link.filename.endswith(".whl"):
            want = extract_core_metadata(str(source), link.filename)
            assert want is not None
            assert link.core_metadata == {"sha256": hashlib.sha256(want).hexdigest()}
            assert rig.blobs.blobs[hashlib.sha256(want).hexdigest()] == want
        else:
            assert link.core_metadata is None
    # Never a whole-file GET: HEAD for the sdist, ranges for the wheels.
    files = [r for r in rig.upstream.requests if r[1].startswith("/files/")]
    assert files and all(method == b"HEAD" or rng is not None for method, _, rng in files)
    # The stored rows know the metadata too (the .metadata route serves from them).
    wheel = next(x for x in state.page.links if x.filename.endswith(".whl"))
    record = rig.storage.get_mirror_file("root/pypi", path_key_for(wheel), wheel.filename)
    assert record.result.metadata_sha256 == wheel.core_metadata["sha256"]


def test_slow_probes_do_not_hold_the_page_and_arrive_later(rig: Rig) -> None:
    rig.upstream.hold_files = True
    results = rig.run(rig.mirror.get_state("demo"))
    assert results == []  # waiting for probes
    rig.clock.advance(3.0)
    rig.stub.flush()
    (state,) = results
    assert state.page is not None
    # Served without what is not known yet; upload times are first-seen (recorded once).
    assert all(link.size is None and link.core_metadata is None for link in state.page.links)
    first_seen = {link.filename: link.upload_time for link in state.page.links}
    assert all(first_seen.values())
    generation = rig.mirror.generation
    rig.upstream.hold_files = False
    for _ in range(10):
        rig.upstream.release()
        rig.settle()
    late = rig.mirror.cached_state("demo")
    assert late is not None and late.page is not None
    assert all(link.size is not None for link in late.page.links)
    assert all(
        link.core_metadata is not None for link in late.page.links if link.filename.endswith(".whl")
    )
    # The time recorded first stays; the page changed, so rendered copies are dropped.
    assert {link.filename: link.upload_time for link in late.page.links} == first_seen
    assert rig.mirror.generation > generation
    # The storage has it too: a restart serves the completed page.
    stored = rig.storage.get_mirror_page("root/pypi", "demo").result
    assert stored.page == late.page


def test_failed_probes_are_retried_on_a_304_revalidation(rig: Rig) -> None:
    rig.upstream.hold_files = True
    rig.run(rig.mirror.get_state("demo"))
    rig.clock.advance(3.0)
    rig.stub.flush()
    # The upstream never answers those: every probe times out (two at a time).
    for _ in range(3):
        rig.clock.advance(11)
        rig.stub.flush()
    assert rig.mirror.cached_state("demo").page.links[0].size is None
    rig.upstream.held.clear()
    rig.upstream.hold_files = False
    rig.upstream.requests.clear()
    rig.clock.advance(61)
    (state,) = rig.run(rig.mirror.refresh("demo"))
    # The page itself did not change (304), the probes ran again and completed it.
    assert (b"GET", "/simple/demo/", None) in rig.upstream.requests
    assert state.page is not None
    assert all(link.size is not None for link in state.page.links)


def test_upstream_without_ranges_learns_from_the_cached_wheel(tmp_path: Path) -> None:
    files = tmp_path / "files"
    wheel = build_wheel(files, "big", "1.0", payload_size=300_000)
    upstream = BareUpstream(files)
    upstream.ranges = False
    stub = StubTreq(upstream)
    clock = Clock()
    storage = MemoryStorage()
    blobs = FileBlobStore(FilePath(str(tmp_path / "blobs")), runner=run_synchronously)
    config = make_index_config("root", "pypi", {"type": "mirror", "mirror_url": BASE})
    storage.put_index(config)
    mirror = Mirror(
        config,
        storage,
        blobs,
        Upstream(stub, clock, BASE),
        clock,
        MirrorSettings(),
        run_synchronously,
    )
    results: list[Any] = []
    Deferred.fromCoroutine(mirror.get_state("big")).addBoth(results.append)
    stub.flush()
    (state,) = results
    (only,) = state.page.links
    # A whole-file answer to a range request is dropped unread: nothing is known yet.
    assert only.size is None and only.core_metadata is None
    assert not any(m == b"GET" and r is None for m, p, r in upstream.requests if "/files/" in p)
    record = storage.get_mirror_file("root/pypi", path_key_for(only), only.filename).result
    fill = mirror.start_fill(record)
    stub.flush()
    assert fill.failure is None, fill.failure
    assert fill.stored_sha256 is not None
    (learnt,) = mirror.cached_state("big").page.links
    want = extract_core_metadata(str(wheel), wheel.name)
    assert learnt.size == wheel.stat().st_size
    assert learnt.core_metadata == {"sha256": hashlib.sha256(want).hexdigest()}
    assert blobs.local_path(learnt.core_metadata["sha256"]) is not None


def link(filename: str, **kw: Any) -> Link:
    return Link(filename=filename, url=f"http://up/{filename}", **kw)


def test_carry_forward_keeps_learnt_values_for_the_same_url_only() -> None:
    old = ProjectPage(
        "demo",
        [
            link("demo-1.0.tar.gz", size=5, upload_time="2020-01-01T00:00:00Z"),
            attrs.evolve(link("demo-2.0.tar.gz", size=7), url="http://elsewhere/x"),
        ],
    )
    new = ProjectPage("demo", [link("demo-1.0.tar.gz"), link("demo-2.0.tar.gz")])
    carried = carry_forward(new, old)
    assert carried.links[0].size == 5
    assert carried.links[0].upload_time == "2020-01-01T00:00:00Z"
    assert carried.links[1].size is None
    # What the upstream says wins over what we remembered.
    upstream_says = ProjectPage("demo", [link("demo-1.0.tar.gz", size=6)])
    assert carry_forward(upstream_says, old).links[0].size == 6


def test_apply_probes_never_overrides() -> None:
    page = ProjectPage(
        "demo",
        [
            link("a-1.0-py3-none-any.whl", upload_time="2020-01-01T00:00:00Z"),
            link("a-1.0.tar.gz", size=3),
        ],
    )
    outcome = ProbeOutcome(10, MODIFIED_TS, "ab" * 32)
    applied = apply_probes(page, {x.url: outcome for x in page.links})
    wheel, sdist = applied.links
    assert (wheel.size, wheel.upload_time, wheel.core_metadata) == (
        10,
        "2020-01-01T00:00:00Z",
        {"sha256": "ab" * 32},
    )
    assert sdist.size == 3 and sdist.upload_time is not None
    assert with_first_seen(applied, None, 0).links[1].upload_time == sdist.upload_time


def test_quarantined_page_offers_no_files() -> None:
    stage = make_index_config("root", "local", {"bases": "root/pypi"})
    mirror = make_index_config("root", "pypi", {"type": "mirror", "mirror_url": BASE})
    upstream_page = ProjectPage(
        "demo", [link("demo-1.0.tar.gz")], status="quarantined", status_reason="malware"
    )
    merged, hidden = merge_pages("demo", [stage, mirror], [None, upstream_page], 0)
    assert merged.links == ()
    assert (merged.status, merged.status_reason) == ("quarantined", "malware")
    assert any("quarantined" in h.reason for h in hidden)
    # The stage's own files are still offered, without the marker.
    own = ProjectPage("demo", [link("demo-1.1.tar.gz")])
    merged, _ = merge_pages("demo", [stage, mirror], [own, upstream_page], 0)
    assert [x.filename for x in merged.links] == ["demo-1.1.tar.gz"]
    assert merged.status is None
