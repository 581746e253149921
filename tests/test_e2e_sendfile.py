"""
End to end: big cached files leave a real ``twistd pkgmirror`` through sendfile(2). The bytes
are exact, a client that stops reading holds up nobody else, a client that leaves mid-file
leaves nothing open behind, and HEAD and ranges (static.File's path) still work on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from pkgmirror.testing.dists import build_wheel
from pkgmirror.testing.processes import UpstreamProcess
from pkgmirror.testing.server import ServerProcess
from tests.conftest import fill, init_server

pytestmark = pytest.mark.e2e

JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, bytes]]:
    base = tmp_path_factory.mktemp("sendfile")
    public = fill(base / "public", [])
    # Bigger than what the kernel buffers for one connection, so a stalled reader blocks sends.
    build_wheel(public, "big-pkg", "1.0", payload_size=24 * 1024 * 1024)
    upstream = UpstreamProcess.start(public, "json")
    serverdir = base / "server"
    init_server(serverdir, upstream.url)
    server = ServerProcess.start(serverdir)
    try:
        status, _, body = server.request("GET", "root/pypi/+simple/big-pkg/", headers=JSON_ACCEPT)
        assert status == 200, body
        entry = next(f for f in json.loads(body)["files"] if f["filename"].endswith(".whl"))
        url = urljoin(server.url + "root/pypi/+simple/big-pkg/", entry["url"])
        path = urlsplit(url).path.lstrip("/")
        data = (base / "public" / entry["filename"]).read_bytes()
        assert len(data) > 20 * 1024 * 1024
        status, _, body = server.request("GET", path)  # the cold fill caches it
        assert status == 200 and body == data
        yield server, path, data
    finally:
        server.stop()
        upstream.stop()


def raw_get(server: ServerProcess, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def read_response(sock: socket.socket, already: bytes = b"") -> tuple[bytes, bytes]:
    received = bytearray(already)
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    length = int(
        next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    rest = bytearray(body)
    while len(rest) < length:
        chunk = sock.recv(1024 * 1024)
        assert chunk, "the server closed the connection before the end of the body"
        rest += chunk
    return head, bytes(rest)


def open_descriptors(server: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def test_a_cached_big_file_is_sent_whole_and_exact(
    cached: tuple[ServerProcess, str, bytes],
) -> None:
    server, path, data = cached
    for _ in range(3):
        status, headers, body = server.request("GET", path)
        assert status == 200
        assert int(headers["Content-Length"]) == len(data)
        assert "immutable" in headers["Cache-Control"]
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    # Ranges and HEAD take static.File's path and still answer for the whole file.
    status, headers, body = server.request("GET", path, headers={"Range": "bytes=-1000"})
    assert status == 206 and body == data[-1000:]
    status, headers, body = server.request("HEAD", path)
    assert (status, body) == (200, b"") and int(headers["Content-Length"]) == len(data)


def test_a_client_that_stops_reading_holds_up_nobody(
    cached: tuple[ServerProcess, str, bytes],
) -> None:
    server, path, data = cached
    stalled = raw_get(server, path)
    first = stalled.recv(4096)
    assert first.startswith(b"HTTP/1.1 200")
    # While that client reads nothing more (its socket buffers are full), others are served.
    for _ in range(3):
        status, _, body = server.request("GET", path)
        assert status == 200 and body == data
    status, _, _ = server.request("GET", "root/pypi/+simple/big-pkg/", headers=JSON_ACCEPT)
    assert status == 200
    # And it gets every byte once it reads again, on a connection that stays usable.
    _, body = read_response(stalled, first)
    assert body == data
    stalled.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    _, again = read_response(stalled)
    assert again == data
    stalled.close()


def test_a_client_leaving_mid_file_leaves_nothing_open(
    cached: tuple[ServerProcess, str, bytes],
) -> None:
    server, path, data = cached
    server.request("GET", path)
    before = open_descriptors(server)
    for _ in range(5):
        sock = raw_get(server, path)
        sock.recv(100_000)
        sock.close()
    deadline = time.monotonic() + 10
    while open_descriptors(server) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_descriptors(server) <= before
    status, _, body = server.request("GET", path)
    assert status == 200 and body == data
    log = Path(server.logfile).read_text()
    assert "Traceback" not in log and "Unhandled" not in log
