"""
Helpers for reactor-free tests: reading fired Deferreds, and an HTTP resource scripted per path
to put behind ``treq.testing.StubTreq``.

A StubTreq runs a real Agent against a real ``twisted.web.server.Site`` over in-memory
transports: answers a resource gives synchronously arrive before ``get`` returns; for answers
given later (``NOT_DONE_YET`` and ``request.write`` afterwards) call the stub's ``flush()``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

Handler = Callable[[Request], bytes | int]


def start(coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Runs a coroutine as a Deferred (what the reactor-free tests drive)."""
    return Deferred.fromCoroutine(coroutine)


def outcome(d: Deferred[Any]) -> list[Any]:
    """A list that holds the Deferred's result or Failure once it fires (empty until then)."""
    box: list[Any] = []
    d.addBoth(box.append)
    return box


def result_of(d: Deferred[T]) -> T:
    """The result of a Deferred that must have fired successfully by now."""
    box = outcome(d)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    result: T = box[0]
    return result


def failure_of(d: Deferred[Any], kind: type[E]) -> E:
    """The exception of a Deferred that must have failed with ``kind`` by now."""
    box = outcome(d)
    assert box, "the Deferred has not fired"
    assert isinstance(box[0], Failure), f"expected {kind.__name__}, got the result {box[0]!r}"
    error = box[0].value
    assert isinstance(error, kind), f"expected {kind.__name__}, got {error!r}"
    return error


@attrs.frozen
class Seen:
    """One request as the scripted resource received it."""

    method: str
    host: str
    path: str
    headers: dict[str, str]


class ScriptedResource(Resource):
    """
    Answers each path with its handler (``request -> bytes or NOT_DONE_YET``); unknown paths get
    404. Every request is recorded in ``seen``; requests left open are in ``pending``.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, Handler] = {}
        self.seen: list[Seen] = []
        self.pending: list[Request] = []

    def route(self, path: str, handler: Handler) -> None:
        self.handlers[path] = handler

    def render(self, request: Request) -> bytes | int:
        path = (request.path or b"").decode("utf-8")
        headers = {
            name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.seen.append(
            Seen(
                (request.method or b"").decode("ascii"),
                headers.get("host", ""),
                path,
                headers,
            )
        )
        handler = self.handlers.get(path)
        if handler is None:
            request.setResponseCode(404)
            return b"not found"
        answer = handler(request)
        if answer is NOT_DONE_YET:
            self.pending.append(request)
        return answer


def answer(
    body: bytes, content_type: str = "text/html", code: int = 200, **headers: str
) -> Handler:
    """A handler that answers at once."""

    def handle(request: Request) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", content_type.encode("latin-1"))
        for name, value in headers.items():
            request.setHeader(name.replace("_", "-").encode("latin-1"), value.encode("latin-1"))
        return body

    return handle


def never(request: Request) -> int:
    """A handler that reads the request and never answers."""
    return NOT_DONE_YET


def serve_bytes(request: Request, data: bytes, *, ranges: bool = True) -> bytes:
    """
    Answers with ``data`` as a file server would: one ``bytes=a-b``, ``a-`` or ``-n`` range as
    206 when ``ranges``, Content-Length, and no body for HEAD.
    """
    spec = (request.getHeader(b"range") or b"").decode()
    if ranges and spec.startswith("bytes="):
        first_text, _, last_text = spec[len("bytes=") :].partition("-")
        if first_text:
            first = int(first_text)
            last = min(int(last_text), len(data) - 1) if last_text else len(data) - 1
        else:
            first, last = max(0, len(data) - int(last_text)), len(data) - 1
        request.setResponseCode(206)
        request.setHeader(b"Content-Range", f"bytes {first}-{last}/{len(data)}".encode())
        data = data[first : last + 1]
    request.setHeader(b"Content-Length", str(len(data)).encode())
    return b"" if request.method == b"HEAD" else data
