"""
A stand-alone upstream simple index for tests and benchmarks, with switchable faults.

Run it as a subprocess (it is standard library only and imports nothing from pkgmirror, so it
also runs as a plain script)::

    python -m pkgmirror.testing.upstream --root DIR --port 0 --mode html|json|meta \\
        [--prefix /simple/] [--port-file F] [--host 127.0.0.1] [--file-urls absolute|path|relative]
        [--auth USER:PASSWORD] [--gzip] [--log-limit N] [--verbose]

It serves every distribution file (``.whl``, ``.tar.gz``, ``.zip``, ...) found anywhere under
DIR, recursively, so a flat directory and a ``DIR/<project>/<files>`` tree both work. The
project a file belongs to comes from its metadata (else its file name); file names must be
unique across the tree. The tree is scanned at start and on ``POST /_control/add``, not
otherwise.

URLs:

``<prefix>``                     project list (PEP 503 HTML; PEP 691 JSON when negotiated)
``<prefix><project>/``           project page; other spellings redirect (301) to the normalised one
``/files/<filename>``            the file: Content-Length, Last-Modified, ETag, one byte range
                                 (``bytes=a-b``, ``a-``, ``-n``), HEAD, If-None-Match,
                                 If-Modified-Since, If-Range
``/files/<wheel>.metadata``      PEP 658 metadata (``meta`` mode only)
``/_control/...``                see below; never logged and never faulted

Modes: ``html`` serves only HTML. ``json`` serves PEP 691 JSON (api 1.1, with size and
upload-time) when the Accept header prefers it (or ``?format=`` asks for it). ``meta`` is
``json`` plus PEP 658/714 metadata, announced under both attribute and key names.
Pages carry ETag (304 on If-None-Match), ``Vary: Accept`` and ``X-PyPI-Last-Serial`` (a
project's serial moves whenever its files or yank states change). ``--file-urls`` picks how
pages link files: ``http://host/files/F`` (the default, as the Host header names us), ``/files/F``,
or relative (``../../files/F``). ``--gzip`` compresses pages (never files) for clients that
accept gzip. ``--auth`` requires HTTP Basic credentials on pages and files and answers 401 with
``WWW-Authenticate: Basic`` without them.

Control endpoints:

``GET  /_control/log``        JSON list of requests: method, path, headers (lower-cased subset),
                              status (null while unanswered or when a fault never answers),
                              fault (the fault mode applied, or null), time (POSIX seconds)
``POST /_control/reset-log``  empty the log
``POST /_control/fault``      JSON ``{"mode": ..., "paths": prefix or [prefixes], "delay": s,
                              "count": n, "chunk": bytes}``; replaces the current fault
``GET  /_control/fault``      the current fault
``POST /_control/add``        rescan DIR (after adding or removing files)
``POST /_control/yank``       JSON ``{"filename": F, "reason": "..."}`` marks F yanked (PEP 592);
                              ``{"filename": F, "yanked": false}`` takes it back
``POST /_control/status``     JSON ``{"project": P, "status": "quarantined", "reason": "..."}``
                              marks a project (PEP 792) on its pages; ``"status": null`` clears
``POST /_control/auth``       JSON ``{"user": U, "password": P}`` requires those credentials
                              from now on; ``{}`` stops requiring any

Fault modes (applied to requests whose path starts with one of ``paths``, or to all; with
``count``, only to the next ``count`` such requests, then the fault clears itself):

``none``       normal service
``hang``       read the request and never answer, until the client closes the connection, the
               fault is changed, or ``delay`` seconds pass (default 300); then close
``500`` ``503`` ``404``   that status, after ``delay`` seconds if given
``garbage``    200 with random bytes that are no HTML or JSON (same Content-Type as normal)
``truncate``   the normal headers, including the full Content-Length, then half the body, then
               the connection closes
``wronghash``  files (and .metadata files) are served with different bytes of the same
               length; pages are untouched, so their hashes name the real file
``slow``       the normal response, the body sent ``chunk`` bytes (default 100) at a time with
               ``delay`` seconds (default 0.1) before each chunk
"""

