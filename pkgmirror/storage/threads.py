"""
How storage code gets blocking work off the reactor thread.

Storage classes take a :class:`Runner` instead of a reactor and a pool, so tests (and offline
tools that never start a reactor) can pass :func:`run_synchronously` and get Deferreds that have
already fired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class Runner(Protocol):
    """Runs a blocking callable somewhere and returns a Deferred of its result."""

    def __call__(self, f: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...


def in_thread_pool(reactor: IReactorFromThreads, pool: ThreadPool) -> Runner:
    """A Runner that calls in ``pool`` and fires its Deferreds in the reactor thread."""

    def run(f: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(reactor, pool, f, *args, **kwargs)

    return run


def run_synchronously(f: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
    """A Runner that calls in the caller's thread: the Deferred has fired when it returns."""
    return maybeDeferred(f, *args, **kwargs)
