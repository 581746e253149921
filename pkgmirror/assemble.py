"""
The composition root's parts (called from ``tap``): real storage, HTTP client and site.
"""

from __future__ import annotations

import json
import time
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Request, Site

from pkgmirror.mirror import MirrorSettings
from pkgmirror.server import Server, ServerSettings
from pkgmirror.serverinit import BLOBS, DATABASE

log = Logger()


async def build_server(reactor: Any, options: Any) -> tuple[Server, HTTPConnectionPool]:
    from pkgmirror.storage.blobs import FileBlobStore
    from pkgmirror.storage.sqlite import SQLiteStorage

    serverdir = options["serverdir"]
    storage = await SQLiteStorage.open(serverdir.child(DATABASE), reactor)
    pool = reactor.getThreadPool()
    blobs = FileBlobStore(serverdir.child(BLOBS), reactor, pool)
    stale = await blobs.discard_stale_spools()
    if stale:
        log.info("removed {n} partial downloads left by an earlier stop", n=stale)
    http_pool = HTTPConnectionPool(reactor, persistent=True)
    http_pool.maxPersistentPerHost = 16
    http_pool.cachedConnectionTimeout = 120
    client = HTTPClient(Agent(reactor, pool=http_pool, connectTimeout=options["request-timeout"]))
    settings = ServerSettings(
        mirror=MirrorSettings(
            offline=bool(options["offline-mode"]),
            default_expiry=int(options["mirror-cache-expiry"]),
        ),
        request_timeout=options["request-timeout"],
        outside_url=options["outside-url"],
    )

    def run_in_thread(f: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, pool, f)

    server = Server(storage, blobs, reactor, client, run_in_thread, settings)
    await server.load()
    return server, http_pool


class PkgmirrorSite(Site):
    """A Site whose access log is one line per request, with the time it took."""

    def __init__(self, resource: Any, log_format: str = "text") -> None:
        super().__init__(resource)
        self.log_format = log_format

    def log(self, request: Any) -> None:
        took = time.monotonic() - getattr(request, "_pkgmirror_started", time.monotonic())
        client = request.getClientAddress()
        host = getattr(client, "host", "-")
        path = request.uri.decode("latin-1", "replace")
        if self.log_format == "json":
            print(
                json.dumps(
                    {
                        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "client": host,
                        "method": request.method.decode("latin-1"),
                        "path": path,
                        "status": request.code,
                        "bytes": request.sentLength,
                        "ms": round(took * 1000, 1),
                    }
                ),
                flush=True,
            )
        else:
            method = request.method.decode("latin-1")
            # Formatted here, once: the logger's own formatting of six fields cost more than
            # serving a cached page.
            log.info(
                "{line}",
                line=f'{host} "{method} {path}" {request.code} {request.sentLength} '
                f"{took * 1000:.1f}ms",
                client=host,
                method=method,
                path=path,
                status=request.code,
                bytes=request.sentLength,
                ms=took * 1000,
            )


class TimedRequest(Request):
    """A request that knows when it began, for the access log."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pkgmirror_started = time.monotonic()


def build_site(server: Server, log_format: str) -> Site:
    from pkgmirror.web.root import Root

    site = PkgmirrorSite(Root(server), log_format)
    site.requestFactory = TimedRequest
    return site


async def drain(reactor: Any, server: Server, timeout: float) -> None:
    """Waits up to ``timeout`` seconds for cache fills under way to finish."""
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        fills = [f for m in server.mirrors.values() for f in m.fills.values() if not f.done]
        if not fills:
            return
        await deferLater(reactor, 0.1, lambda: None)
    log.warn("stopping with cache fills unfinished; their partial files are discarded")
    for mirror in server.mirrors.values():
        for fill in list(mirror.fills.values()):
            if not fill.done:
                fill.failed("server stopping")
