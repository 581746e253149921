"""The test upstream index behaves like a simple index, and each fault does what it says."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgmirror.testing.dists import build_sdist, build_wheel, wheel_filename
from pkgmirror.testing.processes import (
    UpstreamProcess,
    clean_client_env,
    free_port,
    wait_for_port,
)

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
WHEEL = wheel_filename("alpha", "1.0")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upstream-root")
    build_wheel(root, "alpha", "1.0", requires_python=">=3.8", requires_dist=["beta"])
    build_sdist(root, "alpha", "1.0", requires_python=">=3.8", requires_dist=["beta"])
    build_wheel(root / "beta", "Beta", "2.0", payload_size=100_000)  # a nested directory
    return root


@pytest.fixture
def upstream(root: Path) -> Iterator[UpstreamProcess]:
    with UpstreamProcess.start(root, "json") as up:
        yield up


class Answer:
    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = body


def request(
    up: UpstreamProcess,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    timeout: float = 10,
) -> Answer:
    connection = http.client.HTTPConnection(up.host, up.port, timeout=timeout)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Answer(response, response.read())
    finally:
        connection.close()


def file_hash_on_page(up: UpstreamProcess, filename: str) -> str:
    page = request(up, "/simple/alpha/").body.decode()
    match = re.search(re.escape(filename) + r"#sha256=([0-9a-f]{64})", page)
    assert match, page
    return match.group(1)


def pip_install(
    up: UpstreamProcess, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--index-url",
            up.url,
            "--target",
            str(tmp_path / "target"),
            "--no-cache-dir",
            *args,
        ],
        env=clean_client_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )


# Start-up and process handling


def test_starts_and_stops(root: Path) -> None:
    up = UpstreamProcess.start(root, "html")
    try:
        assert request(up, "/simple/").status == 200
        wait_for_port(up.host, up.port, timeout=1)
    finally:
        up.stop()
    assert up.process.poll() is not None
    up.stop()  # a second stop is harmless


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.3)
    assert time.monotonic() - started < 2


def test_start_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        UpstreamProcess.start(tmp_path, "html", extra_args=["--no-such-option"])


def test_clean_client_env_drops_machine_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1/")
    env = clean_client_env(tmp_path / "home")
    assert env["HOME"] == str(tmp_path / "home")
    assert env["PATH"]
    assert env["PIP_CONFIG_FILE"] == "/dev/null"
    assert env["UV_NO_CONFIG"] == "1"
    assert env["PIP_DISABLE_PIP_VERSION_CHECK"] == "1"
    assert "PIP_INDEX_URL" not in env and "UV_INDEX_URL" not in env
    assert "http_proxy" not in env


# Pages and negotiation


@pytest.mark.parametrize("mode", ["html", "json", "meta"])
def test_pip_installs_from_the_index(root: Path, tmp_path: Path, mode: str) -> None:
    with UpstreamProcess.start(root, mode) as up:
        result = pip_install(up, tmp_path, "alpha==1.0")
        assert result.returncode == 0, result.stdout + result.stderr
        log = up.log()
    assert (tmp_path / "target" / "alpha" / "__init__.py").exists()
    assert (tmp_path / "target" / "beta" / "payload.bin").stat().st_size == 100_000
    paths = [entry["path"] for entry in log]
    assert "/simple/alpha/" in paths and "/simple/beta/" in paths
    assert f"/files/{WHEEL}" in paths
    page = next(e for e in log if e["path"] == "/simple/alpha/")
    assert page["headers"]["accept"].startswith(JSON)
    assert page["status"] == 200
    fetched_metadata = any(p.endswith(".metadata") for p in paths)
    assert fetched_metadata == (mode == "meta")


def test_pip_installs_the_sdist(upstream: UpstreamProcess, tmp_path: Path) -> None:
    result = pip_install(upstream, tmp_path, "--no-binary", "alpha", "alpha==1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/files/alpha-1.0.tar.gz" in [e["path"] for e in upstream.log()]


def test_html_mode_never_answers_json(root: Path) -> None:
    with UpstreamProcess.start(root, "html") as up:
        answer = request(up, "/simple/alpha/", {"Accept": PIP_ACCEPT})
    assert answer.headers["Content-Type"].startswith("text/html")
    assert b"data-core-metadata" not in answer.body


def test_html_page_lists_files_with_hashes(upstream: UpstreamProcess, root: Path) -> None:
    answer = request(upstream, "/simple/alpha/")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    page = answer.body.decode()
    for filename in (WHEEL, "alpha-1.0.tar.gz"):
        digest = hashlib.sha256((root / filename).read_bytes()).hexdigest()
        assert f"/files/{filename}#sha256={digest}" in page
    assert 'data-requires-python="&gt;=3.8"' in page
    index = request(upstream, "/simple/").body.decode()
    assert 'href="alpha/"' in index and 'href="beta/"' in index


def test_json_page_when_preferred(upstream: UpstreamProcess, root: Path) -> None:
    answer = request(upstream, "/simple/alpha/", {"Accept": PIP_ACCEPT})
    assert answer.headers["Content-Type"] == JSON
    assert answer.headers["Vary"] == "Accept"
    page = json.loads(answer.body)
    assert page["meta"]["api-version"] == "1.1"
    assert page["name"] == "alpha"
    assert page["versions"] == ["1.0"]
    files = {f["filename"]: f for f in page["files"]}
    wheel = files[WHEEL]
    assert wheel["size"] == (root / WHEEL).stat().st_size
    assert wheel["hashes"]["sha256"] == hashlib.sha256((root / WHEEL).read_bytes()).hexdigest()
    assert wheel["requires-python"] == ">=3.8"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", wheel["upload-time"])
    assert "core-metadata" not in wheel
    index = json.loads(request(upstream, "/simple/", {"Accept": JSON}).body)
    assert {p["name"] for p in index["projects"]} == {"alpha", "Beta"}
    # HTML stays the answer for clients that prefer it or say nothing.
    assert request(upstream, "/simple/alpha/", {"Accept": "text/html"}).body.startswith(b"<!")
    assert request(upstream, "/simple/alpha/").body.startswith(b"<!")


def test_meta_mode_serves_pep_658_metadata(root: Path) -> None:
    with UpstreamProcess.start(root, "meta") as up:
        page = json.loads(request(up, "/simple/alpha/", {"Accept": JSON}).body)
        html_page = request(up, "/simple/alpha/").body.decode()
        metadata = request(up, f"/files/{WHEEL}.metadata")
        no_sdist_metadata = request(up, "/files/alpha-1.0.tar.gz.metadata")
    wheel = next(f for f in page["files"] if f["filename"] == WHEEL)
    assert metadata.status == 200
    digest = hashlib.sha256(metadata.body).hexdigest()
    assert wheel["core-metadata"] == wheel["dist-info-metadata"] == {"sha256": digest}
    assert f'data-core-metadata="sha256={digest}"' in html_page
    assert f'data-dist-info-metadata="sha256={digest}"' in html_page
    assert b"Name: alpha" in metadata.body and b"Requires-Dist: beta" in metadata.body
    assert no_sdist_metadata.status == 404


def test_names_redirect_to_the_normalised_page(upstream: UpstreamProcess) -> None:
    for path in ("/simple/Beta/", "/simple/BETA", "/simple/beta"):
        answer = request(upstream, path)
        assert answer.status == 301
        assert answer.headers["Location"] == "/simple/beta/"
    assert request(upstream, "/simple").headers["Location"] == "/simple/"
    assert request(upstream, "/simple/nosuch/").status == 404
    assert request(upstream, "/files/nosuch-1.0.tar.gz").status == 404


def test_custom_prefix_and_relative_links(root: Path, tmp_path: Path) -> None:
    with UpstreamProcess.start(
        root, "html", prefix="/root/pypi/+simple/", file_urls="relative"
    ) as up:
        assert up.url.endswith("/root/pypi/+simple/")
        page = request(up, "/root/pypi/+simple/alpha/").body.decode()
        assert f'href="../../../../files/{WHEEL}#sha256=' in page
        result = pip_install(up, tmp_path, "alpha==1.0")
        assert result.returncode == 0, result.stderr


def test_page_etag_gives_304(upstream: UpstreamProcess) -> None:
    first = request(upstream, "/simple/alpha/", {"Accept": JSON})
    etag = first.headers["ETag"]
    again = request(upstream, "/simple/alpha/", {"Accept": JSON, "If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    # The HTML variant is a different representation with its own tag.
    html_answer = request(upstream, "/simple/alpha/", {"If-None-Match": etag})
    assert html_answer.status == 200
    assert first.headers["X-PyPI-Last-Serial"]


def test_keep_alive_is_fast(upstream: UpstreamProcess) -> None:
    connection = http.client.HTTPConnection(upstream.host, upstream.port, timeout=5)
    started = time.monotonic()
    try:
        for _ in range(40):
            for path in ("/simple/", "/simple/alpha/", f"/files/{WHEEL}"):
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                assert response.status == 200
                assert not response.will_close
    finally:
        connection.close()
    # 120 requests on one connection; a delayed-ACK stall per request would take ~5 s.
    assert time.monotonic() - started < 2


# Files


def test_file_headers_and_head(upstream: UpstreamProcess, root: Path) -> None:
    data = (root / WHEEL).read_bytes()
    answer = request(upstream, f"/files/{WHEEL}")
    assert answer.body == data
    assert int(answer.headers["Content-Length"]) == len(data)
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert answer.headers["Last-Modified"] and answer.headers["ETag"]
    head = request(upstream, f"/files/{WHEEL}", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["Content-Length"]) == len(data)
    assert (
        request(upstream, f"/files/{WHEEL}", {"If-None-Match": answer.headers["ETag"]}).status
        == 304
    )
    since = {"If-Modified-Since": answer.headers["Last-Modified"]}
    assert request(upstream, f"/files/{WHEEL}", since).status == 304


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [("bytes=10-19", 10, 19), ("bytes=-16", -16, None), ("bytes=100-", 100, None)],
)
def test_ranges(
    upstream: UpstreamProcess, root: Path, spec: str, first: int, last: int | None
) -> None:
    data = (root / "beta" / wheel_filename("beta", "2.0")).read_bytes()
    expected = data[first : None if last is None else last + 1]
    answer = request(upstream, f"/files/{wheel_filename('beta', '2.0')}", {"Range": spec})
    assert answer.status == 206
    assert answer.body == expected
    start = first % len(data)
    assert (
        answer.headers["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    )


def test_unsatisfiable_range(upstream: UpstreamProcess, root: Path) -> None:
    size = (root / WHEEL).stat().st_size
    answer = request(upstream, f"/files/{WHEEL}", {"Range": f"bytes={size}-"})
    assert answer.status == 416
    assert answer.headers["Content-Range"] == f"bytes */{size}"


def test_rescan_picks_up_new_files(tmp_path: Path) -> None:
    build_wheel(tmp_path, "first", "1.0")
    with UpstreamProcess.start(tmp_path, "json") as up:
        assert request(up, "/simple/second/").status == 404
        serial = request(up, "/simple/first/").headers["X-PyPI-Last-Serial"]
        build_wheel(tmp_path, "second", "1.0")
        build_wheel(tmp_path, "first", "2.0")
        assert up.rescan() == {"files": 3, "projects": 2}
        assert request(up, "/simple/second/").status == 200
        first_page = request(up, "/simple/first/")
        assert b"first-2.0-py3-none-any.whl" in first_page.body
        assert first_page.headers["X-PyPI-Last-Serial"] != serial


def test_file_removed_without_rescan_is_a_404(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, "gone", "1.0")
    with UpstreamProcess.start(tmp_path, "html") as up:
        path.unlink()
        assert request(up, f"/files/{path.name}").status == 404
        assert up.log()[-1]["status"] == 404


# The log


def test_log_records_requests(upstream: UpstreamProcess) -> None:
    upstream.reset_log()
    request(upstream, "/simple/alpha/", {"Accept": JSON, "Range": "bytes=0-1"})
    request(upstream, "/simple/nosuch/", method="HEAD")
    log = upstream.log()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/simple/alpha/", 200),
        ("HEAD", "/simple/nosuch/", 404),
    ]
    assert log[0]["headers"]["accept"] == JSON
    assert log[0]["headers"]["range"] == "bytes=0-1"
    assert log[0]["fault"] is None
    upstream.reset_log()
    assert upstream.log() == []


# Faults


def test_hang_outlasts_a_client_timeout(upstream: UpstreamProcess) -> None:
    upstream.set_fault("hang", paths="/simple/")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        request(upstream, "/simple/alpha/", timeout=1)
    assert time.monotonic() - started < 3
    # Files are outside the filter, and clearing the fault restores pages.
    assert request(upstream, f"/files/{WHEEL}", timeout=2).status == 200
    upstream.set_fault("none")
    assert request(upstream, "/simple/alpha/", timeout=2).status == 200
    hung = [e for e in upstream.log() if e["fault"] == "hang"]
    assert hung and hung[0]["status"] is None


def test_hang_ends_when_the_fault_is_cleared(upstream: UpstreamProcess) -> None:
    upstream.set_fault("hang")
    sock = socket.create_connection((upstream.host, upstream.port), timeout=5)
    try:
        sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        upstream.clear_fault()
        # The server closes without an answer.
        assert sock.recv(100) == b""
    finally:
        sock.close()


@pytest.mark.parametrize("status", ["500", "503", "404"])
def test_status_faults(upstream: UpstreamProcess, status: str) -> None:
    upstream.set_fault(status)
    assert request(upstream, "/simple/alpha/").status == int(status)
    assert request(upstream, f"/files/{WHEEL}").status == int(status)
    assert upstream.log()[-1]["fault"] == status


def test_fault_delay(upstream: UpstreamProcess) -> None:
    upstream.set_fault("503", delay=0.5)
    started = time.monotonic()
    assert request(upstream, "/simple/").status == 503
    assert time.monotonic() - started >= 0.5


def test_fault_count_and_paths(upstream: UpstreamProcess) -> None:
    upstream.set_fault("500", paths=["/simple/beta/"], count=2)
    assert request(upstream, "/simple/alpha/").status == 200
    assert request(upstream, "/simple/beta/").status == 500
    assert request(upstream, "/simple/beta/").status == 500
    assert request(upstream, "/simple/beta/").status == 200


def test_garbage(upstream: UpstreamProcess) -> None:
    upstream.set_fault("garbage")
    page = request(upstream, "/simple/alpha/", {"Accept": JSON})
    assert page.status == 200
    with pytest.raises(UnicodeDecodeError):
        page.body.decode()
    with pytest.raises(ValueError):
        json.loads(page.body)
    assert b"<a" not in page.body


def test_truncate_sends_half_of_the_promised_body(upstream: UpstreamProcess, root: Path) -> None:
    upstream.set_fault("truncate", paths="/files/")
    size = (root / WHEEL).stat().st_size
    connection = http.client.HTTPConnection(upstream.host, upstream.port, timeout=5)
    try:
        connection.request("GET", f"/files/{WHEEL}")
        response = connection.getresponse()
        assert int(response.headers["Content-Length"]) == size
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
        assert len(caught.value.partial) == size // 2
    finally:
        connection.close()
    assert request(upstream, "/simple/alpha/").status == 200  # pages untouched by the filter


def test_wronghash_serves_other_bytes_of_the_same_length(
    upstream: UpstreamProcess, root: Path
) -> None:
    listed = file_hash_on_page(upstream, WHEEL)
    upstream.set_fault("wronghash")
    # Pages stay honest, so they still name the real file's hash.
    assert file_hash_on_page(upstream, WHEEL) == listed
    answer = request(upstream, f"/files/{WHEEL}")
    assert answer.status == 200
    assert len(answer.body) == (root / WHEEL).stat().st_size
    assert hashlib.sha256(answer.body).hexdigest() != listed


def test_slow_trickles_the_body(upstream: UpstreamProcess, root: Path) -> None:
    upstream.set_fault("slow", paths="/files/", delay=0.05, chunk=256)
    data = (root / WHEEL).read_bytes()
    started = time.monotonic()
    answer = request(upstream, f"/files/{WHEEL}")
    elapsed = time.monotonic() - started
    assert answer.body == data
    chunks = -(-len(data) // 256)
    assert elapsed >= chunks * 0.05 * 0.9


def test_bad_fault_is_refused(upstream: UpstreamProcess) -> None:
    with pytest.raises(RuntimeError, match="unknown fault mode"):
        upstream.set_fault("explode")


# Yanks, auth, compression, and uv


def test_yank_shows_on_pages_and_moves_the_serial(upstream: UpstreamProcess) -> None:
    before = request(upstream, "/simple/alpha/", {"Accept": JSON})
    upstream.yank(WHEEL, "broken")
    after = request(upstream, "/simple/alpha/", {"Accept": JSON})
    files = {f["filename"]: f for f in json.loads(after.body)["files"]}
    assert files[WHEEL]["yanked"] == "broken"
    assert files["alpha-1.0.tar.gz"]["yanked"] is False
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.headers["X-PyPI-Last-Serial"] != before.headers["X-PyPI-Last-Serial"]
    page = request(upstream, "/simple/alpha/").body.decode()
    assert re.search(re.escape(WHEEL) + r'#sha256=[0-9a-f]+" [^>]*data-yanked="broken"', page)
    upstream.unyank(WHEEL)
    files = {
        f["filename"]: f
        for f in json.loads(request(upstream, "/simple/alpha/", {"Accept": JSON}).body)["files"]
    }
    assert files[WHEEL]["yanked"] is False
    with pytest.raises(RuntimeError):
        upstream.yank("nosuch-1.0.tar.gz")


def test_auth_requires_basic_credentials(root: Path, tmp_path: Path) -> None:
    with UpstreamProcess.start(root, "json", auth=("alice", "s3cret")) as up:
        for path in ("/simple/alpha/", f"/files/{WHEEL}"):
            answer = request(up, path)
            assert answer.status == 401
            assert answer.headers["WWW-Authenticate"].startswith("Basic")
        good = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
        assert request(up, "/simple/alpha/", good).status == 200
        bad = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()}
        assert request(up, "/simple/alpha/", bad).status == 401
        # pip sends credentials given in the index URL.
        url = up.url.replace("http://", "http://alice:s3cret@")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", url,
             "--dest", str(tmp_path / "dl"), "alpha==1.0"],
            env=clean_client_env(tmp_path / "home"), capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        up.set_auth(None)
        assert request(up, "/simple/alpha/").status == 200


def test_gzip_pages_but_never_files(root: Path) -> None:
    with UpstreamProcess.start(root, "json", gzip=True) as up:
        plain = request(up, "/simple/alpha/", {"Accept": JSON})
        packed = request(up, "/simple/alpha/", {"Accept": JSON, "Accept-Encoding": "gzip"})
        wheel = request(up, f"/files/{WHEEL}", {"Accept-Encoding": "gzip"})
        again = request(
            up,
            "/simple/alpha/",
            {"Accept": JSON, "Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]},
        )
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.body) == plain.body
    assert packed.headers["ETag"] != plain.headers["ETag"]
    assert again.status == 304
    assert "Content-Encoding" not in wheel.headers
    assert wheel.body == (root / WHEEL).read_bytes()


def test_uv_reads_wheel_metadata_with_ranges(upstream: UpstreamProcess, tmp_path: Path) -> None:
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.skip("uv is not installed next to this Python")
    result = subprocess.run(
        [str(uv), "pip", "install", "--index-url", upstream.url, "--target",
         str(tmp_path / "target"), "--python", sys.executable, "alpha==1.0"],
        env=clean_client_env(tmp_path / "home"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = upstream.log()
    assert any(e["method"] == "HEAD" for e in log)
    ranged = [e for e in log if "range" in e["headers"]]
    assert ranged and all(e["status"] == 206 for e in ranged)
    assert (tmp_path / "target" / "beta" / "payload.bin").exists()
