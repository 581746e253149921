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
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version
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
    split_newest,
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
        self.fail_files = False

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
        if self.fail_files:
            request.setResponseCode(503)
            return b"down for a moment"
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


def file_requests(upstream: BareUpstream) -> list[tuple[bytes, str, bytes | None]]:
    return [r for r in upstream.requests if r[1].startswith("/files/")]


def record_of(rig: Rig, link: Link) -> Any:
    return rig.storage.get_mirror_file("root/pypi", path_key_for(link), link.filename).result


def test_bare_page_gets_sizes_and_times_and_promises_metadata(rig: Rig) -> None:
    (state,) = rig.run(rig.mirror.get_state("demo"))
    assert state.page is not None
    for link in state.page.links:
        source = rig.directory / link.filename
        assert link.size == source.stat().st_size
        assert parse_iso_time(link.upload_time) == MODIFIED_TS
        assert link.core_metadata is None  # not read yet
    # HEAD requests only: no byte of any file was fetched to learn that.
    assert {m for m, _, _ in file_requests(rig.upstream)} == {b"HEAD"}
    # What clients see: every wheel promises PEP 658 metadata (no hash yet), sdists do not.
    served = rig.mirror.served(state)
    assert served is not None
    assert {x.filename: x.core_metadata for x in served.links} == {
        "demo-1.0-py3-none-any.whl": {},
        "demo-2.0-py3-none-any.whl": {},
        "demo-2.0.tar.gz": None,
    }


def test_metadata_is_read_out_of_the_wheel_when_first_asked_for(rig: Rig) -> None:
    build_wheel(rig.directory, "demo", "3.0", payload_size=200_000)
    (state,) = rig.run(rig.mirror.get_state("demo"))
    wheel = next(x for x in state.page.links if x.filename == "demo-3.0-py3-none-any.whl")
    want = extract_core_metadata(str(rig.directory / wheel.filename), wheel.filename)
    assert want is not None
    rig.upstream.requests.clear()
    (found,) = rig.run(rig.mirror.core_metadata(record_of(rig, wheel)))
    assert found.data == want and found.sha256 == hashlib.sha256(want).hexdigest()
    # One range request into the wheel's end; the wheel itself was not downloaded.
    assert [(m, r) for m, _, r in file_requests(rig.upstream)] == [(b"GET", b"bytes=-61440")]
    rig.settle()
    # Then the blob, the record and the page know it; the page advertises the hash.
    assert rig.blobs.blobs[found.sha256] == want
    assert record_of(rig, wheel).metadata_sha256 == found.sha256
    assert record_of(rig, wheel).cached_sha256 is None
    page = rig.mirror.cached_state("demo").page
    assert {"sha256": found.sha256} in [x.core_metadata for x in page.links]
    assert rig.storage.get_mirror_page("root/pypi", "demo").result.page == page
    # Asked again: no upstream request.
    rig.upstream.requests.clear()
    (again,) = rig.run(rig.mirror.core_metadata(record_of(rig, wheel)))
    assert again.sha256 == found.sha256 and rig.upstream.requests == []


def test_reading_a_small_wheels_metadata_caches_the_whole_wheel(rig: Rig) -> None:
    (state,) = rig.run(rig.mirror.get_state("demo"))
    wheel = next(x for x in state.page.links if x.filename == "demo-2.0-py3-none-any.whl")
    source = (rig.directory / wheel.filename).read_bytes()
    assert len(source) < 60 * 1024
    rig.run(rig.mirror.core_metadata(record_of(rig, wheel)))
    rig.settle()
    # The range answer held all of it: verified against the page's hash and cached, so the
    # download that usually follows costs no upstream request.
    record = record_of(rig, wheel)
    assert record.cached_sha256 == hashlib.sha256(source).hexdigest() == wheel.sha256
    assert rig.blobs.blobs[record.cached_sha256] == source


