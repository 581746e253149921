"""
The composition root's parts (called from ``tap``): real storage, HTTP client and site.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Request, Site

from pkgmirror.auth import DEFAULT_TOKEN_TTL
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
        token_ttl=options.get("token-ttl", DEFAULT_TOKEN_TTL),
        max_upload_size=options.get("max-upload-size") or 1024**3,
    )

    def run_in_thread(f: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, pool, f)

    server = Server(storage, blobs, reactor, client, run_in_thread, settings)
    server.serverdir = serverdir.path
    await server.load()
    return server, http_pool


class PkgmirrorSite(Site):
    """A Site whose access log is one line per request, with the time it took."""

    def __init__(self, resource: Any, log_format: str = "text") -> None:
        super().__init__(resource)
        self.log_format = log_format
        self.max_body_size: int | None = None
        self.body_dir: str | None = None

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
    """
    A request that knows when it began (for the access log), and refuses a body larger than
    the site's ``max_body_size`` as soon as it is announced or exceeded.
    """

    # Upload forms are parsed as a stream by the upload handler, never whole in memory.
    _parsePOSTFormSubmission = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pkgmirror_started = time.monotonic()
        self._body_size = 0
        self._body_refused = False

    def _limit(self) -> int | None:
        return getattr(getattr(self.channel, "site", None), "max_body_size", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self.content = io.BytesIO()
            self._refuse_body(limit)
            return
        if length is not None and length < 100_000:
            self.content = io.BytesIO()
        else:
            # Big bodies go to an unnamed file beside the blobs, not to a /tmp that may be RAM.
            body_dir = getattr(getattr(self.channel, "site", None), "body_dir", None)
            self.content = tempfile.TemporaryFile(dir=body_dir)

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_size += len(data)
        limit = self._limit()
        if limit is not None and self._body_size > limit:
            self._refuse_body(limit)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._body_refused:
            transport: Any = self.channel.transport
            transport.loseConnection()
            return
        super().requestReceived(command, path, version)

    def _refuse_body(self, limit: int) -> None:
        """Answers 413 at once and drops the body; the connection closes when it ends."""
        self._body_refused = True
        if self.content is not None:
            self.content.close()
        self.content = io.BytesIO()
        # No "100 Continue" after our answer: the client should not send the body at all.
        self.requestHeaders.removeHeader(b"expect")
        message = f"request body larger than this server's limit of {limit} bytes\n".encode()
        channel: Any = self.channel
        transport: Any = channel.transport
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(message)
            + message
        )
        # Closing now, with the client still sending, would reset the connection and could
        # destroy the answer before it is read: stop writing, keep discarding what arrives,
        # and give up on a client that keeps sending after a grace period.
        if hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
            channel.callLater(30, lambda: _abort(transport))
        else:
            transport.loseConnection()


def _abort(transport: Any) -> None:
    if getattr(transport, "connected", False):
        transport.abortConnection()


def build_site(server: Server, log_format: str, body_dir: str | None = None) -> Site:
    from pkgmirror.upload import FORM_OVERHEAD
    from pkgmirror.web.root import Root

    site = PkgmirrorSite(Root(server), log_format)
    site.requestFactory = TimedRequest
    site.max_body_size = server.settings.max_upload_size + FORM_OVERHEAD
    site.body_dir = body_dir
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
