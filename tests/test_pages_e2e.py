"""
The pages against a real ``twistd pkgmirror`` with root/pypi, root/python-local and root/local:
negotiation on the API's URLs, search, ``pip search``, /+status; then headless Chromium clicks
through them as a person would, with screenshots in test-artifacts/pages/.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pkgmirror.model import ReleaseFile, iso_time
from pkgmirror.testing.browser import DESKTOP, PHONE, Browser, find_chromium
from pkgmirror.testing.dists import build_wheel
from pkgmirror.testing.processes import UpstreamProcess, clean_client_env, free_port
from pkgmirror.testing.server import ServerProcess
from tests.conftest import INTRANET, PUBLIC, configure_indexes, fill, init_server

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "pages"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
HTML = {"Accept": BROWSER_ACCEPT}
HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
STAGE_DESCRIPTION = (
    "# Hello from the stage\n\nThis is *rendered* Markdown.\n\n```python\nimport hello\n```\n"
)
HOSTILE_DESCRIPTION = (
    "# Hostile\n\n"
    + HOSTILE
    + "\n\n[a link](javascript:window.__pwned=3)\n\n"
    + "A very long line. " * 20_000
)


def seed_stage_release(
    serverdir: Path, index: str, name: str, version: str, description: str, summary: str
) -> None:
    """An uploaded release, written into the stopped server's storage (as an upload would)."""
    from pkgmirror.storage.blobs import FileBlobStore
    from pkgmirror.storage.sqlite import SQLiteStorage
    from pkgmirror.storage.threads import run_synchronously

    wheel = build_wheel(serverdir.parent / "stage-dists", name, version, summary="stage")
    data = wheel.read_bytes()
    from twisted.python.filepath import FilePath

    blobs = FileBlobStore(FilePath(str(serverdir / "blobs")), runner=run_synchronously)
    results: list[Any] = []
    blobs.put_bytes(data).addCallback(results.append)
    SQLiteStorage.open(str(serverdir / "pkgmirror.sqlite"), runner=run_synchronously).addCallback(
        results.append
    )
    sha, storage = results
    assert sha == hashlib.sha256(data).hexdigest()
    record = ReleaseFile(
        index=index,
        project=name,
        version=version,
        filename=wheel.name,
        sha256=sha,
        size=len(data),
        upload_time=iso_time(1_700_000_000),
        requires_python=">=3.8",
        uploader="root",
        metadata={
            "name": name,
            "version": version,
            "summary": summary,
            "author": "A. Author <" + "x" * 5000 + ">",
            "license": "MIT",
            "classifiers": ["Programming Language :: Python :: 3"],
            "description": description,
            "description_content_type": "text/markdown",
        },
    )
    storage.add_release_file(record, False).addErrback(results.append)
    storage.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from pkgmirror.serverinit import DATABASE

    base = tmp_path_factory.mktemp("pages")
    intranet = UpstreamProcess.start(fill(base / "intranet", INTRANET), "html")
    public_dir = fill(base / "public", PUBLIC)
    build_wheel(public_dir, "hostile-pkg", "1.0", summary=HOSTILE, description=HOSTILE * 3)
    public = UpstreamProcess.start(public_dir, "json")
    serverdir = base / "server"
    init_server(serverdir, None)
    assert DATABASE == "pkgmirror.sqlite"
    server = ServerProcess.start(serverdir)
    try:
        configure_indexes(server, intranet.url, public.url)
        server.stop()
        seed_stage_release(
            serverdir, "root/local", "hello-stage", "1.0", STAGE_DESCRIPTION, "Says hello"
        )
        seed_stage_release(
            serverdir, "root/local", "hello-stage", "0.9", HOSTILE_DESCRIPTION, "Hi " + HOSTILE
        )
        server = ServerProcess.start(serverdir)
        yield {"server": server, "serverdir": serverdir, "base": base}
    finally:
        server.stop()
        intranet.stop()
        public.stop()


def get(server: ServerProcess, path: str, accept: str = BROWSER_ACCEPT) -> tuple[int, str, str]:
    status, headers, body = server.request("GET", path, headers={"Accept": accept})
    return status, headers.get("Content-Type", ""), body.decode("utf-8", "replace")


def text_of(page: str) -> str:
    """Roughly what a person reads: tags out, entities in."""
    import html

    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_no_active_content(page: str) -> None:
    """No script, no event handler, no javascript: link: hostile text stayed text."""
    parser = _Tags()
    parser.feed(page)
    for tag, attributes in parser.tags:
        assert tag not in ("script", "iframe", "object", "embed"), tag
        for name, value in attributes.items():
            assert not name.startswith("on"), (tag, name)
            assert not (value or "").strip().lower().startswith("javascript:"), (tag, value)


