"""
HTML pages on the JSON API's URLs, project search, and ``pip search`` (XML-RPC).

The handlers in ``api`` and ``status`` call these when the client does not ask for JSON; this
module gathers the values and ``pkgmirror.pages`` renders them. What is costly to gather (search
structures over big name lists, an index's project summary) is cached per server and rebuilt
when the generation it was built for has passed.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import os
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from pkgmirror.coalesce import Coalescer
from pkgmirror.mirror import Mirror
from pkgmirror.model import IndexConfig, Link, ReleaseFile, User
from pkgmirror.names import parse_dist_filename, version_sort_key
from pkgmirror.pages import indexes as index_pages
from pkgmirror.pages import project as project_pages
from pkgmirror.pages import search as search_pages
from pkgmirror.pages import status as status_pages
from pkgmirror.pages.layout import Site
from pkgmirror.pages.readme import render_description
from pkgmirror.server import Refused, Server
from pkgmirror.web.util import AsyncResource, envelope, outside_url, wants_json

with warnings.catch_warnings():
    # twisted.web.xmlrpc's client half uses a deprecated class; we only use its server half.
    warnings.simplefilter("ignore", DeprecationWarning)
    from twisted.web import xmlrpc

# Any script that slipped through escaping still does not run; styles are the inline sheet.
CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src * data:; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
RECENT_UPLOADS = 20
# Name lists above this size are sorted and joined in a thread, not on the reactor.
BUILD_IN_THREAD_ABOVE = 20_000
CACHE_SIZE_TTL = 300.0


def site_for(request: Request, server: Server) -> Site:
    outside = outside_url(request, server)
    return Site(base=urlsplit(outside).path.rstrip("/"), outside_url=outside)


def html(request: Request, body: bytes, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Vary", b"Accept")
    request.setHeader(b"Cache-Control", b"no-cache")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Content-Security-Policy", CSP)
    request.setHeader(b"Referrer-Policy", b"same-origin")
    return body


# ------------------------------------------------------------------ per-server caches
@attrs.define(eq=False)
class _Summary:
    projects: list[tuple[str, str | None]]
    recent: list[ReleaseFile]


@attrs.define(eq=False)
class _PagesState:
    names: dict[str, tuple[Any, float, search_pages.NameIndex]] = attrs.field(factory=dict)
    builds: Coalescer[search_pages.NameIndex] = attrs.field(factory=Coalescer)
    summaries: dict[str, tuple[Any, _Summary]] = attrs.field(factory=dict)
    cache_size: tuple[float, dict[str, int]] | None = None


_STATES: weakref.WeakKeyDictionary[Server, _PagesState] = weakref.WeakKeyDictionary()


def _state(server: Server) -> _PagesState:
    state = _STATES.get(server)
    if state is None:
        state = _STATES[server] = _PagesState()
    return state


def health_of(server: Server, mirror: Mirror) -> index_pages.Health:
    if server.settings.mirror.offline:
        state = "offline"
    elif mirror.upstream_url is None:
        state = "none"
    else:
        state = "down" if mirror.health.down_since is not None else "up"
    return index_pages.Health(
        state, mirror.health.down_since, mirror.health.last_error, mirror.upstream_url
    )


def _health_map(server: Server) -> dict[str, index_pages.Health]:
    return {key: health_of(server, m) for key, m in server.mirrors.items()}


# ------------------------------------------------------------------ /, /USER, /USER/INDEX
async def home(request: Request, server: Server) -> bytes:
    body = index_pages.render_home(
        site_for(request, server),
        list(server.users.values()),
        list(server.indexes.values()),
        _health_map(server),
    )
    return html(request, body)


async def user(request: Request, server: Server, account: User) -> bytes:
    body = index_pages.render_user(
        site_for(request, server), account, list(server.indexes.values()), _health_map(server)
    )
    return html(request, body)


async def _summary(server: Server, config: IndexConfig) -> _Summary:
    state = _state(server)
    mirror = server.mirrors.get(config.key)
    stamp: Any = ("mirror", mirror.generation) if mirror else ("stage", server.generation)
    hit = state.summaries.get(config.key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    if mirror is not None:
        projects: list[tuple[str, str | None]] = []
        for name in sorted(await mirror.cached_projects()):
            cached = mirror.cached_state(name)
            latest = None
            if cached is not None and cached.page is not None:
                latest = _latest(link.filename for link in cached.page.links)
            projects.append((name, latest))
        summary = _Summary(projects, [])
    else:
        files = await server.storage.list_release_files(config.key)
        summary = await server.run_in_thread(lambda: _summarise(files))
    state.summaries[config.key] = (stamp, summary)
    return summary


def _latest(filenames: Any) -> str | None:
    versions = {parsed[1] for f in filenames if (parsed := parse_dist_filename(f))}
    return max(versions, key=version_sort_key) if versions else None


def _summarise(files: list[ReleaseFile]) -> _Summary:
    latest: dict[str, str] = {}
    for f in files:
        current = latest.get(f.project)
        if current is None or version_sort_key(f.version) > version_sort_key(current):
            latest[f.project] = f.version
    recent = sorted(files, key=lambda f: f.upload_time, reverse=True)[:RECENT_UPLOADS]
    return _Summary([(p, latest[p]) for p in sorted(latest)], recent)


async def index(request: Request, server: Server, config: IndexConfig) -> bytes:
    summary = await _summary(server, config)
    try:
        number = int((request.args or {}).get(b"page", [b"1"])[0])
    except ValueError:
        number = 1
    per_page = index_pages.PROJECTS_PER_PAGE
    pages = max(1, -(-len(summary.projects) // per_page))
    number = min(max(1, number), pages)
    mirror = server.mirrors.get(config.key)
    note = ""
    if mirror is not None:
        note = (
            "The projects fetched from the upstream so far. The search box finds every "
            "project the upstream lists."
        )
    view = index_pages.IndexView(
        config=config,
        order=server.order(config.key),
        projects=summary.projects[(number - 1) * per_page : number * per_page],
        total=len(summary.projects),
        page_number=number,
        recent=summary.recent,
        health=health_of(server, mirror) if mirror is not None else None,
        projects_note=note,
    )
    return html(request, index_pages.render_index(site_for(request, server), view))


# ------------------------------------------------------------------ projects and versions
def _file_view(site: Site, index_key: str, link: Link) -> project_pages.FileView:
    url = link.url
    if url.startswith("../../../../"):
        url = f"{site.base}/{url[len('../../../../') :]}"
    return project_pages.FileView(
        filename=link.filename,
        url=url,
        index=link.origin or index_key,
        size=link.size,
        upload_time=link.upload_time,
        sha256=link.sha256,
        requires_python=link.requires_python,
        yanked=link.yanked,
    )


def _by_version(links: Sequence[Link]) -> dict[str, list[Link]]:
    versions: dict[str, list[Link]] = {}
    for link in links:
        parsed = parse_dist_filename(link.filename)
        versions.setdefault(parsed[1] if parsed else "unknown", []).append(link)
    return dict(sorted(versions.items(), key=lambda kv: version_sort_key(kv[0]), reverse=True))


async def project(
    request: Request, server: Server, config: IndexConfig, name: str, version: str | None
) -> bytes:
    resolved = await server.project_page(config.key, name)
    site = site_for(request, server)
    versions = _by_version(resolved.page.links)
    hidden = [(h.index, h.reason) for h in resolved.hidden]
    if version is None:
        view = project_pages.ProjectView(
            index=config.key,
            project=name,
            versions=[
                project_pages.VersionFiles(
                    v, [_file_view(site, config.key, x) for x in sorted(links, key=_filename)]
                )
                for v, links in versions.items()
            ],
            hidden=hidden,
            status=resolved.page.status,
            status_reason=resolved.page.status_reason,
        )
        return html(request, project_pages.render_project(site, view))
    links = versions.get(version)
    if links is None:
        raise Refused(404, f"version {version} of {name} not found on {config.key}")
    metadata = await _metadata(server, config, name, version, links)
    description = metadata.get("description")
    content_type = metadata.get("description_content_type")
    rendered = ""
    if isinstance(description, str) and description.strip():
        rendered = await server.run_in_thread(
            lambda: render_description(description, str(content_type or ""))
        )
    version_view = project_pages.VersionView(
        index=config.key,
        project=name,
        version=version,
        files=[_file_view(site, config.key, x) for x in sorted(links, key=_filename)],
        metadata=metadata,
        description_html=rendered,
        hidden=hidden,
    )
    return html(request, project_pages.render_version(site, version_view))


def _filename(link: Link) -> str:
    return link.filename


async def _metadata(
    server: Server, config: IndexConfig, name: str, version: str, links: Sequence[Link]
) -> dict[str, Any]:
    """What uploads told of this version; else the core metadata a mirror has stored."""
    for base in server.order(config.key):
        if base.is_mirror:
            continue
        for f in await server.release_files(base.key, name):
            if f.version == version and f.metadata:
                return {str(k).lower().replace("-", "_"): v for k, v in f.metadata.items()}
    for link in links:
        origin = link.origin or config.key
        if origin not in server.mirrors:
            continue
        path_key = _path_key(link.url)
        if path_key is None:
            continue
        mirror = server.mirrors[origin]
        record = await mirror.file_record(path_key, link.filename)
        if record is None:
            continue
        # Read out of the upstream wheel now if no client asked for it yet (then kept).
        found = await mirror.core_metadata(record)
        if found is None:
            continue
        try:
            data = found.data if found.data is not None else await server.blobs.read(found.sha256)
        except Exception:
            continue
        return parse_core_metadata(data)
    return {}


def _path_key(url: str) -> str | None:
    parts = url.split("/")
    if "+f" not in parts:
        return None
    i = parts.index("+f")
    if len(parts) < i + 4:
        return None
    return f"{parts[i + 1]}/{parts[i + 2]}"


_MULTI = {"classifier", "requires_dist", "project_url", "provides_extra", "platform"}


def parse_core_metadata(data: bytes) -> dict[str, Any]:
    """Core metadata (``METADATA``/``PKG-INFO``) as the same keys uploads use."""
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data[: 4 << 20])
    result: dict[str, Any] = {}
    for key, value in message.items():
        field = key.lower().replace("-", "_")
        text = str(value)
        if field in _MULTI:
            target = {"classifier": "classifiers", "project_url": "project_urls"}.get(field, field)
            result.setdefault(target, []).append(text)
        elif field == "description":
            result[field] = text
        else:
            result.setdefault(field, text)
    body = message.get_payload()
    if isinstance(body, str) and body.strip():
        result["description"] = body
    return result


# ------------------------------------------------------------------ search
async def name_index(server: Server, config: IndexConfig) -> search_pages.NameIndex:
    """The searchable names of one index (not its bases), cached until they change."""
    state = _state(server)
    mirror = server.mirrors.get(config.key)
    now = time.monotonic()
    if mirror is not None:
        stamp: Any = ("mirror", mirror.generation)
        max_age = float(mirror.expiry)
    else:
        stamp = ("stage", server.generation)
        max_age = float("inf")
    hit = state.names.get(config.key)
    if hit is not None and hit[0] == stamp and now - hit[1] < max_age:
        return hit[2]

    async def build() -> search_pages.NameIndex:
        names: Iterable[str]
        if mirror is None:
            names = list(server.stage_projects.get(config.key, ()))
            count = len(names)
        elif config.mirror_no_project_list:
            names = await mirror.cached_projects()
            count = len(names)
        else:
            # Read block by block (a NameList): a million names never become a list here.
            listed, cached = await mirror.project_names(), await mirror.cached_projects()
            names, count = itertools.chain(listed, cached), len(listed) + len(cached)
        if count > BUILD_IN_THREAD_ABOVE:
            built: search_pages.NameIndex = await server.run_in_thread(
                lambda: search_pages.NameIndex(names)
            )
        else:
            built = search_pages.NameIndex(names)
        # Fetching the names may have changed the mirror's generation: stamp what we built.
        final = ("mirror", mirror.generation) if mirror is not None else stamp
        state.names[config.key] = (final, time.monotonic(), built)
        return built

    if hit is not None and mirror is not None and hit[0] == stamp:
        # Only old: answer from the old names now, refresh them for the next search.
        state.builds.run(config.key, build).addErrback(lambda _: None)
        return hit[2]
    return await state.builds.run(config.key, build)


async def search(
    server: Server, scope: IndexConfig | None, query: str, limit: int = 100
) -> search_pages.SearchResult:
    configs = server.order(scope.key) if scope is not None else list(server.indexes.values())
    indexes = [(c.key, await name_index(server, c)) for c in configs]
    return search_pages.search(indexes, query, limit)


class SearchResource(AsyncResource):
    """``/+search?q=`` (every index) and ``/USER/INDEX/+search?q=`` (an index and its bases)."""

    def __init__(self, server: Server, index: IndexConfig | None = None) -> None:
        super().__init__(server)
        self.index = index

    async def handle_GET(self, request: Request) -> bytes:
        raw = (request.args or {}).get(b"q", [b""])[0].decode("utf-8", "replace")
        result = await search(self.app, self.index, raw)
        if wants_json(request):
            return envelope(
                request,
                "list:searchresult",
                [{"name": h.name, "index": h.index} for h in result.hits],
                more=result.more,
                query=result.query,
            )
        scope = self.index.key if self.index is not None else None
        return html(
            request, search_pages.render_search(site_for(request, self.app), scope, raw, result)
        )


class XmlRpcResource(xmlrpc.XMLRPC):
    """
    ``POST /USER/INDEX/`` with an XML-RPC body: ``search`` as ``pip search --index`` calls it.
    Each hit names the latest version known without asking an upstream ("0" when none is).
    """

    def __init__(self, server: Server, key: str) -> None:
        super().__init__(allowNone=True)
        self.app = server
        self.key = key

    def xmlrpc_search(self, spec: Any, operator: str = "or") -> Deferred[list[dict[str, Any]]]:
        return Deferred.fromCoroutine(self._search(spec))

    async def _search(self, spec: Any) -> list[dict[str, Any]]:
        config = self.app.indexes.get(self.key)
        if config is None:
            raise xmlrpc.Fault(404, f"index {self.key} does not exist")
        terms: list[str] = []
        if isinstance(spec, dict):
            for field in ("name", "summary"):
                value = spec.get(field) or []
                terms += [value] if isinstance(value, str) else [str(v) for v in value]
        found: dict[str, str] = {}
        for term in dict.fromkeys(terms):
            result = await search(self.app, config, term)
            for hit in result.hits:
                found.setdefault(hit.name, hit.index)
        hits = []
        for rank, (name, origin) in enumerate(found.items()):
            latest, summary = await _latest_known(self.app, origin, name)
            hits.append(
                {
                    "name": name,
                    "version": latest or "0",
                    "summary": summary or ("" if latest else "(not fetched yet)"),
                    "_pypi_ordering": len(found) - rank,
                }
            )
        return hits


async def _latest_known(server: Server, key: str, name: str) -> tuple[str | None, str]:
    mirror = server.mirrors.get(key)
    if mirror is None:
        files = await server.release_files(key, name)
        if not files:
            return None, ""
        newest = max(files, key=lambda f: version_sort_key(f.version))
        return newest.version, str(newest.metadata.get("summary") or "")
    cached = mirror.cached_state(name) or await server.storage.get_mirror_page(key, name)
    if cached is None or cached.page is None:
        return None, ""
    return _latest(link.filename for link in cached.page.links), ""


def is_xmlrpc(request: Request) -> bool:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    return request.method == b"POST" and content_type in (b"text/xml", b"application/xml")


# ------------------------------------------------------------------ status
async def cache_size(server: Server) -> dict[str, int] | None:
    """Files and bytes in the blob store, counted in a thread at most every few minutes."""
    if not server.serverdir:
        return None
    state = _state(server)
    now = time.monotonic()
    if state.cache_size is not None and now - state.cache_size[0] < CACHE_SIZE_TTL:
        return state.cache_size[1]
    root = os.path.join(server.serverdir, "blobs")
    counted: dict[str, int] = await server.run_in_thread(lambda: _count_files(root))
    state.cache_size = (now, counted)
    return counted


def _count_files(root: str) -> dict[str, int]:
    files = size = 0
    for directory, subdirs, names in os.walk(root):
        if directory == root and "tmp" in subdirs:
            subdirs.remove("tmp")
        for name in names:
            try:
                size += os.stat(os.path.join(directory, name)).st_size
                files += 1
            except OSError:
                continue
    return {"files": files, "bytes": size}


def status(request: Request, server: Server, data: dict[str, Any]) -> bytes:
    return html(request, status_pages.render_status(site_for(request, server), data))


__all__: Sequence[str] = [
    "SearchResource",
    "XmlRpcResource",
    "home",
    "index",
    "is_xmlrpc",
    "name_index",
    "parse_core_metadata",
    "project",
    "search",
    "site_for",
    "status",
    "user",
]
