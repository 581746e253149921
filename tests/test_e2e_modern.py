"""
End to end, the modern simple API on a real ``twistd -n pkgmirror``: PEP 658/714 core metadata,
PEP 700 sizes and upload times, PEP 792 status, yanks, ranges, content negotiation and the
``min_release_age`` cooldown, driven by uv and pip 26 against upstreams in all three modes
(``html``: bare PEP 503, no metadata, no sizes or times; ``json``: PEP 691 with sizes and times;
``meta``: ``json`` plus PEP 658 metadata).
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from pkgmirror.model import parse_iso_time
from pkgmirror.testing.dists import build_sdist, build_wheel, wheel_filename
from pkgmirror.testing.processes import UpstreamProcess, clean_client_env, wait_for
from pkgmirror.testing.server import ServerProcess
from pkgmirror.testing.uploads import upload_body
from tests.conftest import ROOT_PASSWORD, init_server, pip

pytestmark = pytest.mark.e2e

AUTH = ("root", ROOT_PASSWORD)
JSON = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
UV = Path(sys.executable).with_name("uv")

OLD = 1_577_836_800  # 2020-01-01
NEW = time.time() - 3600  # an hour ago: inside any cooldown of days
CUTOFF = "2024-01-01T00:00:00Z"

# A dependency tree: the old versions are from 2020, the new ones from an hour ago.
TREE = {
    ("tree-app", "1.0"): ["tree-liba"],
    ("tree-app", "2.0"): ["tree-liba>=2"],
    ("tree-liba", "1.0"): ["tree-libb"],
    ("tree-liba", "2.0"): ["tree-libb>=2"],
    ("tree-libb", "1.0"): [],
    ("tree-libb", "2.0"): [],
}
BIG_WHEEL = ("tree-big", "1.0")


# Wheels bigger than the tail a metadata read asks for: reading metadata is not downloading.
TREE_PAYLOAD = 80_000


def build_tree(root: Path) -> None:
    for (name, version), requires in TREE.items():
        when = OLD if version == "1.0" else NEW
        for path in (
            build_wheel(root, name, version, requires_dist=requires, payload_size=TREE_PAYLOAD),
            build_sdist(root, name, version, requires_dist=requires),
        ):
            os.utime(path, (when, when))
    big = build_wheel(root, *BIG_WHEEL, payload_size=2_000_000)
    os.utime(big, (OLD, OLD))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("modern")
    upstreams = {}
    for mode in ("html", "json", "meta"):
        build_tree(base / mode)
        upstreams[mode] = UpstreamProcess.start(base / mode, mode)
    serverdir = base / "server"
    init_server(serverdir, None)
    server = ServerProcess.start(serverdir, "--request-timeout", "5")
    yield {"server": server, "up": upstreams, "base": base}
    server.stop()
    for up in upstreams.values():
        up.stop()


_names = itertools.count()


def fresh_indexes(world: dict[str, Any], mode: str, **stage: Any) -> tuple[str, str]:
    """A new mirror of ``mode``'s upstream and a stage over it: a cold cache. (stage, mirror)"""
    server: ServerProcess = world["server"]
    n = next(_names)
    mirror, local = f"root/{mode}-mirror-{n}", f"root/{mode}-local-{n}"
    status, _, body = server.request(
        "PUT", mirror, {"type": "mirror", "mirror_url": world["up"][mode].url}, auth=AUTH
    )
    assert status == 200, body
    status, _, body = server.request("PUT", local, {"bases": mirror, **stage}, auth=AUTH)
    assert status == 200, body
    return local, mirror


