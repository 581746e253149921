"""
A small blocking HTTP client for the command line, on ``urllib.request``.

Deliberately not treq/Twisted: a command line sends a handful of requests one after the other and
exits, so a reactor would add start-up cost and complexity for nothing. The server side is where
non-blocking I/O matters.
"""

from __future__ import annotations

import base64
import json
import platform
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import Any

import attrs

from pkgmirror import __version__

USER_AGENT = (
    f"pkgmirror-client/{__version__} "
    f"(py{sys.version_info[0]}.{sys.version_info[1]}; {platform.system().lower()})"
)
JSON_TYPE = "application/json"
MAX_REDIRECTS = 5


class TransportError(Exception):
    """The server could not be reached or did not answer over HTTP."""


@attrs.frozen
class Reply:
    status: int
    url: str
    headers: Message
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The decoded JSON body, or None when the body is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def type(self) -> str | None:
        data = self.json()
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            return str(data["type"])
        return None

    @property
    def result(self) -> Any:
        """The envelope's ``result``; the whole JSON body when there is no envelope."""
        data = self.json()
        if isinstance(data, dict) and "result" in data:
            return data["result"]
        return data

    @property
    def message(self) -> str:
        """The server's ``message``, else a short description of the reply."""
        data = self.json()
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])
        text = self.body.decode("utf-8", "replace").strip()
        content_type = self.headers.get("Content-Type", "")
        if text and content_type.startswith("text/plain") and len(text) < 500:
            return text
        return f"HTTP {self.status}"


def devpi_auth_header(user: str, token: str) -> str:
    """The ``X-Devpi-Auth`` value: base64 of ``user:token``."""
    return base64.b64encode(f"{user}:{token}".encode()).decode("ascii")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # Redirects are followed by HttpClient itself, so that only GETs follow them and a 302 answer to
    # a POST (refresh) can be seen as such.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@attrs.define
class HttpClient:
    timeout: float = 60.0
    _opener: urllib.request.OpenerDirector = attrs.field(
        factory=lambda: urllib.request.build_opener(_NoRedirects())
    )

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = JSON_TYPE,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool | None = None,
    ) -> Reply:
        """
        Send one request and return the reply whatever its status; raise
        :class:`TransportError` only when there is no HTTP reply at all.

        ``auth`` is ``(user, token)``, sent as ``X-Devpi-Auth``. GETs follow redirects unless
        told otherwise.
        """
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            content_type = JSON_TYPE
        all_headers = {"User-Agent": USER_AGENT, "Accept": accept}
        if accept == JSON_TYPE:
            # devpi-client sends this on every JSON API call, GETs included; servers may key on it.
            all_headers["Content-Type"] = JSON_TYPE
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if auth is not None:
            all_headers["X-Devpi-Auth"] = devpi_auth_header(*auth)
        all_headers.update(headers or {})
        follow = method == "GET" if follow_redirects is None else follow_redirects
        for _ in range(MAX_REDIRECTS + 1):
            reply = self._send(method, url, body, all_headers)
            location = reply.headers.get("Location")
            if not (follow and reply.status in (301, 302, 303, 307, 308) and location):
                return reply
            url = urllib.parse.urljoin(url, location)
        raise TransportError(f"too many redirects, last to {url}")

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return Reply(response.status, url, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, url, error.headers, error.read())
        except urllib.error.URLError as error:
            raise TransportError(f"cannot reach {url}: {error.reason}") from error
        except (OSError, ValueError) as error:
            raise TransportError(f"cannot reach {url}: {error}") from error