def test_browsers_get_html_and_clients_keep_their_json(running: dict[str, Any]) -> None:
    server = running["server"]
    for path in ["", "root", "root/local", "root/local/shared-pkg", "root/local/shared-pkg/4.0"]:
        status, content_type, page = get(server, path)
        assert status == 200, (path, page)
        assert content_type == "text/html; charset=utf-8"
        assert page.startswith("<!doctype html>")
        assert 'role="search"' in page
        status, content_type, body = get(server, path, "application/json")
        assert status == 200 and content_type == "application/json"
        assert "result" in json.loads(body)
    status, _, page = get(server, "root/local/no-such-project")
    assert status == 404 and "no-such-project" in page


def test_pages_say_what_a_person_needs(running: dict[str, Any]) -> None:
    server = running["server"]
    home = text_of(get(server, "")[2])
    for key in ("root/pypi", "root/python-local", "root/local"):
        assert key in home
    assert "Local: personal index" in home and "mirror" in home and "up" in home

    index = text_of(get(server, "root/local")[2])
    assert "root/local → root/python-local → root/pypi" in index
    assert "hello-stage" in index and "Recent uploads" in index

    page = get(server, "root/local/shared-pkg")[2]
    text = text_of(page)
    assert [v for v in re.findall(r"<h3><a [^>]*>([\d.]+)</a>", page)] == [
        "4.0",
        "3.0",
        "2.0",
        "1.0",
    ]
    assert "shared_pkg-4.0-py3-none-any.whl" in text and "root/pypi" in text
    assert "root/python-local" in text
    simple = server.url + "root/local/+simple/"
    assert f"pip install --index-url {simple} shared-pkg" in text
    assert f"uv pip install --index-url {simple} shared-pkg" in text
    # The file links work: they are the files pip would download.
    href = re.search(r'href="([^"]*shared_pkg-4\.0-py3-none-any\.whl)"', page)
    assert href is not None
    status, _, data = server.request("GET", href.group(1))
    assert status == 200 and data[:2] == b"PK"


def test_stage_version_page_renders_the_description_safely(running: dict[str, Any]) -> None:
    server = running["server"]
    status, _, page = get(server, "root/local/hello-stage/1.0")
    assert status == 200
    assert "<h1" in page and "Hello from the stage" in page and "<em>rendered</em>" in page
    assert "import hello" in text_of(page)
    status, _, page = get(server, "root/local/hello-stage/0.9")
    assert status == 200
    assert_no_active_content(page)
    text = text_of(page)
    assert "Hi <script>window.__pwned = 1</script>" in text
    assert "MIT" in text and ">=3.8" in text
    # Bounded: a 360 kB description and a 5 kB author do not make a page of that size.
    assert len(page) < 300_000
    assert "longer than this page shows" in text


def test_mirror_metadata_is_shown_safely(running: dict[str, Any]) -> None:
    server = running["server"]
    page = get(server, "root/pypi/hostile-pkg/1.0")[2]
    wheel = re.search(r'href="([^"]*hostile_pkg-1\.0-py3-none-any\.whl)"', page)
    assert wheel is not None
    # The mirror reads a wheel's METADATA (range requests) when it is first asked for, by a
    # client or by this page, and keeps it.
    deadline = time.monotonic() + 10
    while server.request("GET", wheel.group(1) + ".metadata")[0] != 200:
        assert time.monotonic() < deadline, "no metadata"
        time.sleep(0.1)
    page = get(server, "root/pypi/hostile-pkg/1.0")[2]
    assert_no_active_content(page)
    assert HOSTILE in text_of(page)


def test_search_by_prefix_and_substring_over_the_bases(running: dict[str, Any]) -> None:
    server = running["server"]
    status, _, body = get(server, "root/local/+search?q=Shared_PKG", "application/json")
    assert status == 200
    found = json.loads(body)
    assert found["query"] == "shared-pkg"
    assert found["result"][0] == {"name": "shared-pkg", "index": "root/python-local"}
    _, _, body = get(server, "root/local/+search?q=pkg", "application/json")
    names = {hit["name"] for hit in json.loads(body)["result"]}
    assert {"shared-pkg", "private-pkg", "public-pkg", "hello-stage"} - names == {"hello-stage"}
    assert {"big-pkg", "never-fetched"} <= {*names, "never-fetched"}
    _, _, body = get(server, "root/local/+search?q=stage", "application/json")
    assert json.loads(body)["result"] == [{"name": "hello-stage", "index": "root/local"}]
    page = text_of(get(server, "+search?q=ublic")[2])
    assert "public-pkg" in page and "root/pypi" in page
    page = text_of(get(server, "root/python-local/+search?q=public")[2])
    assert "No project name on root/python-local contains public" in page


def test_pip_search_against_the_index(running: dict[str, Any], tmp_path: Path) -> None:
    server = running["server"]
    env = clean_client_env(tmp_path / "home")
    config = tmp_path / "pip.conf"
    config.write_text(f"[search]\nindex = {server.url}root/local/\n")
    env["PIP_CONFIG_FILE"] = str(config)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "search", "stage"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^hello-stage \(1\.0\)\s+- Says hello", result.stdout, re.M)
    # The same call as pip makes, through the standard library's client.
    proxy = xmlrpc.client.ServerProxy(server.url + "root/local/")
    hits = proxy.search({"name": ["shared"], "summary": ["shared"]}, "or")
    assert [h["name"] for h in hits] == ["shared-pkg"]  # type: ignore[union-attr,index]
    # An upload (multipart) still goes to the upload handler, not to XML-RPC.
    status, _, _ = server.request(
        "POST", "root/local/", b"--x--\r\n", headers={"Content-Type": "multipart/form-data"}
    )
    assert status != 200


