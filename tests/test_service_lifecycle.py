"""
The server as an operator runs it: ``twistd pkgmirror`` as a daemon with a pid file and a log
file, ``twistd -n`` in the foreground, ``twist pkgmirror``; stopped by SIGTERM while it sends a
big file and fills its cache; started again over the pid file a SIGKILL left; its log lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pkgmirror.testing.dists import build_wheel
from pkgmirror.testing.processes import UpstreamProcess, alive, free_port, wait_for
from pkgmirror.testing.server import ServerProcess, server_env, twistd_path
from tests.conftest import ROOT_PASSWORD, init_server, stored_blobs

pytestmark = pytest.mark.e2e

HUGE = 16_000_000  # well beyond what socket buffers hold, so a cut-off download shows
JSON_SIMPLE = {"Accept": "application/vnd.pypi.simple.v1+json"}
HTML = {"Accept": "text/html"}
TIMEOUT = 30.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dists")
    return {
        "huge-pkg": build_wheel(root, "huge-pkg", "1.0", payload_size=HUGE),
        "slow-pkg": build_wheel(root, "slow-pkg", "1.0", payload_size=400_000),
        "other-pkg": build_wheel(root, "other-pkg", "1.0"),
    }


@pytest.fixture
def upstream(wheels: dict[str, Path]) -> Iterator[UpstreamProcess]:
    root = next(iter(wheels.values())).parent
    with UpstreamProcess.start(root, "json") as up:
        yield up


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", headers=headers or {})
    with _OPENER.open(request, timeout=TIMEOUT) as response:
        return response.status, response.read()


def file_path(port: int, index: str, project: str) -> str:
    """The server path of the project's only file, from its simple page."""
    status, body = get(port, f"{index}/+simple/{project}/", JSON_SIMPLE)
    assert status == 200
    (entry,) = json.loads(body)["files"]
    return f"{index}/+simple/{project}/" + entry["url"]


