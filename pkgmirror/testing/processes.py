"""
Helpers for tests that run real processes: free ports, readiness waits, clean client
environments, and ``UpstreamProcess`` (``pkgmirror.testing.upstream`` in a subprocess).

Nothing here imports pkgmirror's server code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pkgmirror.testing import upstream as _upstream_module

__all__ = [
    "UpstreamProcess",
    "clean_client_env",
    "free_port",
    "stop_process",
    "wait_for_port",
]

_UPSTREAM_SCRIPT = Path(_upstream_module.__file__)
# Proxies from the machine must never catch loopback control calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """
    A TCP port that was free a moment ago.

    Another process may take it before you bind it; prefer ``--port 0`` plus a port file
    where the program supports it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (dead, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An orphan's new parent (PID 1 here) may be slow to reap it: dead all the same.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Polls ``condition`` until it holds; an AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts TCP connections; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{host}:{port} not accepting connections: {e}") from e
            time.sleep(0.02)


def clean_client_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    An environment for pip, uv, twine or devpi in a subprocess, free of the machine's settings.

    Built from scratch: only PATH (and locale and TMPDIR, when set) come from this process, so
    no PIP_*, UV_*, TWINE_*, proxy or config variable leaks in. HOME (and with it every
    client's cache and config directory) is ``home``, which is created.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        # Keyring probing (D-Bus, secret services) is slow and host dependent.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "PYTHONNOUSERSITE": "1",
    }
    for name in ("LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    if extra:
        env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; no-op if it has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class UpstreamProcess:
    """
    A running ``pkgmirror.testing.upstream`` server. See that module for URLs and faults.

    ::

        with UpstreamProcess.start(root, "json") as up:
            up.url                      # http://127.0.0.1:PORT/simple/
            up.set_fault("503", paths="/simple/")
            up.log()
    """

    def __init__(
        self, process: subprocess.Popen[bytes], host: str, port: int, prefix: str, workdir: Path
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.prefix = prefix
        self._workdir = workdir

    @classmethod
    def start(
        cls,
        root: Path,
        mode: str = "html",
        *,
        prefix: str = "/simple/",
        host: str = "127.0.0.1",
        port: int = 0,
        file_urls: str = "absolute",
        auth: tuple[str, str] | None = None,
        gzip: bool = False,
        extra_args: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> Self:
        """Start the server on ``root`` and return once it accepts requests."""
        if mode not in _upstream_module.MODES:
            raise ValueError(f"mode must be one of {_upstream_module.MODES}, not {mode!r}")
        workdir = Path(tempfile.mkdtemp(prefix="pkgmirror-upstream-"))
        port_file = workdir / "port"
        stderr_path = workdir / "stderr"
        command = [
            sys.executable,
            "-I",  # no site-packages or PYTHONPATH surprises: the server is stdlib only
            str(_UPSTREAM_SCRIPT),
            "--root", str(root),
            "--host", host,
            "--port", str(port),
            "--mode", mode,
            "--prefix", prefix,
            "--file-urls", file_urls,
            "--port-file", str(port_file),
            *(["--auth", f"{auth[0]}:{auth[1]}"] if auth else []),
            *(["--gzip"] if gzip else []),
            *extra_args,
        ]  # fmt: skip
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                message = stderr_path.read_text(errors="replace")
                shutil.rmtree(workdir, ignore_errors=True)
                raise RuntimeError(f"upstream server did not start: {message}")
            time.sleep(0.005)
        bound = int(port_file.read_text())
        clean_prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        return cls(process, host, bound, clean_prefix, workdir)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` with no trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The index URL to give clients: ``http://HOST:PORT/simple/``."""
        return self.base_url + self.prefix

    def file_url(self, filename: str) -> str:
        return f"{self.base_url}/files/{filename}"

    def set_fault(
        self,
        mode: str,
        paths: str | Sequence[str] | None = None,
        delay: float | None = None,
        *,
        count: int | None = None,
        chunk: int | None = None,
    ) -> None:
        """Switch the fault (``"none"`` clears it); requests hanging under the old one end."""
        fault: dict[str, Any] = {"mode": mode}
        if paths is not None:
            fault["paths"] = [paths] if isinstance(paths, str) else list(paths)
        if delay is not None:
            fault["delay"] = delay
        if count is not None:
            fault["count"] = count
        if chunk is not None:
            fault["chunk"] = chunk
        self._control("POST", "fault", fault)

    def clear_fault(self) -> None:
        self.set_fault("none")

    def yank(self, filename: str, reason: str = "") -> None:
        """Mark a file yanked (PEP 592) on the pages; its project's serial moves."""
        self._control("POST", "yank", {"filename": filename, "reason": reason})

    def unyank(self, filename: str) -> None:
        self._control("POST", "yank", {"filename": filename, "yanked": False})

    def set_status(self, project: str, status: str | None, reason: str | None = None) -> None:
        """Mark a project's PEP 792 status on its pages (None: back to no status)."""
        self._control("POST", "status", {"project": project, "status": status, "reason": reason})

    def set_auth(self, user: str | None, password: str | None = None) -> None:
        """Require HTTP Basic credentials on pages and files from now on (None: no more)."""
        self._control("POST", "auth", {} if user is None else {"user": user, "password": password})

    def log(self) -> list[dict[str, Any]]:
        """Requests so far, oldest first: dicts with method, path, headers, status, fault, time."""
        entries: list[dict[str, Any]] = self._control("GET", "log")
        return entries

    def reset_log(self) -> None:
        self._control("POST", "reset-log", {})

    def rescan(self) -> dict[str, int]:
        """Pick up files added to (or removed from) the root; returns file and project counts."""
        counts: dict[str, int] = self._control("POST", "add", {})
        return counts

    def _control(self, method: str, endpoint: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_control/{endpoint}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"upstream control {endpoint}: {e.code} {e.read()!r}") from e

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Safe to call twice."""
        stop_process(self.process)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
