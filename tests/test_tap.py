"""
``twistd pkgmirror`` at the command line: wrong options and unusable server directories give one
clear line and a failing exit code, never a traceback; a fresh serverdir is initialised.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from pkgmirror.testing.processes import free_port
from pkgmirror.testing.server import ServerProcess, server_env, twistd_path
from tests.conftest import ROOT_PASSWORD, init_server

ROOT = ("root", ROOT_PASSWORD)


def twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "pkgmirror", *args],
        capture_output=True,
        text=True,
        env=server_env(),
        cwd=str(cwd),
        timeout=60,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    return output.splitlines()[-1]


def test_foreign_serverdir_is_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "devpi-server-dir"
    foreign.mkdir()
    (foreign / ".nodeinfo").write_text("{}")
    line = one_line_error(twistd("--serverdir", str(foreign), cwd=tmp_path))
    assert "not a pkgmirror server directory" in line
    assert sorted(p.name for p in foreign.iterdir()) == [".nodeinfo"]


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        line = one_line_error(
            twistd("--serverdir", str(tmp_path / "sd"), "--port", str(port), cwd=tmp_path)
        )
    assert line == f"pkgmirror: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "abc"], "--port must be a number"),
        (["--mirror-cache-expiry", "soon"], "--mirror-cache-expiry must be a number"),
        (["--log-format", "xml"], "--log-format must be text or json"),
        (["--outside-url", "example"], "--outside-url must start with http"),
        (["--mirror-url-allow", "intranet.example"], "--mirror-url-allow must start with http"),
    ],
)
def test_bad_option_values_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    line = one_line_error(twistd("--serverdir", str(tmp_path / "sd"), *args, cwd=tmp_path))
    assert expected in line


def test_uncreatable_serverdir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = one_line_error(twistd("--serverdir", str(blocker / "sd"), cwd=tmp_path))
    assert "serverdir" in line


def test_a_second_server_on_the_same_serverdir_is_refused(tmp_path: Path) -> None:
    serverdir = tmp_path / "sd"
    with ServerProcess.start(serverdir) as server:
        line = one_line_error(twistd("--serverdir", str(serverdir), "--port", "0", cwd=tmp_path))
        assert line == (
            f"pkgmirror: {serverdir} is in use by another pkgmirror (pid {server.process.pid})"
        )
        # The first one serves on, undisturbed.
        status, _, _ = server.request("GET", "+api")
        assert status == 200
        # A process killed outright leaves no lock behind: the kernel drops it.
        server.process.kill()
        server.process.wait()
    with ServerProcess.start(serverdir) as again:
        status, _, _ = again.request("GET", "+api")
        assert status == 200


def test_empty_serverdir_is_initialised_with_root_and_root_pypi(tmp_path: Path) -> None:
    serverdir = tmp_path / "fresh"
    with ServerProcess.start(serverdir) as server:
        status, _, body = server.request("GET", "root/pypi")
        assert status == 200, body
        status, _, body = server.request(
            "GET", "root/pypi/+simple/anything/", headers={"Accept": "text/html"}
        )
        # No upstream configured: it says so, and how to set one.
        assert status == 404
        assert b"mirror_url" in body


def test_mirror_url_allow_reaches_the_server(tmp_path: Path) -> None:
    serverdir = tmp_path / "sd"
    init_server(serverdir, None)
    allowed = "http://127.0.0.1:9/simple/"
    with ServerProcess.start(serverdir, "--mirror-url-allow", allowed) as server:
        status, _, body = server.request(
            "PUT", "root/up", {"type": "mirror", "mirror_url": "http://127.0.0.1:10/"}, auth=ROOT
        )
        assert status == 403 and b"may only fetch from http://127.0.0.1:9/simple/" in body
        status, _, body = server.request(
            "PUT", "root/up", {"type": "mirror", "mirror_url": allowed}, auth=ROOT
        )
        assert status == 200, body
