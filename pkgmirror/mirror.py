"""
Mirror policy: when to ask the upstream, what to serve when it does not answer, and one
upstream request per page or file however many clients want it at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Coroutine, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from pkgmirror.coalesce import Coalescer
from pkgmirror.fill import FileFill
from pkgmirror.heap import give_back_memory
from pkgmirror.interfaces import IBlobStore, IStorage
from pkgmirror.metadata import extract_core_metadata
from pkgmirror.model import (
    IndexConfig,
    Link,
    MirrorFile,
    MirrorPageState,
    ProjectPage,
    iso_time,
)
from pkgmirror.namelist import NameList
from pkgmirror.names import blob_path_parts, version_sort_key
from pkgmirror.simple.parse import ParseError, parse_name_list, parse_project_page
from pkgmirror.simple.render import derive_versions
from pkgmirror.upstream import FileStart, PageResponse, Upstream, UpstreamError

T = TypeVar("T")
# Upstream bodies bigger than this are parsed in a thread (a 10,000-file page takes ~200 ms).
PARSE_IN_THREAD_BYTES = 256 * 1024
# A file whose probe failed is probed again on a revalidation after this many seconds.
PROBE_RETRY_SECONDS = 60.0
# Background probe results reach a page this many at a time (and when its files are done).
LATE_BATCH = 100
# A background probe that fails is tried this many times in all before it is given up.
BACKGROUND_ATTEMPTS = 3

log = Logger()

# Remembered file records per mirror; past this many it starts over.
FILE_RECORDS_LIMIT = 50000


class Unavailable(Exception):
    """The upstream is down (or we are offline) and nothing is cached. One-line reason."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class NoUpstream(Exception):
    """The mirror has no mirror_url configured."""


@attrs.frozen
class MirrorSettings:
    offline: bool = False
    default_expiry: int = 1800
    # How long a request for a stale page waits for revalidation before it gets the stale copy.
    stale_grace: float = 1.0
    backoff_min: float = 5.0
    backoff_max: float = 120.0
    # Files an upstream lists without a size are probed with HEAD (size, Last-Modified as the
    # upload time). Those of the newest ``eager_versions`` versions, the ones resolvers look at,
    # when the page is fetched: this many at once per mirror, and the fetch waits this long for
    # them before it answers with what is known. Older files are probed in the background, at
    # most ``background_probe_rate`` a second, so a cold page never costs hundreds of upstream
    # requests. A wheel's core metadata is never probed ahead: every wheel advertises it and the
    # first request for it reads it out of the upstream wheel with range requests.
    probe_concurrency: int = 8
    probe_wait: float = 3.0
    eager_versions: int = 3
    background_probe_rate: float = 10.0


@attrs.define
class UpstreamHealth:
    """Remembers that an upstream is down, so requests stop waiting on it."""

    _clock: IReactorTime
    _settings: MirrorSettings
    down_since: float | None = None
    retry_at: float = 0.0
    last_error: str | None = None
    last_ok: float | None = None
    failures: int = 0

    def is_down(self) -> bool:
        return self.down_since is not None and self._clock.seconds() < self.retry_at

    def retry_after(self) -> int:
        return max(1, int(self.retry_at - self._clock.seconds() + 0.999))

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.info("upstream is back after {n} failures", n=self.failures)
        self.down_since = None
        self.failures = 0
        self.last_ok = self._clock.seconds()

    def failed(self, reason: str) -> None:
        now = self._clock.seconds()
        if self.down_since is None:
            self.down_since = now
        self.failures += 1
        self.last_error = reason
        backoff = min(
            self._settings.backoff_max, self._settings.backoff_min * 2 ** (self.failures - 1)
        )
        self.retry_at = now + backoff

    def as_json(self) -> dict[str, Any]:
        return {
            "state": "down" if self.down_since is not None else "up",
            "down_since": iso_time(self.down_since) if self.down_since else None,
            "last_error": self.last_error,
            "failures": self.failures,
        }


def path_key_for(link: Link) -> str:
    """The ``<3 hex>/<13 hex>`` part of our URL for a mirrored link."""
    digest = link.sha256 or hashlib.sha256(link.url.encode("utf-8")).hexdigest()
    a, b = blob_path_parts(digest)
    return f"{a}/{b}"


def file_href(index_key: str, path_key: str, filename: str) -> str:
    """
    A file's URL relative to any simple page ``/USER/INDEX/+simple/PROJECT/``: four levels up is
    the server root, so one href works on every index's pages and behind any outside URL.
    """
    return f"../../../../{index_key}/+f/{path_key}/{quote(filename)}"


def with_first_seen(
    page: ProjectPage,
    previous: ProjectPage | None,
    now: float,
    awaiting: Container[str] = (),
) -> ProjectPage:
    """
    Links without an upstream upload time get the time we first saw them, kept forever; not
    those whose probe (upstream URLs in ``awaiting``) may still bring their Last-Modified.
    """
    seen = {link.filename: link.upload_time for link in previous.links} if previous else {}
    stamp = iso_time(now)
    links = [
        link
        if link.upload_time or link.url in awaiting
        else attrs.evolve(link, upload_time=seen.get(link.filename) or stamp)
        for link in page.links
    ]
    return attrs.evolve(page, links=links)


