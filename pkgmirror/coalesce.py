"""
One piece of work per key at a time, however many callers ask for it concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


class Coalescer(Generic[T]):
    """
    ``run(key, work)`` starts ``work()`` unless work for ``key`` is under way already; either
    way the caller gets its own Deferred for the shared result. Cancelling a caller's Deferred
    (its client went away) abandons that caller only, never the shared work.
    """

    def __init__(self) -> None:
        self._waiters: dict[object, list[Deferred[T]]] = {}

    def in_flight(self, key: object) -> bool:
        return key in self._waiters

    def run(self, key: object, work: Callable[[], Coroutine[Any, Any, T]]) -> Deferred[T]:
        waiter: Deferred[T] = Deferred()
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._waiters[key] = [waiter]
        shared: Deferred[T] = Deferred.fromCoroutine(work())

        def done(result: T | Failure) -> None:
            for w in self._waiters.pop(key, []):
                if not w.called:
                    w.callback(result) if not isinstance(result, Failure) else w.errback(result)

        shared.addBoth(done)
        return waiter
