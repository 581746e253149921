"""
pkgmirror.mirror.Mirror in memory: MemoryStorage, MemoryBlobStore, a scripted upstream whose
answers the test holds and releases, and a Clock.
"""

from __future__ import annotations

import hashlib
from typing import cast

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.fill import FileFill, FillFailed
from pkgmirror.mirror import (
    Mirror,
    MirrorSettings,
    NoUpstream,
    Unavailable,
    mirror_files,
    with_first_seen,
)
from pkgmirror.model import MirrorFile, MirrorPageState, ProjectPage, iso_time
from pkgmirror.testing.fakemirror import BASE, EXPIRY, T0, Rig, make_rig
from pkgmirror.testing.inmemory import failure_of, outcome, result_of, start
from pkgmirror.testing.memory import MemoryBlobStore
from pkgmirror.testing.strategies import project_pages
from pkgmirror.upstream import FileStart, PageResponse, Upstream, UpstreamError


@pytest.fixture
def rig() -> Rig:
    return make_rig()


FILES = {"demo-1.0.tar.gz": b"one", "demo-2.0.tar.gz": b"two"}


# ---------------------------------------------------------------- pages


def test_fresh_cache_is_served_without_asking_upstream(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES)
    first = rig.get("demo")
    assert first.status == "ok"
    assert sorted(link.filename for link in first.page.links) == sorted(FILES)  # type: ignore[union-attr]
    assert len(rig.upstream.page_calls) == 1
    rig.clock.advance(EXPIRY - 1)
    assert rig.get("demo") == first
    # A restarted process reads the cache from storage and does not ask either.
    assert rig.get("demo", rig.restart()).page == first.page
    assert len(rig.upstream.page_calls) == 1


def test_expiry_revalidates_with_the_etag_and_304_keeps_the_page(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES, etag='"v1"')
    first = rig.get("demo")
    generation = rig.mirror.generation
    rig.clock.advance(EXPIRY)
    again = rig.get("demo")
    assert rig.upstream.page_calls[-1] == (BASE + "demo/", '"v1"')
    assert again.page == first.page and again.etag == '"v1"'
    assert again.fetched_at == rig.clock.seconds()
    stored = rig.stored("demo")
    assert stored is not None and stored.fetched_at == rig.clock.seconds()
    assert rig.mirror.generation == generation, "a 304 changes nothing people see"
    # Fresh again for a whole expiry period.
    rig.clock.advance(EXPIRY - 1)
    rig.get("demo")
    assert len(rig.upstream.page_calls) == 2


def test_a_changed_page_replaces_the_cache(rig: Rig) -> None:
    rig.upstream.serve("demo", {"demo-1.0.tar.gz": b"one"}, etag='"v1"')
    rig.get("demo")
    rig.upstream.serve("demo", FILES, etag='"v2"')
    rig.clock.advance(EXPIRY)
    generation = rig.mirror.generation
    state = rig.get("demo")
    assert state.etag == '"v2"'
    assert {link.filename for link in state.page.links} == set(FILES)  # type: ignore[union-attr]
    assert rig.mirror.generation > generation
    stored = rig.stored("demo")
    assert stored is not None and stored.page == state.page


def test_missing_project_is_remembered(rig: Rig) -> None:
    state = rig.get("nope")
    assert state.status == "missing" and state.page is None
    assert rig.mirror.served(state) is None
    rig.clock.advance(EXPIRY - 1)
    assert rig.get("nope").status == "missing"
    assert rig.get("nope", rig.restart()).status == "missing"
    assert len(rig.upstream.page_calls) == 1
    # Once expired it is asked again, without an ETag, and may exist by now.
    rig.clock.advance(1)
    rig.upstream.serve("nope", FILES)
    assert rig.get("nope").status == "ok"
    assert rig.upstream.page_calls[-1] == (BASE + "nope/", None)


