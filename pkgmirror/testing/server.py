"""
A real ``twistd -n pkgmirror`` process for end-to-end tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from pkgmirror.testing.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def twistd_path() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    return str(candidate) if candidate.exists() else "twistd"


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PKGMIRROR_"))}
    # The plugin lives in twisted/plugins/ of the checkout: make sure twistd finds it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


class ServerProcess:
    """A running pkgmirror. ``url`` ends with a slash: ``http://127.0.0.1:PORT/``."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, serverdir: Path, logfile: Path
    ) -> None:
        self.process = process
        self.port = port
        self.serverdir = serverdir
        self.logfile = logfile

    @classmethod
    def start(
        cls,
        serverdir: Path,
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 20.0,
    ) -> Self:
        port = port or free_port()
        logfile = serverdir.parent / f"{serverdir.name}-{port}.log"
        command = [
            twistd_path(),
            "-n",
            "--pidfile=",
            "pkgmirror",
            "--serverdir",
            str(serverdir),
            "--port",
            str(port),
            *args,
        ]
        with open(logfile, "ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=server_env(env),
                cwd=str(serverdir.parent),
            )
        server = cls(process, port, serverdir, logfile)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pkgmirror exited {process.returncode}:\n{server.log_text()}")
            try:
                with urllib.request.urlopen(server.url + "+health/ready", timeout=1) as r:
                    if r.status == 200:
                        return server
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"pkgmirror did not become ready:\n{server.log_text()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; returns (status, headers, body) for any status."""
        import base64

        data = None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(
            self.url + path.lstrip("/"), data=data, method=method, headers=all_headers
        )
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


__all__: Sequence[str] = ["ServerProcess", "server_env", "twistd_path"]
