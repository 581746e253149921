"""
The treq side of mirroring: conditional page fetches and streamed file downloads, each with a
deadline, and credentials taken out of mirror URLs.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import attrs
import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from pkgmirror import __version__
from pkgmirror.metadata import (
    MAX_METADATA_BYTES,
    TAIL_BYTES,
    BadWheel,
    central_directory_span,
    find_member,
    member_bytes,
)

log = Logger()

ACCEPT_PAGE = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
USER_AGENT = f"pkgmirror/{__version__}"
# Pages bigger than this are refused: a project list of a million names is ~40 MB of HTML.
MAX_PAGE_BYTES = 256 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or gave an answer we cannot use. One-line message."""


class UpstreamTimeout(UpstreamError):
    pass


@attrs.frozen
class PageResponse:
    status: Literal["ok", "not_modified", "missing"]
    url: str
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    serial: int | None = None


@attrs.frozen
class RangeAnswer:
    """
    An upstream's answer to a range request: ``first`` is where ``body`` starts in the file,
    ``total`` the file's length (None when the upstream did not say).
    """

    body: bytes
    first: int
    total: int | None
    last_modified: float | None


@attrs.frozen
class FileProbe:
    """What a few cheap requests told us of an upstream file, without downloading it."""

    size: int | None
    last_modified: float | None
    metadata: bytes | None = None
    # The whole file, when a range answer held all of it (a small wheel): unverified bytes.
    whole: bytes | None = None


class _Body(Protocol):
    """treq's body collector, keeping the transport so that the body can be paused."""

    def __init__(self, finished: Deferred[None], collector: Callable[[bytes], None]) -> None:
        self.finished: Deferred[None] | None = finished
        self.collector = collector

    def dataReceived(self, data: bytes) -> None:
        try:
            self.collector(data)
        except BaseException:
            if self.transport is not None:
                self.transport.loseConnection()
            if self.finished is not None:
                self.finished.errback(Failure())
            self.finished = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.finished is None:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)


@implementer(IPushProducer)
class _Source:
    """Pauses an upstream body; the idle timer does not run while it is paused on purpose."""

    def __init__(self, transport: Any, state: dict[str, Any], idle_timeout: float) -> None:
        self._transport = transport
        self._state = state
        self._idle_timeout = idle_timeout

    def pauseProducing(self) -> None:
        self._transport.pauseProducing()
        timer = self._state["timer"]
        if timer is not None and timer.active():
            timer.cancel()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()
        self._state["kick"](self._idle_timeout)

    def stopProducing(self) -> None:
        self._transport.stopProducing()


class _TooLong(Exception):
    pass


@attrs.frozen
class FileStart:
    """What an upstream said before the body of a file: its length and age when it gave them."""

    length: int | None
    last_modified: float | None