def test_upstream_failure_serves_stale_and_backs_off(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES)
    first = rig.get("demo")
    rig.clock.advance(EXPIRY)
    rig.upstream.pages[BASE + "demo/"] = UpstreamError("connection failed: ConnectionRefused")
    stale = rig.get("demo")
    assert stale == first, "the stale copy, unchanged"
    assert rig.mirror.health.is_down()
    assert rig.mirror.health.as_json()["state"] == "down"
    assert "ConnectionRefused" in (rig.mirror.health.last_error or "")
    calls = len(rig.upstream.page_calls)

    # While down: stale pages without asking, 503 (Unavailable) for what was never fetched.
    assert rig.get("demo") == first
    error = failure_of(start(rig.mirror.get_state("never-fetched")), Unavailable)
    assert "unreachable" in error.reason
    assert error.retry_after == 5
    assert len(rig.upstream.page_calls) == calls

    # Each failed probe doubles the wait: 5, 10, 20, 40, then capped at backoff_max.
    waits = []
    for _ in range(5):
        rig.clock.advance(rig.mirror.health.retry_at - rig.clock.seconds())
        assert not rig.mirror.health.is_down()
        before = rig.clock.seconds()
        assert rig.get("demo") == first
        waits.append(rig.mirror.health.retry_at - before)
    assert waits == [10, 20, 40, 40, 40]
    assert len(rig.upstream.page_calls) == calls + 5

    # Back up: the next probe succeeds and the mirror is healthy again.
    rig.upstream.serve("demo", FILES)
    rig.clock.advance(rig.mirror.health.retry_at - rig.clock.seconds())
    assert rig.get("demo").fetched_at == rig.clock.seconds()
    assert not rig.mirror.health.is_down()
    assert rig.mirror.health.as_json()["state"] == "up"
    assert rig.mirror.health.failures == 0


def test_never_fetched_and_upstream_failing_is_unavailable(rig: Rig) -> None:
    rig.upstream.pages[BASE + "demo/"] = UpstreamError("upstream answered 502")
    error = failure_of(start(rig.mirror.get_state("demo")), Unavailable)
    assert "502" in error.reason
    assert error.retry_after >= 1
    assert rig.stored("demo") is None, "a failure is not a 'missing' answer"


def test_unparseable_page_counts_as_a_failure_and_keeps_the_stale_copy(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES)
    first = rig.get("demo")
    rig.clock.advance(EXPIRY)
    url = BASE + "demo/"
    rig.upstream.pages[url] = PageResponse("ok", url, b"\x00garbage", "image/png", etag='"x"')
    assert rig.get("demo") == first
    assert rig.mirror.health.last_error is not None
    stored = rig.stored("demo")
    assert stored is not None and stored.page == first.page


def test_slow_upstream_gets_stale_after_the_grace_and_updates_later(rig: Rig) -> None:
    rig.upstream.serve("demo", {"demo-1.0.tar.gz": b"one"}, etag='"v1"')
    first = rig.get("demo")
    rig.clock.advance(EXPIRY)
    rig.upstream.serve("demo", FILES, etag='"v2"')
    rig.upstream.hold = True
    box = outcome(start(rig.mirror.get_state("demo")))
    rig.clock.advance(0.9)
    assert box == []
    rig.clock.advance(0.1)
    assert box == [first], "the stale copy after stale_grace seconds"
    # Another client meanwhile waits on the same fetch, not a new one.
    second = outcome(start(rig.mirror.get_state("demo")))
    assert len(rig.upstream.page_calls) == 2
    rig.upstream.release()
    assert second and second[0].etag == '"v2"'
    state = rig.mirror.cached_state("demo")
    assert state is not None and state.etag == '"v2"'
    stored = rig.stored("demo")
    assert stored is not None and len(stored.page.links) == 2  # type: ignore[union-attr]
    assert rig.get("demo").etag == '"v2"'


def test_fast_revalidation_within_the_grace_returns_the_new_page(rig: Rig) -> None:
    rig.upstream.serve("demo", {"demo-1.0.tar.gz": b"one"}, etag='"v1"')
    rig.get("demo")
    rig.clock.advance(EXPIRY)
    rig.upstream.serve("demo", FILES, etag='"v2"')
    rig.upstream.hold = True
    box = outcome(start(rig.mirror.get_state("demo")))
    rig.clock.advance(0.5)
    rig.upstream.release()
    assert box and box[0].etag == '"v2"'
    assert rig.clock.getDelayedCalls() == [], "the grace timer must be cancelled"


def test_concurrent_requests_share_one_fetch(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES)
    rig.upstream.hold = True
    boxes = [outcome(start(rig.mirror.get_state("demo"))) for _ in range(20)]
    assert len(rig.upstream.page_calls) == 1
    assert all(box == [] for box in boxes)
    rig.upstream.release()
    states = [box[0] for box in boxes]
    assert all(isinstance(s, MirrorPageState) and s.status == "ok" for s in states)
    assert all(s is states[0] for s in states)
    assert rig.mirror.stats["upstream_requests"] == 1