def get(
    server: ServerProcess, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers (no default Accept)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, "/" + path.lstrip("/"), headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def json_page(server: ServerProcess, index: str, project: str) -> dict[str, Any]:
    status, headers, body = get(server, f"{index}/+simple/{project}/", {"Accept": JSON})
    assert status == 200, body
    assert headers["Content-Type"] == JSON
    return json.loads(body)


def file_path(server: ServerProcess, index: str, project: str, url: str) -> str:
    absolute = urljoin(f"{server.url}{index}/+simple/{project}/", url)
    return urlsplit(absolute).path


def whole_downloads(up: UpstreamProcess) -> list[str]:
    """
    Distribution files the upstream sent whole (a plain GET, or a range covering all of it);
    ``.metadata`` files are not distributions.
    """
    return sorted(
        e["path"].rsplit("/", 1)[1]
        for e in up.log()
        if e["path"].startswith("/files/") and not e["path"].endswith(".metadata") and e["whole"]
    )


def uv_install(
    tmp_path: Path, index_url: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    home = tmp_path / f"home-{next(_names)}"
    env = clean_client_env(home, {"UV_CACHE_DIR": str(home / "uv-cache")})
    target = home / "target"
    result = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--python",
            sys.executable,
            "--target",
            str(target),
            "--index-url",
            index_url,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    installed = {}
    if target.exists():
        for info in target.glob("*.dist-info"):
            headers = BytesHeaderParser().parsebytes((info / "METADATA").read_bytes())
            installed[str(headers["Name"])] = str(headers["Version"])
    return result, installed


MODES = ["html", "json", "meta"]


@pytest.mark.parametrize("mode", MODES)
def test_pages_carry_sizes_times_and_core_metadata(world: dict[str, Any], mode: str) -> None:
    server: ServerProcess = world["server"]
    local, _ = fresh_indexes(world, mode)
    world["up"][mode].reset_log()
    served: dict[str, dict[str, str]] = {}
    for project in ("tree-app", "tree-liba", "tree-libb", "tree-big"):
        page = json_page(server, local, project)
        # PEP 700: 1.1 is claimed only because every file has a size.
        assert page["meta"]["api-version"] == "1.1"
        assert set(page["versions"]) == {v for (n, v) in (*TREE, BIG_WHEEL) if n == project}
        for entry in page["files"]:
            name = entry["filename"]
            source = world["base"] / mode / name
            assert entry["size"] == source.stat().st_size, name
            # The upstream's upload-time, or (html) its Last-Modified: the file's mtime.
            assert parse_iso_time(entry["upload-time"]) == pytest.approx(
                source.stat().st_mtime, abs=1
            )
            if not name.endswith(".whl"):
                assert "core-metadata" not in entry
                continue
            # PEP 658/714 under both keys, and the file is there. Its hash is advertised when
            # the upstream gave one; else the page says `true` until we read it out of the wheel.
            assert entry["core-metadata"] == entry["dist-info-metadata"]
            path = file_path(server, local, project, entry["url"]) + ".metadata"
            status, _, body = get(server, path)
            assert status == 200, body
            assert body.startswith(b"Metadata-Version:")
            digest = {"sha256": hashlib.sha256(body).hexdigest()}
            if mode == "meta":
                assert entry["core-metadata"] == digest
            else:
                assert entry["core-metadata"] in (True, digest)
            served[name] = digest

    def hashes_advertised() -> bool:
        for project in ("tree-app", "tree-liba", "tree-libb", "tree-big"):
            for entry in json_page(server, local, project)["files"]:
                if (
                    entry["filename"] in served
                    and entry["core-metadata"] != served[entry["filename"]]
                ):
                    return False
        return True

    # Once read, every page advertises the hash of exactly the bytes we serve.
    wait_for(hashes_advertised, "pages to advertise the core metadata's hash")
    # The HTML page advertises the same metadata under both attribute names, with the meta tag.
    status, _, body = get(server, f"{local}/+simple/tree-app/", {"Accept": "text/html"})
    assert status == 200
    anchors = parse_anchors(body)
    wheels = [a for a in anchors if a["text"].endswith(".whl")]
    assert wheels and all(
        a["data-core-metadata"] == "sha256=" + served[a["text"]]["sha256"]
        and a["data-core-metadata"] == a["data-dist-info-metadata"]
        for a in wheels
    )
    assert b'<meta name="pypi:repository-version" content="1.1">' in body
    # No whole file was fetched to learn any of this.
    assert whole_downloads(world["up"][mode]) == []


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current = {k: v for k, v in attrs}
            self._current["text"] = ""

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append(self._current)
            self._current = None


def parse_anchors(body: bytes) -> list[dict[str, Any]]:
    parser = _Anchors()
    parser.feed(body.decode())
    return parser.anchors


@pytest.mark.parametrize("mode", MODES)
def test_uv_resolves_from_metadata_and_downloads_only_chosen_wheels(
    world: dict[str, Any], mode: str, tmp_path: Path
) -> None:
    server: ServerProcess = world["server"]
    up: UpstreamProcess = world["up"][mode]
    local, _ = fresh_indexes(world, mode)
    index_url = f"{server.url}{local}/+simple/"
    up.reset_log()
    result, installed = uv_install(tmp_path, index_url, "--exclude-newer", CUTOFF, "tree-app")
    assert result.returncode == 0, result.stderr
    assert installed == {"tree-app": "1.0", "tree-liba": "1.0", "tree-libb": "1.0"}
    chosen = sorted(wheel_filename(n, "1.0") for n in ("tree-app", "tree-liba", "tree-libb"))
    assert whole_downloads(up) == chosen

    up.reset_log()
    result, installed = uv_install(tmp_path, index_url, "tree-app")
    assert result.returncode == 0, result.stderr
    assert installed == {"tree-app": "2.0", "tree-liba": "2.0", "tree-libb": "2.0"}
    assert whole_downloads(up) == sorted(
        wheel_filename(n, "2.0") for n in ("tree-app", "tree-liba", "tree-libb")
    )


@pytest.mark.parametrize("mode", MODES)
def test_pip_uploaded_prior_to_resolves_from_metadata(
    world: dict[str, Any], mode: str, tmp_path: Path
) -> None:
    server: ServerProcess = world["server"]
    up: UpstreamProcess = world["up"][mode]
    local, _ = fresh_indexes(world, mode)
    up.reset_log()
    env = clean_client_env(tmp_path / "home")
    dest = tmp_path / "d"
    result = pip(
        env,
        "download",
        "-d",
        str(dest),
        "--only-binary",
        ":all:",
        "--uploaded-prior-to",
        CUTOFF,
        "-i",
        f"{server.url}{local}/+simple/",
        "tree-app",
    )
    assert result.returncode == 0, result.stderr
    chosen = sorted(wheel_filename(n, "1.0") for n in ("tree-app", "tree-liba", "tree-libb"))
    assert sorted(p.name for p in dest.iterdir()) == chosen
    assert whole_downloads(up) == chosen


PIP_ACCEPT = f"{JSON}, {HTML_V1}; q=0.1, text/html; q=0.01"
UV_ACCEPT = f"{JSON}, {HTML_V1};q=0.2, text/html;q=0.01"
POETRY_ACCEPT = "application/vnd.pypi.simple.v1+json, */*;q=0.1"
HTML_TYPE = "text/html; charset=utf-8"
HTML_V1_TYPE = HTML_V1 + "; charset=utf-8"

# (Accept header or None for none at all, ?format= or None, expected Content-Type or 406)
NEGOTIATION = [
    (None, None, HTML_TYPE),
    ("*/*", None, HTML_TYPE),
    (PIP_ACCEPT, None, JSON),  # pip 26, and pdm sends the same
    (UV_ACCEPT, None, JSON),
    (POETRY_ACCEPT, None, JSON),
    (HTML_V1, None, HTML_V1_TYPE),
    ("text/html", None, HTML_TYPE),
    ("application/vnd.pypi.simple.latest+json", None, JSON),
    ("application/vnd.pypi.simple.latest+html", None, HTML_V1_TYPE),
    (f"{JSON};q=0, text/html", None, HTML_TYPE),
    ("text/*", None, HTML_TYPE),
    ("text_html", None, HTML_TYPE),  # devpi's bogus type: no usable entry counts as */*
    ("application/json", None, 406),
    ("application/vnd.pypi.simple.v2+json", None, 406),
    (f"{JSON};q=0", None, 406),
    ("text/html", JSON, JSON),  # "+" unescaped: it arrives as a space
    ("text/html", JSON.replace("+", "%2B"), JSON),
    (None, HTML_V1, HTML_V1_TYPE),
    ("application/json", JSON, JSON),
    ("text/html", "application/x-nonsense", HTML_TYPE),
]


@pytest.fixture(scope="module")
def negotiation_indexes(world: dict[str, Any]) -> tuple[str, str]:
    local, mirror = fresh_indexes(world, "meta")
    json_page(world["server"], local, "tree-app")
    return local, mirror


@pytest.mark.parametrize(("accept", "fmt", "expected"), NEGOTIATION)
@pytest.mark.parametrize("which", ["stage", "mirror"])
@pytest.mark.parametrize("page", ["list", "project"])
def test_negotiation_on_every_simple_url(
    world: dict[str, Any],
    negotiation_indexes: tuple[str, str],
    accept: str | None,
    fmt: str | None,
    expected: str | int,
    which: str,
    page: str,
) -> None:
    server: ServerProcess = world["server"]
    index = negotiation_indexes[0 if which == "stage" else 1]
    path = f"{index}/+simple/" + ("tree-app/" if page == "project" else "")
    if fmt is not None:
        path += "?format=" + fmt
    headers = {} if accept is None else {"Accept": accept}
    for method in ("GET", "HEAD"):
        status, got, body = get(server, path, headers, method)
        assert got.get("Vary") == "Accept"
        if expected == 406:
            assert status == 406
            continue
        assert status == 200, body
        assert got["Content-Type"] == expected
        if method == "HEAD":
            assert body == b""
            continue
        if expected == JSON:
            document = json.loads(body)
            assert document["meta"]["api-version"] == "1.1"
            assert ("files" in document) == (page == "project")
        else:
            assert b'<meta name="pypi:repository-version" content="1.1">' in body
            assert any(a["text"].startswith("tree") for a in parse_anchors(body))


def test_format_survives_the_redirect_to_the_normalised_name(
    world: dict[str, Any], negotiation_indexes: tuple[str, str]
) -> None:
    local = negotiation_indexes[0]
    status, headers, _ = get(world["server"], f"{local}/+simple/Tree_App/?format={JSON}")
    assert status in (301, 302)
    assert headers["Location"].endswith(f"/{local}/+simple/tree-app/?format={JSON}")


def test_head_and_ranges_on_files_streaming_and_cached(world: dict[str, Any]) -> None:
    server: ServerProcess = world["server"]
    up: UpstreamProcess = world["up"]["json"]
    local, _ = fresh_indexes(world, "json")
    entry = json_page(server, local, "tree-big")["files"][0]
    path = file_path(server, local, "tree-big", entry["url"])
    data = (world["base"] / "json" / entry["filename"]).read_bytes()
    size = len(data)
    assert entry["size"] == size
    # Slow the upstream down so the first requests meet the file while it is downloading.
    up.set_fault("slow", paths="/files/", delay=0.02, chunk=64 * 1024)
    try:
        status, headers, body = get(server, path, method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["Content-Length"] == str(size)
        assert headers["Accept-Ranges"] == "bytes"
        # A suffix range, as poetry asks, during the download.
        status, headers, body = get(server, path, {"Range": "bytes=-10000"})
        assert status == 206
        assert body == data[-10000:]
        assert headers["Content-Range"] == f"bytes {size - 10000}-{size - 1}/{size}"
    finally:
        up.clear_fault()
    cases = {
        "bytes=0-99": [data[:100]],
        "bytes=100-": [data[100:]],
        f"bytes={size - 5}-{size + 100}": [data[-5:]],
        "bytes=-16384": [data[-16384:]],
    }
    for spec, parts in cases.items():
        status, headers, body = get(server, path, {"Range": spec})
        assert status == 206, spec
        assert body == parts[0], spec
        assert headers["Content-Length"] == str(len(parts[0]))
    # Several ranges: multipart/byteranges holding each part.
    status, headers, body = get(server, path, {"Range": "bytes=0-9,-10"})
    assert status == 206
    assert headers["Content-Type"].startswith("multipart/byteranges")
    assert data[:10] in body and data[-10:] in body
    status, headers, _ = get(server, path, {"Range": f"bytes={size}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{size}"
    status, headers, body = get(server, path, method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(size), b"")
    # The hash was checked before any of it went out.
    assert hashlib.sha256(get(server, path)[2]).hexdigest() == entry["hashes"]["sha256"]


@pytest.mark.parametrize("mode", ["html", "json"])
def test_yank_and_quarantine_pass_through(world: dict[str, Any], mode: str) -> None:
    server: ServerProcess = world["server"]
    up: UpstreamProcess = world["up"][mode]
    local, mirror = fresh_indexes(world, mode)
    files = json_page(server, local, "tree-libb")["files"]
    assert not any("yanked" in f for f in files)
    wheel = wheel_filename("tree-libb", "2.0")
    wheel_path = file_path(
        server, local, "tree-libb", next(f["url"] for f in files if f["filename"] == wheel)
    )

    def refresh() -> None:
        status, _, body = get(server, f"{local}/+simple/tree-libb/refresh", method="POST")
        assert status in (200, 302), body

    up.yank(wheel, "broken build")
    up.set_status("tree-libb", "quarantined", "malware report")
    try:
        refresh()
        # Quarantined (PEP 792): no file is offered, on the mirror or the stage over it, and
        # the marker says why.
        for index in (local, mirror):
            page = json_page(server, index, "tree-libb")
            assert page["files"] == []
            assert page["project-status"] == {"status": "quarantined", "reason": "malware report"}
            status, _, body = get(server, f"{index}/+simple/tree-libb/", {"Accept": "text/html"})
            assert status == 200
            assert b'<meta name="pypi:project-status" content="quarantined">' in body
            assert parse_anchors(body) == []
        assert get(server, wheel_path)[0] == 404
        # Back to active: the files return, the yanked one marked.
        up.set_status("tree-libb", None)
        refresh()
        files = json_page(server, local, "tree-libb")["files"]
        marks = {f["filename"]: f.get("yanked") for f in files}
        assert marks[wheel] == "broken build"
        assert [f for f, mark in marks.items() if mark] == [wheel]
        status, _, body = get(server, f"{local}/+simple/tree-libb/", {"Accept": "text/html"})
        yanked = {a["text"]: a.get("data-yanked") for a in parse_anchors(body)}
        assert yanked[wheel] == "broken build"
        assert get(server, wheel_path)[0] == 200
    finally:
        up.unyank(wheel)
        up.set_status("tree-libb", None)


def test_min_release_age_hides_young_releases_except_exempt(
    world: dict[str, Any], tmp_path: Path
) -> None:
    server: ServerProcess = world["server"]
    local, mirror = fresh_indexes(
        world, "html", min_release_age="3d", min_release_age_exempt="Tree_LibB"
    )
    versions = {f["filename"] for f in json_page(server, local, "tree-app")["files"]}
    assert versions == {wheel_filename("tree-app", "1.0"), "tree_app-1.0.tar.gz"}
    assert json_page(server, local, "tree-libb")["versions"] == ["1.0", "2.0"]
    # The mirror itself has no cooldown.
    assert len(json_page(server, mirror, "tree-app")["files"]) == 4
    result, installed = uv_install(tmp_path, f"{server.url}{local}/+simple/", "tree-app")
    assert result.returncode == 0, result.stderr
    assert installed == {"tree-app": "1.0", "tree-liba": "1.0", "tree-libb": "2.0"}


def test_uv_installs_an_upload_with_mirrored_dependencies(
    world: dict[str, Any], tmp_path: Path
) -> None:
    server: ServerProcess = world["server"]
    up: UpstreamProcess = world["up"]["html"]
    local, _ = fresh_indexes(world, "html")
    before = time.time()
    for path in (
        build_wheel(tmp_path / "dist", "tree-top", "1.0", requires_dist=["tree-app<2"]),
        build_sdist(tmp_path / "dist", "tree-top", "1.0", requires_dist=["tree-app<2"]),
    ):
        body, content_type = upload_body(path)
        status, _, answer = server.request(
            "POST", f"{local}/", body, headers={"Content-Type": content_type}, auth=AUTH
        )
        assert status in (200, 201), answer
    # The upload's own time, size and extracted metadata.
    for entry in json_page(server, local, "tree-top")["files"]:
        assert entry["size"] == (tmp_path / "dist" / entry["filename"]).stat().st_size
        assert before - 1 <= parse_iso_time(entry["upload-time"]) <= time.time() + 1
        if entry["filename"].endswith(".whl"):
            assert "core-metadata" in entry
    up.reset_log()
    result, installed = uv_install(tmp_path, f"{server.url}{local}/+simple/", "tree-top")
    assert result.returncode == 0, result.stderr
    assert installed == {
        "tree-top": "1.0",
        "tree-app": "1.0",
        "tree-liba": "2.0",
        "tree-libb": "2.0",
    }
    assert whole_downloads(up) == sorted(
        [
            wheel_filename("tree-app", "1.0"),
            wheel_filename("tree-liba", "2.0"),
            wheel_filename("tree-libb", "2.0"),
        ]
    )