@attrs.frozen
class ProbeOutcome:
    """What probing one upstream file found; ``metadata_sha256`` names a blob we stored."""

    size: int | None
    last_modified: float | None
    metadata_sha256: str | None


@attrs.frozen
class CoreMetadata:
    """A wheel's core metadata: its blob's sha256, and the bytes while the blob is written."""

    sha256: str
    data: bytes | None = None


# A probe that failed, or learnt nothing new.
NOTHING_LEARNT = ProbeOutcome(None, None, None)


def carry_forward(page: ProjectPage, previous: ProjectPage | None) -> ProjectPage:
    """
    A freshly parsed upstream page, plus what we learnt earlier of files still listed at the
    same URL: size, upload time, core metadata we extracted. What the upstream says wins.
    """
    if previous is None or not previous.links:
        return page
    known = {(link.filename, link.url): link for link in previous.links}
    links = []
    changed = False
    for link in page.links:
        old = known.get((link.filename, link.url))
        if old is None or (link.sha256 and old.sha256 and link.sha256 != old.sha256):
            links.append(link)
            continue
        new = attrs.evolve(
            link,
            size=link.size if link.size is not None else old.size,
            upload_time=link.upload_time or old.upload_time,
            core_metadata=(
                link.core_metadata if link.core_metadata is not None else old.core_metadata
            ),
        )
        changed = changed or new != link
        links.append(new)
    return attrs.evolve(page, links=links) if changed else page


def apply_probes(page: ProjectPage, outcomes: Mapping[str, ProbeOutcome]) -> ProjectPage:
    """Fills in, from probes keyed by upstream URL, what links lack; never overrides a value."""
    if not outcomes:
        return page
    links = []
    changed = False
    for link in page.links:
        outcome = outcomes.get(link.url)
        if outcome is None:
            links.append(link)
            continue
        new = link
        if new.size is None and outcome.size is not None:
            new = attrs.evolve(new, size=outcome.size)
        if not new.upload_time and outcome.last_modified is not None:
            new = attrs.evolve(new, upload_time=iso_time(outcome.last_modified))
        if new.core_metadata is None and outcome.metadata_sha256 is not None:
            new = attrs.evolve(new, core_metadata={"sha256": outcome.metadata_sha256})
        changed = changed or new is not link
        links.append(new)
    return attrs.evolve(page, links=links) if changed else page


def mirror_files(
    index_key: str, page: ProjectPage, metadata: Mapping[str, str] | None = None
) -> list[MirrorFile]:
    """The rows of a page's links; ``metadata`` maps upstream URLs to core metadata we hold."""
    ours = metadata or {}
    return [
        MirrorFile(
            index=index_key,
            project=page.name,
            filename=link.filename,
            path_key=path_key_for(link),
            url=link.url,
            sha256=link.sha256,
            size=link.size,
            upload_time=link.upload_time,
            metadata_sha256=ours.get(link.url),
        )
        for link in page.links
    ]


def _version_key(link: Link) -> Any:
    versions = derive_versions([link])
    return version_sort_key(versions[0]) if versions else version_sort_key("0")


def split_newest(links: Iterable[Link], versions: int) -> tuple[list[Link], list[Link]]:
    """
    ``links`` newest version first, split into those of the newest ``versions`` versions and
    the rest (the order within a version is kept).
    """
    ordered = sorted(links, key=_version_key, reverse=True)
    keys: list[Any] = []
    cut = len(ordered)
    for i, link in enumerate(ordered):
        key = _version_key(link)
        if not keys or keys[-1] != key:
            if len(keys) == versions:
                cut = i
                break
            keys.append(key)
    return ordered[:cut], ordered[cut:]


def served_page(index_key: str, page: ProjectPage, promise_metadata: bool = False) -> ProjectPage:
    """
    The upstream page with links pointing at our file URLs. With ``promise_metadata`` every
    wheel advertises core metadata (PEP 658 ``true`` until we hold it and know its hash): we
    read it out of the wheel when it is first asked for.
    """
    return attrs.evolve(
        page,
        links=[
            attrs.evolve(
                link,
                url=file_href(index_key, path_key_for(link), link.filename),
                origin=index_key,
                core_metadata=(
                    {}
                    if promise_metadata
                    and link.core_metadata is None
                    and link.filename.endswith(".whl")
                    else link.core_metadata
                ),
            )
            for link in page.links
        ],
    )