class Download(threading.Thread):
    """
    A GET read at ``rate`` bytes a second through a small receive buffer, so the server
    still has most of the body to send for a while.
    """

    def __init__(self, port: int, path: str, rate: float | None = None) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.path = "/" + os.path.normpath(path).lstrip("/")
        self.rate = rate
        self.status = 0
        self.length: int | None = None
        self.received = 0
        self.digest = hashlib.sha256()
        self.started_body = threading.Event()
        self.error: BaseException | None = None

    @property
    def complete(self) -> bool:
        return self.length is not None and self.received == self.length

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported to the test
            self.error = e
        finally:
            self.started_body.set()

    def _run(self) -> None:
        sock = socket.socket()
        if self.rate is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", self.port))
        with sock:
            sock.sendall(
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("no response headers")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self.length = int(value)
            began = time.monotonic()
            if not body:
                # The headers may come alone (the body follows by sendfile).
                body = sock.recv(65536)
            while body:
                self.received += len(body)
                self.digest.update(body)
                self.started_body.set()
                if self.rate is not None:
                    ahead = self.received / self.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
                try:
                    body = sock.recv(65536)
                except ConnectionResetError:
                    body = b""


def daemon_command(serverdir: Path, port: int, pidfile: Path, logfile: Path) -> list[str]:
    return [
        twistd_path(),
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(logfile),
        "pkgmirror",
        "--serverdir",
        str(serverdir),
        "--port",
        str(port),
    ]


def start_daemon(serverdir: Path, port: int, pidfile: Path, logfile: Path) -> int:
    """Starts the daemon, waits until it answers; returns its pid (from the pid file)."""
    result = subprocess.run(
        daemon_command(serverdir, port, pidfile, logfile),
        env=server_env(),
        cwd=serverdir.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # twistd's first process exits once the daemon has started its services.
    wait_for(lambda: accepts(port), "the daemon to listen", timeout=TIMEOUT)
    pid = int(pidfile.read_text())
    assert alive(pid)
    return pid


def test_daemon_finishes_a_big_download_and_a_cache_fill_on_sigterm(
    tmp_path: Path, upstream: UpstreamProcess, wheels: dict[str, Path]
) -> None:
    serverdir, pidfile, logfile = tmp_path / "server", tmp_path / "run.pid", tmp_path / "log"
    init_server(serverdir, upstream.url)
    port = free_port()
    pid = start_daemon(serverdir, port, pidfile, logfile)
    killed = False
    try:
        status, body = get(port, "+api")
        assert status == 200 and json.loads(body)["type"] == "apiconfig"

        huge = file_path(port, "root/pypi", "huge-pkg")
        warm = Download(port, huge)
        warm.run()
        assert warm.complete and warm.digest.hexdigest() == sha256_of(wheels["huge-pkg"])
        slow = file_path(port, "root/pypi", "slow-pkg")
        # ~2 s to fetch from the upstream: the fill is under way when the signal comes.
        upstream.set_fault("slow", paths="/files/slow_pkg", chunk=20_000, delay=0.1)

        big = Download(port, huge, rate=5_000_000)  # ~3 s
        filling = Download(port, slow)
        big.start()
        filling.start()
        assert big.started_body.wait(TIMEOUT) and filling.started_body.wait(TIMEOUT)
        os.kill(pid, signal.SIGTERM)
        # It stops accepting at once, while both responses are still going.
        wait_for(lambda: not accepts(port), "the port to close", timeout=2)
        assert big.is_alive() and filling.is_alive()

        big.join(TIMEOUT)
        filling.join(TIMEOUT)
        assert big.error is None and filling.error is None
        assert big.status == 200 and big.complete
        assert big.digest.hexdigest() == sha256_of(wheels["huge-pkg"])
        assert filling.status == 200 and filling.complete
        assert filling.digest.hexdigest() == sha256_of(wheels["slow-pkg"])

        wait_for(lambda: not alive(pid), "the daemon to exit", timeout=TIMEOUT)
        killed = True
    finally:
        if not killed and alive(pid):
            os.kill(pid, signal.SIGKILL)

    assert not pidfile.exists()
    log = logfile.read_text()
    assert "SIGTERM received: stopping" in log
    assert "waiting up to 10 s for 2 responses and 1 cache fills" in log
    assert "unfinished" not in log
    assert log.rstrip().endswith("Server Shut Down.")
    # The fill was committed whole; nothing partial is left in the spool.
    names = {p.name for p in stored_blobs(serverdir)}
    assert {sha256_of(wheels["huge-pkg"]), sha256_of(wheels["slow-pkg"])} <= names
    assert list((serverdir / "blobs" / "tmp").iterdir()) == []
    # One access line per request, in the common text format.
    assert re.search(r'127\.0\.0\.1 "GET /\+api" 200 \d+ \d+\.\dms', log), log


def test_stale_pid_files_do_not_stop_a_start(tmp_path: Path) -> None:
    serverdir, pidfile, logfile = tmp_path / "server", tmp_path / "run.pid", tmp_path / "log"
    port = free_port()
    pid = start_daemon(serverdir, port, pidfile, logfile)
    try:
        # A second server on the same pid file is refused while the first one runs (on
        # another serverdir: on the same one the serverdir's lock refuses it first).
        second = subprocess.run(
            daemon_command(tmp_path / "server2", free_port(), pidfile, tmp_path / "log2"),
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert second.returncode != 0
        assert f"Another twistd server is running, PID {pid}" in second.stderr
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), "the daemon to die", timeout=TIMEOUT)
        assert pidfile.read_text().strip() == str(pid)

        pid = start_daemon(serverdir, port, pidfile, logfile)
        assert get(port, "+api")[0] == 200
        assert f"removed the stale pid file {pidfile} (pid" in logfile.read_text()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), "the daemon to exit", timeout=TIMEOUT)
        assert not pidfile.exists()

        # After a reboot the pid in the file may belong to anything: here, a sleep.
        other = subprocess.Popen(["sleep", "60"])
        try:
            pidfile.write_text(str(other.pid))
            pid = start_daemon(serverdir, port, pidfile, logfile)
            assert alive(other.pid)
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), "the daemon to exit", timeout=TIMEOUT)
        finally:
            other.kill()
            other.wait()
        # A damaged pid file, as a crash during its writing leaves it.
        pidfile.write_text("")
        pid = start_daemon(serverdir, port, pidfile, logfile)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), "the daemon to exit", timeout=TIMEOUT)
    assert not pidfile.exists()


