"""
The index server's domain state: users, indexes, mirrors, merged pages and their caches.

It holds what every request needs in memory (configs, users, which stage has which project,
rendered pages) so the hot path does no SQL; storage is written through on every change.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pkgmirror import auth
from pkgmirror.blobcache import SmallBlobs
from pkgmirror.config import (
    ConfigError,
    apply_keyvalue_list,
    check_bases,
    make_index_config,
    mirror_url_allowed,
    resolution_order,
)
from pkgmirror.interfaces import IBlobStore, IStorage, NotFound
from pkgmirror.mirror import Mirror, MirrorSettings, NoUpstream, Unavailable
from pkgmirror.model import IndexConfig, Link, ProjectPage, ReleaseFile, User
from pkgmirror.namelist import NameList
from pkgmirror.names import is_valid_user_or_index_name
from pkgmirror.stage import Hidden, apply_yanks, is_private, merge_pages
from pkgmirror.upstream import Upstream, split_credentials

log = Logger()
T = TypeVar("T")

# Merged pages kept per (index, project); past this many the cache starts over.
_PAGE_CACHE_LIMIT = 20000

RunInThread = Callable[[Callable[[], T]], "Deferred[T]"]


class Refused(Exception):
    """A request the server refuses: ``code`` is the HTTP status, the message one line."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


@attrs.frozen
class ServerSettings:
    mirror: MirrorSettings = attrs.field(factory=MirrorSettings)
    request_timeout: float = 10.0
    outside_url: str | None = None
    token_ttl: int = auth.DEFAULT_TOKEN_TTL
    max_upload_size: int = 1024**3
    # URL prefixes mirrors may fetch from (--mirror-url-allow); empty: any.
    mirror_url_allow: tuple[str, ...] = ()


@attrs.frozen
class ResolvedPage:
    """A project page as an index serves it, with what people (not installers) are told."""

    page: ProjectPage
    hidden: tuple[Hidden, ...]
    key: tuple[Any, ...]


