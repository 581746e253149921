"""
RefreshService on a Clock, over in-memory mirrors whose upstream the test scripts.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from twisted.internet.task import Clock

from pkgmirror.mirror import Mirror
from pkgmirror.refresh import RefreshService, due_for_refresh
from pkgmirror.testing.fakemirror import BASE, EXPIRY, Rig, make_rig
from pkgmirror.testing.inmemory import outcome, result_of, start

INTERVAL = 60.0
FILES = {"demo-1.0.tar.gz": b"one"}


def fetched(rig: Rig, *projects: str) -> None:
    for project in projects:
        rig.upstream.serve(project, FILES)
        assert rig.get(project).status == "ok"


def calls_for(rig: Rig, project: str) -> int:
    return sum(1 for url, _ in rig.upstream.page_calls if url == f"{BASE}{project}/")


def service(clock: Clock, *mirrors: Mirror, concurrency: int = 4) -> RefreshService:
    def all_mirrors() -> Iterable[Mirror]:
        return mirrors

    refresher = RefreshService(all_mirrors, clock, interval=INTERVAL, concurrency=concurrency)
    refresher.startService()
    return refresher


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def test_refreshes_recently_used_pages_about_to_expire(rig: Rig) -> None:
    fetched(rig, "hot", "cold", "later")
    # "cold" was last used long ago; "later" was used (and fetched) recently.
    rig.mirror.last_used["cold"] = rig.clock.seconds() - 3 * 3600
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    rig.upstream.serve("later", FILES)
    result_of(start(rig.mirror.refresh("later")))
    rig.get("later")
    rig.mirror.last_used["ghost"] = rig.clock.seconds()  # used, never cached (it failed)

    now = rig.clock.seconds()
    assert due_for_refresh(rig.mirror, now, INTERVAL) == ["hot"]
    assert "cold" not in rig.mirror.last_used, "forgotten once out of use"

    refresher = service(rig.clock, rig.mirror)
    before = {p: calls_for(rig, p) for p in ("hot", "cold", "later", "ghost")}
    rig.clock.advance(INTERVAL)
    after = {p: calls_for(rig, p) for p in before}
    assert after["hot"] == before["hot"] + 1
    assert after["cold"] == before["cold"]
    assert after["later"] == before["later"]
    assert after["ghost"] == before["ghost"]
    assert refresher.refreshed == 1 and refresher.failed == 0
    # Refreshed ahead of expiry: the next client finds it fresh and nobody waits.
    state = rig.mirror.cached_state("hot")
    assert state is not None and rig.mirror.is_fresh(state)
    refresher.stopService()


def test_rounds_keep_running(rig: Rig) -> None:
    refresher = service(rig.clock, rig.mirror)
    for expected in range(1, 6):
        rig.clock.advance(INTERVAL)
        assert refresher.rounds == expected, "a round with nothing to do must not stop the next"
    fetched(rig, "hot")
    rig.clock.advance(EXPIRY)
    assert calls_for(rig, "hot") >= 2
    refresher.stopService()
    assert rig.clock.getDelayedCalls() == []


def test_concurrency_is_bounded(rig: Rig) -> None:
    projects = [f"p{i}" for i in range(10)]
    fetched(rig, *projects)
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    for project in projects:
        rig.mirror.last_used[project] = rig.clock.seconds()
    refresher = service(rig.clock, rig.mirror, concurrency=3)
    rig.upstream.hold = True
    start_calls = len(rig.upstream.page_calls)
    rig.clock.advance(INTERVAL)
    in_flight = []
    while rig.upstream.held:
        in_flight.append(len(rig.upstream.held))
        rig.upstream.release()
    assert in_flight == [3, 3, 3, 1]
    assert len(rig.upstream.page_calls) - start_calls == 10
    assert refresher.refreshed == 10
    refresher.stopService()


def test_a_failing_project_does_not_stop_the_loop(rig: Rig) -> None:
    fetched(rig, "good", "bad")
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    rig.mirror.last_used.update(good=rig.clock.seconds(), bad=rig.clock.seconds())
    # Not an upstream error: a bug-like failure that escapes the mirror's own handling.
    rig.upstream.pages[f"{BASE}bad/"] = RuntimeError("unexpected")
    refresher = service(rig.clock, rig.mirror)
    rig.clock.advance(INTERVAL)
    assert refresher.failed == 1 and refresher.refreshed == 1
    for _ in range(int(EXPIRY // INTERVAL) + 1):
        rig.clock.advance(INTERVAL)
    assert refresher.rounds >= 10
    assert calls_for(rig, "good") >= 3, "later rounds still refresh"
    assert calls_for(rig, "bad") >= 3, "and still try the failing one"
    refresher.stopService()


def test_a_round_that_raises_does_not_stop_the_loop(rig: Rig) -> None:
    broken = [True]

    def mirrors() -> Iterable[Mirror]:
        if broken[0]:
            raise RuntimeError("config being edited")
        return [rig.mirror]

    refresher = RefreshService(mirrors, rig.clock, interval=INTERVAL)
    refresher.startService()
    rig.clock.advance(INTERVAL)
    broken[0] = False
    fetched(rig, "hot")
    rig.clock.advance(EXPIRY)
    assert calls_for(rig, "hot") >= 2
    refresher.stopService()


def test_nothing_is_refreshed_while_the_upstream_is_down(rig: Rig) -> None:
    fetched(rig, "hot")
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    rig.mirror.last_used["hot"] = rig.clock.seconds()
    refresher = service(rig.clock, rig.mirror)
    rig.mirror.health.failed("down")
    rig.mirror.health.retry_at = rig.clock.seconds() + 10 * INTERVAL
    calls = len(rig.upstream.page_calls)
    rig.clock.advance(INTERVAL)
    rig.clock.advance(INTERVAL)
    assert due_for_refresh(rig.mirror, rig.clock.seconds(), INTERVAL) == []
    assert len(rig.upstream.page_calls) == calls
    assert refresher.rounds == 2
    # Once the backoff has passed, the next round asks again.
    rig.clock.advance(rig.mirror.health.retry_at - rig.clock.seconds())
    rig.clock.advance(INTERVAL)
    assert len(rig.upstream.page_calls) == calls + 1
    refresher.stopService()


def test_non_volatile_mirrors_are_not_refreshed() -> None:
    rig = make_rig(volatile=False)
    fetched(rig, "hot")
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    rig.mirror.last_used["hot"] = rig.clock.seconds()
    assert due_for_refresh(rig.mirror, rig.clock.seconds(), INTERVAL) == []
    refresher = service(rig.clock, rig.mirror)
    rig.clock.advance(INTERVAL)
    assert calls_for(rig, "hot") == 1
    refresher.stopService()


def test_several_mirrors_share_one_loop() -> None:
    first = make_rig(name="one")
    second = make_rig(name="two", clock=first.clock)
    fetched(first, "a")
    fetched(second, "b")
    first.clock.advance(EXPIRY - INTERVAL / 2)
    first.mirror.last_used["a"] = first.clock.seconds()
    second.mirror.last_used["b"] = first.clock.seconds()
    refresher = service(first.clock, first.mirror, second.mirror)
    first.clock.advance(INTERVAL)
    assert calls_for(first, "a") == 2 and calls_for(second, "b") == 2
    refresher.stopService()


def test_a_slow_round_is_not_piled_up(rig: Rig) -> None:
    fetched(rig, "slow")
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    rig.mirror.last_used["slow"] = rig.clock.seconds()
    refresher = service(rig.clock, rig.mirror)
    rig.upstream.hold = True
    rig.clock.advance(INTERVAL)
    rig.clock.advance(INTERVAL)
    rig.clock.advance(INTERVAL)
    assert calls_for(rig, "slow") == 2, "one refresh in flight, no second one"
    assert refresher.rounds == 1
    rig.upstream.release()
    refresher.stopService()


def test_stop_waits_for_refreshes_under_way_and_drops_the_rest(rig: Rig) -> None:
    projects = [f"p{i}" for i in range(4)]
    fetched(rig, *projects)
    rig.clock.advance(EXPIRY - INTERVAL / 2)
    for project in projects:
        rig.mirror.last_used[project] = rig.clock.seconds()
    refresher = service(rig.clock, rig.mirror, concurrency=1)
    rig.upstream.hold = True
    rig.clock.advance(INTERVAL)
    assert len(rig.upstream.held) == 1
    calls = len(rig.upstream.page_calls)
    stopped = refresher.stopService()
    assert stopped is not None
    box = outcome(stopped)
    assert box == [], "a refresh is still under way"
    rig.upstream.release()
    assert box == [None]
    assert len(rig.upstream.page_calls) == calls, "queued refreshes are dropped"
    assert rig.clock.getDelayedCalls() == []
