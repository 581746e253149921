"""
Upstream faults against a real pkgmirror: one upstream request for many clients, bad and
truncated bodies never completed or stored, a kill mid-fill leaving nothing, hostile paths.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

from pkgmirror.testing.dists import build_wheel
from pkgmirror.testing.processes import UpstreamProcess, wait_for
from pkgmirror.testing.server import ServerProcess
from tests.conftest import init_server, stored_blobs

pytestmark = pytest.mark.e2e

JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
BIG = 4_000_000


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[UpstreamProcess, ServerProcess, Path]]:
    root = tmp_path / "up"
    build_wheel(root, "small-pkg", "1.0")
    build_wheel(root, "big-pkg", "1.0", payload_size=BIG)
    up = UpstreamProcess.start(root, "json")
    serverdir = tmp_path / "server"
    init_server(serverdir, up.url)
    server = ServerProcess.start(serverdir, "--request-timeout", "5")
    yield up, server, serverdir
    server.stop()
    up.stop()


def file_path(server: ServerProcess, project: str) -> tuple[str, str]:
    """(path of the wheel on root/pypi, its sha256) from the project's JSON page."""
    status, _, body = server.request("GET", f"root/pypi/+simple/{project}/", headers=JSON_ACCEPT)
    assert status == 200, body
    entry = json.loads(body)["files"][0]
    url = urljoin(f"{server.url}root/pypi/+simple/{project}/", entry["url"])
    return url[len(server.url) - 1 :], entry["hashes"]["sha256"]


def raw_get(server: ServerProcess, path: str) -> tuple[int, int | None, bytes, bool]:
    """(status, Content-Length, body, complete) without urllib hiding a short body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path)
    try:
        response = conn.getresponse()
    except ConnectionError:
        return 0, None, b"", False
    length = response.getheader("Content-Length")
    try:
        body = response.read()
        complete = True
    except http.client.IncompleteRead as e:
        body = e.partial
        complete = False
    except ConnectionError:
        body = b""
        complete = False
    conn.close()
    return response.status, int(length) if length else None, body, complete


def upstream_hits(up: UpstreamProcess, prefix: str) -> int:
    return sum(1 for e in up.log() if e["path"].startswith(prefix))


def test_twenty_concurrent_requests_make_one_upstream_request(setup) -> None:
    up, server, _ = setup
    path, sha = file_path(server, "big-pkg")
    up.reset_log()
    # Slow the upstream so all twenty arrive while the first fill is under way.
    up.set_fault("slow", paths="/files/", delay=0.02, chunk=200_000)
    results: list[tuple[int, int | None, bytes, bool]] = []

    def fetch() -> None:
        results.append(raw_get(server, path))

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20
    for status, _, body, complete in results:
        assert status == 200 and complete
        assert hashlib.sha256(body).hexdigest() == sha
    assert upstream_hits(up, "/files/big_pkg") == 1


def test_concurrent_page_requests_make_one_upstream_request(setup) -> None:
    up, server, _ = setup
    up.reset_log()
    up.set_fault("slow", paths="/simple/small-pkg/", delay=0.05, chunk=50)
    statuses: list[int] = []

    def get() -> None:
        statuses.append(
            server.request("GET", "root/pypi/+simple/small-pkg/", headers=JSON_ACCEPT)[0]
        )

    threads = [threading.Thread(target=get) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 20
    assert upstream_hits(up, "/simple/small-pkg/") == 1


def test_wrong_upstream_hash_never_completes_and_stores_nothing(setup) -> None:
    up, server, serverdir = setup
    path, sha = file_path(server, "big-pkg")
    up.set_fault("wronghash", paths="/files/")
    status, length, body, complete = raw_get(server, path)
    # The client can never end up holding a complete download of bad bytes.
    assert not complete or status != 200 or (length is not None and len(body) < length)
    assert hashlib.sha256(body).hexdigest() != sha
    assert stored_blobs(serverdir) == []
    # Once the upstream is healthy again, the next request succeeds and stores the file.
    up.clear_fault()
    status, _, body, complete = raw_get(server, path)
    assert status == 200 and complete and hashlib.sha256(body).hexdigest() == sha
    # The store commits a fill just after its last byte went out: allow it a moment.
    wait_for(lambda: len(stored_blobs(serverdir)) == 1, "the fill to be committed", timeout=5)


def test_truncated_upstream_body_stores_nothing_then_next_request_succeeds(setup) -> None:
    up, server, serverdir = setup
    path, sha = file_path(server, "big-pkg")
    up.set_fault("truncate", paths="/files/", count=1)
    status, _, body, complete = raw_get(server, path)
    assert not complete or status != 200
    assert stored_blobs(serverdir) == []
    status, _, body, complete = raw_get(server, path)
    assert status == 200 and complete and hashlib.sha256(body).hexdigest() == sha


def test_sigkill_during_a_cache_fill_leaves_no_partial_file(setup, tmp_path: Path) -> None:
    up, server, serverdir = setup
    path, sha = file_path(server, "big-pkg")
    up.set_fault("slow", paths="/files/", delay=0.05, chunk=100_000)
    fetcher = threading.Thread(target=raw_get, args=(server, path), daemon=True)
    fetcher.start()
    deadline = time.monotonic() + 10
    spool = serverdir / "blobs" / "tmp"
    while time.monotonic() < deadline and not any(spool.glob("*")):
        time.sleep(0.05)
    assert any(spool.glob("*")), "the fill should be under way"
    server.stop(signal.SIGKILL)
    assert stored_blobs(serverdir) == []
    up.clear_fault()
    with ServerProcess.start(serverdir) as again:
        assert not any(spool.glob("*")), "partial downloads are discarded at start"
        status, _, body, complete = raw_get(again, path)
        assert status == 200 and complete and hashlib.sha256(body).hexdigest() == sha


@pytest.mark.parametrize(
    "path",
    [
        "/root/pypi/+f/../../../etc/passwd",
        "/root/pypi/+f/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/root/pypi/+f/abc/%2e%2e%2f%2e%2e/passwd",
        "/root/pypi/+f/abc/0123456789abc/x%00.whl",
        "/root/pypi/+simple/%2e%2e/",
        "/root/pypi/+simple/a%00b/",
        "/root/pypi/+simple/" + "a" * 5000 + "/",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/root/%2e%2e/+simple/x/",
        "/root/pypi/+f/" + "0" * 3 + "/" + "1" * 13 + "/" + "x" * 5000,
    ],
)
def test_hostile_paths_get_4xx_and_touch_nothing(setup, path: str) -> None:
    up, server, serverdir = setup
    before = sorted(p.name for p in serverdir.rglob("*"))
    up.reset_log()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=JSON_ACCEPT)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert 400 <= response.status < 500, (response.status, body[:200])
    assert b"Traceback" not in body
    assert b"root:" not in body
    assert up.log() == []
    assert sorted(p.name for p in serverdir.rglob("*")) == before