class HeldBlobs(MemoryBlobStore):
    """A slow disk: put_bytes finishes when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[bytes, Deferred[str]]] = []

    def put_bytes(self, data: bytes) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.held.append((data, d))
        return d

    def let_through(self) -> None:
        while self.held:
            data, d = self.held.pop(0)
            super().put_bytes(data).chainDeferred(d)


def test_a_download_right_after_a_metadata_read_waits_for_the_small_file(rig: Rig) -> None:
    blobs = HeldBlobs()
    upstream = Upstream(rig.stub, rig.clock, BASE)
    mirror = Mirror(rig.mirror.config, rig.storage, blobs, upstream, rig.clock, rig.mirror.settings)
    (state,) = rig.run(mirror.get_state("demo"))
    wheel = next(x for x in state.page.links if x.filename == "demo-2.0-py3-none-any.whl")
    record = record_of(rig, wheel)
    (found,) = rig.run(mirror.core_metadata(record))
    assert found.data is not None  # answered while the disk is still busy
    waiting: list[Any] = []
    Deferred.fromCoroutine(mirror.settled(record)).addBoth(waiting.append)
    rig.settle()
    assert waiting == []
    blobs.let_through()
    rig.settle()
    (settled,) = waiting
    assert settled.cached_sha256 == wheel.sha256
    # So the download is served from the store: the upstream sent the wheel once, as a range.
    gets = [r for m, _, r in file_requests(rig.upstream) if m == b"GET"]
    assert gets == [b"bytes=-61440"]


class SlowMetadataRecords(MemoryStorage):
    """A busy storage thread: recording a metadata hash finishes when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Deferred[None]] = []

    def set_mirror_file_metadata(  # type: ignore[override]
        self, index: str, path_key: str, filename: str, sha256: str
    ) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.held.append(d)
        d.addCallback(
            lambda _: super(SlowMetadataRecords, self).set_mirror_file_metadata(
                index, path_key, filename, sha256
            )
        )
        return d


def test_the_cached_small_file_stays_known_while_its_metadata_is_recorded(
    tmp_path: Path,
) -> None:
    build_wheel(tmp_path, "demo", "2.0")
    upstream = BareUpstream(tmp_path)
    stub = StubTreq(upstream)
    clock = Clock()
    storage = SlowMetadataRecords()
    config = make_index_config("root", "pypi", {"type": "mirror", "mirror_url": BASE})
    storage.put_index(config)
    mirror = Mirror(
        config, storage, MemoryBlobStore(), Upstream(stub, clock, BASE), clock, MirrorSettings()
    )
    results: list[Any] = []
    Deferred.fromCoroutine(mirror.get_state("demo")).addBoth(results.append)
    stub.flush()
    ((wheel,),) = [r.page.links for r in results]
    key = path_key_for(wheel)
    record = storage.get_mirror_file("root/pypi", key, wheel.filename).result
    Deferred.fromCoroutine(mirror.core_metadata(record)).addBoth(results.append)
    stub.flush()
    # The small wheel came whole with the metadata read and is cached; the metadata hash is
    # still being written. A download now must find the cached copy, not fetch it again.
    assert storage.held
    Deferred.fromCoroutine(mirror.file_record(key, wheel.filename)).addBoth(results.append)
    assert results[-1].cached_sha256 == wheel.sha256
    for d in storage.held:
        d.callback(None)
    stub.flush()
    Deferred.fromCoroutine(mirror.file_record(key, wheel.filename)).addBoth(results.append)
    assert results[-1].cached_sha256 == wheel.sha256
    assert results[-1].metadata_sha256 is not None


def test_slow_probes_do_not_hold_the_page_and_arrive_later(rig: Rig) -> None:
    rig.upstream.hold_files = True
    results = rig.run(rig.mirror.get_state("demo"))
    assert results == []  # waiting for probes
    rig.clock.advance(3.0)
    rig.stub.flush()
    (state,) = results
    assert state.page is not None
    # Served without what is not known yet, upload times included: the probes may still
    # bring the upstream's Last-Modified, and a time once served is never changed.
    assert all(link.size is None and link.upload_time is None for link in state.page.links)
    generation = rig.mirror.generation
    rig.upstream.hold_files = False
    for _ in range(10):
        rig.upstream.release()
        rig.settle()
    late = rig.mirror.cached_state("demo")
    assert late is not None and late.page is not None
    assert all(link.size is not None for link in late.page.links)
    assert {parse_iso_time(link.upload_time) for link in late.page.links} == {MODIFIED_TS}
    # The page changed, so rendered copies are dropped, and the storage has it too.
    assert rig.mirror.generation > generation
    stored = rig.storage.get_mirror_page("root/pypi", "demo").result
    assert stored.page == late.page


