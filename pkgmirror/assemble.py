"""
The composition root's parts (called from ``tap``): real storage, HTTP client and site.
"""

from __future__ import annotations

import io
import tempfile
import time
import weakref
from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.server import Request, Site

from pkgmirror.auth import DEFAULT_TOKEN_TTL
from pkgmirror.logs import log_request
from pkgmirror.mirror import MirrorSettings
from pkgmirror.server import Server, ServerSettings
from pkgmirror.serverinit import BLOBS, DATABASE
from pkgmirror.web.util import abort

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
    http_pool = QuietConnectionPool(reactor, persistent=True)
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
        mirror_url_allow=tuple(options.get("mirror-url-allow") or ()),
    )

    def run_in_thread(f: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, pool, f)

    server = Server(storage, blobs, reactor, client, run_in_thread, settings)
    server.serverdir = serverdir.path
    await server.load()
    return server, http_pool


class _QuietClientFactory(_HTTP11ClientFactory):
    # One "Starting factory" and one "Stopping factory" line per upstream connection buried
    # the log; connection failures still reach it through the requests that see them.
    noisy = False


class QuietConnectionPool(HTTPConnectionPool):
    """Twisted's pool, without a log line for every connection it opens or closes."""

    _factory = _QuietClientFactory


class PkgmirrorSite(Site):
    """
    The HTTP site: logs one event per request (see ``pkgmirror.logs``), knows the requests
    under way, and on stop refuses new requests and closes idle connections while the
    requests under way finish.
    """

    # No "Starting factory" lines in the log; the service logs where it listens.
    noisy = False

    def __init__(self, resource: Any) -> None:
        super().__init__(resource, requestFactory=TimedRequest)
        self.in_flight: set[TimedRequest] = set()
        self.stopping = False
        # Connections that carried a request: the idle ones are closed on stop.
        self._channels: weakref.WeakSet[Any] = weakref.WeakSet()
        # Set by build_site: the largest request body, and where big bodies are spooled.
        self.max_body_size: int | None = None
        self.body_dir: str | None = None

    def log(self, request: Any) -> None:
        """Called by twisted.web when a response is complete."""
        log_request(request, _took(request), complete=True)

    def request_started(self, request: TimedRequest) -> None:
        self.in_flight.add(request)
        self._channels.add(request.channel)

        def ended(result: object) -> None:
            self.in_flight.discard(request)
            if isinstance(result, Failure):
                # The connection went before the response was complete: log it all the same.
                log_request(request, _took(request), complete=False)

        request.notifyFinish().addBoth(ended)

    def stop_accepting(self) -> None:
        """
        From now on every connection closes after its response, idle ones at once, and a
        request that still arrives is answered 503.
        """
        self.stopping = True
        for channel in list(self._channels):
            channel.persistent = False
            if not channel.requests and channel.transport is not None:
                channel.transport.loseConnection()
        for request in self.in_flight:
            if not request.startedWriting:
                request.setHeader(b"Connection", b"close")

    def abort_in_flight(self) -> None:
        """End every response under way; clients see a broken connection, never a short file."""
        for request in list(self.in_flight):
            abort(request)


class TimedRequest(Request):
    """
    A request that knows when it began (for the access log), tells its site when it is under
    way, and refuses a body larger than the site's ``max_body_size`` as soon as it is
    announced or exceeded.
    """

    # Upload forms are parsed as a stream by the upload handler, never whole in memory.
    _parsePOSTFormSubmission = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started_at = time.monotonic()
        self._body_size = 0
        self._body_refused = False

    def process(self) -> None:
        site = getattr(self.channel, "site", None)
        if isinstance(site, PkgmirrorSite):
            if site.stopping:
                self._refuse_while_stopping()
                return
            site.request_started(self)
        super().process()

    def _refuse_while_stopping(self) -> None:
        self.channel.persistent = False
        body = b"the server is stopping; retry in a moment\n"
        self.setResponseCode(503)
        self.setHeader(b"Connection", b"close")
        self.setHeader(b"Retry-After", b"5")
        self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        self.setHeader(b"Content-Length", str(len(body)).encode())
        if self.method != b"HEAD":
            self.write(body)
        self.finish()

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


def _took(request: Any) -> float:
    return time.monotonic() - getattr(request, "started_at", time.monotonic())


def build_site(server: Server, body_dir: str | None = None) -> PkgmirrorSite:
    from pkgmirror.upload import FORM_OVERHEAD
    from pkgmirror.web.root import Root

    site = PkgmirrorSite(Root(server))
    site.max_body_size = server.settings.max_upload_size + FORM_OVERHEAD
    site.body_dir = body_dir
    return site


def busy(server: Server, site: PkgmirrorSite) -> tuple[int, int]:
    """(responses under way, cache fills under way, including the ones still committing)."""
    return len(site.in_flight), sum(len(m.fills) for m in server.mirrors.values())


async def drain(
    reactor: Any,
    server: Server,
    site: PkgmirrorSite,
    timeout: float,
    hurry: Callable[[], bool] = lambda: False,
) -> None:
    """
    Waits up to ``timeout`` seconds (less once ``hurry()`` is true) for the responses and cache
    fills under way to finish, then ends what is left: unfinished fills are discarded with
    their partial files, and unfinished responses are cut off.
    """
    deadline = reactor.seconds() + timeout
    responses, fills = busy(server, site)
    if responses or fills:
        log.info(
            "stopping: waiting up to {timeout:g} s for {responses} responses and "
            "{fills} cache fills to finish",
            timeout=timeout,
            responses=responses,
            fills=fills,
        )
    while any(busy(server, site)) and reactor.seconds() < deadline and not hurry():
        await deferLater(reactor, 0.05, lambda: None)
    responses, fills = busy(server, site)
    if not (responses or fills):
        return
    log.warn(
        "stopping with {responses} responses and {fills} cache fills unfinished: ending "
        "them; partial files are discarded",
        responses=responses,
        fills=fills,
    )
    for mirror in server.mirrors.values():
        for fill in list(mirror.fills.values()):
            if not fill.done:
                fill.failed("server stopping")
    site.abort_in_flight()
    # Fills that had all their bytes are being committed (a rename and a database row):
    # let them end, so no stored file lacks its record.
    deadline = reactor.seconds() + 2
    while busy(server, site)[1] and reactor.seconds() < deadline:
        await deferLater(reactor, 0.05, lambda: None)
