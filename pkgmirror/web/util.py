"""
What every resource shares: the one async render loop with its one error boundary, JSON
envelopes, authentication, and absolute URLs built from the request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from pkgmirror import __version__
from pkgmirror.server import Refused, Server

log = Logger()

JSON_TYPE = b"application/json"
MAX_JSON_BODY = 1024 * 1024


def query_flag(request: Request, name: bytes) -> bool:
    """
    ``?name``, ``?name=`` or ``?name=anything``: twisted.web drops a bare ``?name`` from
    ``request.args``, so the query is read here.
    """
    if name in (request.args or {}):
        return True
    _, _, query = request.uri.partition(b"?")
    return any(part.split(b"=", 1)[0] == name for part in query.split(b"&"))


def wants_json(request: Request) -> bool:
    accept = (request.getHeader(b"accept") or b"").decode("latin-1").lower()
    return "application/json" in accept


def set_common_headers(request: Request, server: Server) -> None:
    request.setHeader(b"X-Devpi-Api-Version", b"2")
    request.setHeader(b"X-Devpi-Server-Version", f"pkgmirror-{__version__}".encode())
    request.setHeader(b"X-Devpi-Uuid", server.uuid.encode())
    request.setHeader(b"X-Devpi-Primary-Uuid", server.uuid.encode())
    request.setHeader(b"X-Devpi-Master-Uuid", server.uuid.encode())
    request.setHeader(b"X-Devpi-Serial", str(server.generation).encode())


def json_body(request: Request, code: int, payload: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", JSON_TYPE)
    return json.dumps(payload).encode("utf-8")


def envelope(request: Request, kind: str, result: Any, code: int = 200, **extra: Any) -> bytes:
    return json_body(request, code, {"type": kind, "result": result, **extra})


def error_body(request: Request, code: int, message: str) -> bytes:
    """A one-line reason: JSON for API clients, plain text for everyone else."""
    message = " ".join(message.split())[:500]
    request.setResponseCode(code, message.encode("utf-8", "replace")[:200])
    if wants_json(request):
        return json_body(request, code, {"message": message})
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return (message + "\n").encode("utf-8")


def read_json(request: Request) -> Any:
    assert request.content is not None
    data = request.content.read(MAX_JSON_BODY + 1)
    if len(data) > MAX_JSON_BODY:
        raise Refused(413, "request body too large")
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except ValueError:
        raise Refused(400, "request body is not valid JSON") from None


def outside_url(request: Request, server: Server) -> str:
    """
    Scheme, host and path prefix clients reach us at, without a trailing slash. In order: the
    proxy's ``X-Outside-URL``, ``--outside-url``, ``X-Forwarded-Proto``/``-Host``, the ``Host``
    header, and last the address the connection came in on.
    """
    header = _first(request.getHeader(b"x-outside-url"))
    if header.startswith(("http://", "https://")):
        return header.rstrip("/")
    if server.settings.outside_url:
        return server.settings.outside_url.rstrip("/")
    scheme = _first(request.getHeader(b"x-forwarded-proto")).lower()
    if scheme not in ("http", "https"):
        scheme = "https" if request.isSecure() else "http"
    host = _first(request.getHeader(b"x-forwarded-host")) or _first(request.getHeader(b"host"))
    if not host or any(c in host for c in "/?#@ \\"):
        address = request.getHost()
        name = str(getattr(address, "host", None) or "localhost")
        port = getattr(address, "port", None)
        host = (f"[{name}]" if ":" in name else name) + (f":{port}" if port else "")
    return f"{scheme}://{host}"


def _first(value: bytes | None) -> str:
    """The first of a header's comma-separated values (proxies append theirs), stripped."""
    if not value:
        return ""
    return value.decode("latin-1").split(",")[0].strip()


def absolute(request: Request, server: Server, path: str) -> str:
    return outside_url(request, server) + "/" + path.lstrip("/")


async def authenticated_user(request: Request, server: Server) -> str | None:
    """
    The user the request proves to be (X-Devpi-Auth token, Basic password or token), None when
    it sends no credentials. Wrong credentials are a Refused(401).
    """
    devpi = request.getHeader(b"x-devpi-auth")
    if devpi:
        try:
            name, _, token = base64.b64decode(devpi).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Refused(401, "malformed X-Devpi-Auth header") from None
        check = server.check_token(token)
        if check.user is None or check.user != name:
            # devpi's answer to stale credentials: a 401 with a Location (the login URL) makes
            # devpi-client forget the token and say so.
            reason = check.reason or "invalid token"
            raise Refused(
                401,
                reason if "log in" in reason else f"{reason}: log in again",
                {"Location": absolute(request, server, "+login")},
            )
        return check.user
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, value = header.decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        raise Refused(401, "only Basic authentication is supported", _challenge())
    try:
        name, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Refused(401, "malformed Basic credentials", _challenge()) from None
    if name == "__token__" or (name in server.users and "." in password and len(password) > 40):
        check = server.check_token(password)
        if check.user is not None and (name == "__token__" or check.user == name):
            return check.user
    if await server.check_password(name, password):
        return name
    server.note_login_failure(name)
    raise Refused(401, f"user {name!r} could not be authenticated", _challenge())


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Basic realm="pkgmirror"'}


def challenge_headers() -> dict[str, str]:
    return _challenge()