@attrs.define
class Sdists:
    """A bare upstream of demo sdists, and what a Mirror over it needs (``mirror()``: a process)."""

    upstream: BareUpstream
    stub: StubTreq
    clock: Clock
    storage: MemoryStorage
    config: Any
    settings: MirrorSettings

    def mirror(self) -> Mirror:
        upstream = Upstream(self.stub, self.clock, BASE)
        return Mirror(
            self.config, self.storage, MemoryBlobStore(), upstream, self.clock, self.settings
        )


def sdists(tmp_path: Path, versions: tuple[str, ...], **settings: Any) -> Sdists:
    for version in versions:
        build_sdist(tmp_path, "demo", version)
    upstream = BareUpstream(tmp_path)
    clock = Clock()
    clock.advance(2_000_000_000)
    storage = MemoryStorage()
    config = make_index_config("root", "pypi", {"type": "mirror", "mirror_url": BASE})
    storage.put_index(config)
    return Sdists(
        upstream, StubTreq(upstream), clock, storage, config,
        MirrorSettings(eager_versions=1, **settings),
    )  # fmt: skip


def test_old_versions_are_probed_in_the_background_paced(tmp_path: Path) -> None:
    rig = sdists(tmp_path, ("1.0", "1.1", "1.2", "1.3", "2.0"), background_probe_rate=2.0)
    upstream, stub, clock, storage = rig.upstream, rig.stub, rig.clock, rig.storage
    mirror = rig.mirror()
    results: list[Any] = []
    Deferred.fromCoroutine(mirror.get_state("demo")).addBoth(results.append)
    stub.flush()
    assert len(results) == 1

    def known() -> dict[str, tuple[int | None, float | None]]:
        page = mirror.cached_state("demo").page
        return {
            x.filename: (x.size, parse_iso_time(x.upload_time) if x.upload_time else None)
            for x in page.links
        }

    # The newest version is described at once; the others have neither size nor time yet:
    # no invented upload time while a probe may still bring the upstream's.
    assert known()["demo-2.0.tar.gz"] == (
        (tmp_path / "demo-2.0.tar.gz").stat().st_size,
        MODIFIED_TS,
    )
    # (The first background probe may have answered already: this upstream answers at once.)
    older = [v for k, v in known().items() if k != "demo-2.0.tar.gz"]
    assert older.count((None, None)) >= 3
    # Two a second, newest first; each page update is stored.
    heads = len(file_requests(upstream))
    for _ in range(3):
        clock.advance(0.5)
        stub.flush()
    assert len(file_requests(upstream)) - heads == 3
    clock.advance(10)
    for _ in range(5):
        stub.flush()
        clock.advance(0.5)
    assert all(size is not None and when == MODIFIED_TS for size, when in known().values())
    assert (
        storage.get_mirror_page("root/pypi", "demo").result.page == mirror.cached_state("demo").page
    )
    assert len(file_requests(upstream)) == 5  # each file probed once


def test_background_probes_outlast_a_short_upstream_outage(tmp_path: Path) -> None:
    rig = sdists(tmp_path, ("1.0", "2.0"), background_probe_rate=2.0, backoff_min=5.0)
    upstream, stub, clock = rig.upstream, rig.stub, rig.clock
    mirror = rig.mirror()
    upstream.fail_files = True
    Deferred.fromCoroutine(mirror.get_state("demo"))
    stub.flush()
    clock.advance(1)
    stub.flush()
    upstream.fail_files = False
    for _ in range(20):
        clock.advance(1)
        stub.flush()
    # The old file's probe failed while the upstream was away, and was tried again: it has the
    # upstream's Last-Modified, not a first-seen time made up during the outage.
    old = next(x for x in mirror.cached_state("demo").page.links if "1.0" in x.filename)
    assert old.size == (tmp_path / old.filename).stat().st_size
    assert parse_iso_time(old.upload_time) == MODIFIED_TS