def test_concurrent_failure_reaches_every_waiter(rig: Rig) -> None:
    rig.upstream.pages[BASE + "demo/"] = UpstreamError("boom")
    rig.upstream.hold = True
    boxes = [outcome(start(rig.mirror.get_state("demo"))) for _ in range(5)]
    rig.upstream.release()
    assert len(rig.upstream.page_calls) == 1
    assert all(box and isinstance(box[0].value, Unavailable) for box in boxes)


def test_offline_mode_never_fetches() -> None:
    online = make_rig()
    online.upstream.serve("demo", FILES)
    cached = online.get("demo")
    offline_settings = MirrorSettings(offline=True)
    offline = Mirror(
        online.config,
        online.storage,
        online.blobs,
        cast(Upstream, online.upstream),
        online.clock,
        offline_settings,
    )
    online.clock.advance(10 * EXPIRY)
    assert online.get("demo", offline).page == cached.page, "expired, but served"
    error = failure_of(start(offline.get_state("other")), Unavailable)
    assert "offline" in error.reason
    assert result_of(start(offline.refresh("demo"))).page == cached.page
    assert list(result_of(start(offline.project_names()))) == []
    assert len(online.upstream.page_calls) == 1


def test_mirror_without_url_says_so() -> None:
    rig = make_rig(upstream=False)
    error = failure_of(start(rig.mirror.get_state("demo")), NoUpstream)
    assert "mirror_url" in str(error)


def test_refresh_ignores_freshness(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES, etag='"v1"')
    rig.get("demo")
    rig.clock.advance(1)
    state = result_of(start(rig.mirror.refresh("demo")))
    assert rig.upstream.page_calls[-1] == (BASE + "demo/", '"v1"')
    assert state.fetched_at == rig.clock.seconds()


def test_project_names_are_cached_for_the_expiry(rig: Rig) -> None:
    body = b'<html><body><a href="demo/">demo</a><a href="other/">Other</a></body></html>'
    rig.upstream.pages[BASE] = PageResponse("ok", BASE, body, "text/html", etag='"l1"')
    names = result_of(start(rig.mirror.project_names()))
    assert "demo" in names and len(names) == 2
    rig.clock.advance(EXPIRY - 1)
    assert result_of(start(rig.mirror.project_names())) == names
    assert len(rig.upstream.page_calls) == 1
    rig.clock.advance(1)
    assert result_of(start(rig.mirror.project_names())) == names
    assert rig.upstream.page_calls[-1] == (BASE, '"l1"')


# ---------------------------------------------------------------- first-seen times


def test_first_seen_times_survive_refetches(rig: Rig) -> None:
    rig.upstream.serve("demo", {"demo-1.0.tar.gz": b"one"}, etag='"v1"')
    first = rig.get("demo")
    assert [link.upload_time for link in first.page.links] == [iso_time(T0)]  # type: ignore[union-attr]
    rig.clock.advance(EXPIRY * 3)
    rig.upstream.serve("demo", FILES, etag='"v2"')
    later = rig.get("demo")
    times = {link.filename: link.upload_time for link in later.page.links}  # type: ignore[union-attr]
    assert times == {
        "demo-1.0.tar.gz": iso_time(T0),
        "demo-2.0.tar.gz": iso_time(T0 + EXPIRY * 3),
    }


def test_upstream_upload_times_are_kept(rig: Rig) -> None:
    rig.upstream.serve("demo", FILES, upload_time="2020-01-02T03:04:05.000000Z")
    state = rig.get("demo")
    assert {link.upload_time for link in state.page.links} == {  # type: ignore[union-attr]
        "2020-01-02T03:04:05.000000Z"
    }


@settings(max_examples=20, deadline=None)
@given(
    page=project_pages(max_links=4),
    previous=st.none() | project_pages(max_links=4),
    now=st.floats(0, 4e9),
)
def test_with_first_seen_property(
    page: ProjectPage, previous: ProjectPage | None, now: float
) -> None:
    stamped = with_first_seen(page, previous, now)
    assert [link.filename for link in stamped.links] == [link.filename for link in page.links]
    earlier = {link.filename: link.upload_time for link in previous.links} if previous else {}
    for before, after in zip(page.links, stamped.links, strict=True):
        assert attrs.evolve(after, upload_time=before.upload_time) == before
        if before.upload_time:
            assert after.upload_time == before.upload_time
        elif earlier.get(before.filename):
            assert after.upload_time == earlier[before.filename]
        else:
            assert after.upload_time == iso_time(now)
    # Idempotent: stamping again with the result as the previous page changes nothing.
    assert with_first_seen(stamped, stamped, now + 1000) == stamped