def render_async(
    request: Request, server: Server, work: Callable[[], Awaitable[bytes | None]]
) -> Any:
    """
    Runs ``work`` and answers with the bytes it returns; None means ``work`` finished the
    request itself (a producer). Every failure becomes a one-line error answer; a client that
    leaves cancels the work.
    """
    set_common_headers(request, server)

    async def run() -> bytes | None:
        return await work()

    d: Deferred[bytes | None] = Deferred.fromCoroutine(run())
    gone: list[bool] = []

    def client_left(_: object) -> None:
        gone.append(True)
        d.cancel()

    request.notifyFinish().addErrback(client_left)

    def done(body: bytes | None) -> None:
        if gone or body is None:
            return
        finish(request, body)

    def failed(failure: Failure) -> None:
        if gone:
            return
        if failure.check(Refused):
            refused: Refused = failure.value  # type: ignore[assignment]
            for name, value in refused.headers.items():
                request.setHeader(name.encode(), value.encode("latin-1"))
            finish(request, error_body(request, refused.code, refused.message))
            return
        if failure.check(CancelledError):
            return
        log.failure(
            "error answering {method} {uri}", failure, method=request.method, uri=request.uri
        )
        if request.startedWriting:
            abort(request)
            return
        finish(request, error_body(request, 500, "internal error: see the server log"))

    d.addCallbacks(done, failed)
    d.addErrback(lambda f: log.failure("answering failed", f))
    return NOT_DONE_YET


def finish(request: Request, body: bytes) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setHeader(b"Content-Length", str(len(body)).encode())
    if request.method == b"HEAD" or not body:
        request.finish()
    elif len(body) > BodyProducer.CHUNK:
        BodyProducer(request, (body,)).start()
    else:
        request.write(body)
        request.finish()


def finish_pieces(request: Request, pieces: Sequence[bytes]) -> None:
    """Answers with the concatenation of ``pieces`` (a big body kept in pieces), as it is read."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    size = sum(map(len, pieces))
    request.setHeader(b"Content-Length", str(size).encode())
    if request.method == b"HEAD" or not size:
        request.finish()
    else:
        BodyProducer(request, pieces).start()


@implementer(IPullProducer)
class BodyProducer:
    """
    Writes a big body (a root page of a million names), given in pieces, in slices as the
    client reads. One ``write`` of it all would make the transport join it into a copy of its own.
    """

    CHUNK = 256 * 1024

    def __init__(self, request: Request, pieces: Sequence[bytes]) -> None:
        self._request = request
        self._pieces = pieces
        self._index = 0  # the piece being sent
        self._sent = 0  # how much of it is

    def start(self) -> None:
        self._request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        pieces = self._pieces
        while self._index < len(pieces) and self._sent >= len(pieces[self._index]):
            self._index += 1
            self._sent = 0
        if self._index >= len(pieces):
            self._request.unregisterProducer()
            self._request.finish()
            self._pieces = ()
            return
        piece = pieces[self._index]
        if self._sent == 0 and len(piece) <= self.CHUNK:
            chunk = piece
        else:
            chunk = piece[self._sent : self._sent + self.CHUNK]
        self._sent += len(chunk)
        self._request.write(chunk)

    def stopProducing(self) -> None:
        self._index = len(self._pieces)
        self._pieces = ()


def abort(request: Request) -> None:
    """End a response that cannot be completed so the client sees it broken, not short."""
    transport = getattr(request.channel, "transport", None)
    if transport is not None:
        if hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            transport.loseConnection()


class AsyncResource(Resource):
    """A leaf whose render_METHOD are coroutines, dispatched through render_async."""

    isLeaf = True

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.app = server

    def render(self, request: Request) -> Any:  # type: ignore[override]
        method = request.method.decode("ascii", "replace").upper()
        handler = getattr(self, f"handle_{method}", None)
        if handler is None and method == "HEAD":
            handler = getattr(self, "handle_GET", None)
        if handler is None:
            allowed = sorted(
                name[len("handle_") :] for name in dir(self) if name.startswith("handle_")
            )
            request.setHeader(b"Allow", ", ".join(allowed).encode())
            set_common_headers(request, self.app)
            return error_body(request, 405, f"method {method} not allowed here")
        return render_async(request, self.app, lambda: handler(request))


class ErrorResource(Resource):
    isLeaf = True

    def __init__(self, server: Server, code: int, message: str) -> None:
        super().__init__()
        self.app = server
        self.code = code
        self.message = message

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        set_common_headers(request, self.app)
        return error_body(request, self.code, self.message)


class RedirectResource(Resource):
    isLeaf = True

    def __init__(self, server: Server, path: str, code: int = 302) -> None:
        super().__init__()
        self.app = server
        self.path = path
        self.code = code

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        set_common_headers(request, self.app)
        location = absolute(request, self.app, self.path)
        query = request.uri.partition(b"?")[2]
        if query:
            location += "?" + query.decode("latin-1")
        request.setResponseCode(self.code)
        request.setHeader(b"Location", location.encode("utf-8"))
        if wants_json(request):
            return json_body(
                request,
                self.code,
                {
                    "message": f"The resource was found at {location}",
                    "code": f"{self.code} Found",
                    "title": "Found",
                },
            )
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return f"see {location}\n".encode()
