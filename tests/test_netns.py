"""
The server as a container or a machine on the LAN sees it: two network namespaces made here,
joined by a veth pair, one running the server on its own address, the other running pip with
``PIP_INDEX_URL`` naming the server by a host name. Nothing leaves the two namespaces.

Needs Linux, iproute2 and CAP_NET_ADMIN (root); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pkgmirror.testing.processes import UpstreamProcess, clean_client_env
from pkgmirror.testing.server import ServerProcess, server_env, twistd_path
from tests.conftest import ROOT_PASSWORD, fill, init_server, pip

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform != "linux", reason="Linux only")]

SERVER_ADDRESS = "10.213.0.1"
CLIENT_ADDRESS = "10.213.0.2"
HOSTNAME = "pkgmirror.test"
PORT = 3141
TIMEOUT = 30.0


def run_ip(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=TIMEOUT)


class Namespaces:
    """A server and a client namespace, linked by a veth pair, each with its address."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.server = f"pkgmirror-srv-{tag}"
        self.client = f"pkgmirror-cli-{tag}"
        self._links = (f"pms{tag}", f"pmc{tag}")
        self._etc = Path("/etc/netns") / self.client
        self._made_etc_netns = False

    def create(self) -> None:
        if shutil.which("ip") is None:
            pytest.skip("iproute2's ip is not installed")
        made = run_ip("netns", "add", self.server)
        if made.returncode != 0:
            pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
        try:
            self._setup()
        except BaseException:
            self.destroy()
            raise

    def _setup(self) -> None:
        server_link, client_link = self._links
        steps = [
            ("netns", "add", self.client),
            # Both ends are made inside their namespaces: the machine's own never sees them.
            (
                "link", "add", "name", server_link, "netns", self.server,
                "type", "veth", "peer", "name", client_link, "netns", self.client,
            ),
            ("-n", self.server, "addr", "add", f"{SERVER_ADDRESS}/30", "dev", server_link),
            ("-n", self.client, "addr", "add", f"{CLIENT_ADDRESS}/30", "dev", client_link),
            ("-n", self.server, "link", "set", server_link, "up"),
            ("-n", self.client, "link", "set", client_link, "up"),
            ("-n", self.server, "link", "set", "lo", "up"),
            ("-n", self.client, "link", "set", "lo", "up"),
        ]  # fmt: skip
        for step in steps:
            result = run_ip(*step)
            if result.returncode != 0:
                raise RuntimeError(f"ip {' '.join(step)}: {result.stderr.strip()}")
        # `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts: the client's name for
        # the server, as a container's /etc/hosts or a LAN's DNS would give it.
        self._made_etc_netns = not self._etc.parent.exists()
        try:
            self._etc.mkdir(parents=True, exist_ok=True)
            (self._etc / "hosts").write_text(
                f"127.0.0.1 localhost\n::1 localhost\n{SERVER_ADDRESS} {HOSTNAME}\n"
            )
        except OSError as e:
            pytest.skip(f"cannot give the client namespace a hosts file: {e}")

    def destroy(self) -> None:
        for name in (self.server, self.client):
            run_ip("netns", "del", name)  # takes its end of the veth pair with it
        shutil.rmtree(self._etc, ignore_errors=True)
        if self._made_etc_netns:
            try:
                self._etc.parent.rmdir()
            except OSError:
                pass

    def command(self, namespace: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]


@pytest.fixture(scope="module")
def namespaces() -> Iterator[Namespaces]:
    made = Namespaces()
    made.create()
    yield made
    made.destroy()