# ---------------------------------------------------------------- cache fills


def record_for(rig: Rig, filename: str) -> MirrorFile:
    rig.upstream.serve("demo", FILES)
    state = rig.get("demo")
    assert state.page is not None
    return next(f for f in mirror_files(rig.config.key, state.page) if f.filename == filename)


def test_concurrent_fills_download_once(rig: Rig) -> None:
    record = record_for(rig, "demo-1.0.tar.gz")
    fills = [rig.mirror.start_fill(record) for _ in range(20)]
    assert all(fill is fills[0] for fill in fills)
    assert len(rig.upstream.streams) == 1
    finished = [outcome(fill.when_finished()) for fill in fills]
    rig.upstream.streams[0].send(b"one")
    sha = hashlib.sha256(b"one").hexdigest()
    assert all(box == [sha] for box in finished)
    assert rig.blobs.blobs[sha] == b"one"
    stored = result_of(
        rig.storage.get_mirror_file(rig.config.key, record.path_key, record.filename)
    )
    assert stored is not None and stored.cached_sha256 == sha and stored.size == 3
    assert rig.mirror.fills == {}, "a finished fill is forgotten"
    assert rig.mirror.stats["upstream_requests"] == 2  # the page, then the one download
    # A later fill starts a new download (the web layer serves the blob before asking).
    rig.mirror.start_fill(record)
    assert len(rig.upstream.streams) == 2


def test_hash_mismatch_fails_and_stores_nothing(rig: Rig) -> None:
    record = record_for(rig, "demo-1.0.tar.gz")
    fill = rig.mirror.start_fill(record)
    finished = outcome(fill.when_finished())
    rig.upstream.streams[0].send(b"two")  # the right length, other bytes
    assert finished and isinstance(finished[0].value, FillFailed)
    assert "sha256" in str(finished[0].value)
    assert not fill.verified
    assert rig.blobs.blobs == {}
    stored = result_of(
        rig.storage.get_mirror_file(rig.config.key, record.path_key, record.filename)
    )
    assert stored is not None and stored.cached_sha256 is None
    with pytest.raises(ValueError):
        fill.spool.write(b"more")  # the spool was aborted
    assert rig.mirror.fills == {}


def test_truncated_body_fails(rig: Rig) -> None:
    record = record_for(rig, "demo-1.0.tar.gz")
    fill = rig.mirror.start_fill(record)
    finished = outcome(fill.when_finished())
    rig.upstream.streams[0].send(b"on", length=3)
    assert finished and isinstance(finished[0].value, FillFailed)
    assert "2 of 3" in str(finished[0].value)
    assert rig.blobs.blobs == {}


def test_download_failure_before_any_byte_marks_the_upstream_down(rig: Rig) -> None:
    record = record_for(rig, "demo-1.0.tar.gz")
    fill = rig.mirror.start_fill(record)
    started = outcome(fill.when_started())
    rig.upstream.streams[0].done.errback(UpstreamError("upstream answered 503 for the file"))
    assert started and isinstance(started[0].value, FillFailed)
    assert rig.mirror.health.is_down()


def test_fill_holds_back_the_last_byte_until_verified() -> None:
    store = MemoryBlobStore()
    data = b"0123456789"
    fill = FileFill(store.new_spool(), hashlib.sha256(data).hexdigest())
    changes: list[int] = []
    fill.listen(lambda: changes.append(fill.readable))
    assert fill.readable == 0
    fill.started(FileStart(len(data), None))
    fill.data(data[:4])
    fill.data(data[4:])
    assert fill.readable == len(data) - 1, "all but the last byte before verification"
    assert not fill.done
    fill.succeeded(fill.spool.hexdigest())
    assert fill.readable == len(data)
    assert changes == [3, 9, 10]
    assert result_of(fill.when_finished()) == fill.sha256


def test_fill_failure_reaches_late_listeners() -> None:
    fill = FileFill(MemoryBlobStore().new_spool(), None)
    fill.failed("gone")
    assert isinstance(failure_of(fill.when_started(), FillFailed), FillFailed)
    assert "gone" in str(failure_of(fill.when_finished(), FillFailed))
