"""
``/USER/INDEX/+simple/`` and ``/USER/INDEX/+simple/PROJECT/``: what pip and uv read.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.web.server import Request

from pkgmirror.coalesce import Coalescer
from pkgmirror.heap import give_back_memory
from pkgmirror.mirror import Unavailable
from pkgmirror.model import IndexConfig
from pkgmirror.names import is_valid_project_name, normalize
from pkgmirror.server import Refused, Server
from pkgmirror.simple import negotiate as neg
from pkgmirror.simple.render import (
    iter_list_html,
    iter_list_json,
    render_list_html,
    render_list_json,
    render_project_html,
    render_project_json,
)
from pkgmirror.stage import is_private
from pkgmirror.web.util import AsyncResource, absolute, finish_pieces

# Cached pages must be revalidated on every use (a cheap 304) so uploads and yanks show at once.
PAGE_CACHE_CONTROL = b"max-age=0, must-revalidate"
_RENDER_CACHE_LIMIT = 20000


# Clients send a handful of distinct Accept headers; parsing each one once is enough.
_CHOICES: dict[tuple[bytes | None, bytes | None], str | None] = {}
_CHOICES_LIMIT = 1000


def _choose(request: Request) -> str:
    accept = request.getHeader(b"accept")
    fmt = request.args.get(b"format", [None])[0] if request.args else None
    try:
        chosen = _CHOICES[accept, fmt]
    except KeyError:
        chosen = neg.negotiate(
            accept.decode("latin-1") if accept else None,
            # A "+" typed into a query string arrives as a space; no media type has one.
            fmt.decode("latin-1").replace(" ", "+") if fmt else None,
        )
        if len(_CHOICES) >= _CHOICES_LIMIT:
            _CHOICES.clear()
        _CHOICES[accept, fmt] = chosen
    if chosen is None:
        raise Refused(
            406,
            "none of the offered types is acceptable: use application/vnd.pypi.simple.v1+json, "
            "application/vnd.pypi.simple.v1+html or text/html",
            {"Vary": "Accept"},
        )
    return chosen


def _cached_render(
    server: Server, key: tuple[Any, ...], fmt: str, make: Callable[[], bytes]
) -> tuple[bytes, str]:
    cache_key = (key[0], key[1], fmt)
    hit = server.render_cache.get(cache_key)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    body = make()
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    if len(server.render_cache) > _RENDER_CACHE_LIMIT:
        server.render_cache.clear()
    server.render_cache[cache_key] = (key, body, etag)
    return body, etag


# Lists of more names than this are rendered in a thread (a million take about a second) and
# kept in pieces: one bytes object of 60 MB would be grown by copying, and cost it twice.
LIST_IN_THREAD = 20000


@attrs.define(eq=False)
class _BigLists:
    # (index, fmt) -> (version key, pieces, etag)
    bodies: dict[tuple[str, str], tuple[tuple[Any, ...], tuple[bytes, ...], str]] = attrs.field(
        factory=dict
    )
    renders: Coalescer[tuple[tuple[bytes, ...], str]] = attrs.field(factory=Coalescer)


_BIG_LISTS: weakref.WeakKeyDictionary[Server, _BigLists] = weakref.WeakKeyDictionary()


async def _big_list(
    server: Server, key: tuple[Any, ...], fmt: str, make: Callable[[], Iterable[bytes]]
) -> tuple[tuple[bytes, ...], str]:
    """A big list page in pieces, and its ETag: rendered once per version, in a thread."""
    state = _BIG_LISTS.get(server)
    if state is None:
        state = _BIG_LISTS[server] = _BigLists()
    slot = (key[0], fmt)
    hit = state.bodies.get(slot)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]

    def render() -> tuple[tuple[bytes, ...], str]:
        pieces = tuple(make())
        digest = hashlib.blake2b(digest_size=16)
        for piece in pieces:
            digest.update(piece)
        return pieces, '"' + digest.hexdigest() + '"'

    async def work() -> tuple[tuple[bytes, ...], str]:
        hit = state.bodies.get(slot)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        state.bodies.pop(slot, None)  # the old page can go before the new one is made
        del hit
        pieces, etag = await server.run_in_thread(render)
        state.bodies[slot] = (key, pieces, etag)
        give_back_memory()  # the render's scratch, freed in the thread's own malloc arena
        return pieces, etag

    return await state.renders.run((key, fmt), work)


def _answer(request: Request, body: bytes, etag: str, fmt: str) -> bytes:
    return b"" if _not_modified(request, etag, fmt) else body


def _not_modified(request: Request, etag: str, fmt: str) -> bool:
    """Sets the page's headers; True (and 304) when the client has this version."""
    request.setHeader(b"Content-Type", _content_type(fmt))
    request.setHeader(b"Vary", b"Accept")
    request.setHeader(b"ETag", etag.encode())
    request.setHeader(b"Cache-Control", PAGE_CACHE_CONTROL)
    inm = request.getHeader(b"if-none-match")
    if inm and etag.encode() in [t.strip() for t in inm.split(b",")]:
        request.setResponseCode(304)
        return True
    return False