from __future__ import annotations

import argparse
import base64
import collections
import email.parser
import email.utils
import gzip
import hashlib
import html
import json
import os
import random
import re
import select
import signal
import socket
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

MODES = ("html", "json", "meta")
FAULT_MODES = ("none", "hang", "500", "503", "404", "garbage", "truncate", "wronghash", "slow")
FILE_URL_STYLES = ("absolute", "path", "relative")

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html"
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar", ".egg")
LOGGED_HEADERS = (
    "accept",
    "accept-encoding",
    "authorization",
    "cache-control",
    "connection",
    "host",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "range",
    "user-agent",
)

_CHUNK = 1 << 16
_HANG_LIMIT = 300.0


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"[.+!-]", version)
        if part
    )


@dataclass(frozen=True)
class Dist:
    filename: str
    path: Path
    project: str
    display_name: str
    version: str
    size: int
    mtime: float
    sha256: str
    requires_python: str | None
    metadata: bytes | None  # a wheel's METADATA, for PEP 658

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()

    @property
    def upload_time(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self.mtime))

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.mtime, usegmt=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_metadata(path: Path, filename: str) -> bytes | None:
    """A wheel's METADATA or an sdist's top-level PKG-INFO, or None when unreadable."""
    try:
        if filename.endswith(".whl"):
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    parts = member.split("/")
                    if (
                        len(parts) == 2
                        and parts[0].endswith(".dist-info")
                        and parts[1] == "METADATA"
                    ):
                        return zf.read(member)
        elif filename.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    if member.count("/") == 1 and member.endswith("/PKG-INFO"):
                        return zf.read(member)
        elif ".tar" in filename or filename.endswith(".tgz"):
            with tarfile.open(path) as tf:
                for info in tf:
                    if info.isfile() and info.name.count("/") == 1:
                        if info.name.endswith("/PKG-INFO"):
                            extracted = tf.extractfile(info)
                            return extracted.read() if extracted else None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError):
        return None
    return None


def _split_filename(filename: str) -> tuple[str, str] | None:
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return (parts[0], parts[1]) if len(parts) >= 5 else None
    for suffix in DIST_SUFFIXES:
        if filename.endswith(suffix):
            name, _, version = filename[: -len(suffix)].rpartition("-")
            return (name, version) if name and version else None
    return None


class Catalog:
    """An immutable view of the files under the root; rescans build a new one."""

    def __init__(self, root: Path, previous: Catalog | None = None, serial: int = 0) -> None:
        self.root = root
        self.files: dict[str, Dist] = {}
        self.projects: dict[str, list[Dist]] = {}
        self.serials: dict[str, int] = {}
        old = previous.files if previous else {}
        for path in sorted(root.rglob("*")):
            filename = path.name
            if not filename.endswith(DIST_SUFFIXES) or not path.is_file():
                continue
            stat = path.stat()
            known = old.get(filename)
            dist = (
                known
                if known
                and known.path == path
                and known.size == stat.st_size
                and known.mtime == stat.st_mtime
                else self._load(path, stat.st_size, stat.st_mtime)
            )
            if dist is None:
                continue
            self.files[filename] = dist
            self.projects.setdefault(dist.project, []).append(dist)
        for dists in self.projects.values():
            dists.sort(key=lambda d: (_version_key(d.version), d.filename))
        # A project's serial moves only when its files change, like an index's last serial.
        self.serial = serial
        for project, dists in sorted(self.projects.items()):
            before = previous.projects.get(project) if previous else None
            if previous and before == dists:
                self.serials[project] = previous.serials[project]
            else:
                self.serial += 1
                self.serials[project] = self.serial

    @staticmethod
    def _load(path: Path, size: int, mtime: float) -> Dist | None:
        filename = path.name
        split = _split_filename(filename)
        if split is None:
            return None
        name, version = split
        raw = _read_metadata(path, filename)
        requires_python = None
        if raw is not None:
            headers = email.parser.BytesHeaderParser().parsebytes(raw)
            name = str(headers.get("Name") or name)
            version = str(headers.get("Version") or version)
            requires_python = headers.get("Requires-Python")
            requires_python = str(requires_python) if requires_python else None
        return Dist(
            filename=filename,
            path=path,
            project=normalize(name),
            display_name=name,
            version=version,
            size=size,
            mtime=mtime,
            sha256=_file_sha256(path),
            requires_python=requires_python,
            metadata=raw if filename.endswith(".whl") else None,
        )