def log_records(server: ServerProcess) -> list[dict[str, Any]]:
    lines = server.log_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_fill_past_the_shutdown_timeout_is_discarded_and_json_log(
    tmp_path: Path, upstream: UpstreamProcess, wheels: dict[str, Path]
) -> None:
    serverdir = tmp_path / "server"
    init_server(serverdir, upstream.url)
    server = ServerProcess.start(
        serverdir,
        "--shutdown-timeout",
        "1",
        "--log-format",
        "json",
        "--mirror-cache-expiry",
        "1",
        "--refresh-interval",
        "1",
    )
    with server:
        # A volatile mirror whose pages expire at once: the refresh loop has work to report.
        status, _, body = server.request(
            "PUT",
            "root/vol",
            {"type": "mirror", "mirror_url": upstream.url, "volatile": True},
            auth=("root", ROOT_PASSWORD),
        )
        assert status == 200, body
        assert server.request("GET", "root/vol/+simple/other-pkg/", headers=HTML)[0] == 200
        # An upstream error is logged with what failed (on a mirror of its own, as the
        # mirror backs off from its upstream after it).
        status, _, body = server.request(
            "PUT",
            "root/flaky",
            {"type": "mirror", "mirror_url": upstream.url},
            auth=("root", ROOT_PASSWORD),
        )
        assert status == 200, body
        upstream.set_fault("503", paths="/simple/never-there", count=1)
        assert server.request("GET", "root/flaky/+simple/never-there/", headers=HTML)[0] >= 500
        wait_for(
            lambda: any(
                r["message"].startswith("refresh round: 1 pages refreshed")
                for r in log_records(server)
            ),
            "a refresh round to be logged",
            timeout=10,
        )

        slow = file_path(server.port, "root/pypi", "slow-pkg")
        # Far too slow to finish within the one second the server gives it.
        upstream.set_fault("slow", paths="/files/slow_pkg", chunk=10_000, delay=0.3)
        filling = Download(server.port, slow)
        filling.start()
        assert filling.started_body.wait(TIMEOUT)
        asked = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - asked < 5
        filling.join(TIMEOUT)
        # The client sees a broken download, never a short file that looks whole.
        assert filling.status == 200 and not filling.complete

    assert sha256_of(wheels["slow-pkg"]) not in {p.name for p in stored_blobs(serverdir)}
    assert list((serverdir / "blobs" / "tmp").iterdir()) == []

    records = log_records(server)  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    requests = [r for r in records if r["logger"] == "pkgmirror.access"]
    api = next(r for r in requests if r["path"] == "/root/vol/+simple/other-pkg/")
    assert api["method"] == "GET" and api["status"] == 200 and api["client"] == "127.0.0.1"
    assert isinstance(api["bytes"], int) and api["bytes"] > 0
    assert isinstance(api["ms"], float) and api["complete"] is True
    cut = next(r for r in requests if r["path"] == "/" + os.path.normpath(slow))
    assert cut["complete"] is False
    failed = next(r for r in records if r["message"].startswith("upstream of root/flaky failed"))
    assert failed["level"] == "warn" and failed["project"] == "never-there"
    assert any("unfinished" in r["message"] for r in records if r["level"] == "warn")
    # A fresh server directory has root without a password, but loopback is safe.
    assert not any("empty password" in r["message"] for r in records)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_twist_runs_the_plugin(tmp_path: Path, log_format: str) -> None:
    twist = Path(twistd_path()).with_name("twist")
    if not twist.exists():
        pytest.skip("twist is not installed next to twistd")
    port = free_port()
    command = [
        str(twist),
        "pkgmirror",
        "--serverdir",
        str(tmp_path / "server"),
        "--port",
        str(port),
        "--log-format",
        log_format,
    ]
    process = subprocess.Popen(
        command, env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(
            lambda: accepts(port) or process.poll() is not None, "twist to listen", timeout=TIMEOUT
        )
        assert get(port, "+api")[0] == 200
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=TIMEOUT)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    if log_format == "json":
        records = [json.loads(line) for line in output.splitlines()]
        assert any(r["logger"] == "pkgmirror.access" and r["path"] == "/+api" for r in records)
    else:
        assert '"GET /+api" 200' in output
    assert "pkgmirror stopped" in output


def test_bad_options_are_refused_before_anything_starts(tmp_path: Path) -> None:
    def twistd(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [twistd_path(), *arguments],
            env=server_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    serverdir = str(tmp_path / "server")
    result = twistd("--logfile", "-", "pkgmirror", "--serverdir", serverdir, "--log-format", "json")
    assert result.returncode != 0 and "cannot log to stdout" in result.stderr + result.stdout
    result = twistd("-n", "pkgmirror", "--serverdir", serverdir, "--shutdown-timeout", "soon")
    assert result.returncode != 0
    assert "--shutdown-timeout must be a number" in result.stdout + result.stderr
    assert not (tmp_path / "twistd.pid").exists()
