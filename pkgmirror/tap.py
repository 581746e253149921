"""
``twistd pkgmirror``: options, and ``makeService``, the one place the process is assembled.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

from pkgmirror import __version__

log = Logger()

DEFAULT_SERVERDIR = "~/.pkgmirror/server"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Run pkgmirror, a Python package index with caching mirrors and stage indexes."
    optParameters = [
        [
            "serverdir",
            None,
            os.environ.get("PKGMIRROR_SERVERDIR", DEFAULT_SERVERDIR),
            "Directory of the server's data (created and initialised when empty).",
        ],
        ["host", None, "127.0.0.1", "Interface to listen on (0.0.0.0 for containers and the LAN)."],
        ["port", None, "3141", "TCP port to listen on."],
        [
            "mirror-cache-expiry",
            None,
            "1800",
            "Seconds a mirrored page is served without asking its upstream again.",
        ],
        ["outside-url", None, None, "URL clients reach the server at (behind a proxy)."],
        ["request-timeout", None, "10", "Seconds to wait for an upstream's answer."],
        ["shutdown-timeout", None, "10", "Seconds in-flight responses get to finish on stop."],
        ["refresh-interval", None, "60", "Seconds between refresh rounds of volatile mirrors."],
        ["log-format", None, "text", "Request log format: text or json."],
        [
            "token-ttl",
            None,
            "36000",
            "Seconds a login token stays valid (default 10 hours).",
        ],
        [
            "max-upload-size",
            None,
            "1G",
            "Largest file an upload may carry (bytes, or with K, M, G); larger ones get 413.",
        ],
    ]
    optFlags = [
        ["offline-mode", None, "Never contact upstreams; serve what is cached."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint string to listen on, e.g. tcp:3141:interface=0.0.0.0 (repeatable)."""
        self["listen"].append(endpoint)

    def opt_version(self) -> None:
        print(f"pkgmirror {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        # twistd prints its whole usage text before a UsageError; a wrong value or an unusable
        # serverdir deserves just the one line that says what is wrong.
        try:
            self._check()
        except usage.UsageError as e:
            raise SystemExit(f"pkgmirror: {e}") from None

    def _check(self) -> None:
        for key in (
            "mirror-cache-expiry",
            "request-timeout",
            "shutdown-timeout",
            "refresh-interval",
        ):
            try:
                value = float(self[key])
            except ValueError:
                raise usage.UsageError(f"--{key} must be a number, not {self[key]!r}") from None
            if value < 0:
                raise usage.UsageError(f"--{key} must not be negative")
            self[key] = value
        self["max-upload-size"] = parse_size("--max-upload-size", self["max-upload-size"])
        try:
            self["token-ttl"] = int(self["token-ttl"])
        except ValueError:
            raise usage.UsageError(
                f"--token-ttl must be whole seconds, not {self['token-ttl']!r}"
            ) from None
        if self["token-ttl"] < 1:
            raise usage.UsageError("--token-ttl must be at least 1 second")
        try:
            port = int(self["port"])
        except ValueError:
            raise usage.UsageError(f"--port must be a number, not {self['port']!r}") from None
        if not 0 <= port <= 65535:
            raise usage.UsageError(f"--port {port} is out of range")
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        if self["outside-url"] and not self["outside-url"].startswith(("http://", "https://")):
            raise usage.UsageError("--outside-url must start with http:// or https://")
        if not self["listen"]:
            host = self["host"]
            interface = host.replace(":", "\\:")
            self["listen"] = [f"tcp:{port}:interface={interface}"]
            check_port_free(host, port)
        from pkgmirror.serverinit import InitError, check_or_init_serverdir

        serverdir = FilePath(os.path.expanduser(self["serverdir"]))
        try:
            check_or_init_serverdir(serverdir)
        except InitError as e:
            raise usage.UsageError(str(e)) from None
        self["serverdir"] = serverdir


def parse_size(option: str, value: str) -> int:
    """Bytes from ``1048576``, ``512K``, ``100M``, ``1G`` (powers of 1024)."""
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise usage.UsageError(f"{option} must be a size like 1G or 500M, not {value!r}") from None
    if size <= 0:
        raise usage.UsageError(f"{option} must be positive")
    return size


def check_port_free(host: str, port: int) -> None:
    """Refuse to start on a port something else holds, with one clear line."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise usage.UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    finally:
        sock.close()


def listens_beyond_loopback(endpoints: list[str]) -> bool:
    for endpoint in endpoints:
        fields = dict(part.split("=", 1) for part in endpoint.split(":")[2:] if "=" in part)
        interface = fields.get("interface", "0.0.0.0" if endpoint.startswith("tcp") else "")
        if endpoint.startswith(("tcp", "ssl")) and not (
            interface.startswith("127.") or interface in ("localhost", "\\:\\:1", "::1")
        ):
            return True
    return False


class PkgmirrorService(service.MultiService):
    """
    Opens storage, loads the server's state, then listens. Nothing answers before the state
    is loaded; on stop it stops listening, lets fills finish for a bounded time, closes all.
    """

    def __init__(self, options: Options, reactor: Any) -> None:
        super().__init__()
        self.options = options
        self.reactor = reactor
        self.server: Any = None
        self.ports: list[Any] = []
        self.ready: Deferred[None] = Deferred()

    def startService(self) -> None:
        service.Service.startService(self)
        d = Deferred.fromCoroutine(self._start())

        def failed(f: Any) -> None:
            log.critical("pkgmirror could not start: {reason}", reason=f.getErrorMessage())
            print(f"pkgmirror: could not start: {f.getErrorMessage()}", file=sys.stderr)
            self.reactor.callLater(0, _stop_with_error, self.reactor)

        d.addCallbacks(lambda _: self.ready.callback(None), failed)

    async def _start(self) -> None:
        from twisted.internet.endpoints import serverFromString

        from pkgmirror.assemble import build_server, build_site

        opts = self.options
        self.server, self.http_pool = await build_server(self.reactor, opts)
        from pkgmirror.serverinit import BLOBS

        body_dir = opts["serverdir"].child(BLOBS).child("tmp").path
        site = build_site(self.server, opts["log-format"], body_dir)
        for description in opts["listen"]:
            endpoint = serverFromString(self.reactor, description)
            port = await endpoint.listen(site)
            self.ports.append(port)
            address = port.getHost()
            log.info(
                "pkgmirror {version} serving {serverdir} on http://{host}:{port}/",
                version=__version__,
                serverdir=opts["serverdir"].path,
                host=getattr(address, "host", "?"),
                port=getattr(address, "port", "?"),
            )
        root = self.server.users.get("root")
        if root is not None and not root.password_hash and listens_beyond_loopback(opts["listen"]):
            log.warn(
                "WARNING: user root has an empty password and the server listens beyond "
                "loopback: anyone who reaches it can administer it. "
                "Set one: pkgmirror login root --password '' && pkgmirror passwd"
            )
        for name, mirror in self.server.mirrors.items():
            if mirror.upstream_url is None:
                log.warn(
                    "mirror {name} has no upstream: set mirror_url, or PKGMIRROR_PYPI_URL "
                    "before the first start",
                    name=name,
                )
        from pkgmirror.refresh import RefreshService

        refresher = RefreshService(
            lambda: self.server.mirrors.values(),
            self.reactor,
            interval=max(1.0, opts["refresh-interval"]),
        )
        refresher.setServiceParent(self)
        self.server.refresher = refresher

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await DeferredList([Deferred.fromCoroutine(_maybe(p.stopListening())) for p in self.ports])
        await _maybe(service.MultiService.stopService(self))
        if self.server is not None:
            from pkgmirror.assemble import drain

            await drain(self.reactor, self.server, self.options["shutdown-timeout"])
            await self.http_pool.closeCachedConnections()
            await self.server.close()


async def _maybe(value: Any) -> None:
    if isinstance(value, Deferred):
        await value


def _stop_with_error(reactor: Any) -> None:
    # twistd exits 0 after a normal reactor stop; a failed start must not look like success.
    os._exit(1)


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    return PkgmirrorService(options, reactor)