@dataclass
class Fault:
    mode: str = "none"
    paths: tuple[str, ...] = ()
    delay: float | None = None
    count: int | None = None
    chunk: int = 100
    # Set when this fault is replaced, which releases requests hanging under it.
    released: threading.Event = field(default_factory=threading.Event)

    def matches(self, path: str) -> bool:
        return self.mode != "none" and (
            not self.paths or any(path.startswith(p) for p in self.paths)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "paths": list(self.paths),
            "delay": self.delay,
            "count": self.count,
            "chunk": self.chunk,
        }

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("fault must be a JSON object")
        mode = str(data.get("mode", "none"))
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(FAULT_MODES)}")
        paths = data.get("paths") or ()
        if isinstance(paths, str):
            paths = (paths,)
        delay = data.get("delay")
        count = data.get("count")
        chunk = data.get("chunk") or 100
        return cls(
            mode=mode,
            paths=tuple(str(p) for p in paths),
            delay=None if delay is None else float(delay),
            count=None if count is None else int(count),
            chunk=max(1, int(chunk)),
        )


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    # A file body: bytes [offset, offset + length) of path; ``body`` is ignored then.
    path: Path | None = None
    offset: int = 0
    length: int | None = None
    is_file: bool = False
    # The body is the whole file (a plain answer, or a range that covers all of it).
    whole: bool = False

    @property
    def content_length(self) -> int:
        return len(self.body) if self.length is None else self.length


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        root: Path,
        mode: str,
        prefix: str,
        file_urls: str,
        log_limit: int,
        verbose: bool,
        use_gzip: bool = False,
    ) -> None:
        self.root = root
        self.mode = mode
        self.prefix = prefix
        self.file_urls = file_urls
        self.verbose = verbose
        self.gzip = use_gzip
        self.authorization: str | None = None
        self.yanked: dict[str, str] = {}
        self.statuses: dict[str, tuple[str, str | None]] = {}
        self.catalog = Catalog(root)
        self.lock = threading.Lock()
        self.fault = Fault()
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=log_limit)
        self._page_cache: dict[tuple[Any, ...], tuple[bytes, str]] = {}
        super().__init__(address, Handler)

    def rescan(self) -> Catalog:
        with self.lock:
            self.catalog = Catalog(self.root, self.catalog, self.catalog.serial)
            self._page_cache = {}
            return self.catalog

    def set_auth(self, user: str | None, password: str | None) -> None:
        if user is None:
            self.authorization = None
        else:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.authorization = "Basic " + token

    def set_yanked(self, filename: str, reason: str | None) -> bool:
        """Yank (reason is a string) or un-yank (None) a file; False when there is no such file."""
        with self.lock:
            dist = self.catalog.files.get(filename)
            if dist is None:
                return False
            if reason is None:
                self.yanked.pop(filename, None)
            else:
                self.yanked[filename] = reason
            catalog = self.catalog
            catalog.serial += 1
            catalog.serials[dist.project] = catalog.serial
            self._page_cache = {}
            return True

    def set_status(self, project: str, status: str | None, reason: str | None) -> bool:
        """Set (or with None clear) a project's PEP 792 status; False when no such project."""
        with self.lock:
            project = normalize(project)
            catalog = self.catalog
            if project not in catalog.projects:
                return False
            if status is None:
                self.statuses.pop(project, None)
            else:
                self.statuses[project] = (status, reason)
            catalog.serial += 1
            catalog.serials[project] = catalog.serial
            self._page_cache = {}
            return True

    def set_fault(self, fault: Fault) -> None:
        with self.lock:
            old, self.fault = self.fault, fault
        old.released.set()

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            fault = self.fault
            if not fault.matches(path):
                return None
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.fault = Fault()
            return fault

    def cached_page(self, key: tuple[Any, ...], render: Any) -> tuple[bytes, str]:
        cache = self._page_cache
        page = cache.get(key)
        if page is None:
            page = cache[key] = render()
        return page

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pkgmirror-test-upstream/1"
    # Headers and body go out in separate writes; with Nagle on, keep-alive stalls 40 ms each.
    disable_nagle_algorithm = True
    server: UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path.startswith("/_control/"):
            self._control_post(path, body)
        else:
            self._send(Response(405, [("Allow", "GET, HEAD")], b"method not allowed\n"))

    # Control

    def _control_post(self, path: str, body: bytes) -> None:
        server = self.server
        if path == "/_control/reset-log":
            with server.lock:
                server.log.clear()
            self._send_json(200, {"ok": True})
        elif path == "/_control/fault":
            try:
                fault = Fault.from_json(json.loads(body or b"{}"))
            except (ValueError, TypeError) as e:
                self._send_json(400, {"error": str(e)})
                return
            server.set_fault(fault)
            self._send_json(200, fault.describe())
        elif path in ("/_control/add", "/_control/rescan"):
            catalog = server.rescan()
            self._send_json(200, {"files": len(catalog.files), "projects": len(catalog.projects)})
        elif path == "/_control/yank":
            try:
                data = json.loads(body or b"{}")
                filename = str(data["filename"])
                reason = str(data.get("reason") or "") if data.get("yanked", True) else None
            except (ValueError, TypeError, KeyError) as e:
                self._send_json(400, {"error": f"bad yank request: {e}"})
                return
            if server.set_yanked(filename, reason):
                self._send_json(200, {"filename": filename, "yanked": reason})
            else:
                self._send_json(404, {"error": f"no file {filename}"})
        elif path == "/_control/status":
            try:
                data = json.loads(body or b"{}")
                project = str(data["project"])
                status = None if data.get("status") is None else str(data["status"])
                reason = None if data.get("reason") is None else str(data["reason"])
            except (ValueError, TypeError, KeyError) as e:
                self._send_json(400, {"error": f"bad status request: {e}"})
                return
            if server.set_status(project, status, reason):
                self._send_json(200, {"project": project, "status": status})
            else:
                self._send_json(404, {"error": f"no project {project}"})
        elif path == "/_control/auth":
            try:
                data = json.loads(body or b"{}")
                user = data.get("user")
                password = data.get("password")
            except (ValueError, AttributeError) as e:
                self._send_json(400, {"error": f"bad auth request: {e}"})
                return
            server.set_auth(None if user is None else str(user), password)
            self._send_json(200, {"auth": user is not None})
        else:
            self._send_json(404, {"error": "no such control endpoint"})

    def _control_get(self, path: str) -> None:
        server = self.server
        if path == "/_control/log":
            with server.lock:
                entries = [dict(entry) for entry in server.log]
            self._send_json(200, entries)
        elif path == "/_control/fault":
            with server.lock:
                fault = server.fault.describe()
            self._send_json(200, fault)
        else:
            self._send_json(404, {"error": "no such control endpoint"})

    def _send_json(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self._send(Response(status, [("Content-Type", "application/json")], body))

    # Serving

    def _serve(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = split.path
        if path.startswith("/_control/"):
            if head:
                self._send(Response(405, [("Allow", "GET, POST")], b""), head=True)
            else:
                self._control_get(path)
            return
        entry: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "headers": {
                name: self.headers[name] for name in LOGGED_HEADERS if name in self.headers
            },
            "status": None,
            "fault": None,
            "time": time.time(),
        }
        with self.server.lock:
            self.server.log.append(entry)
        fault = self.server.take_fault(path)
        if fault is not None:
            entry["fault"] = fault.mode
            if fault.mode == "hang":
                self._hang(fault)
                return
            if fault.delay is not None and fault.mode != "slow":
                time.sleep(fault.delay)
            if fault.mode in ("500", "503", "404"):
                status = int(fault.mode)
                entry["status"] = status
                self._send(
                    Response(
                        status,
                        [("Content-Type", "text/plain")],
                        f"injected fault {status}\n".encode(),
                    ),
                    head=head,
                )
                return
        expected = self.server.authorization
        if expected is not None and self.headers.get("Authorization") != expected:
            response = Response(
                401,
                [("WWW-Authenticate", 'Basic realm="upstream"'), ("Content-Type", "text/plain")],
                b"credentials required\n",
            )
        else:
            response = self._route(path, parse_qs(split.query))
        if fault is not None and fault.mode == "garbage":
            response = _garbage(response)
        entry["status"] = self._send(response, head=head, fault=fault)
        # Whole-file transfers, however asked for: what tests of "no needless download" count.
        entry["whole"] = response.whole and not head and entry["status"] in (200, 206)

    def _hang(self, fault: Fault) -> None:
        self.close_connection = True
        limit = time.monotonic() + (fault.delay if fault.delay is not None else _HANG_LIMIT)
        sock = self.connection
        while time.monotonic() < limit and not fault.released.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return  # the client closed
            except OSError:
                return
            if readable:
                time.sleep(0.1)  # pipelined bytes, not a close: do not spin

    def _route(self, path: str, query: dict[str, list[str]]) -> Response:
        server = self.server
        prefix = server.prefix
        if path == prefix.rstrip("/"):
            return _redirect(prefix)
        if path == prefix:
            return self._page(None, query)
        if path.startswith(prefix):
            rest = unquote(path[len(prefix) :])
            name = rest.rstrip("/")
            if not name or "/" in name:
                return _not_found()
            canonical = normalize(name)
            if canonical not in server.catalog.projects:
                return _not_found()
            if rest != canonical + "/":
                return _redirect(prefix + quote(canonical) + "/")
            return self._page(canonical, query)
        if path.startswith("/files/"):
            return self._file(unquote(path[len("/files/") :]))
        return _not_found()

    def _negotiate(self, query: dict[str, list[str]]) -> str:
        if self.server.mode == "html":
            return HTML_TYPE
        wanted = query.get("format")
        if wanted and wanted[0] in (JSON_TYPE, HTML_V1_TYPE, HTML_TYPE):
            return wanted[0]
        accept = self.headers.get("Accept")
        if not accept:
            return HTML_TYPE
        ranges: dict[str, float] = {}
        for item in accept.split(","):
            media, *params = (p.strip() for p in item.split(";"))
            q = 1.0
            for param in params:
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(value)
                    except ValueError:
                        q = 0.0
            ranges[media.lower()] = q
        best, best_q = HTML_TYPE, 0.0
        # Ties go to the first in this order: HTML is the safe answer for vague clients.
        for candidate in (HTML_TYPE, HTML_V1_TYPE, JSON_TYPE):
            major = candidate.split("/")[0]
            # The most specific matching range decides a candidate's quality.
            for media in (candidate, f"{major}/*", "*/*"):
                if media in ranges:
                    if ranges[media] > best_q:
                        best, best_q = candidate, ranges[media]
                    break
        return best

    def _page(self, project: str | None, query: dict[str, list[str]]) -> Response:
        server = self.server
        catalog = server.catalog
        content_type = self._negotiate(query)
        host = self.headers.get("Host") or "{}:{}".format(*server.server_address[:2])
        key = (project, content_type, host, id(catalog))
        if project is None:
            body, etag = server.cached_page(key, lambda: _render_index(catalog, content_type))
            serial = catalog.serial
        else:
            body, etag = server.cached_page(
                key, lambda: self._render_project(catalog, project, content_type, host)
            )
            serial = catalog.serials[project]
        headers = [
            ("Content-Type", content_type + ("; charset=utf-8" if "html" in content_type else "")),
            ("Vary", "Accept, Accept-Encoding" if server.gzip else "Accept"),
            ("Cache-Control", "max-age=600, public"),
            ("X-PyPI-Last-Serial", str(serial)),
        ]
        if server.gzip and _accepts_gzip(self.headers.get("Accept-Encoding")):
            body, etag = server.cached_page(
                (*key, "gzip"), lambda: (gzip.compress(body, mtime=0), etag[:-1] + '-gzip"')
            )
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("ETag", etag))
        if _etag_matches(self.headers.get("If-None-Match"), etag):
            return Response(304, headers)
        return Response(200, headers, body)

    def _file_url(self, filename: str, host: str, project: str) -> str:
        style = self.server.file_urls
        path = "/files/" + quote(filename)
        if style == "absolute":
            return f"http://{host}{path}"
        if style == "path":
            return path
        # Up from <prefix><project>/: one step per prefix segment, one for the project.
        return "../" * self.server.prefix.count("/") + "files/" + quote(filename)

    def _render_project(
        self, catalog: Catalog, project: str, content_type: str, host: str
    ) -> tuple[bytes, str]:
        dists = catalog.projects[project]
        meta = self.server.mode == "meta"
        status = self.server.statuses.get(project)
        if content_type == JSON_TYPE:
            files = []
            for d in dists:
                entry: dict[str, Any] = {
                    "filename": d.filename,
                    "url": self._file_url(d.filename, host, project),
                    "hashes": {"sha256": d.sha256},
                    "requires-python": d.requires_python,
                    "size": d.size,
                    "upload-time": d.upload_time,
                    "yanked": _yank_value(self.server.yanked.get(d.filename)),
                }
                if meta and d.metadata is not None:
                    entry["core-metadata"] = {"sha256": d.metadata_sha256}
                    entry["dist-info-metadata"] = {"sha256": d.metadata_sha256}
                files.append(entry)
            versions = sorted({d.version for d in dists}, key=_version_key)
            data = {
                "meta": {"api-version": "1.1"},
                "name": project,
                "files": files,
                "versions": versions,
            }
            if status is not None:
                marker = {"status": status[0]}
                if status[1] is not None:
                    marker["reason"] = status[1]
                data["project-status"] = marker
            body = json.dumps(data, indent=1).encode()
        else:
            links = []
            for d in dists:
                attrs = ""
                if d.requires_python:
                    attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
                reason = self.server.yanked.get(d.filename)
                if reason is not None:
                    attrs += f' data-yanked="{html.escape(reason)}"'
                if meta and d.metadata is not None:
                    value = f"sha256={d.metadata_sha256}"
                    attrs += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
                url = html.escape(self._file_url(d.filename, host, project))
                text = html.escape(d.filename)
                links.append(f'    <a href="{url}#sha256={d.sha256}"{attrs}>{text}</a><br>')
            head = ""
            if status is not None:
                head = f'    <meta name="pypi:project-status" content="{html.escape(status[0])}">\n'
                if status[1] is not None:
                    head += (
                        '    <meta name="pypi:project-status-reason" '
                        f'content="{html.escape(status[1])}">\n'
                    )
            body = _html_document(f"Links for {html.escape(project)}", links, head)
        return body, _page_etag(body, content_type)

    def _file(self, filename: str) -> Response:
        catalog = self.server.catalog
        dist = catalog.files.get(filename)
        if dist is not None:
            return self._ranged(dist.path, dist.size, dist, b"")
        if self.server.mode == "meta" and filename.endswith(".metadata"):
            dist = catalog.files.get(filename[: -len(".metadata")])
            if dist is not None and dist.metadata is not None:
                return self._ranged(None, len(dist.metadata), dist, dist.metadata)
        return _not_found()

    def _ranged(self, path: Path | None, total: int, dist: Dist, body: bytes) -> Response:
        if path is None:
            etag = f'"{hashlib.sha256(body).hexdigest()}"'
            content_type = "text/plain; charset=utf-8"
        else:
            etag = dist.etag
            content_type = "application/octet-stream"
        headers = [
            ("Content-Type", content_type),
            ("ETag", etag),
            ("Last-Modified", dist.last_modified),
            ("Accept-Ranges", "bytes"),
        ]
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            if _etag_matches(if_none_match, etag):
                return Response(304, headers)
        elif _not_modified_since(self.headers.get("If-Modified-Since"), dist.mtime):
            return Response(304, headers)
        start, length, status = 0, total, 200
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and (if_range is None or if_range in (etag, dist.last_modified)):
            try:
                parsed = _parse_range(range_header, total)
            except _Unsatisfiable:
                headers.append(("Content-Range", f"bytes */{total}"))
                return Response(416, headers, b"")
            if parsed is not None:
                start, end = parsed
                length, status = end - start + 1, 206
                headers.append(("Content-Range", f"bytes {start}-{end}/{total}"))
        whole = start == 0 and length == total
        if path is None:
            return Response(
                status, headers, body[start : start + length], is_file=True, whole=whole
            )
        return Response(
            status, headers, path=path, offset=start, length=length, is_file=True, whole=whole
        )

    # Sending

    def _send(self, response: Response, head: bool = False, fault: Fault | None = None) -> int:
        """Send the response (as ``fault`` bends it) and return the status that went out."""
        source: BinaryIO | None = None
        if response.path is not None and not head and response.status != 304:
            try:
                source = open(response.path, "rb")
            except OSError:
                # Removed since the last scan: say so before any header has gone out.
                response = _not_found()
        try:
            self._write_response(response, head, fault, source)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        finally:
            if source is not None:
                source.close()
        return response.status

    def _write_response(
        self, response: Response, head: bool, fault: Fault | None, source: BinaryIO | None
    ) -> None:
        mode = fault.mode if fault is not None else "none"
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status != 304:
            self.send_header("Content-Length", str(response.content_length))
        if mode == "truncate" and not head:
            self.send_header("Connection", "close")
        self.end_headers()
        if head or response.status == 304:
            return
        limit = response.content_length
        if mode == "truncate":
            limit //= 2
            self.close_connection = True
        corrupt = mode == "wronghash" and response.is_file
        pieces: Iterator[bytes]
        if source is None:
            pieces = iter([response.body[:limit]])
        elif not corrupt and mode != "slow":
            self.connection.sendfile(source, response.offset, limit)
            return
        else:
            pieces = _read_range(source, response.offset, limit)
        if corrupt:
            # Flipping every bit keeps the length and guarantees a different digest.
            pieces = (piece.translate(_FLIP) for piece in pieces)
        if mode == "slow":
            assert fault is not None
            delay = 0.1 if fault.delay is None else fault.delay
            for piece in _rechunk(pieces, fault.chunk):
                time.sleep(delay)
                self.wfile.write(piece)
        else:
            for piece in pieces:
                self.wfile.write(piece)