class NamespacedServer:
    """``twistd -n pkgmirror`` inside the server namespace."""

    def __init__(self, namespaces: Namespaces, serverdir: Path, *args: str) -> None:
        self.namespaces = namespaces
        self.logfile = serverdir.parent / f"{serverdir.name}-netns.log"
        command = namespaces.command(
            namespaces.server,
            twistd_path(),
            "-n",
            "--pidfile=",
            "pkgmirror",
            "--serverdir",
            str(serverdir),
            "--log-format",
            "json",
            *args,
        )
        with open(self.logfile, "wb") as out:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=server_env(),
                cwd=serverdir.parent,
            )
        # `ip netns exec` execs the command: this is the server's own pid.
        self.wait_ready()

    def wait_ready(self) -> None:
        """Polls the server from the client namespace, through the veth pair."""
        probe = (
            "import sys, time, urllib.request\n"
            "deadline = time.monotonic() + float(sys.argv[2])\n"
            "while True:\n"
            "    try:\n"
            "        urllib.request.urlopen(sys.argv[1], timeout=1).read()\n"
            "        break\n"
            "    except OSError:\n"
            "        if time.monotonic() > deadline: sys.exit(1)\n"
            "        time.sleep(0.05)\n"
        )
        url = f"http://{SERVER_ADDRESS}:{PORT}/+health/ready"
        result = subprocess.run(
            self.namespaces.command(
                self.namespaces.client, sys.executable, "-I", "-c", probe, url, "20"
            ),
            env=clean_client_env(self.logfile.parent / "probe-home"),
            capture_output=True,
            timeout=TIMEOUT,
        )
        if result.returncode != 0:
            self.stop()
            raise AssertionError(f"server in the namespace did not answer:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def test_pip_in_another_namespace_installs_through_the_servers_host_name(
    namespaces: Namespaces, tmp_path: Path, pip_env: dict[str, str]
) -> None:
    # Cache public-pkg on root/local (a stage over the root/pypi mirror) from this machine.
    upstream = UpstreamProcess.start(fill(tmp_path / "public", [("public-pkg", "1.0")]), "json")
    serverdir = tmp_path / "server"
    init_server(serverdir, upstream.url)
    try:
        with ServerProcess.start(serverdir) as server:
            status, _, body = server.request(
                "PUT", "root/local", {"bases": "root/pypi"}, auth=("root", ROOT_PASSWORD)
            )
            assert status == 200, body
            result = pip(
                pip_env,
                "download",
                "--no-deps",
                "-d",
                str(tmp_path / "warm"),
                "-i",
                server.url + "root/local/+simple/",
                "public-pkg",
            )
            assert result.returncode == 0, result.stderr
    finally:
        upstream.stop()

    # Now serve it from the server namespace's own address only, with no upstream at all.
    served = NamespacedServer(
        namespaces,
        serverdir,
        "--listen",
        f"tcp:{PORT}:interface={SERVER_ADDRESS}",
        "--offline-mode",
    )
    try:
        index = f"http://{HOSTNAME}:{PORT}/root/local/+simple/"
        env = {**pip_env, "PIP_INDEX_URL": index}
        report = tmp_path / "report.json"
        result = subprocess.run(
            namespaces.command(
                namespaces.client,
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--no-deps",
                # Plain HTTP to a name other than localhost: pip wants it trusted explicitly.
                "--trusted-host",
                HOSTNAME,
                "--target",
                str(tmp_path / "target"),
                "--report",
                str(report),
                "public-pkg",
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        assert served.stop() == 0

    assert (tmp_path / "target" / "public_pkg" / "__init__.py").exists()
    (installed,) = json.loads(report.read_text())["install"]
    url = installed["download_info"]["url"]
    assert url.startswith(f"http://{HOSTNAME}:{PORT}/root/"), url
    assert url.endswith("public_pkg-1.0-py3-none-any.whl")

    records = served.records()
    requests = [r for r in records if r["logger"] == "pkgmirror.access"]
    followed = {r["path"] for r in requests if r["client"] == CLIENT_ADDRESS}
    assert "/root/local/+simple/public-pkg/" in followed
    assert url.removeprefix(f"http://{HOSTNAME}:{PORT}").split("#")[0] in followed
    # root has a password: no warning, although the server is reachable beyond loopback.
    assert not any("empty password" in r["message"] for r in records)


def test_warning_when_root_has_no_password_and_the_lan_can_reach_it(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    # A fresh server directory: root's password is empty. 0.0.0.0 in the server namespace
    # is its loopback and its veth end, nothing else.
    served = NamespacedServer(
        namespaces, tmp_path / "server", "--host", "0.0.0.0", "--port", str(PORT)
    )
    assert served.stop() == 0
    warnings = [r for r in served.records() if "empty password" in r["message"]]
    assert len(warnings) == 1 and warnings[0]["level"] == "warn"


def test_no_warning_on_loopback_although_root_has_no_password(tmp_path: Path) -> None:
    with ServerProcess.start(tmp_path / "server") as server:
        assert server.request("GET", "+api")[0] == 200
    assert "empty password" not in server.log_text()


def test_listening_beyond_loopback_is_recognised() -> None:
    from pkgmirror.tap import listens_beyond_loopback

    assert not listens_beyond_loopback(["tcp:3141:interface=127.0.0.1"])
    assert not listens_beyond_loopback(["tcp:3141:interface=\\:\\:1", "unix:/run/p.sock"])
    assert listens_beyond_loopback(["tcp:3141"])
    assert listens_beyond_loopback(["tcp:3141:interface=0.0.0.0"])
    assert listens_beyond_loopback(["tcp:3141:interface=127.0.0.1", "tcp6:3141:interface=\\:\\:"])
    assert listens_beyond_loopback([f"tcp:3141:interface={SERVER_ADDRESS}"])