def test_background_probes_go_on_after_a_restart(tmp_path: Path) -> None:
    rig = sdists(tmp_path, ("1.0", "1.1", "2.0"), background_probe_rate=1.0)
    upstream, stub, clock, storage, mirror = (
        rig.upstream, rig.stub, rig.clock, rig.storage, rig.mirror,
    )  # fmt: skip

    first = mirror()
    upstream.hold_files = True  # the background probes never answer: the process stops
    Deferred.fromCoroutine(first.get_state("demo"))
    stub.flush()
    clock.advance(3.0)
    stub.flush()
    first.stop()
    upstream.hold_files = False
    upstream.held.clear()
    stored = storage.get_mirror_page("root/pypi", "demo").result
    assert [x.size for x in stored.page.links] == [None, None, None]
    # A new process serves the stored page (fresh) and probes what it lacks in the background.
    second = mirror()
    Deferred.fromCoroutine(second.get_state("demo"))
    for _ in range(10):
        stub.flush()
        clock.advance(1)
    page = second.cached_state("demo").page
    assert all(x.size is not None and x.upload_time for x in page.links)
    assert {parse_iso_time(x.upload_time) for x in page.links} == {MODIFIED_TS}


def test_a_replaced_mirror_stops_its_background_probes(tmp_path: Path) -> None:
    rig = sdists(tmp_path, ("1.0", "1.1", "1.2", "2.0"), background_probe_rate=1.0)
    upstream, stub, clock = rig.upstream, rig.stub, rig.clock
    mirror = rig.mirror()
    Deferred.fromCoroutine(mirror.get_state("demo"))
    stub.flush()
    mirror.stop()
    before = len(file_requests(upstream))
    clock.advance(30)
    stub.flush()
    assert len(file_requests(upstream)) <= before + 1  # at most the one under way


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


def test_upstream_without_ranges_gives_metadata_from_the_cached_wheel(tmp_path: Path) -> None:
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
    assert only.size == wheel.stat().st_size and only.core_metadata is None
    record = storage.get_mirror_file("root/pypi", path_key_for(only), only.filename).result
    found: list[Any] = []
    Deferred.fromCoroutine(mirror.core_metadata(record)).addBoth(found.append)
    for _ in range(5):
        stub.flush()
    # The range request was answered with the whole (too big) file, dropped unread; so the
    # wheel was downloaded once, cached, and its METADATA read from the cache.
    want = extract_core_metadata(str(wheel), wheel.name)
    assert found[0].data == want
    whole = [p for m, p, r in upstream.requests if m == b"GET" and r is None and "/files/" in p]
    assert len(whole) == 1
    record = storage.get_mirror_file("root/pypi", path_key_for(only), only.filename).result
    assert record.cached_sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    (learnt,) = mirror.cached_state("big").page.links
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


@given(
    versions=st.lists(st.sampled_from(["0.9", "1.0", "1.1", "2.0rc1", "2.0", "10.0"]), max_size=12),
    count=st.integers(0, 4),
)
def test_split_newest_takes_whole_newest_versions(versions: list[str], count: int) -> None:
    links = [link(f"demo-{v}.tar.gz", size=i) for i, v in enumerate(versions)]
    newest, rest = split_newest(links, count)
    assert sorted(x.size for x in newest + rest) == list(range(len(versions)))  # type: ignore[type-var]

    def version(x: Link) -> Version:
        return Version(x.filename[len("demo-") : -len(".tar.gz")])

    chosen = {version(x) for x in newest}
    assert len(chosen) == min(count, len(set(versions)))
    assert all(version(x) < min(chosen) for x in rest) if chosen else len(rest) == len(links)
    # Newest first.
    assert [version(x) for x in newest] == sorted((version(x) for x in newest), reverse=True)