@attrs.define(eq=False)
class Mirror:
    """One mirror index: its cached pages, its upstream's health, its in-flight work."""

    config: IndexConfig
    _storage: IStorage
    _blobs: IBlobStore
    _upstream: Upstream | None
    _clock: IReactorTime
    settings: MirrorSettings
    _run_in_thread: Callable[[Callable[[], Any]], Deferred[Any]] | None = None
    health: UpstreamHealth = attrs.field(init=False)
    generation: int = 0
    # Pages fetched before this time came from another upstream (mirror_url changed): stale.
    stale_before: float = 0.0
    _states: dict[str, MirrorPageState] = attrs.field(factory=dict)
    _served: dict[str, tuple[MirrorPageState, ProjectPage]] = attrs.field(factory=dict)
    _page_fetches: Coalescer[MirrorPageState] = attrs.field(factory=Coalescer)
    _name_fetches: Coalescer[NameList] = attrs.field(factory=Coalescer)
    _names: NameList | None = None
    _names_etag: str | None = None
    _names_fetched_at: float = 0.0
    names_generation: int = 0
    fills: dict[tuple[str, str], FileFill] = attrs.field(factory=dict)
    # File records by (path_key, filename), so serving a cached file costs no SQL; emptied
    # after every write of this mirror's pages or files.
    _file_records: dict[tuple[str, str], MirrorFile] = attrs.field(factory=dict)
    _records_epoch: int = 0
    last_used: dict[str, float] = attrs.field(factory=dict)
    stats: dict[str, int] = attrs.field(factory=lambda: {"upstream_requests": 0, "hits": 0})
    _probe_runs: Coalescer[ProbeOutcome | None] = attrs.field(factory=Coalescer)
    _metadata_runs: Coalescer[CoreMetadata | None] = attrs.field(factory=Coalescer)
    # Core metadata just read, served from memory while its blob is being written.
    _fresh_metadata: dict[tuple[str, str], CoreMetadata] = attrs.field(factory=dict)
    # Small files a metadata read brought whole, being stored: who waits for them.
    _keeping: dict[tuple[str, str], list[Deferred[None]]] = attrs.field(factory=dict)
    _probe_slots: DeferredSemaphore = attrs.field(init=False)
    _probed: dict[str, float] = attrs.field(factory=dict)
    _outcomes: dict[str, ProbeOutcome] = attrs.field(factory=dict)
    # Files waiting for a background probe: upstream URL -> (project, link), in queue order.
    _background: dict[str, tuple[str, Link]] = attrs.field(factory=dict)
    _background_running: bool = False
    # Upstream URLs whose probe is queued or under way: their upload time may still come.
    _awaiting: set[str] = attrs.field(factory=set)
    stopped: bool = False

    def __attrs_post_init__(self) -> None:
        self.health = UpstreamHealth(self._clock, self.settings)
        self._probe_slots = DeferredSemaphore(max(1, self.settings.probe_concurrency))

    async def _in_thread(self, size: int, work: Callable[[], T]) -> T:
        if self._run_in_thread is None or size < PARSE_IN_THREAD_BYTES:
            return work()
        result: T = await self._run_in_thread(work)
        return result

    async def _parse_page(self, response: PageResponse, project: str) -> ProjectPage:
        return await self._in_thread(
            len(response.body),
            lambda: parse_project_page(response.body, response.content_type, response.url, project),
        )

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def upstream_url(self) -> str | None:
        return self._upstream.base_url if self._upstream is not None else None

    @property
    def expiry(self) -> int:
        if self.config.mirror_cache_expiry is not None:
            return self.config.mirror_cache_expiry
        return self.settings.default_expiry

    def is_fresh(self, state: MirrorPageState) -> bool:
        if state.fetched_at < self.stale_before:
            return False
        return self._clock.seconds() < state.fetched_at + self.expiry

    def _no_upstream(self) -> NoUpstream:
        return NoUpstream(
            f"mirror {self.key} has no upstream: set its mirror_url "
            f"(pkgmirror index {self.key} mirror_url=URL) or start with PKGMIRROR_PYPI_URL"
        )

    def cached_state(self, project: str) -> MirrorPageState | None:
        """The in-memory state, without I/O (None: not loaded or not known)."""
        return self._states.get(project)

    def forget(self, project: str) -> None:
        """Drops what is remembered of a project's page: the next request asks the upstream."""
        self._states.pop(project, None)
        self._served.pop(project, None)
        self.generation += 1

    def served(self, state: MirrorPageState) -> ProjectPage | None:
        if state.page is None:
            return None
        hit = self._served.get(state.project)
        if hit is not None and hit[0] is state:
            return hit[1]
        page = served_page(
            self.key, state.page, promise_metadata=not self.config.mirror_use_external_urls
        )
        self._served[state.project] = (state, page)
        return page

    async def _load(self, project: str) -> MirrorPageState | None:
        state = self._states.get(project)
        if state is None:
            state = await self._storage.get_mirror_page(self.key, project)
            if state is not None:
                self._states[project] = state
                if state.page is not None:
                    # Background probes a restart interrupted go on.
                    now = self._clock.seconds()
                    self._queue_background(
                        project, [x for x in state.page.links if self._wants_probe(x, now)]
                    )
        return state

    async def get_state(self, project: str) -> MirrorPageState:
        """
        The page state to serve for ``project``: fresh from cache, revalidated, or stale when the
        upstream fails. Fails with Unavailable when nothing usable is cached and the upstream
        cannot be had, with NoUpstream when the mirror has no URL.
        """
        self.last_used[project] = self._clock.seconds()
        state = await self._load(project)
        if state is not None and (self.is_fresh(state) or self.settings.offline):
            self.stats["hits"] += 1
            return state
        if self.settings.offline:
            raise Unavailable("offline mode: this project was never fetched", 3600)
        if self._upstream is None:
            if state is not None:
                return state
            raise self._no_upstream()
        if self.health.is_down():
            if state is not None:
                return state
            raise Unavailable(
                f"upstream of {self.key} is unreachable ({self.health.last_error})",
                self.health.retry_after(),
            )
        fetch = self._page_fetches.run(project, lambda: self._revalidate(project, state))
        if state is None:
            return await fetch
        # A stale copy exists: give the upstream a short grace, then serve the stale copy and
        # let the revalidation finish in the background.
        return await _first_of(fetch, self._clock, self.settings.stale_grace, state)

    async def is_quarantined(self, project: str) -> bool:
        """True when the upstream's last page of ``project`` marks it quarantined (PEP 792)."""
        state = await self._load(project)
        return state is not None and state.page is not None and state.page.status == "quarantined"

    async def refresh(self, project: str) -> MirrorPageState:
        """Revalidate now, ignoring freshness (the refresh button, the refresh loop)."""
        if self.settings.offline or self._upstream is None:
            state = await self._load(project)
            if state is None:
                raise Unavailable("not fetched and cannot fetch now", 60)
            return state
        state = await self._load(project)
        return await self._page_fetches.run(project, lambda: self._revalidate(project, state))

    async def _revalidate(self, project: str, state: MirrorPageState | None) -> MirrorPageState:
        assert self._upstream is not None
        upstream = self._upstream
        url = upstream.project_url(project)
        self.stats["upstream_requests"] += 1
        etag = state.etag if state is not None and state.status == "ok" else None
        try:
            response = await upstream.fetch_page(url, etag)
            now = self._clock.seconds()
            if response.status == "not_modified" and state is not None:
                latest = self._states.get(project) or state
                new_state = attrs.evolve(latest, fetched_at=now)
                unchanged = latest.page
                # Files whose probe failed before get another chance with every revalidation.
                probed = (
                    unchanged if unchanged is None else await self._probe_page(project, unchanged)
                )
                if probed is not None and probed != unchanged:
                    new_state = attrs.evolve(new_state, page=probed)
                    self.generation += 1
                    await self._storage.put_mirror_page(new_state, mirror_files(self.key, probed))
                    self._forget_records()
                else:
                    await self._storage.touch_mirror_page(self.key, project, now)
            elif response.status == "missing" or response.status == "not_modified":
                new_state = MirrorPageState(self.key, project, "missing", now)
                await self._storage.put_mirror_page(new_state, [])
                self._forget_records()
            else:
                page = await self._parse_page(response, project)
                # What we learnt while this fetch was under way counts too.
                current = self._states.get(project) or state
                previous = current.page if current is not None else None
                page = carry_forward(page, previous)
                page = await self._probe_page(project, page)
                page = with_first_seen(page, previous, self._clock.seconds(), self._awaiting)
                new_state = MirrorPageState(
                    self.key,
                    project,
                    "ok",
                    now,
                    page=page,
                    etag=response.etag,
                    serial=response.serial,
                )
                if state is None or state.page != page or state.status != "ok":
                    self.generation += 1
                # The answer does not wait for the write: the state is served from memory, and
                # file look-ups that miss memory queue behind the write on the storage thread.
                self._forget_records()
                self._after(self._put_page(new_state), "storing a page")
        except (UpstreamError, ParseError) as e:
            reason = str(e) or e.__class__.__name__
            self.health.failed(reason)
            log.warn(
                "upstream of {index} failed for {project}: {reason}",
                index=self.key,
                project=project,
                reason=reason,
            )
            if state is not None:
                return state
            raise Unavailable(
                f"upstream of {self.key} failed: {reason}", self.health.retry_after()
            ) from None
        self.health.succeeded()
        if state is None or state.status != new_state.status:
            self.generation += 1
        self._states[project] = new_state
        return new_state

    async def project_names(self) -> NameList:
        """
        The upstream's project list, sorted and unique (cached like pages); empty when it cannot
        be had. ``names_generation`` moves whenever a different list is returned.
        """
        if self._names is None:
            await self._name_fetches.run("load", self._load_names)
        now = self._clock.seconds()
        if self._names is not None and (
            now < self._names_fetched_at + self.expiry or self.settings.offline
        ):
            return self._names
        if self.settings.offline or self._upstream is None or self.health.is_down():
            return self._names if self._names is not None else NameList()
        return await self._name_fetches.run("names", self._fetch_names)

    async def _load_names(self) -> NameList:
        cached = await self._storage.get_mirror_names(self.key)
        if cached is not None and self._names is None:
            self._set_names(cached[0], cached[1], cached[2])
        return self._names or NameList()

    def _set_names(self, names: NameList, etag: str | None, fetched_at: float) -> None:
        self._names = names
        self._names_etag = etag
        self._names_fetched_at = fetched_at
        self.names_generation += 1

    async def _fetch_names(self) -> NameList:
        assert self._upstream is not None
        upstream = self._upstream
        now = self._clock.seconds()
        try:
            response = await upstream.fetch_page(upstream.base_url, self._names_etag)
            if response.status == "not_modified" and self._names is not None:
                await self._storage.put_mirror_names(self.key, self._names, self._names_etag, now)
                self._names_fetched_at = now
                return self._names
            if response.status != "ok":
                return self._names if self._names is not None else NameList()
            etag = response.etag
            body, content_type = response.body, response.content_type
            del response
            big = len(body) >= PARSE_IN_THREAD_BYTES
            names: NameList = await self._in_thread(
                len(body), lambda: parse_name_list(body, content_type)
            )
            body = b""
            await self._storage.put_mirror_names(self.key, names, etag, now)
            if big:
                give_back_memory()  # what the parse thread freed: the list's renders come next
            self._set_names(names, etag, now)
            self.generation += 1
            return names
        except (UpstreamError, ParseError) as e:
            self.health.failed(str(e))
            return self._names if self._names is not None else NameList()

    # probes: sizes and times of files the upstream page does not describe
    def _wants_probe(self, link: Link, now: float) -> bool:
        return link.size is None and now >= self._probed.get(link.url, 0.0)

    def _may_probe(self) -> bool:
        # A pass-through mirror keeps no bytes, not even metadata: clients go upstream.
        return not (
            self._upstream is None
            or self.settings.offline
            or self.config.mirror_use_external_urls
            or self.stopped
        )

    def _remember(self, url: str, outcome: ProbeOutcome) -> None:
        if len(self._outcomes) > 100_000:
            self._outcomes.clear()
        self._outcomes[url] = outcome

    def _with_outcomes(self, page: ProjectPage) -> ProjectPage:
        """``page`` with what probes learnt of its files (also those of an earlier fetch)."""
        return apply_probes(
            page, {x.url: self._outcomes[x.url] for x in page.links if x.url in self._outcomes}
        )

    async def _probe_page(self, project: str, page: ProjectPage) -> ProjectPage:
        """
        Probes the files of ``page`` that lack a size: those of the newest ``eager_versions``
        versions now, waiting at most ``probe_wait`` seconds, the rest in the background. Returns
        the page with what was learnt by then; probes still running then update the cached
        page when they are done.
        """
        now = self._clock.seconds()
        page = self._with_outcomes(page)
        if not self._may_probe():
            return page
        targets = [link for link in page.links if self._wants_probe(link, now)]
        eager, later = split_newest(targets, self.settings.eager_versions)
        self._queue_background(project, later)
        if not eager:
            return page
        outcomes: dict[str, ProbeOutcome] = {}
        self._awaiting.update(link.url for link in eager)

        async def one(link: Link) -> None:
            outcome = await self._probe(link)
            outcomes[link.url] = outcome or NOTHING_LEARNT
            if outcome is not None:
                self._remember(link.url, outcome)

        work = DeferredList(
            [Deferred.fromCoroutine(one(link)) for link in eager], consumeErrors=True
        )
        if not await _within(work, self._clock, self.settings.probe_wait):
            log.info(
                "{project}: {n} files still being probed on {index}; the page is served without",
                project=project,
                n=len(eager) - len(outcomes),
                index=self.key,
            )

            def apply_late(_: object) -> None:
                d = Deferred.fromCoroutine(self._apply_late(project, dict(outcomes)))
                d.addErrback(lambda f: log.failure("late probe results of {p}", f, p=project))

            work.addCallback(apply_late)
        self._awaiting.difference_update(outcomes)
        # With what background probes of this page learnt meanwhile.
        return apply_probes(self._with_outcomes(page), outcomes)

    def _queue_background(self, project: str, links: Iterable[Link]) -> None:
        if self.settings.background_probe_rate <= 0 or not self._may_probe():
            return
        for link in links:
            if link.url not in self._background:
                self._background[link.url] = (project, link)
                self._awaiting.add(link.url)
        if self._background and not self._background_running:
            self._background_running = True
            d = Deferred.fromCoroutine(self._run_background())
            d.addErrback(lambda f: log.failure("background probes of {i}", f, i=self.key))

    async def _run_background(self) -> None:
        """Probes the queued files one at a time, paced, updating each page as it completes."""
        done: dict[str, ProbeOutcome] = {}
        project = ""
        failures: dict[str, int] = {}
        pause = 0.0
        try:
            while self._background and not self.stopped:
                if self.health.is_down():
                    await deferLater(self._clock, self.health.retry_after())
                    continue
                url, (next_project, link) = next(iter(self._background.items()))
                if done and (next_project != project or len(done) >= LATE_BATCH):
                    await self._apply_late(project, done)
                    done = {}
                project = next_project
                known = self._outcomes.get(url)
                if known is not None:
                    # A page fetch probed it meanwhile (it became one of the newest).
                    self._background.pop(url, None)
                    done[url] = known
                    continue
                outcome = await self._probe(link)
                self._background.pop(url, None)
                if outcome is None and failures.get(url, 0) + 1 < BACKGROUND_ATTEMPTS:
                    # Perhaps the upstream is away for a moment: a file is given up (and gets a
                    # first-seen time) only after a few tries, with the queue backing off.
                    failures[url] = failures.get(url, 0) + 1
                    if not self.stopped:
                        self._background[url] = (project, link)
                    pause = min(
                        self.settings.backoff_max, max(self.settings.backoff_min, pause * 2)
                    )
                    await deferLater(self._clock, pause)
                    continue
                pause = 0.0
                if outcome is not None:
                    self._remember(url, outcome)
                done[url] = outcome or NOTHING_LEARNT
                await deferLater(self._clock, 1.0 / self.settings.background_probe_rate)
        finally:
            self._background_running = False
        if done and not self.stopped:
            await self._apply_late(project, done)

    def stop(self) -> None:
        """This object is being replaced (config change, deletion): no more background work."""
        self.stopped = True
        self._background.clear()
        self._awaiting.clear()

    async def _apply_late(self, project: str, outcomes: Mapping[str, ProbeOutcome]) -> None:
        # A page fetch under way picks these up from _outcomes.
        self._awaiting.difference_update(outcomes)
        state = self._states.get(project)
        if state is None or state.page is None or self.stopped:
            return
        page = apply_probes(state.page, outcomes)
        # Files whose probe brought no Last-Modified are stamped now.
        page = with_first_seen(page, None, self._clock.seconds(), self._awaiting)
        if page == state.page:
            return
        await self._store_page(attrs.evolve(state, page=page), outcomes)

    async def _store_page(self, state: MirrorPageState, outcomes: Mapping[str, Any]) -> None:
        assert state.page is not None
        metadata = {
            url: o.metadata_sha256
            for url, o in outcomes.items()
            if isinstance(o, ProbeOutcome) and o.metadata_sha256
        }
        self._states[state.project] = state
        self.generation += 1
        await self._storage.put_mirror_page(state, mirror_files(self.key, state.page, metadata))
        self._forget_records()

    async def _probe(self, link: Link) -> ProbeOutcome | None:
        return await self._probe_runs.run(link.url, lambda: self._probe_now(link))

    async def _probe_now(self, link: Link) -> ProbeOutcome | None:
        upstream = self._upstream
        assert upstream is not None
        await self._probe_slots.acquire()
        try:
            probe = await upstream.probe_file(link.url, link.filename, metadata=False)
        except UpstreamError as e:
            log.info("probing {url} failed: {e}", url=link.url, e=str(e))
            return None
        except Exception:
            # A probe is never worth more than the page: what it failed to learn stays unknown.
            log.failure("probing {url}", url=link.url)
            return None
        finally:
            if len(self._probed) > 100_000:
                self._probed.clear()
            self._probed[link.url] = self._clock.seconds() + PROBE_RETRY_SECONDS
            self._probe_slots.release()
        return ProbeOutcome(probe.size, probe.last_modified, None)

    async def core_metadata(self, record: MirrorFile) -> CoreMetadata | None:
        """
        The core metadata of a mirrored wheel, getting it now when needed: from the cached
        wheel, the upstream's PEP 658 file (hash-checked), range requests into the upstream
        wheel, or else the whole wheel, cached. None when it cannot be had. The page advertises
        its hash from then on.
        """
        if record.metadata_sha256:
            return CoreMetadata(record.metadata_sha256)
        if not record.filename.endswith(".whl"):
            return None
        key = (record.path_key, record.filename)
        fresh = self._fresh_metadata.get(key)
        if fresh is not None:
            return fresh
        return await self._metadata_runs.run(key, lambda: self._get_core_metadata(record))

    def _link(self, record: MirrorFile) -> Link | None:
        state = self._states.get(record.project)
        if state is None or state.page is None:
            return None
        return next((x for x in state.page.links if x.filename == record.filename), None)

    async def _get_core_metadata(self, record: MirrorFile) -> CoreMetadata | None:
        link = self._link(record)
        want = link.core_metadata.get("sha256") if link and link.core_metadata else None
        data = await self._metadata_from_cache(record)
        learnt = NOTHING_LEARNT
        upstream = self._upstream
        reachable = not (self.settings.offline or self.health.is_down())
        if data is None and upstream is not None and reachable:
            if link is not None and link.core_metadata is not None:
                data = await upstream.fetch_metadata_file(record.url)
                if data is not None and want and hashlib.sha256(data).hexdigest() != want:
                    log.warn("{url}.metadata does not match its hash", url=record.url)
                    data = None
            if data is None:
                try:
                    probe = await upstream.probe_file(record.url, record.filename)
                except UpstreamError:
                    probe = None
                if probe is not None:
                    data = probe.metadata
                    learnt = ProbeOutcome(probe.size, probe.last_modified, None)
                    if probe.whole is not None:
                        self._keep_whole_after(record, probe.whole, probe.last_modified)
            if data is None:
                data = await self._metadata_by_fill(record)
        if data is None or (want and hashlib.sha256(data).hexdigest() != want):
            return None
        found = CoreMetadata(hashlib.sha256(data).hexdigest(), data)
        # The answer does not wait for the blob and the records: until they are written the
        # bytes are served from memory (one storage thread runs writes in order, so later
        # reads see them).
        key = (record.path_key, record.filename)
        self._fresh_metadata[key] = found
        self._after(self._record_metadata(record, data, learnt), "recording metadata")
        return found

    async def _record_metadata(self, record: MirrorFile, data: bytes, learnt: ProbeOutcome) -> None:
        key = (record.path_key, record.filename)
        try:
            sha = await self._blobs.put_bytes(data)
            await self._storage.set_mirror_file_metadata(
                self.key, record.path_key, record.filename, sha
            )
        finally:
            # Served from memory until the stored record says it; the remembered record is
            # read again, since a concurrent write (the whole file cached) may have changed it.
            self._fresh_metadata.pop(key, None)
            self.forget_file(record.path_key, record.filename)
        state = self._states.get(record.project)
        if state is not None and state.page is not None:
            outcome = attrs.evolve(learnt, metadata_sha256=sha)
            self._awaiting.discard(record.url)
            page = apply_probes(state.page, {record.url: outcome})
            if page != state.page:
                await self._store_page(attrs.evolve(state, page=page), {record.url: outcome})

    async def _put_page(self, state: MirrorPageState) -> None:
        assert state.page is not None
        await self._storage.put_mirror_page(state, mirror_files(self.key, state.page))
        self._forget_records()

    def _after(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Work the answer does not wait for; its failure is logged."""
        d = Deferred.fromCoroutine(work)
        d.addErrback(lambda f: log.failure("{what} on {index}", f, what=what, index=self.key))

    def _keep_whole_after(self, record: MirrorFile, body: bytes, modified: float | None) -> None:
        key = (record.path_key, record.filename)
        self._keeping[key] = []

        def done(_: object) -> None:
            for waiter in self._keeping.pop(key, []):
                waiter.callback(None)

        d = Deferred.fromCoroutine(self._keep_whole(record, body, modified))
        d.addErrback(lambda f: log.failure("caching {f} on {i}", f, f=record.filename, i=self.key))
        d.addBoth(done)

    async def settled(self, record: MirrorFile) -> MirrorFile:
        """
        ``record`` again once the small file a metadata read brought whole is stored, when one
        is being stored: the download that follows a metadata read must not fetch it again.
        """
        waiters = self._keeping.get((record.path_key, record.filename))
        if waiters is None:
            return record
        waiter: Deferred[None] = Deferred()
        waiters.append(waiter)
        await waiter
        return await self.file_record(record.path_key, record.filename) or record

    async def _keep_whole(self, record: MirrorFile, body: bytes, modified: float | None) -> None:
        """A range answer that held the whole (small) file: cached, as a fill would."""
        digest = hashlib.sha256(body).hexdigest()
        if record.cached_sha256 or (record.sha256 and digest != record.sha256):
            return
        if (record.path_key, record.filename) in self.fills:
            return
        await self._blobs.put_bytes(body)
        await self._store_cached(record, digest, len(body), modified)

    async def _store_cached(
        self, record: MirrorFile, digest: str, size: int, modified: float | None
    ) -> None:
        when = record.upload_time or iso_time(modified or self._clock.seconds())
        await self._storage.set_mirror_file_cached(
            self.key, record.path_key, record.filename, digest, size, when
        )
        self._forget_records()

    async def _metadata_by_fill(self, record: MirrorFile) -> bytes | None:
        """The upstream answers no usable ranges: the whole wheel is cached, then read."""
        try:
            sha = await self.start_fill(record).when_stored()
        except Exception as e:
            log.info("no core metadata for {f}: {e}", f=record.filename, e=str(e))
            return None
        return await self._metadata_from_cache(attrs.evolve(record, cached_sha256=sha))

    async def _learn_from_blob(self, record: MirrorFile, sha256: str, size: int) -> None:
        """
        A file just cached tells what its page may lack: its size and, for a wheel, its core
        metadata (for upstreams that answer no range requests). The page advertises both now.
        """
        link = self._link(record)
        if link is None or (link.size is not None and link.core_metadata is not None):
            return
        metadata_sha = None
        if link.core_metadata is None and record.filename.endswith(".whl"):
            data = await self._metadata_from_cache(attrs.evolve(record, cached_sha256=sha256))
            if data is not None:
                metadata_sha = await self._blobs.put_bytes(data)
                await self._storage.set_mirror_file_metadata(
                    self.key, record.path_key, record.filename, metadata_sha
                )
                self._forget_records()
        state = self._states.get(record.project)
        if state is None or state.page is None:
            return
        outcome = ProbeOutcome(size, None, metadata_sha)
        page = apply_probes(state.page, {record.url: outcome})
        if page != state.page:
            await self._store_page(attrs.evolve(state, page=page), {record.url: outcome})

    async def _metadata_from_cache(self, record: MirrorFile) -> bytes | None:
        if not record.cached_sha256:
            return None
        path = self._blobs.local_path(record.cached_sha256)
        if path is None:
            return None
        if self._run_in_thread is None:
            return extract_core_metadata(path.path, record.filename)
        result: bytes | None = await self._run_in_thread(
            lambda: extract_core_metadata(path.path, record.filename)
        )
        return result

    async def cached_projects(self) -> list[str]:
        return [name for name, _ in await self._storage.list_mirror_pages(self.key)]

    # files
    async def file_record(self, path_key: str, filename: str) -> MirrorFile | None:
        """The stored record of a file this mirror lists, None when it lists no such file."""
        key = (path_key, filename)
        record = self._file_records.get(key)
        if record is None:
            epoch = self._records_epoch
            record = await self._storage.get_mirror_file(self.key, path_key, filename)
            # A record read before a write that changed it must not be remembered after it.
            if record is not None and epoch == self._records_epoch:
                if len(self._file_records) >= FILE_RECORDS_LIMIT:
                    self._file_records.clear()
                self._file_records[key] = record
        return record

    def forget_files(self) -> None:
        """Cached copies were dropped behind our back: remembered records are stale."""
        self._forget_records()
        self._fresh_metadata.clear()

    def forget_file(self, path_key: str, filename: str) -> None:
        """Drop the remembered record after its stored one changed."""
        self._file_records.pop((path_key, filename), None)
        self._records_epoch += 1

    def _forget_records(self) -> None:
        self._file_records.clear()
        self._records_epoch += 1

    def start_fill(self, record: MirrorFile) -> FileFill:
        """The fill under way for that file, or a new one."""
        key = (record.path_key, record.filename)
        fill = self.fills.get(key)
        if fill is not None:
            return fill
        if self._upstream is None:
            raise self._no_upstream()
        fill = FileFill(self._blobs.new_spool(), record.sha256)
        self.fills[key] = fill
        self.stats["upstream_requests"] += 1
        d = Deferred.fromCoroutine(self._fill(record, fill))
        d.addBoth(lambda _: self.fills.pop(key, None))
        return fill

    async def _fill(self, record: MirrorFile, fill: FileFill) -> None:
        assert self._upstream is not None
        start: list[FileStart] = []

        def on_start(s: FileStart) -> None:
            start.append(s)
            fill.started(s)

        try:
            await self._upstream.stream_file(record.url, on_start, fill.data, fill.source)
            await fill.spool.flush()
        except Exception as e:
            reason = str(e) or e.__class__.__name__
            if not start:
                self.health.failed(reason)
            log.warn("fetching {url} failed: {reason}", url=record.url, reason=reason)
            fill.failed(reason)
            return
        self.health.succeeded()
        declared = start[0].length if start else None
        if declared is not None and declared != fill.spool.size:
            fill.failed(f"upstream sent {fill.spool.size} of {declared} bytes")
            return
        digest = fill.spool.hexdigest()
        if record.sha256 and digest != record.sha256:
            log.error(
                "hash mismatch for {url}: upstream page says {want}, body is {got}",
                url=record.url,
                want=record.sha256,
                got=digest,
            )
            fill.failed("the upstream's file does not match its sha256")
            return
        fill.succeeded(digest)
        try:
            await fill.spool.commit(digest)
            fill.committed()
            modified = start[0].last_modified if start else None
            await self._store_cached(record, digest, fill.spool.size, modified)
            await self._learn_from_blob(record, digest, fill.spool.size)
        except Exception:
            log.failure("storing {url} failed", url=record.url)
            if fill.stored_sha256 is None:
                fill.failed("the file could not be stored")


async def _first_of(
    work: Deferred[MirrorPageState], clock: IReactorTime, seconds: float, fallback: MirrorPageState
) -> MirrorPageState:
    """``work``'s result if it comes within ``seconds``, else ``fallback`` (work goes on)."""
    result: Deferred[MirrorPageState] = Deferred()

    def ok(value: MirrorPageState) -> None:
        if not result.called:
            result.callback(value)

    def bad(_failure: Any) -> None:
        if not result.called:
            result.callback(fallback)

    work.addCallbacks(ok, bad)
    timer = clock.callLater(seconds, lambda: None if result.called else result.callback(fallback))
    try:
        return await result
    finally:
        if timer.active():
            timer.cancel()


async def _within(work: Deferred[Any], clock: IReactorTime, seconds: float) -> bool:
    """Waits for ``work`` at most ``seconds``; True when it finished (work goes on either way)."""
    if work.called:
        return True
    result: Deferred[bool] = Deferred()

    def done(value: Any) -> Any:
        if not result.called:
            result.callback(True)
        return value

    work.addBoth(done)
    timer = clock.callLater(seconds, lambda: None if result.called else result.callback(False))
    try:
        return await result
    finally:
        if timer.active():
            timer.cancel()
