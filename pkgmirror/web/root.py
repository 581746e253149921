"""
The URL space, assembled here and nowhere else::

    /                       users and their indexes          (api.RootListResource)
    /+api /+login /+status /+health/live /+health/ready /+search?q=
    /USER                   user config                       (api.UserResource)
    /USER/INDEX             index config                      (api.IndexResource)
    /USER/INDEX/            uploads (POST)                    (upload.UploadResource)
    /USER/INDEX/+api
    /USER/INDEX/+search?q=  project search over the index and its bases (pages.SearchResource)
    /USER/INDEX/+simple/... simple pages                      (simple.SimpleResource)
    /USER/INDEX/+f/...      files                             (files.FilesResource)
    /USER/INDEX/PROJECT[/VERSION]                             (api.ProjectResource)
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from pkgmirror.names import is_safe_path_segment, is_valid_user_or_index_name
from pkgmirror.server import Server
from pkgmirror.web import api
from pkgmirror.web.files import FilesResource
from pkgmirror.web.pages import SearchResource, XmlRpcResource, is_xmlrpc
from pkgmirror.web.simple import SimpleResource
from pkgmirror.web.status import HealthResource, StatusResource
from pkgmirror.web.upload import UploadResource
from pkgmirror.web.util import ErrorResource, RedirectResource

# Extra children of an index, by path segment (web pages plug in here).
INDEX_EXTRAS: dict[bytes, Any] = {}


class Root(Resource):
    def __init__(self, server: Server) -> None:
        super().__init__()
        self.app = server
        self.putChild(b"+api", api.ApiResource(server))
        self.putChild(b"+login", api.LoginResource(server))
        self.putChild(b"+status", StatusResource(server))
        self.putChild(b"+health", HealthResource(server))
        self.putChild(b"+search", SearchResource(server))

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return api.RootListResource(self.app)
        name = path.decode("utf-8", "replace")
        if not is_safe_path_segment(name) or name.startswith("+"):
            return ErrorResource(self.app, 404, "no such page")
        return api.UserResource(self.app, name)


class IndexSlash(Resource):
    """``/USER/INDEX/``: the upload endpoint for POST (no redirect: twine aborts on one)."""

    isLeaf = True

    def __init__(self, server: Server, user: str, name: str) -> None:
        super().__init__()
        self.app = server
        self.user = user
        self.name = name

    def render(self, request: Request) -> Any:  # type: ignore[override]
        if request.method == b"PUSH":
            return api.IndexResource(self.app, self.user, self.name).render(request)
        if is_xmlrpc(request):
            # pip search posts XML-RPC here (an upload is multipart/form-data).
            return XmlRpcResource(self.app, f"{self.user}/{self.name}").render(request)
        if request.method == b"POST":
            return UploadResource(self.app, self.user, self.name).render(request)
        return RedirectResource(self.app, f"{self.user}/{self.name}").render(request)


def index_child(server: Server, user: str, path: bytes, request: Request) -> Resource:
    """The child of ``/USER`` named ``path``: an index (existing or to be created)."""
    name = path.decode("utf-8", "replace")
    if path == b"":
        return api.UserResource(server, user)
    if not is_valid_user_or_index_name(name):
        return ErrorResource(server, 404, f"invalid index name {name[:80]!r}")
    return _IndexNode(server, user, name)


class _IndexNode(api.IndexResource):
    async def handle_POST(self, request: Request) -> bytes:
        # Uploads to the index URL without its slash too: a redirect would stop twine.
        return await UploadResource(self.app, self.user, self.name).upload(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        config = self.app.indexes.get(self.key)
        if path == b"":
            return IndexSlash(self.app, self.user, self.name)
        if config is None:
            return ErrorResource(self.app, 404, f"index {self.key} does not exist")
        if path == b"+simple":
            return SimpleResource(self.app, config)
        if path == b"+f":
            return FilesResource(self.app, config)
        if path == b"+api":
            return api.ApiResource(self.app, config)
        if path == b"+search":
            return SearchResource(self.app, config)
        extra = INDEX_EXTRAS.get(path)
        if extra is not None:
            return extra(self.app, config)
        if path.startswith(b"+"):
            return ErrorResource(self.app, 404, "no such page")
        return api.ProjectResource(self.app, config)