@attrs.define(eq=False)
class Server:
    storage: IStorage
    blobs: IBlobStore
    clock: IReactorTime
    http_client: Any
    run_in_thread: Any
    settings: ServerSettings = ServerSettings()
    users: dict[str, User] = attrs.field(factory=dict)
    indexes: dict[str, IndexConfig] = attrs.field(factory=dict)
    mirrors: dict[str, Mirror] = attrs.field(factory=dict)
    stage_projects: dict[str, set[str]] = attrs.field(factory=dict)
    secret: str = ""
    uuid: str = ""
    generation: int = 0
    started: float = attrs.field(factory=time.time)
    _release_cache: dict[tuple[str, str], list[ReleaseFile]] = attrs.field(factory=dict)
    _order_cache: dict[str, list[IndexConfig]] = attrs.field(factory=dict)
    _page_cache: dict[tuple[str, str], ResolvedPage] = attrs.field(factory=dict)
    small_blobs: SmallBlobs = attrs.field(factory=SmallBlobs)
    _names_cache: dict[str, tuple[tuple[Any, ...], NameList]] = attrs.field(factory=dict)
    # Stage file records per index by (path_key, filename), so serving one costs no SQL.
    _file_records: dict[str, dict[tuple[str, str], ReleaseFile]] = attrs.field(factory=dict)
    render_cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], bytes, str]] = attrs.field(
        factory=dict
    )
    # index -> project -> version -> reason: yanks of releases a stage does not own.
    stage_yanks: dict[str, dict[str, dict[str, str]]] = attrs.field(factory=dict)
    # (index, filename) of uploads being stored now; and the lock that keeps storing a blob and
    # deleting an unreferenced one from overlapping.
    uploads_in_flight: set[tuple[str, str]] = attrs.field(factory=set)
    blob_lock: DeferredLock = attrs.field(factory=DeferredLock)
    _basic_cache: dict[tuple[str, str], float] = attrs.field(factory=dict)
    _login_failures: dict[str, list[float]] = attrs.field(factory=dict)
    # For /+status: where the data lives, and the refresh loop (set by the composition root).
    serverdir: str = ""
    refresher: Any = None

    async def load(self) -> None:
        """Reads users, indexes and stage project names into memory."""
        self.secret = await self.storage.get_setting("token_secret") or ""
        if not self.secret:
            self.secret = auth.new_secret()
            await self.storage.put_setting("token_secret", self.secret)
        self.uuid = await self.storage.get_setting("uuid") or ""
        if not self.uuid:
            self.uuid = uuid.uuid4().hex
            await self.storage.put_setting("uuid", self.uuid)
        self.users = {u.name: u for u in await self.storage.list_users()}
        self.indexes = {}
        for config in await self.storage.list_indexes():
            self._install_index(config)
            if not config.is_mirror:
                self.stage_projects[config.key] = set(
                    await self.storage.list_stage_projects(config.key)
                )
                for project, version, reason in await self.storage.list_stage_yanks(config.key):
                    self.stage_yanks.setdefault(config.key, {}).setdefault(project, {})[version] = (
                        reason
                    )

    def _changed(self) -> None:
        self.generation += 1
        self._order_cache.clear()
        self._names_cache.clear()
        self._file_records.clear()

    def _install_index(self, config: IndexConfig) -> None:
        self.indexes[config.key] = config
        if config.is_mirror:
            upstream = None
            if config.mirror_url:
                upstream = Upstream.for_mirror_url(
                    self.http_client,
                    self.clock,
                    config.mirror_url,
                    timeout=self.settings.request_timeout,
                )
            old = self.mirrors.get(config.key)
            if old is not None:
                old.stop()
            mirror = Mirror(
                config,
                self.storage,
                self.blobs,
                upstream,
                self.clock,
                self.settings.mirror,
                self.run_in_thread,
            )
            if old is not None and old.config.mirror_url == config.mirror_url:
                # Keep what the old object learnt (health, loaded pages) across config edits.
                mirror.health = old.health
                mirror.last_used = old.last_used
                mirror.stats = old.stats
            elif old is not None:
                # A new upstream: what the old one said is revalidated before it is served again.
                mirror.stale_before = self.clock.seconds()
            self.mirrors[config.key] = mirror
        else:
            dropped = self.mirrors.pop(config.key, None)
            if dropped is not None:
                dropped.stop()
            self.stage_projects.setdefault(config.key, set())
        self._changed()

    # ---------------------------------------------------------------- users and auth
    async def check_password(self, name: str, password: str) -> bool:
        user = self.users.get(name)
        if user is None:
            return False
        cache_key = (name, hashlib.sha256(f"{user.password_hash}\0{password}".encode()).hexdigest())
        now = self.clock.seconds()
        if self._basic_cache.get(cache_key, 0) > now:
            return True
        ok: bool = await self.run_in_thread(
            lambda: auth.verify_password(password, user.password_hash)
        )
        if ok:
            # Basic auth sends the password on every request (twine): remember a success
            # briefly instead of paying the KDF each time.
            if len(self._basic_cache) > 10000:
                self._basic_cache.clear()
            self._basic_cache[cache_key] = now + 60
        return ok

    def login_delay(self, name: str) -> float:
        """Seconds to hold a failed login's answer: grows with recent failures."""
        now = self.clock.seconds()
        recent = [t for t in self._login_failures.get(name, []) if now - t < 300]
        self._login_failures[name] = recent
        return min(5.0, 0.25 * 2 ** max(0, len(recent) - 3)) if len(recent) > 3 else 0.0

    def note_login_failure(self, name: str) -> None:
        self._login_failures.setdefault(name, []).append(self.clock.seconds())

    def make_token(self, name: str) -> str:
        return auth.make_token(self.secret, name, self.clock.seconds(), self.settings.token_ttl)

    def check_token(self, token: str) -> auth.TokenCheck:
        check = auth.check_token(self.secret, token, self.clock.seconds())
        if check.user is not None and check.user not in self.users:
            return auth.TokenCheck(None, "user of this token no longer exists")
        return check

    async def create_user(
        self, name: str, password: str, email: str | None = None, **extra: str | None
    ) -> User:
        if not is_valid_user_or_index_name(name):
            raise Refused(400, f"invalid user name {name!r}")
        if name in self.users:
            raise Refused(409, f"user {name} exists")
        pw_hash = await self.run_in_thread(lambda: auth.hash_password(password)) if password else ""
        user = User(
            name=name,
            password_hash=pw_hash,
            email=email,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            title=extra.get("title"),
            description=extra.get("description"),
        )
        await self.storage.put_user(user)
        self.users[name] = user
        return user

    async def modify_user(self, name: str, changes: dict[str, Any]) -> User:
        user = self.users.get(name)
        if user is None:
            raise Refused(404, f"user {name} does not exist")
        unknown = sorted(set(changes) - {"password", "email", "title", "description"})
        if unknown:
            raise Refused(400, f"unknown user keys: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        if "password" in changes:
            password = str(changes["password"] or "")
            values["password_hash"] = (
                await self.run_in_thread(lambda: auth.hash_password(password)) if password else ""
            )
        for key in ("email", "title", "description"):
            if key in changes:
                values[key] = changes[key]
        user = attrs.evolve(user, **values)
        await self.storage.put_user(user)
        self.users[name] = user
        self._basic_cache.clear()
        return user

    async def delete_user(self, name: str) -> None:
        if name not in self.users:
            raise Refused(404, f"user {name} does not exist")
        for key in [k for k, c in self.indexes.items() if c.user == name]:
            dependants = [c.key for c in self.indexes.values() if key in c.bases and c.user != name]
            if dependants:
                raise Refused(409, f"index {key} is a base of {', '.join(dependants)}")
        unreferenced = await self.storage.delete_user(name)
        await self._drop_blobs(unreferenced)
        del self.users[name]
        for key in [k for k, c in self.indexes.items() if c.user == name]:
            self._forget_index(key)
        self._changed()

    # ---------------------------------------------------------------- indexes
    async def create_index(self, user: str, name: str, raw: dict[str, Any]) -> IndexConfig:
        if user not in self.users:
            raise Refused(404, f"user {user} does not exist")
        key = f"{user}/{name}"
        if key in self.indexes:
            raise Refused(409, f"index {key} exists")
        try:
            config = make_index_config(user, name, raw)
            check_bases(config, self.indexes)
        except ConfigError as e:
            raise Refused(400, str(e)) from None
        self._check_mirror_url(config, None)
        await self.storage.put_index(config)
        self._install_index(config)
        return config

    async def modify_index(self, key: str, raw: dict[str, Any] | list[str]) -> IndexConfig:
        existing = self.indexes.get(key)
        if existing is None:
            raise Refused(404, f"index {key} does not exist")
        try:
            values = apply_keyvalue_list(existing, raw) if isinstance(raw, list) else dict(raw)
            values.pop("projects", None)
            if values.get("type") == existing.type:
                values.pop("type")
            config = make_index_config(existing.user, existing.name, values, existing)
            others = dict(self.indexes)
            others[key] = config
            check_bases(config, others)
        except ConfigError as e:
            raise Refused(400, str(e)) from None
        self._check_mirror_url(config, existing)
        await self.storage.put_index(config)
        self._install_index(config)
        return config

    def _check_mirror_url(self, config: IndexConfig, existing: IndexConfig | None) -> None:
        # Checked when the URL is set, so an operator's narrower list later does not block
        # other edits of an index made before.
        url = config.mirror_url
        if not url or (existing is not None and existing.mirror_url == url):
            return
        allowed = self.settings.mirror_url_allow
        if not mirror_url_allowed(url, allowed):
            raise Refused(
                403,
                f"this server's mirrors may only fetch from {', '.join(allowed)}, "
                f"not {split_credentials(url)[0]}",
            )

    async def delete_index(self, key: str) -> None:
        config = self.indexes.get(key)
        if config is None:
            raise Refused(404, f"index {key} does not exist")
        dependants = [c.key for c in self.indexes.values() if key in c.bases]
        if dependants:
            raise Refused(409, f"index {key} is a base of {', '.join(dependants)}")
        unreferenced = await self.storage.delete_index(config.user, config.name)
        await self._drop_blobs(unreferenced)
        self._forget_index(key)
        self._changed()

    def _forget_index(self, key: str) -> None:
        self.indexes.pop(key, None)
        dropped = self.mirrors.pop(key, None)
        if dropped is not None:
            dropped.stop()
        self.stage_projects.pop(key, None)
        self.stage_yanks.pop(key, None)
        # Else an index created again under the same name would list the old one's files.
        for cached in [k for k in self._release_cache if k[0] == key]:
            del self._release_cache[cached]

    async def _drop_blobs(self, shas: list[str]) -> None:
        for sha in shas:
            try:
                await self.blobs.delete(sha)
            except Exception:
                log.failure("could not delete blob {sha}", sha=sha)

    def order(self, key: str) -> list[IndexConfig]:
        order = self._order_cache.get(key)
        if order is None:
            order = resolution_order(key, self.indexes)
            self._order_cache[key] = order
        return order

    # ---------------------------------------------------------------- stage files
    async def release_files(self, index: str, project: str) -> list[ReleaseFile]:
        cache_key = (index, project)
        files = self._release_cache.get(cache_key)
        if files is None:
            if project in self.stage_projects.get(index, ()):
                files = await self.storage.list_release_files(index, project)
            else:
                files = []
            self._release_cache[cache_key] = files
        return files

    async def release_file(self, index: str, path_key: str, filename: str) -> ReleaseFile | None:
        """The record of a stage's file, None when the stage has no such file."""
        records = self._file_records.setdefault(index, {})
        record = records.get((path_key, filename))
        if record is None:
            generation = self.generation
            record = await self.storage.get_release_file(index, path_key, filename)
            # A change while the query ran may have made the answer stale: do not keep it.
            if record is not None and generation == self.generation:
                if len(records) >= _PAGE_CACHE_LIMIT:
                    records.clear()
                records[(path_key, filename)] = record
        return record

    def release_files_changed(self, index: str, project: str, present: bool) -> None:
        self._release_cache.pop((index, project), None)
        projects = self.stage_projects.setdefault(index, set())
        if present:
            projects.add(project)
        else:
            projects.discard(project)
        self._changed()

    async def set_stage_yank(
        self, index: str, project: str, version: str, reason: str | None
    ) -> None:
        """Yanks (or un-yanks, None) a release ``index`` does not own, on its pages."""
        await self.storage.set_stage_yank(index, project, version, reason)
        versions = self.stage_yanks.setdefault(index, {}).setdefault(project, {})
        if reason is None:
            versions.pop(version, None)
        else:
            versions[version] = reason
        self._changed()

    def stage_page(self, index: str, project: str, files: list[ReleaseFile]) -> ProjectPage | None:
        if not files:
            return None
        links = [
            Link(
                filename=f.filename,
                url=f"../../../../{index}/+f/{f.path_key}/{f.filename}",
                hashes={"sha256": f.sha256},
                requires_python=f.requires_python,
                yanked=f.yanked,
                core_metadata={"sha256": f.metadata_sha256} if f.metadata_sha256 else None,
                size=f.size,
                upload_time=f.upload_time,
                origin=index,
            )
            for f in files
        ]
        return ProjectPage(name=project, links=links)

    # ---------------------------------------------------------------- pages
    async def project_page(self, key: str, project: str, *, fetch: bool = True) -> ResolvedPage:
        """
        The page ``key`` serves for ``project``. Fails with Refused(404) when no index in the
        order has it, Refused(503) when an upstream that might have it cannot be asked.
        """
        order = self.order(key)
        if not order:
            raise Refused(404, f"index {key} does not exist")
        private = is_private(order, project)
        # Each source is (config, mirror state or stage files or None); ``versions`` says which
        # data they hold, so an unchanged page is not merged again on every request.
        sources: list[tuple[IndexConfig, Any]] = []
        versions: list[Any] = [self.generation, fetch]
        unavailable: Unavailable | None = None
        no_upstream: NoUpstream | None = None
        for config in order:
            if config.is_mirror:
                mirror = self.mirrors[config.key]
                if private is not None or not fetch:
                    sources.append((config, None))
                    versions.append(None)
                    continue
                try:
                    state = await mirror.get_state(project)
                except Unavailable as e:
                    unavailable = unavailable or e
                    sources.append((config, None))
                    versions.append(None)
                    continue
                except NoUpstream as e:
                    no_upstream = no_upstream or e
                    sources.append((config, None))
                    versions.append(None)
                    continue
                # The state itself, not the mirror's generation: work on another project of the
                # mirror (background probes) must not make this page merge and render again.
                # Held in the key, it is compared by identity first and cannot be recycled.
                versions.append(state)
                sources.append((config, state))
            else:
                sources.append((config, await self.release_files(config.key, project)))
        now = self.clock.seconds()
        if order[0].min_release_age:
            versions.append(int(now // 60))
        page_key = (key, project, *versions)
        hit = self._page_cache.get((key, project))
        if hit is not None and hit.key == page_key:
            return hit
        pages: list[ProjectPage | None] = []
        for config, source in sources:
            if source is None:
                pages.append(None)
            elif config.is_mirror:
                pages.append(self.mirrors[config.key].served(source))
            else:
                pages.append(self.stage_page(config.key, project, source))
        merged, hidden = merge_pages(project, order, pages, now)
        yanks = [self.stage_yanks.get(c.key, {}).get(project) for c in order if not c.is_mirror]
        merged = apply_yanks(merged, [y for y in yanks if y])
        if private is not None:
            hidden.extend(
                Hidden(
                    c.key,
                    f"{project} matches the private_prefixes pattern {private!r}, so "
                    f"{c.key} is never asked for it",
                )
                for c in order
                if c.is_mirror
            )
        if not merged.links and all(p is None for p in pages):
            if unavailable is not None:
                raise Refused(
                    503,
                    f"{project}: {unavailable.reason}",
                    {"Retry-After": str(unavailable.retry_after)},
                )
            if no_upstream is not None and len(order) == 1:
                raise Refused(404, str(no_upstream))
            if private is not None:
                raise Refused(
                    404, f"{project} is private on {key} (pattern {private!r}); no mirror is asked"
                )
            raise Refused(404, f"project {project} not found on {key}")
        resolved = ResolvedPage(merged, tuple(hidden), page_key)
        if len(self._page_cache) >= _PAGE_CACHE_LIMIT:
            self._page_cache.clear()
        self._page_cache[(key, project)] = resolved
        return resolved

    async def project_names(self, key: str) -> NameList:
        """Every project the index and its bases list, de-duplicated and sorted (shared)."""
        return (await self.project_list(key))[1]

    async def project_list(self, key: str) -> tuple[tuple[Any, ...], NameList]:
        """
        ``(version, names)``: the project_names of ``key`` and a value that changes whenever
        they do. Kept and shared: with a mirror of a million names, building them per request
        would cost more than the request.
        """
        lists: list[NameList] = []
        extra: list[Iterable[str]] = []
        version: list[Any] = [key, self.generation]
        for config in self.order(key):
            if config.is_mirror:
                mirror = self.mirrors[config.key]
                if config.mirror_no_project_list:
                    cached = await mirror.cached_projects()
                    extra.append(cached)
                    version.append((mirror.generation, len(cached)))
                else:
                    lists.append(await mirror.project_names())
                    version.append((mirror.generation, mirror.names_generation))
            else:
                extra.append(self.stage_projects.get(config.key, ()))
        hit = self._names_cache.get(key)
        if hit is not None and hit[0] == tuple(version):
            return hit
        # The stage's own names (a few) go into the biggest list without copying its names.
        lists.sort(key=len)
        names = (lists.pop() if lists else NameList()).merged(itertools.chain(*lists, *extra))
        result = (tuple(version), names)
        self._names_cache[key] = result
        return result

    def own_projects(self, key: str) -> list[str]:
        return sorted(self.stage_projects.get(key, ()))

    async def close(self) -> None:
        await self.storage.close()


__all__ = ["NotFound", "Refused", "ResolvedPage", "Server", "ServerSettings"]