def test_status_for_people_and_monitoring(running: dict[str, Any]) -> None:
    server = running["server"]
    status, _, body = get(server, "+status", "application/json")
    data = json.loads(body)["result"]
    assert data["serverdir"] == str(running["serverdir"])
    assert data["refresh"]["running"] is True and data["refresh"]["interval"] == 60
    assert data["cache"]["files"] >= 1 and data["cache"]["bytes"] > 0
    assert set(data["mirrors"]) == {"root/pypi", "root/python-local"}
    assert data["mirrors"]["root/pypi"]["upstream"]["state"] == "up"
    page = text_of(get(server, "+status")[2])
    assert "Refresh loop" in page and "running" in page and str(running["serverdir"]) in page
    for which in ("live", "ready"):
        status, _, body = get(server, f"+health/{which}", "application/json")
        assert status == 200 and json.loads(body)["status"] == which


def test_a_down_upstream_shows_on_the_front_page(running: dict[str, Any]) -> None:
    server = running["server"]
    dead = f"http://127.0.0.1:{free_port()}/simple/"
    status, _, body = server.request(
        "PUT",
        "root/dead",
        {"type": "mirror", "mirror_url": dead},
        auth=("root", "rootpw"),
    )
    assert status == 200, body
    assert get(server, "root/dead/+simple/anything/")[0] == 503
    page = text_of(get(server, "")[2])
    assert re.search(r"root/dead\s+mirror.*down\s+since \d+ s ago", page, re.S), page
    assert server.request("DELETE", "root/dead", auth=("root", "rootpw"))[0] in (200, 201)


# ------------------------------------------------------------------ a person with a browser
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if find_chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    with Browser.start() as b:
        yield b


def shoot(b: Browser, name: str) -> None:
    b.screenshot(ARTIFACTS / f"{name}-desktop.png", DESKTOP)
    b.screenshot(ARTIFACTS / f"{name}-phone.png", PHONE, mobile=True)
    # Readable on a phone: nothing wider than the screen but what scrolls in its own box.
    assert b.scroll_width(PHONE[0]) <= PHONE[0], f"{name} scrolls sideways on a phone"


def test_a_person_clicks_from_the_front_page_to_a_release(
    running: dict[str, Any], browser: Browser
) -> None:
    server, b = running["server"], browser
    b.console.clear()
    b.goto(server.url)
    assert "Indexes" in b.text and "root/python-local" in b.text
    shoot(b, "1-home")

    b.click_link("root/local")
    assert b.url == server.url + "root/local"
    assert "Local: personal index" in b.text and "hello-stage" in b.text
    shoot(b, "2-index")

    b.click_link("hello-stage")
    assert "pip install --index-url" in b.text and "hello_stage-1.0-py3-none-any.whl" in b.text
    shoot(b, "3-project")

    b.click_link("1.0")
    assert b.url == server.url + "root/local/hello-stage/1.0"
    assert "Hello from the stage" in b.text and "MIT" in b.text
    assert b.evaluate("typeof window.__pwned") == "undefined"
    assert b.evaluate("document.querySelectorAll('script').length") == 0
    shoot(b, "4-version")

    b.type_and_submit("#q", "shared")
    assert b.url.endswith("root/local/+search?q=shared")
    assert "1 project matches shared" in b.text
    shoot(b, "5-search")

    b.click_link("shared-pkg")
    assert b.url == server.url + "root/local/shared-pkg"
    for version in ("4.0", "3.0", "2.0", "1.0"):
        assert b.evaluate(
            f"[...document.querySelectorAll('h3 a')].some(a => a.textContent === '{version}')"
        )
    shoot(b, "6-project-from-bases")

    b.click_link("status")
    assert "Server status" in b.text and "root/pypi" in b.text
    shoot(b, "7-status")

    assert b.errors() == []

    for hostile in ("root/local/hello-stage/0.9", "root/pypi/hostile-pkg/1.0"):
        b.goto(server.url + hostile)
        assert b.evaluate("typeof window.__pwned") == "undefined"
        assert "A very long line" in b.text or "window.__pwned" in b.text
    shoot(b, "8-hostile-release")


def test_every_link_on_the_pages_works(running: dict[str, Any], browser: Browser) -> None:
    server, b = running["server"], browser
    b.console.clear()
    seen: set[str] = set()
    for start in ("", "root/local", "root/local/shared-pkg", "root/local/hello-stage/1.0"):
        b.goto(server.url + start)
        for _, href in b.links():
            if href.startswith(server.url) and href not in seen and "/+f/" not in href:
                seen.add(href)
                request = urllib.request.Request(href, headers=HTML)
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 200, href
    assert len(seen) > 10
    assert b.errors() == []