def split_credentials(url: str) -> tuple[str, str | None]:
    """``http://u:p@host/x`` -> (``http://host/x``, Basic header value) ."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    token = base64.b64encode(f"{parts.username or ''}:{parts.password or ''}".encode()).decode(
        "ascii"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), f"Basic {token}"


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _header(response: Any, name: bytes) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


def _length(response: Any) -> int | None:
    """
    The declared body length. Twisted's Agent takes Content-Length out of the headers (it is a
    connection-control header) and gives it as ``response.length``.
    """
    length = getattr(response, "length", None)
    if isinstance(length, int) and length >= 0:
        return length
    header = _header(response, b"content-length")
    return int(header) if header is not None and header.isdigit() else None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total or None) of ``bytes a-b/total``."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    span, _, total = spec.partition("/")
    first, dash, _last = span.partition("-")
    if unit.lower() != "bytes" or not dash or not first.strip().isdigit():
        return None
    total = total.strip()
    return int(first), int(total) if total.isdigit() else None


def _describe(failure_value: BaseException) -> str:
    if isinstance(failure_value, ConnectError | DNSLookupError):
        return f"connection failed: {failure_value.__class__.__name__}"
    if isinstance(failure_value, ResponseFailed):
        return "connection lost before the whole answer arrived"
    return f"{failure_value.__class__.__name__}: {failure_value}"[:200]


@attrs.define
class Upstream:
    """
    Fetches from one upstream. ``base_url`` is the mirror_url (credentials removed);
    the credentials go to every request on the same origin.
    """

    _client: Any  # treq.client.HTTPClient or treq.testing.StubTreq
    _clock: IReactorTime
    base_url: str
    _auth: str | None = None
    timeout: float = 10.0
    idle_timeout: float = 30.0

    @classmethod
    def for_mirror_url(
        cls, client: Any, clock: IReactorTime, mirror_url: str, **kw: Any
    ) -> Upstream:
        url, auth = split_credentials(mirror_url)
        # ".../simple" names the same index as ".../simple/": project pages are below it.
        return cls(client, clock, url if url.endswith("/") else url + "/", auth, **kw)

    def project_url(self, project: str) -> str:
        return urljoin(self.base_url, f"{project}/")

    def _headers(self, url: str, extra: dict[str, str]) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, **extra}
        if self._auth and same_origin(url, self.base_url):
            headers["Authorization"] = self._auth
        return headers

    async def fetch_page(self, url: str, etag: str | None = None) -> PageResponse:
        """A project page or the name list; fails with UpstreamError."""
        extra = {"Accept": ACCEPT_PAGE}
        if etag:
            extra["If-None-Match"] = etag
        result: PageResponse = await self._with_deadline(self._fetch_page(url, extra))
        return result

    async def _fetch_page(self, url: str, extra: dict[str, str]) -> PageResponse:
        try:
            response = await self._client.get(
                url, headers=self._headers(url, extra), allow_redirects=True
            )
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e
        code = response.code
        final_url = url
        try:
            final_url = response.request.absoluteURI.decode("utf-8")
        except AttributeError:
            pass
        if code == 304:
            await _discard(response)
            return PageResponse("not_modified", final_url, etag=extra.get("If-None-Match"))
        if code in (404, 410):
            await _discard(response)
            return PageResponse("missing", final_url)
        if code != 200:
            await _discard(response)
            raise UpstreamError(f"upstream answered {code}")
        length = _length(response)
        declared_too_large = length is not None and length > MAX_PAGE_BYTES
        chunks: list[bytes] = []
        received = 0

        def gather(data: bytes) -> None:
            # Raising here makes treq drop the connection: a page declared too large is
            # refused at its first bytes, one without Content-Length once it grows too large.
            nonlocal received
            received += len(data)
            if declared_too_large or received > MAX_PAGE_BYTES:
                raise UpstreamError("upstream page too large")
            chunks.append(data)

        try:
            await treq.collect(response, gather)
        except (CancelledError, UpstreamError):
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e
        body = b"".join(chunks)
        serial = _header(response, b"x-pypi-last-serial")
        return PageResponse(
            "ok",
            final_url,
            body=body,
            content_type=_header(response, b"content-type") or "",
            etag=_header(response, b"etag"),
            serial=int(serial) if serial and serial.isdigit() else None,
        )

    async def stream_file(
        self,
        url: str,
        on_start: Callable[[FileStart], None],
        on_data: Callable[[bytes], None],
        on_source: Callable[[IPushProducer], None] | None = None,
    ) -> None:
        """
        Streams a file's body into ``on_data``. Fires when the body is complete; fails with
        UpstreamError on a bad status, a lost connection (a truncated body), the first answer
        taking longer than ``timeout`` or no bytes arriving for ``idle_timeout`` seconds (not
        counting time paused). ``on_source`` gets a producer that pauses the body.
        """
        state: dict[str, Any] = {"timer": None}
        running: list[Deferred[None]] = []

        def expire() -> None:
            state["expired"] = True
            running[0].cancel()

        def kick(delay: float) -> None:
            timer = state["timer"]
            if timer is not None and timer.active():
                timer.reset(delay)
            else:
                state["timer"] = self._clock.callLater(delay, expire)

        # Armed before the download starts: an answer that is already there (a connection
        # pool, an in-memory agent) runs the coroutine up to its first kick synchronously.
        state["kick"] = kick
        kick(self.timeout)
        d: Deferred[None] = Deferred.fromCoroutine(
            self._stream(url, on_start, on_data, state, on_source)
        )
        running.append(d)
        try:
            await d
        except (CancelledError, UpstreamError):
            if state.get("expired"):
                raise UpstreamTimeout("upstream stopped sending the file") from None
            raise
        finally:
            timer = state["timer"]
            if timer is not None and timer.active():
                timer.cancel()

    async def _stream(
        self,
        url: str,
        on_start: Callable[[FileStart], None],
        on_data: Callable[[bytes], None],
        state: dict[str, Any],
        on_source: Callable[[IPushProducer], None] | None,
    ) -> None:
        headers = self._headers(url, {"Accept-Encoding": "identity"})
        try:
            response = await self._client.get(
                url, headers=headers, allow_redirects=True, unbuffered=True
            )
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e
        if response.code != 200:
            await _discard(response)
            raise UpstreamError(f"upstream answered {response.code} for the file")
        when = _http_date(_header(response, b"last-modified"))
        on_start(FileStart(_length(response), when))
        state["kick"](self.idle_timeout)

        def chunk(data: bytes) -> None:
            state["kick"](self.idle_timeout)
            on_data(data)

        finished: Deferred[None] = Deferred()
        body = _Body(finished, chunk)
        try:
            if response.length == 0:
                finished.callback(None)
            else:
                response.deliverBody(body)
                if on_source is not None and body.transport is not None:
                    on_source(_Source(body.transport, state, self.idle_timeout))
            await finished
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e

    async def _with_deadline(self, work: Any) -> Any:
        expired: list[bool] = []
        d: Deferred[Any] = Deferred.fromCoroutine(work)

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self._clock.callLater(self.timeout, expire)
        try:
            return await d
        except (CancelledError, UpstreamError):
            # Cancelling a request that is under way makes the Agent fail with "connection
            # lost" rather than CancelledError: what counts is that the deadline passed.
            if expired:
                raise UpstreamTimeout(
                    f"no answer from upstream within {self.timeout:g} s"
                ) from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    async def head(self, url: str) -> FileProbe:
        """A file's size and Last-Modified from a HEAD; fails with UpstreamError."""
        return await self._with_deadline(self._head(url))  # type: ignore[no-any-return]

    async def _head(self, url: str) -> FileProbe:
        headers = self._headers(url, {"Accept-Encoding": "identity"})
        try:
            response = await self._client.head(url, headers=headers, allow_redirects=True)
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e
        await _discard(response)
        if response.code != 200:
            raise UpstreamError(f"upstream answered {response.code} to HEAD")
        # For a HEAD, twisted leaves Content-Length among the headers (and ``length`` is 0).
        length = _header(response, b"content-length")
        return FileProbe(
            int(length) if length and length.isdigit() else None,
            _http_date(_header(response, b"last-modified")),
        )

    async def fetch_range(self, url: str, first: int | None, length: int) -> RangeAnswer:
        """
        ``length`` bytes from ``first`` on, or the last ``length`` bytes when ``first`` is None.
        An upstream that ignores Range and answers 200 is read only when the whole file is at
        most ``length`` bytes (else UpstreamError: we never download whole files here).
        """
        return await self._with_deadline(  # type: ignore[no-any-return]
            self._fetch_range(url, first, length)
        )

    async def _fetch_range(self, url: str, first: int | None, length: int) -> RangeAnswer:
        spec = f"bytes=-{length}" if first is None else f"bytes={first}-{first + length - 1}"
        headers = self._headers(url, {"Range": spec, "Accept-Encoding": "identity"})
        try:
            response = await self._client.get(
                url, headers=headers, allow_redirects=True, unbuffered=True
            )
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e
        modified = _http_date(_header(response, b"last-modified"))
        if response.code == 206:
            where = _content_range(_header(response, b"content-range"))
            if where is None:
                await _discard(response)
                raise UpstreamError("206 without a usable Content-Range")
            start, total = where
        elif response.code == 200:
            declared = _length(response)
            if declared is None or declared > length:
                await _discard_now(response)
                raise UpstreamError("upstream ignores Range requests")
            start, total = 0, declared
        else:
            await _discard(response)
            raise UpstreamError(f"upstream answered {response.code} to a range request")
        chunks: list[bytes] = []
        received = 0

        def collect(data: bytes) -> None:
            nonlocal received
            received += len(data)
            if received > length:
                raise _TooLong
            chunks.append(data)

        try:
            await treq.collect(response, collect)
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e
        return RangeAnswer(b"".join(chunks), start, total, modified)

    async def probe_file(self, url: str, filename: str, *, metadata: bool = True) -> FileProbe:
        """
        Size and Last-Modified of an upstream file, and with ``metadata`` for a wheel its core
        metadata read through range requests (the tail with the central directory, then the
        METADATA member; never the whole wheel). Fails with UpstreamError when the upstream
        cannot tell the size; a wheel whose METADATA cannot be read gives ``metadata=None``.
        """
        if not (metadata and filename.endswith(".whl")):
            return await self.head(url)
        tail = await self.fetch_range(url, None, TAIL_BYTES)
        if tail.total is None:
            return FileProbe(None, tail.last_modified)
        try:
            data = await self._wheel_metadata(url, filename, tail)
        except (BadWheel, UpstreamError) as e:
            log.info("no core metadata from {url}: {e}", url=url, e=str(e))
            data = None
        whole = tail.body if tail.first == 0 and len(tail.body) == tail.total else None
        return FileProbe(tail.total, tail.last_modified, data, whole)

    async def fetch_metadata_file(self, url: str) -> bytes | None:
        """The upstream's PEP 658 ``<url>.metadata`` file, or None when it cannot be had."""
        return await self._with_deadline(  # type: ignore[no-any-return]
            self._fetch_small(url + ".metadata")
        )

    async def _fetch_small(self, url: str) -> bytes | None:
        try:
            response = await self._client.get(
                url, headers=self._headers(url, {}), allow_redirects=True
            )
            if response.code != 200:
                await _discard(response)
                return None
            data: bytes = await treq.content(response)
        except CancelledError:
            raise
        except Exception:
            return None
        return data if len(data) <= MAX_METADATA_BYTES else None

    async def _wheel_metadata(self, url: str, filename: str, tail: RangeAnswer) -> bytes | None:
        offset, size = central_directory_span(tail.body, tail.first)
        if offset >= tail.first and offset + size <= tail.first + len(tail.body):
            central = tail.body[offset - tail.first : offset - tail.first + size]
        else:
            central = (await self.fetch_range(url, offset, size)).body
        member = find_member(central, filename)
        if member is None:
            return None
        first, length = member.local_span()
        if first >= tail.first:
            local = tail.body[first - tail.first :]
        else:
            local = (await self.fetch_range(url, first, length)).body
        result = member_bytes(local, member)
        if isinstance(result, int):
            # The local header's extra field was longer than we allowed for.
            local = (await self.fetch_range(url, first, result)).body
            result = member_bytes(local, member)
            if isinstance(result, int):
                raise BadWheel("the local header does not fit where it says")
        return result


async def _discard_now(response: Any) -> None:
    """Drop a body we do not want without reading it: the connection is closed."""

    def refuse(_data: bytes) -> None:
        raise _TooLong

    try:
        await treq.collect(response, refuse)
    except Exception:
        pass


async def _discard(response: Any) -> None:
    try:
        await treq.content(response)
    except Exception:
        pass


__all__ = [
    "FileProbe",
    "FileStart",
    "PageResponse",
    "RangeAnswer",
    "Upstream",
    "UpstreamError",
    "UpstreamTimeout",
    "split_credentials",
]