def _content_type(fmt: str) -> bytes:
    if fmt == neg.JSON_V1:
        return fmt.encode()
    return f"{fmt}; charset=utf-8".encode()


class SimpleResource(AsyncResource):
    """Everything below ``/USER/INDEX/+simple``; ``request.postpath`` names the rest."""

    def __init__(self, server: Server, index: IndexConfig) -> None:
        super().__init__(server)
        self.index = index

    async def handle_GET(self, request: Request) -> bytes | None:
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        base = f"{self.index.key}/+simple/"
        if not path:
            return self._redirect(request, base)
        if path == [""]:
            return await self._list(request)
        name = path[0]
        if not is_valid_project_name(name):
            raise Refused(400, f"invalid project name {name[:100]!r}")
        norm = normalize(name)
        if len(path) == 1 or (norm != name and path[1:] in ([""], [])):
            return self._redirect(request, base + norm + "/")
        if path[1:] != [""]:
            raise Refused(404, "no such page")
        return await self._project(request, norm)

    async def handle_POST(self, request: Request) -> bytes | None:
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        if len(path) == 2 and path[1] == "refresh" and is_valid_project_name(path[0]):
            project = normalize(path[0])
            order = self.app.order(self.index.key)
            # A private name is never sent to an upstream, not even to refresh it.
            for config in order if is_private(order, project) is None else ():
                mirror = self.app.mirrors.get(config.key)
                if mirror is not None:
                    try:
                        await mirror.refresh(project)
                    except Unavailable:
                        pass
            return self._redirect(request, f"{self.index.key}/+simple/{project}/")
        raise Refused(405, "POST is only for .../+simple/PROJECT/refresh")

    def _redirect(self, request: Request, path: str) -> bytes:
        location = absolute(request, self.app, path)
        query = request.uri.partition(b"?")[2]
        if query:
            # ?format= must survive the redirect to the normalised name.
            location += "?" + query.decode("latin-1")
        request.setResponseCode(302)
        request.setHeader(b"Location", location.encode())
        return b""

    async def _project(self, request: Request, project: str) -> bytes:
        fmt = _choose(request)
        resolved = await self.app.project_page(self.index.key, project)
        page = resolved.page
        renderer = render_project_json if fmt == neg.JSON_V1 else render_project_html
        body, etag = _cached_render(self.app, resolved.key, fmt, lambda: renderer(page))
        return _answer(request, body, etag, fmt)

    async def _list(self, request: Request) -> bytes | None:
        fmt = _choose(request)
        version, names = await self.app.project_list(self.index.key)
        key = (self.index.key, "+list", *version)
        if len(names) > LIST_IN_THREAD:
            pieces = iter_list_json if fmt == neg.JSON_V1 else iter_list_html
            body, etag = await _big_list(self.app, key, fmt, lambda: pieces(names))
            if _not_modified(request, etag, fmt):
                return b""
            finish_pieces(request, body)
            return None
        renderer = render_list_json if fmt == neg.JSON_V1 else render_list_html
        body1, etag = _cached_render(self.app, key, fmt, lambda: renderer(names))
        return _answer(request, body1, etag, fmt)


__all__ = ["SimpleResource"]
