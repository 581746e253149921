"""
A tiny in-memory stand-in for a devpi-JSON server, for testing HTTP clients of that API.

It answers on 127.0.0.1 from a thread (stdlib ``http.server``; no Twisted, so blocking clients can
call it from the test thread), records every request, and follows the statuses and envelopes of
``devpi-http-api.md``: ``{"type", "result"}`` on success, ``{"message"}`` on errors,
``X-Devpi-Auth`` tokens from ``POST /+login``, PATCH bodies as lists of ``key=value``
operations. It is not a package index: no simple pages, no files.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from pkgmirror.names import blob_path_parts, normalize

FEATURES = ["push-no-docs", "push-only-docs", "push-register-project", "server-keyvalue-parsing"]
TOKEN_LIFETIME = 36000
_LIST_KEYS = {"bases", "acl_upload", "acl_toxresult_upload", "mirror_whitelist"}
_BOOL_KEYS = {
    "volatile",
    "mirror_use_external_urls",
    "mirror_no_project_list",
    "mirror_ignore_serial_header",
    "mirror_provides_core_metadata",
}
_INT_KEYS = {"mirror_cache_expiry"}
_STAGE_KEYS = {
    "type",
    "bases",
    "volatile",
    "acl_upload",
    "acl_toxresult_upload",
    "mirror_whitelist",
    "mirror_whitelist_inheritance",
    "title",
    "description",
    "custom_data",
}
_MIRROR_KEYS = {
    "type",
    "bases",
    "volatile",
    "mirror_url",
    "mirror_cache_expiry",
    "mirror_use_external_urls",
    "mirror_no_project_list",
    "mirror_ignore_serial_header",
    "mirror_provides_core_metadata",
    "mirror_web_url_fmt",
    "title",
    "description",
    "custom_data",
}


@attrs.frozen
class Recorded:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def auth_user(self) -> str | None:
        value = self.headers.get("x-devpi-auth")
        if not value:
            return None
        return base64.b64decode(value).decode().partition(":")[0]


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@attrs.define
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = attrs.field(factory=dict)


def _json(status: int, value: Any) -> _Reply:
    return _Reply(status, json.dumps(value).encode())


def _envelope(kind: str, result: Any, status: int = 200, **extra: Any) -> _Reply:
    return _json(status, {"type": kind, "result": result, **extra})


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class FakeDevpi:
    """
    Start with :meth:`start` (or use as a context manager); ``url`` is the root URL with a
    trailing slash. ``requests`` lists every request received. ``expire_tokens()`` makes the
    server refuse every token handed out so far, as a restarted devpi without a secret file does.
    """

    root_password: str = ""
    users: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    # "user/index" -> project -> version -> versiondata (with "+links")
    projects: dict[str, dict[str, dict[str, dict[str, Any]]]] = attrs.field(factory=dict)
    requests: list[Recorded] = attrs.field(factory=list)
    tokens: dict[str, str] = attrs.field(factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self.users.setdefault(
            "root",
            {"password": self.root_password, "email": None, "created": _now_iso(), "indexes": {}},
        )

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/"

    def start(self) -> FakeDevpi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urllib.parse.urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    urllib.parse.unquote(parsed.path),
                    parsed.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake._lock:
                    fake.requests.append(recorded)
                    host = self.headers.get("Host") or "127.0.0.1"
                    reply = fake._dispatch(recorded, f"http://{host}/")
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("X-Devpi-Api-Version", "2")
                self.send_header("X-Devpi-Serial", str(len(fake.requests)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            # A short poll interval keeps stop() (and so every test using the fake) fast.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeDevpi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests ---------------------------------------------------------------------

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def add_index(self, user: str, name: str, **config: Any) -> None:
        with self._lock:
            self.users[user]["indexes"][name] = self._normalize_config(
                user, name, {k: str(v) for k, v in config.items()}, None
            )
            self.projects.setdefault(f"{user}/{name}", {})

    def writes(self) -> list[Recorded]:
        """The requests that could have changed something."""
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, req: Recorded, root: str) -> _Reply:
        try:
            return self._route(req, root)
        except _Refused as refused:
            reply = _json(refused.status, {"message": refused.message})
            reply.headers.update(refused.headers)
            return reply

    def _auth(self, req: Recorded) -> str | None:
        value = req.headers.get("x-devpi-auth")
        if not value:
            return None
        try:
            user, _, token = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as error:
            raise _Refused(400, "malformed X-Devpi-Auth header") from error
        if self.tokens.get(token) != user:
            # As devpi and pkgmirror: a Location (the login URL) marks stale credentials.
            raise _Refused(
                401, f"auth token for {user!r} expired or invalid", {"Location": "/+login"}
            )
        return user

    def _route(self, req: Recorded, root: str) -> _Reply:
        method, path = req.method, req.path
        segments = [s for s in path.split("/") if s]
        trailing = path.endswith("/") and path != "/"
        query = urllib.parse.parse_qs(req.query, keep_blank_values=True)
        if path == "/+login":
            if method != "POST":
                raise _Refused(404, "not found")
            return self._login(req)
        if segments and segments[-1] == "+api" and method == "GET":
            return self._api(req, root, segments[:-1])
        user = self._auth(req)
        if not segments:
            if method != "GET":
                raise _Refused(405, "method not allowed")
            return _envelope(
                "list:userconfig", {name: self._userconfig(name) for name in self.users}
            )
        if len(segments) == 1:
            return self._user(req, user, segments[0])
        owner, index = segments[0], segments[1]
        if len(segments) == 2:
            if trailing and method == "POST":
                return self._upload(req, user, owner, index, root)
            if trailing:
                return self._redirect(root, f"{owner}/{index}")
            return self._index(req, user, owner, index, query)
        config = self._config(owner, index)
        if segments[2] == "+simple" and len(segments) == 5 and segments[4] == "refresh":
            if method != "POST":
                raise _Refused(405, "method not allowed")
            location = urllib.parse.urljoin(root, f"{owner}/{index}/+simple/{segments[3]}/")
            return _Reply(302, b"", "text/html", {"Location": location})
        project = segments[2]
        if len(segments) == 3:
            if trailing and "ignore_bases" not in query and method == "GET":
                return self._redirect(root, f"{owner}/{index}/{project}")
            return self._project(req, user, owner, index, config, project)
        if len(segments) == 4:
            return self._version(req, user, owner, index, config, project, segments[3])
        raise _Refused(404, "not found")

    def _redirect(self, root: str, path: str) -> _Reply:
        location = urllib.parse.urljoin(root, path)
        reply = _json(
            302,
            {
                "message": f"The resource was found at {location}",
                "code": "302 Found",
                "title": "Found",
            },
        )
        reply.headers["Location"] = location
        return reply

    # -- auth ----------------------------------------------------------------------------------

    def _login(self, req: Recorded) -> _Reply:
        data = req.json() or {}
        name, password = data.get("user"), data.get("password")
        account = self.users.get(name) if isinstance(name, str) else None
        if account is None or account["password"] != password:
            raise _Refused(401, f"user {name!r} could not be authenticated")
        assert isinstance(name, str)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = name
        return _envelope(
            "proxyauth",
            {"password": token, "expiration": TOKEN_LIFETIME},
            message="login successful",
        )

    def _api(self, req: Recorded, root: str, segments: list[str]) -> _Reply:
        value = req.headers.get("x-devpi-auth")
        status: list[Any] = ["noauth", "", []]
        if value:
            name, _, token = base64.b64decode(value).decode().partition(":")
            status = ["ok", name, []] if self.tokens.get(token) == name else ["expired", name, []]
        result: dict[str, Any] = {
            "login": urllib.parse.urljoin(root, "+login"),
            "authstatus": status,
            "features": FEATURES,
        }
        if segments:
            if len(segments) != 2:
                raise _Refused(404, "not found")
            self._config(*segments)
            key = "/".join(segments)
            result["index"] = urllib.parse.urljoin(root, key)
            result["simpleindex"] = urllib.parse.urljoin(root, f"{key}/+simple/")
            result["pypisubmit"] = urllib.parse.urljoin(root, f"{key}/")
        return _envelope("apiconfig", result)

    def _may_modify(self, user: str | None, owner: str, what: str) -> None:
        if user is None:
            raise _Refused(403, f"no permission to {what}")
        if user not in (owner, "root"):
            raise _Refused(403, f"no permission to {what}")

    # -- users ---------------------------------------------------------------------------------

    def _userconfig(self, name: str) -> dict[str, Any]:
        account = self.users[name]
        config = {"username": name, "created": account["created"], "indexes": account["indexes"]}
        if account.get("email"):
            config["email"] = account["email"]
        return config

    def _user(self, req: Recorded, user: str | None, name: str) -> _Reply:
        if req.method == "GET":
            if name not in self.users:
                raise _Refused(404, f"user {name!r} does not exist")
            return _envelope("userconfig", self._userconfig(name))
        if req.method == "PUT":
            if name in self.users:
                raise _Refused(409, f"user {name!r} already exists")
            data = req.json()
            if not isinstance(data, dict) or not data.get("password"):
                raise _Refused(400, "password required")
            unknown = set(data) - {"password", "email", "title", "description"}
            if unknown:
                raise _Refused(400, f"unknown keys: {', '.join(sorted(unknown))}")
            self.users[name] = {
                "password": data["password"],
                "email": data.get("email"),
                "created": _now_iso(),
                "indexes": {},
            }
            return _envelope("userconfig", self._userconfig(name), status=201)
        if name not in self.users:
            raise _Refused(404, f"user {name!r} does not exist")
        self._may_modify(user, name, f"modify user {name}")
        if req.method == "PATCH":
            data = req.json()
            if not isinstance(data, dict):
                raise _Refused(400, "expected a JSON object")
            unknown = set(data) - {"password", "email", "title", "description"}
            if unknown:
                raise _Refused(400, f"unknown keys: {', '.join(sorted(unknown))}")
            self.users[name].update(data)
            return _envelope("userconfig", self._userconfig(name))
        if req.method == "DELETE":
            if name == "root":
                raise _Refused(403, "root user cannot be deleted")
            del self.users[name]
            return _json(200, {"message": f"user {name!r} deleted"})
        raise _Refused(405, "method not allowed")

    # -- indexes -------------------------------------------------------------------------------

    def _config(self, owner: str, index: str) -> dict[str, Any]:
        account = self.users.get(owner)
        if account is None or index not in account["indexes"]:
            raise _Refused(404, f"index {owner}/{index} does not exist")
        return dict(account["indexes"][index])

    def _normalize_config(
        self, owner: str, index: str, values: Mapping[str, Any], old: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        kind = values.get("type", (old or {}).get("type", "stage"))
        if old is not None and kind != old.get("type"):
            raise _Refused(400, "index type cannot be changed")
        if kind not in ("stage", "mirror"):
            raise _Refused(400, f"unknown index type {kind!r}")
        allowed = _MIRROR_KEYS if kind == "mirror" else _STAGE_KEYS
        unknown = {k: v for k, v in values.items() if k not in allowed}
        if unknown:
            args = ", ".join(f"{k}={v}" for k, v in sorted(unknown.items()))
            raise _Refused(400, f"indexconfig got unexpected keyword arguments: {args}")
        if old is None:
            config: dict[str, Any] = {"type": kind, "bases": [], "volatile": True}
            if kind == "stage":
                config.update(
                    acl_upload=[owner],
                    acl_toxresult_upload=[":ANONYMOUS:"],
                    mirror_whitelist=[],
                    mirror_whitelist_inheritance="intersection",
                )
            elif "mirror_url" not in values:
                raise _Refused(400, "mirror_url is required for a mirror index")
        else:
            config = dict(old)
        for key, value in values.items():
            if key in _LIST_KEYS:
                items = value if isinstance(value, list) else str(value).split(",")
                config[key] = [str(item).strip() for item in items if str(item).strip()]
            elif key in _BOOL_KEYS:
                text = str(value).lower()
                if text not in ("true", "false", "yes", "no", "1", "0"):
                    raise _Refused(400, f"{key}: not a boolean: {value!r}")
                config[key] = text in ("true", "yes", "1")
            elif key in _INT_KEYS:
                try:
                    config[key] = int(value)
                except ValueError as error:
                    raise _Refused(400, f"{key}: not an integer: {value!r}") from error
            else:
                config[key] = value
        for base in config.get("bases", []):
            base_owner, _, base_name = base.partition("/")
            if base_name not in self.users.get(base_owner, {}).get("indexes", {}):
                raise _Refused(400, f"base index {base} does not exist")
        if kind == "mirror" and not str(config.get("mirror_url", "")).startswith(
            ("http://", "https://")
        ):
            raise _Refused(400, "mirror_url must start with http:// or https://")
        return config

    def _index(
        self,
        req: Recorded,
        user: str | None,
        owner: str,
        index: str,
        query: Mapping[str, list[str]],
    ) -> _Reply:
        key = f"{owner}/{index}"
        if req.method == "GET":
            config = self._config(owner, index)
            if "no_projects" not in query:
                config["projects"] = sorted(self.projects.get(key, {}))
            return _envelope("indexconfig", config)
        if req.method == "PUT":
            if owner not in self.users:
                raise _Refused(404, f"user {owner!r} does not exist")
            self._may_modify(user, owner, f"create index {key}")
            if index in self.users[owner]["indexes"]:
                raise _Refused(409, f"index {key} exists")
            data = req.json() or {}
            if not isinstance(data, dict):
                raise _Refused(400, "expected a JSON object")
            config = self._normalize_config(owner, index, data, None)
            self.users[owner]["indexes"][index] = config
            self.projects.setdefault(key, {})
            return _envelope("indexconfig", config)
        old = self._config(owner, index)
        self._may_modify(user, owner, f"modify index {key}")
        if req.method == "PATCH":
            data = req.json()
            if isinstance(data, list):
                config = self._apply_operations(owner, index, old, data)
            elif isinstance(data, dict):
                config = self._normalize_config(owner, index, data, old)
            else:
                raise _Refused(400, "expected a JSON list or object")
            self.users[owner]["indexes"][index] = config
            return _envelope("indexconfig", config)
        if req.method == "DELETE":
            del self.users[owner]["indexes"][index]
            self.projects.pop(key, None)
            return _json(201, {"message": f"index {key} deleted"})
        raise _Refused(405, "method not allowed")

    def _apply_operations(
        self, owner: str, index: str, old: dict[str, Any], operations: list[Any]
    ) -> dict[str, Any]:
        config = dict(old)
        sets: dict[str, Any] = {}
        for operation in operations:
            if not isinstance(operation, str) or "=" not in operation:
                raise _Refused(400, f"malformed operation {operation!r}")
            key, _, value = operation.partition("=")
            if key.endswith("+"):
                key = key[:-1]
                items = list(sets.get(key, config.get(key, [])))
                if value not in items:
                    items.append(value)
                sets[key] = items
            elif key.endswith("-"):
                key = key[:-1]
                if value == "":
                    config.pop(key, None)
                    sets.pop(key, None)
                else:
                    sets[key] = [i for i in sets.get(key, config.get(key, [])) if i != value]
            else:
                sets[key] = value
        return self._normalize_config(owner, index, sets, config)

    # -- projects ------------------------------------------------------------------------------

    def _upload(self, req: Recorded, user: str | None, owner: str, index: str, root: str) -> _Reply:
        config = self._config(owner, index)
        if config["type"] == "mirror":
            raise _Refused(404, "cannot submit to mirror index")
        if user is None:
            raise _Refused(401, "not authenticated", {"WWW-Authenticate": 'Basic realm="pypi"'})
        if user not in config.get("acl_upload", []) and user != "root":
            raise _Refused(403, f"no permission to upload to {owner}/{index}")
        fields, files = _parse_multipart(req)
        if fields.get(":action") != "file_upload" or "content" not in files:
            raise _Refused(400, "expected :action=file_upload with a content part")
        filename, content = files["content"]
        name = normalize(fields.get("name", ""))
        version = fields.get("version", "")
        if not name or not version:
            raise _Refused(400, "name and version are required")
        sha256 = hashlib.sha256(content).hexdigest()
        if fields.get("sha256_digest") not in (None, sha256):
            raise _Refused(400, "sha256_digest does not match the content")
        versions = self.projects.setdefault(f"{owner}/{index}", {}).setdefault(name, {})
        data = versions.setdefault(version, {"name": name, "version": version, "+links": []})
        for key, value in fields.items():
            if not key.startswith(":") and key not in ("content", "protocol_version"):
                data.setdefault(key, value)
        a, b = blob_path_parts(sha256)
        href = urllib.parse.urljoin(root, f"{owner}/{index}/+f/{a}/{b}/{filename}")
        links = [link for link in data["+links"] if not link["href"].endswith("/" + filename)]
        links.append(
            {
                "rel": "releasefile",
                "href": href,
                "hash_spec": f"sha256={sha256}",
                "hashes": {"sha256": sha256},
                "log": [{"what": "upload", "who": user, "dst": f"{owner}/{index}"}],
            }
        )
        data["+links"] = links
        return _Reply(200, b"", "text/html")

    def _project(
        self,
        req: Recorded,
        user: str | None,
        owner: str,
        index: str,
        config: Mapping[str, Any],
        project: str,
    ) -> _Reply:
        versions = self.projects.get(f"{owner}/{index}", {})
        name = normalize(project)
        if name not in versions:
            raise _Refused(404, f"project {project!r} does not exist on {owner}/{index}")
        if req.method == "GET":
            return _envelope("projectconfig", versions[name])
        if req.method == "DELETE":
            self._may_modify(user, owner, f"delete {name} on {owner}/{index}")
            if not config.get("volatile", True):
                raise _Refused(403, "cannot delete project on non-volatile index")
            del versions[name]
            return _json(200, {"message": f"project {name!r} deleted"})
        raise _Refused(405, "method not allowed")

    def _version(
        self,
        req: Recorded,
        user: str | None,
        owner: str,
        index: str,
        config: Mapping[str, Any],
        project: str,
        version: str,
    ) -> _Reply:
        versions = self.projects.get(f"{owner}/{index}", {}).get(normalize(project), {})
        if version not in versions:
            raise _Refused(404, f"version {version!r} of {project!r} does not exist")
        if req.method == "GET":
            return _envelope("versiondata", versions[version])
        if req.method == "DELETE":
            self._may_modify(user, owner, f"delete {project} {version} on {owner}/{index}")
            if not config.get("volatile", True):
                raise _Refused(403, "cannot delete version on non-volatile index")
            del versions[version]
            if not versions:
                del self.projects[f"{owner}/{index}"][normalize(project)]
            return _json(200, {"message": f"project {project!r} version {version!r} deleted"})
        raise _Refused(405, "method not allowed")


def _parse_multipart(req: Recorded) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    content_type = req.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise _Refused(400, "expected multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + req.body
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in _iter_parts(message):
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if not isinstance(name, str):
            continue
        if filename:
            files[name] = (filename, payload)
        else:
            fields.setdefault(name, payload.decode("utf-8"))
    return fields, files


def _iter_parts(message: Any) -> Iterator[Any]:
    if message.is_multipart():
        yield from message.get_payload()
