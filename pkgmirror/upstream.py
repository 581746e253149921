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
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import ResponseFailed
from twisted.web.http_headers import Headers

from pkgmirror import __version__

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
        return cls(client, clock, url, auth, **kw)

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
        expired: list[bool] = []
        d: Deferred[Any] = Deferred.fromCoroutine(self._fetch_page(url, extra))

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
    ) -> None:
        """
        Streams a file's body into ``on_data``. Fires when the body is complete; fails with
        UpstreamError on a bad status, a lost connection (a truncated body), the first answer
        taking longer than ``timeout`` or no bytes arriving for ``idle_timeout`` seconds.
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
        d: Deferred[None] = Deferred.fromCoroutine(self._stream(url, on_start, on_data, state))
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
        length = _length(response)
        modified = _header(response, b"last-modified")
        when = None
        if modified:
            try:
                when = parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                when = None
        on_start(FileStart(length, when))
        state["kick"](self.idle_timeout)

        def chunk(data: bytes) -> None:
            state["kick"](self.idle_timeout)
            on_data(data)

        try:
            await treq.collect(response, chunk)
        except CancelledError:
            raise
        except Exception as e:
            raise UpstreamError(_describe(e)) from e


async def _discard(response: Any) -> None:
    try:
        await treq.content(response)
    except Exception:
        pass


def make_headers(values: dict[str, str]) -> Headers:
    return Headers({k.encode(): [v.encode()] for k, v in values.items()})


__all__ = [
    "FileStart",
    "PageResponse",
    "TimeoutError",
    "Upstream",
    "UpstreamError",
    "UpstreamTimeout",
    "split_credentials",
]