_FLIP = bytes(255 - i for i in range(256))


def _read_range(source: BinaryIO, offset: int, length: int) -> Iterator[bytes]:
    source.seek(offset)
    left = length
    while left > 0:
        block = source.read(min(_CHUNK, left))
        if not block:
            return
        left -= len(block)
        yield block


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    for piece in pieces:
        for i in range(0, len(piece), size):
            yield piece[i : i + size]


class _Unsatisfiable(Exception):
    pass


def _parse_range(header: str, total: int) -> tuple[int, int] | None:
    """
    One ``bytes=`` range as (first, last) inclusive; None to ignore it and serve everything.

    Raises _Unsatisfiable for a range wholly outside the body (a 416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0 or total == 0:
                raise _Unsatisfiable
            return max(0, total - suffix), total - 1
        start = int(first)
        end = int(last) if last else total - 1
    except ValueError:
        return None
    if start < 0 or (last and end < start):
        return None
    if start >= total:
        raise _Unsatisfiable
    return start, min(end, total - 1)


def _accepts_gzip(header: str | None) -> bool:
    for item in (header or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates


def _not_modified_since(header: str | None, mtime: float) -> bool:
    if not header:
        return False
    try:
        when = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= when


def _page_etag(body: bytes, content_type: str) -> str:
    return '"' + hashlib.sha256(content_type.encode() + b"\0" + body).hexdigest()[:32] + '"'


def _html_document(title: str, lines: list[str], head: str = "") -> bytes:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        f"{head}"
        f"    <title>{title}</title>\n  </head>\n  <body>\n"
        f"    <h1>{title}</h1>\n" + "\n".join(lines) + "\n  </body>\n</html>\n"
    ).encode()


def _render_index(catalog: Catalog, content_type: str) -> tuple[bytes, str]:
    names = [
        (project, dists[0].display_name) for project, dists in sorted(catalog.projects.items())
    ]
    if content_type == JSON_TYPE:
        data = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for _, n in names]}
        body = json.dumps(data, indent=1).encode()
    else:
        links = [
            f'    <a href="{quote(project)}/">{html.escape(name)}</a><br>'
            for project, name in names
        ]
        body = _html_document("Simple index", links)
    return body, _page_etag(body, content_type)


def _yank_value(reason: str | None) -> bool | str:
    # PEP 691: true for a yank without a reason, the reason string otherwise.
    if reason is None:
        return False
    return reason or True


def _redirect(location: str) -> Response:
    return Response(301, [("Location", location), ("Content-Type", "text/plain")], b"")


def _not_found() -> Response:
    return Response(404, [("Content-Type", "text/plain")], b"not found\n")


def _garbage(response: Response) -> Response:
    content_type = dict(response.headers).get("Content-Type", "application/octet-stream")
    # Bytes 0x80-0xff only: never valid UTF-8 text, so never HTML or JSON.
    body = bytes(b | 0x80 for b in os.urandom(random.randrange(512, 4096)))
    return Response(200, [("Content-Type", content_type)], body, is_file=response.is_file)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pkgmirror.testing.upstream",
        description="A test upstream simple index with switchable faults.",
    )
    parser.add_argument("--root", type=Path, required=True, help="directory of dist files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=MODES, default="html")
    parser.add_argument("--prefix", default="/simple/", help="path of the project list")
    parser.add_argument("--port-file", type=Path, help="write the bound port here when ready")
    parser.add_argument(
        "--file-urls",
        choices=FILE_URL_STYLES,
        default="absolute",
        help="how pages link files: http://host/files/F, /files/F, or ../../files/F",
    )
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require HTTP Basic auth")
    parser.add_argument("--gzip", action="store_true", help="gzip pages for clients that accept it")
    parser.add_argument("--log-limit", type=int, default=100_000, help="requests kept in the log")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    prefix = "/" + args.prefix.strip("/") + "/" if args.prefix.strip("/") else "/"
    server = UpstreamServer(
        (args.host, args.port),
        args.root.resolve(),
        args.mode,
        prefix,
        args.file_urls,
        args.log_limit,
        args.verbose,
        args.gzip,
    )
    if args.auth:
        user, _, password = args.auth.partition(":")
        server.set_auth(user, password)
    port = server.server_address[1]
    if args.port_file is not None:
        # Written whole and renamed, so a reader never sees a partial number.
        temporary = args.port_file.with_name(args.port_file.name + ".tmp")
        temporary.write_text(f"{port}\n")
        os.replace(temporary, args.port_file)
    print(port, flush=True)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
