"""
The periodic refresh of volatile mirror pages that clients used lately and that are about to
expire, so pip rarely waits on an upstream and the offline copy stays fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pkgmirror.mirror import Mirror

log = Logger()


def due_for_refresh(mirror: Mirror, now: float, interval: float) -> list[str]:
    """
    Projects of ``mirror`` used within the last two expiry periods whose cached page expires
    before the next round: refreshing them now means the next client finds them fresh.
    """
    if not mirror.config.volatile or mirror.upstream_url is None or mirror.settings.offline:
        return []
    if mirror.health.is_down():
        return []
    expiry = mirror.expiry
    recent = max(2 * expiry, 3600)
    due = []
    for project, used in list(mirror.last_used.items()):
        if now - used > recent:
            del mirror.last_used[project]
            continue
        state = mirror.cached_state(project)
        if state is None:
            continue
        if state.fetched_at + expiry <= now + interval:
            due.append(project)
    return due


@attrs.define
class RefreshService(Service):
    """Every ``interval`` seconds, refreshes what ``due_for_refresh`` names, a few at once."""

    _mirrors: Callable[[], Iterable[Mirror]]
    _clock: IReactorTime
    interval: float = 60.0
    concurrency: int = 4
    rounds: int = 0
    refreshed: int = 0
    failed: int = 0
    _loop: LoopingCall | None = None
    _running_round: Deferred[None] | None = None

    def startService(self) -> None:
        Service.startService(self)
        self._loop = LoopingCall(self.run_once)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: log.failure("refresh loop stopped", f)
        )

    def stopService(self) -> Deferred[None] | None:
        """
        Stops the loop; refreshes not yet begun are dropped, and the Deferred fires once those
        under way have finished (each upstream request has its own deadline, so this is bounded).
        """
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running_round is None:
            return None
        finished: Deferred[None] = Deferred()

        def done(result: object) -> object:
            finished.callback(None)
            return result

        self._running_round.addBoth(done)
        return finished

    def run_once(self) -> Deferred[None]:
        """One round; never fails, so the LoopingCall never dies."""
        if self._running_round is not None:
            # The previous round is still going (a slow upstream): skip, do not pile up.
            return Deferred.fromCoroutine(_noop())
        d = Deferred.fromCoroutine(self._round())
        d.addErrback(lambda f: log.failure("refresh round failed", f))
        if d.called:
            # Nothing was due, or everything answered at once: no round is left running.
            return d
        self._running_round = d

        def done(result: object) -> None:
            self._running_round = None

        d.addBoth(done)
        return d

    async def _round(self) -> None:
        self.rounds += 1
        now = self._clock.seconds()
        limit = DeferredSemaphore(self.concurrency)
        work = []
        for mirror in list(self._mirrors()):
            for project in due_for_refresh(mirror, now, self.interval):
                work.append(limit.run(self._refresh_one, mirror, project))
        if work:
            await DeferredList(work, consumeErrors=True)

    def _refresh_one(self, mirror: Mirror, project: str) -> Deferred[None]:
        async def go() -> None:
            if not self.running:
                return
            try:
                await mirror.refresh(project)
                self.refreshed += 1
            except Exception as e:
                self.failed += 1
                log.info(
                    "refresh of {project} on {index} failed: {e}",
                    project=project,
                    index=mirror.key,
                    e=e,
                )

        return Deferred.fromCoroutine(go())


async def _noop() -> None:
    return None
