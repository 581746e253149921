"""
devpi's JSON management API: users, indexes, login, ``+api``, project and version data.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from pkgmirror.config import index_config_json
from pkgmirror.model import IndexConfig, Link, User
from pkgmirror.names import (
    is_valid_project_name,
    is_valid_user_or_index_name,
    normalize,
    parse_dist_filename,
    version_sort_key,
)
from pkgmirror.releases import copy_release, normal_version
from pkgmirror.server import Refused, Server
from pkgmirror.web import pages
from pkgmirror.web.upload import delete_release, uploader, yank_release
from pkgmirror.web.util import (
    AsyncResource,
    RedirectResource,
    absolute,
    authenticated_user,
    envelope,
    query_flag,
    read_json,
    wants_json,
)

# Keys of a userconfig the server makes; clients that send a fetched config back include them.
READONLY_USER_KEYS = frozenset({"username", "created", "indexes"})

FEATURES = ["push-no-docs", "push-only-docs", "push-register-project", "server-keyvalue-parsing"]


def user_json(server: Server, user: User, with_indexes: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {"username": user.name}
    for key in ("email", "created", "title", "description"):
        value = getattr(user, key)
        if value is not None:
            data[key] = value
    if with_indexes:
        data["indexes"] = {
            c.name: index_config_json(c) for c in server.indexes.values() if c.user == user.name
        }
    return data


async def require_user(request: Request, server: Server) -> str:
    user = await authenticated_user(request, server)
    if user is None:
        raise Refused(
            401,
            "authentication required: log in first",
            {"WWW-Authenticate": 'Basic realm="pkgmirror"'},
        )
    return user


async def require_owner(request: Request, server: Server, owner: str, what: str) -> str:
    """
    The user, when it is ``owner`` or root. Anyone else, anonymous included, gets devpi's 403
    (devpi-client shows a 403's message; a 401 would make it forget a valid login).
    """
    user = await authenticated_user(request, server)
    if user is None:
        raise Refused(403, f"no permission to {what} (not logged in)")
    if user != owner and user != "root":
        raise Refused(403, f"no permission to {what}")
    return user


async def authstatus(request: Request, server: Server) -> list[Any]:
    try:
        user = await authenticated_user(request, server)
    except Refused:
        return ["expired", "", []]
    return ["ok", user, []] if user else ["noauth", "", []]


class ApiResource(AsyncResource):
    """``/+api`` and ``/USER/INDEX/+api``: where a client finds login, simple and upload URLs."""

    def __init__(self, server: Server, index: IndexConfig | None = None) -> None:
        super().__init__(server)
        self.index = index

    async def handle_GET(self, request: Request) -> bytes:
        result: dict[str, Any] = {
            "login": absolute(request, self.app, "+login"),
            "authstatus": await authstatus(request, self.app),
            "features": FEATURES,
        }
        if self.index is not None:
            key = self.index.key
            result["index"] = absolute(request, self.app, key)
            result["simpleindex"] = absolute(request, self.app, f"{key}/+simple/")
            if not self.index.is_mirror:
                result["pypisubmit"] = absolute(request, self.app, f"{key}/")
        return envelope(request, "apiconfig", result)


class LoginResource(AsyncResource):
    async def handle_POST(self, request: Request) -> bytes:
        body = read_json(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("user"), str)
            or not isinstance(body.get("password", ""), str)
        ):
            raise Refused(400, 'expected {"user": NAME, "password": PASSWORD}')
        name, password = body["user"], body.get("password", "")
        delay = self.app.login_delay(name)
        if delay:
            await _sleep(self.app, delay)
        if not await self.app.check_password(name, password):
            self.app.note_login_failure(name)
            raise Refused(401, f"user {name!r} could not be authenticated")
        token = self.app.make_token(name)
        return envelope(
            request,
            "proxyauth",
            {"password": token, "expiration": self.app.settings.token_ttl},
            message="login successful",
        )


async def _sleep(server: Server, seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(server.clock, seconds, lambda: None)  # type: ignore[arg-type]


class RootListResource(AsyncResource):
    """``GET /``: every user with their indexes."""

    async def handle_GET(self, request: Request) -> bytes:
        if not wants_json(request):
            return await pages.home(request, self.app)
        return envelope(
            request,
            "list:userconfig",
            {u.name: user_json(self.app, u) for u in self.app.users.values()},
        )


class UserResource(AsyncResource):
    """``/USER``: read, create (PUT), modify (PATCH), delete."""

    isLeaf = False

    def __init__(self, server: Server, name: str) -> None:
        super().__init__(server)
        self.name = name

    def getChild(self, path: bytes, request: Request) -> Resource:
        from pkgmirror.web.root import index_child

        return index_child(self.app, self.name, path, request)

    def _user(self) -> User:
        user = self.app.users.get(self.name)
        if user is None:
            raise Refused(404, f"user {self.name} does not exist")
        return user

    async def handle_GET(self, request: Request) -> bytes:
        if not wants_json(request):
            return await pages.user(request, self.app, self._user())
        return envelope(request, "userconfig", user_json(self.app, self._user()))

    async def handle_PUT(self, request: Request) -> bytes:
        if not is_valid_user_or_index_name(self.name):
            raise Refused(400, f"invalid user name {self.name!r}")
        body = read_json(request)
        if not isinstance(body, dict):
            raise Refused(400, "expected a JSON object")
        unknown = sorted(set(body) - {"password", "email", "title", "description", "pwhash"})
        if unknown:
            raise Refused(400, f"unknown user keys: {', '.join(unknown)}")
        user = await self.app.create_user(
            self.name,
            str(body.get("password") or ""),
            body.get("email"),
            title=body.get("title"),
            description=body.get("description"),
        )
        return envelope(request, "userconfig", user_json(self.app, user), code=201)

    async def handle_PATCH(self, request: Request) -> bytes:
        self._user()
        body = read_json(request)
        if not isinstance(body, dict):
            raise Refused(400, "expected a JSON object")
        what = "change password for user" if set(body) == {"password"} else "modify user"
        await require_owner(request, self.app, self.name, f"{what} {self.name}")
        # devpi-client's ``user -m`` and ``passwd`` send the fetched config back whole.
        changes = {k: v for k, v in body.items() if k not in READONLY_USER_KEYS}
        user = await self.app.modify_user(self.name, changes)
        return envelope(request, "userconfig", user_json(self.app, user), message="user updated")

    async def handle_DELETE(self, request: Request) -> bytes:
        self._user()
        await require_owner(request, self.app, self.name, f"delete user {self.name}")
        if self.name == "root":
            raise Refused(403, "user root cannot be deleted")
        kept = sorted(
            c.name for c in self.app.indexes.values() if c.user == self.name and not c.volatile
        )
        if kept:
            raise Refused(
                403,
                f"user {self.name!r} has non-volatile index: {', '.join(kept)} "
                "(set volatile=True on it first)",
            )
        await self.app.delete_user(self.name)
        return envelope(request, "userconfig", {}, message=f"user {self.name} deleted")


class IndexResource(AsyncResource):
    """``/USER/INDEX``: read, create (PUT), modify (PATCH), delete."""

    isLeaf = False

    def __init__(self, server: Server, user: str, name: str) -> None:
        super().__init__(server)
        self.user = user
        self.name = name
        self.key = f"{user}/{name}"

    def _config(self) -> IndexConfig:
        config = self.app.indexes.get(self.key)
        if config is None:
            raise Refused(404, f"index {self.key} does not exist")
        return config

    async def _json(self, request: Request, config: IndexConfig) -> bytes:
        result = index_config_json(config)
        if b"no_projects" not in (request.args or {}):
            if config.is_mirror:
                result["projects"] = await self.app.mirrors[config.key].cached_projects()
            else:
                result["projects"] = self.app.own_projects(config.key)
        return envelope(request, "indexconfig", result)

    async def handle_GET(self, request: Request) -> bytes:
        if not wants_json(request):
            return await pages.index(request, self.app, self._config())
        return await self._json(request, self._config())

    async def handle_PUT(self, request: Request) -> bytes:
        if self.user not in self.app.users:
            raise Refused(404, f"user {self.user} does not exist")
        await require_owner(request, self.app, self.user, f"create index {self.key}")
        body = read_json(request)
        if not isinstance(body, dict):
            raise Refused(400, "expected a JSON object of index settings")
        config = await self.app.create_index(self.user, self.name, body)
        return await self._json(request, config)

    async def handle_PATCH(self, request: Request) -> bytes:
        self._config()
        await require_owner(request, self.app, self.user, f"modify index {self.key}")
        body = read_json(request)
        if not isinstance(body, dict | list):
            raise Refused(400, "expected a JSON object or a list of key=value strings")
        config = await self.app.modify_index(self.key, body)
        return await self._json(request, config)

    async def handle_DELETE(self, request: Request) -> bytes:
        config = self._config()
        await require_owner(request, self.app, self.user, f"delete index {self.key}")
        if not config.volatile:
            raise Refused(
                403,
                f"index {self.key} non-volatile, cannot delete (set volatile=True on it first)",
            )
        await self.app.delete_index(self.key)
        return envelope(request, "indexconfig", {}, code=201, message=f"index {self.key} deleted")

    async def handle_PUSH(self, request: Request) -> bytes:
        return await push_release(request, self.app, self._config())


def link_json(request: Request, server: Server, index_key: str, link: Link) -> dict[str, Any]:
    # Page hrefs are relative to /U/I/+simple/P/; an absolute URL for API clients.
    href = link.url
    if href.startswith("../../../../"):
        href = absolute(request, server, href[len("../../../../") :])
    data: dict[str, Any] = {"rel": "releasefile", "href": href}
    if link.sha256:
        data["hash_spec"] = f"sha256={link.sha256}"
    data["hashes"] = dict(link.hashes)
    if link.requires_python:
        data["requires_python"] = link.requires_python
    if link.yanked is not None:
        data["yanked"] = link.yanked or True
    if link.size is not None:
        data["size"] = link.size
    if link.upload_time:
        data["upload_time"] = link.upload_time
    data["log"] = []
    data["index"] = link.origin or index_key
    return data


class ProjectResource(AsyncResource):
    """``/USER/INDEX/PROJECT[/VERSION]``: project and version data; deletion."""

    def __init__(self, server: Server, index: IndexConfig) -> None:
        super().__init__(server)
        self.index = index

    def _path(self, request: Request) -> tuple[str, str | None]:
        parts = [
            p.decode("utf-8", "replace")
            for p in (request.prepath or [])[-1:] + (request.postpath or [])
        ]
        parts = [p for p in parts if p != ""]
        if not parts or len(parts) > 2 or not is_valid_project_name(parts[0]):
            raise Refused(404, "no such project")
        return normalize(parts[0]), parts[1] if len(parts) == 2 else None

    async def _versions(
        self, request: Request, project: str
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
        """The versions, and what the merged page leaves out, and why (for people)."""
        ignore_bases = b"ignore_bases" in (request.args or {})
        versions: dict[str, dict[str, Any]] = {}
        hidden: list[dict[str, str]] = []
        if ignore_bases and not self.index.is_mirror:
            files = await self.app.release_files(self.index.key, project)
            for f in files:
                entry = versions.setdefault(f.version, {"name": project, "version": f.version})
                for k, v in f.metadata.items():
                    entry.setdefault(k, v)
            page = self.app.stage_page(self.index.key, project, files)
            links = page.links if page is not None else ()
        else:
            resolved = await self.app.project_page(self.index.key, project)
            links = resolved.page.links
            hidden = [{"index": h.index, "reason": h.reason} for h in resolved.hidden]
            for config in self.app.order(self.index.key):
                if not config.is_mirror:
                    for f in await self.app.release_files(config.key, project):
                        entry = versions.setdefault(
                            f.version, {"name": project, "version": f.version}
                        )
                        for k, v in f.metadata.items():
                            entry.setdefault(k, v)
        for link in links:
            parsed = parse_dist_filename(link.filename)
            version = parsed[1] if parsed else "unknown"
            entry = versions.setdefault(version, {"name": project, "version": version})
            entry.setdefault("+links", []).append(
                link_json(request, self.app, self.index.key, link)
            )
        ordered = sorted(versions.items(), key=lambda kv: version_sort_key(kv[0]), reverse=True)
        return dict(ordered), hidden

    async def handle_GET(self, request: Request) -> bytes:
        project, version = self._path(request)
        args = request.args or {}
        if request.path.endswith(b"/") and b"ignore_bases" not in args:
            # devpi's canonical project and version URLs have no trailing slash.
            path = request.path.decode("utf-8", "replace").rstrip("/")
            return RedirectResource(self.app, path).render(request)
        if not wants_json(request):
            return await pages.project(request, self.app, self.index, project, version)
        versions, hidden = await self._versions(request, project)
        if version is None:
            # Outside "result", where devpi-client expects only versions.
            return envelope(request, "projectconfig", versions, hidden=hidden)
        if version not in versions:
            raise Refused(404, f"version {version} of {project} not found on {self.index.key}")
        return envelope(request, "versiondata", versions[version])

    async def handle_DELETE(self, request: Request) -> bytes:
        project, version = self._path(request)
        force = query_flag(request, b"force")
        return await delete_release(request, self.app, self.index, project, version, force=force)

    async def handle_PATCH(self, request: Request) -> bytes:
        project, version = self._path(request)
        return await yank_release(request, self.app, self.index, project, version)


PUSH_OPTIONS = frozenset({"name", "version", "targetindex", "no_docs", "only_docs"})


async def push_release(request: Request, server: Server, source: IndexConfig) -> bytes:
    """
    devpi's ``PUSH /USER/INDEX``: copy one release's files to another stage. The files are
    content-addressed, so a push adds records that name the same blobs; no bytes are copied.
    """
    body = read_json(request)
    if not isinstance(body, dict):
        raise Refused(400, "expected a JSON object with name, version and targetindex")
    name, version = body.get("name"), body.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        raise Refused(400, "push needs the name and version of a release")
    target_key = body.get("targetindex")
    if target_key is None:
        raise Refused(
            400,
            "pushing to an external index (pypi:...) is not supported: download the files "
            "and upload them with twine",
        )
    unknown = sorted(set(body) - PUSH_OPTIONS)
    if unknown:
        raise Refused(400, f"unknown additional options: {', '.join(unknown)}")
    if not isinstance(target_key, str) or target_key.count("/") != 1:
        raise Refused(400, "targetindex not in format user/index")
    if source.is_mirror:
        raise Refused(400, f"{source.key} is a mirror: push releases from a stage index")
    project = normalize(name) if is_valid_project_name(name) else ""
    wanted = {version, normal_version(version)}
    files = [f for f in await server.release_files(source.key, project) if f.version in wanted]
    if body.get("only_docs"):
        files = []  # documentation is not stored: there is nothing to push
    if not files:
        raise Refused(404, f"no release/files found for {name} {version} on {source.key}")
    target = server.indexes.get(target_key)
    if target is None:
        raise Refused(404, f"index {target_key} does not exist")
    if target.is_mirror:
        raise Refused(400, f"cannot push to mirror index {target_key}")
    await uploader(request, server, target)
    copied = await copy_release(server, files, target)
    actions: list[list[Any]] = [[200, "register", name, version, "->", target.key]]
    actions += [
        [200, "store_releasefile", f"{target.key}/+f/{f.path_key}/{f.filename}"] for f in copied
    ]
    return envelope(request, "actionlog", actions)
