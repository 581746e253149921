"""
``twistd pkgmirror``: options, and ``makeService``, the one place the process is assembled.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

from pkgmirror import __version__
from pkgmirror.logs import use_log_format

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
        [
            "shutdown-timeout",
            None,
            "10",
            "Seconds responses and cache fills under way get to finish on stop.",
        ],
        ["refresh-interval", None, "60", "Seconds between refresh rounds of volatile mirrors."],
        [
            "log-format",
            None,
            None,
            "Log format: text, or json for one JSON object a line (every event, requests "
            "too). [default: text; under twist, twist's own choice]",
        ],
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
        self["mirror-url-allow"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint string to listen on, e.g. tcp:3141:interface=0.0.0.0 (repeatable)."""
        self["listen"].append(endpoint)

    def opt_mirror_url_allow(self, prefix: str) -> None:
        """
        A URL prefix mirrors may fetch from (repeatable); without any, mirrors may fetch from
        any URL, as in devpi.
        """
        if not prefix.startswith(("http://", "https://")):
            raise usage.UsageError(
                f"--mirror-url-allow must start with http:// or https://, not {prefix!r}"
            )
        self["mirror-url-allow"].append(prefix)

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
        if self["log-format"] not in (None, "text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        runner = getattr(self, "parent", None)
        self["log-observer"] = use_log_format(runner, self["log-format"])
        self["stale-pidfile"] = clear_stale_pidfile(runner)
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
        from pkgmirror.serverlock import ServerDirInUse, check_free

        # Checked here for a one-line refusal before twistd goes on; taken when the service
        # starts, in the process that will run (after a daemon's fork).
        try:
            check_free(serverdir)
        except ServerDirInUse as e:
            raise usage.UsageError(str(e)) from None
        except OSError as e:
            raise usage.UsageError(f"cannot use serverdir {serverdir.path}: {e.strerror}") from None
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


def clear_stale_pidfile(runner: Mapping[str, Any] | None) -> str | None:
    """
    Removes twistd's pid file when it names no running pkgmirror, so that a crash, a SIGKILL
    or a reboot (after which the pid may belong to anything, even to this very process as a
    container's PID 1) never stops the next start. Returns a line saying what it removed.
    """
    name = runner.get("pidfile") if runner is not None else None
    if not name:
        return None
    path = os.path.abspath(name)
    try:
        with open(path) as stream:
            text = stream.read(64)
    except OSError:
        return None
    try:
        pid = int(text.strip())
    except ValueError:
        pid = 0
    if pid > 0 and pid != os.getpid() and is_running_pkgmirror(pid):
        return None  # twistd refuses to start, rightly.
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    return f"removed the stale pid file {path} (pid {text.strip() or '?'} is no running pkgmirror)"


def is_running_pkgmirror(pid: int) -> bool:
    """True unless process ``pid`` is certainly gone, a zombie, or some other program."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state, command = _process_state(pid)
    if state == "Z" or state == "":
        return False
    return command is None or "pkgmirror" in command


def _process_state(pid: int) -> tuple[str | None, str | None]:
    """(state letter, command line) of a process; "" when it is gone, None when unknown."""
    proc = f"/proc/{pid}"
    if os.path.isdir("/proc/self"):
        try:
            with open(f"{proc}/stat", "rb") as stream:
                state = stream.read().rsplit(b")", 1)[1].split()[0].decode()
            with open(f"{proc}/cmdline", "rb") as stream:
                command = stream.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except FileNotFoundError:
            return "", ""
        except (OSError, IndexError):
            return None, None
        return state, command
    try:
        # macOS and the BSDs: ps knows both.
        out = subprocess.run(
            ["ps", "-o", "state=", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    if not out:
        return "", ""
    state, _, command = out.partition(" ")
    return state[:1], command


def listens_beyond_loopback(endpoints: list[str]) -> bool:
    """Whether any of these endpoint strings can be reached from other machines."""
    for endpoint in endpoints:
        kind, fields = _endpoint_fields(endpoint)
        if kind == "unix":
            continue
        interface = fields.get("interface", "")
        if interface == "localhost":
            continue
        try:
            if ipaddress.ip_address(interface).is_loopback:
                continue
        except ValueError:
            pass
        return True
    return False


def _endpoint_fields(endpoint: str) -> tuple[str, dict[str, str]]:
    """An endpoint string's kind and its name=value fields (with \\: unescaped)."""
    parts = [""]
    escaped = False
    for char in endpoint:
        if escaped:
            parts[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("")
        else:
            parts[-1] += char
    fields = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    return parts[0].lower(), fields


class PkgmirrorService(service.MultiService):
    """
    Opens storage, loads the server's state, then listens. Nothing answers before the state
    is loaded. On stop (SIGTERM, SIGINT) it stops listening and accepting, lets the responses
    and cache fills under way finish for up to --shutdown-timeout seconds (a second signal
    cuts that short), ends what is left, and closes everything; the process then exits 0.
    """

    def __init__(self, options: Options, reactor: Any) -> None:
        super().__init__()
        self.options = options
        self.reactor = reactor
        self.server: Any = None
        self.site: Any = None
        self.http_pool: Any = None
        self.ports: list[Any] = []
        self.ready: Deferred[None] = Deferred()
        self.stop_requested = False
        self.hurry = False
        # The serverdir's lock (a descriptor), held until the process ends.
        self.lock: int | None = None

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        # twistd makes the application, sets us under it, then starts logging with the
        # application's log observer if it has one: the place for --log-format json.
        factory = self.options.get("log-observer")
        if factory is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            parent.setComponent(ILogObserver, factory())

    def startService(self) -> None:
        service.Service.startService(self)
        if self.options.get("stale-pidfile"):
            log.info("{message}", message=self.options["stale-pidfile"])
        if hasattr(self.reactor, "callWhenRunning"):
            self.reactor.callWhenRunning(self._take_over_stop_signals)
        d = Deferred.fromCoroutine(self._start())

        def failed(f: Any) -> None:
            log.critical("pkgmirror could not start: {reason}", reason=f.getErrorMessage())
            print(f"pkgmirror: could not start: {f.getErrorMessage()}", file=sys.stderr)
            self.reactor.callLater(0, _stop_with_error, self.options)

        d.addCallbacks(lambda _: self.ready.callback(None), failed)

    async def _start(self) -> None:
        from twisted.internet.endpoints import serverFromString

        from pkgmirror.assemble import build_server, build_site
        from pkgmirror.serverlock import hold

        opts = self.options
        if self.lock is None:
            self.lock = hold(opts["serverdir"])
        self.server, self.http_pool = await build_server(self.reactor, opts)
        from pkgmirror.serverinit import BLOBS

        body_dir = opts["serverdir"].child(BLOBS).child("tmp").path
        self.site = site = build_site(self.server, body_dir)
        for description in opts["listen"]:
            endpoint = serverFromString(self.reactor, description)
            port = await endpoint.listen(site)
            self.ports.append(port)
            address = port.getHost()
            log.info(
                "pkgmirror {version} serving {serverdir} on {address}",
                version=__version__,
                serverdir=opts["serverdir"].path,
                address=_describe(address),
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

    def _take_over_stop_signals(self) -> None:
        # The reactor's own handlers make twistd end by re-raising the signal (status 130 or
        # 143), which launchd and container runtimes count as a failure. A stop that was
        # asked for and completed is a success: exit 0. Only the main thread may set handlers.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.stop_on_signal, signal.Signals(signum).name)

    def stop_on_signal(self, name: str) -> None:
        """A stop signal arrived: the first stops the server, the next cuts the wait short."""
        if self.stop_requested:
            if not self.hurry:
                self.hurry = True
                log.warn("{signal} received again: ending unfinished work now", signal=name)
            return
        self.stop_requested = True
        log.info(
            "{signal} received: stopping (work under way gets up to {timeout:g} s)",
            signal=name,
            timeout=self.options["shutdown-timeout"],
        )
        from twisted.internet.error import ReactorNotRunning

        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.stop_requested = True
        stopped = DeferredList(
            [Deferred.fromCoroutine(_maybe(p.stopListening())) for p in self.ports]
        )
        if self.site is not None:
            self.site.stop_accepting()
        await stopped
        await _maybe(service.MultiService.stopService(self))
        if self.server is None:
            return
        from pkgmirror.assemble import drain

        try:
            await drain(
                self.reactor,
                self.server,
                self.site,
                self.options["shutdown-timeout"],
                lambda: self.hurry,
            )
        except Exception:
            log.failure("stopping: waiting for work under way failed")
        await self.http_pool.closeCachedConnections()
        await self.server.close()
        log.info("pkgmirror stopped")


def _describe(address: Any) -> str:
    host = getattr(address, "host", None)
    if host is not None:
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{address.port}/"
    name = getattr(address, "name", None)
    return f"unix socket {name.decode() if isinstance(name, bytes) else name}"


async def _maybe(value: Any) -> None:
    if isinstance(value, Deferred):
        await value


def _stop_with_error(options: Options) -> None:
    # twistd exits 0 after a normal reactor stop; a failed start must not look like success,
    # nor leave a pid file behind.
    runner = getattr(options, "parent", None)
    pidfile = runner.get("pidfile") if runner is not None else None
    if pidfile:
        try:
            with open(pidfile) as stream:
                if int(stream.read().strip()) == os.getpid():
                    os.remove(pidfile)
        except (OSError, ValueError):
            pass
    os._exit(1)


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    return PkgmirrorService(options, reactor)
