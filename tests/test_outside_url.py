"""
Absolute URLs (+api, Location headers, JSON hrefs) name the server the way the client reached
it: Host, X-Forwarded-Host/-Proto, X-Outside-URL or --outside-url. Simple pages stay relative,
so they work through any of these unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pkgmirror.testing.processes import UpstreamProcess
from pkgmirror.testing.server import ServerProcess
from tests.conftest import fill, init_server

pytestmark = pytest.mark.e2e

HTML_ACCEPT = {"Accept": "text/html"}
JSON_SIMPLE = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    root = fill(tmp_path_factory.mktemp("upstream"), [("public-pkg", "1.0")])
    with UpstreamProcess.start(root, "json") as up:
        yield up


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: UpstreamProcess
) -> Iterator[ServerProcess]:
    serverdir = tmp_path_factory.mktemp("plain") / "server"
    init_server(serverdir, upstream.url)
    with ServerProcess.start(serverdir) as running:
        yield running


def api(server: ServerProcess, path: str, headers: dict[str, str]) -> dict[str, Any]:
    status, _, body = server.request("GET", path, headers=headers)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)["result"]
    return result


def location(server: ServerProcess, path: str, headers: dict[str, str]) -> str:
    status, response_headers, body = server.request("GET", path, headers=headers)
    assert status in (301, 302), body
    return response_headers["Location"]


def test_without_help_urls_name_the_address_the_client_used(server: ServerProcess) -> None:
    assert api(server, "+api", {})["login"] == f"http://127.0.0.1:{server.port}/+login"


@pytest.mark.parametrize(
    ("headers", "base"),
    [
        ({"Host": "pkgs.example.test:8080"}, "http://pkgs.example.test:8080"),
        (
            {"X-Forwarded-Host": "proxy.example.test", "X-Forwarded-Proto": "https"},
            "https://proxy.example.test",
        ),
        # A chain of proxies appends: the first value is what the client used.
        (
            {
                "X-Forwarded-Host": "front.example.test, inner.example.test",
                "X-Forwarded-Proto": "https, http",
            },
            "https://front.example.test",
        ),
        (
            {"X-Outside-URL": "https://outside.example.test/pypi/", "Host": "ignored.test"},
            "https://outside.example.test/pypi",
        ),
    ],
)
def test_absolute_urls_follow_the_request(
    server: ServerProcess, headers: dict[str, str], base: str
) -> None:
    assert api(server, "+api", headers)["login"] == f"{base}/+login"
    index = api(server, "root/pypi/+api", headers)
    assert index["index"] == f"{base}/root/pypi"
    assert index["simpleindex"] == f"{base}/root/pypi/+simple/"
    # Redirects to the normalised name, and to the index from its trailing-slash form.
    assert (
        location(server, "root/pypi/+simple/Public_Pkg/", headers)
        == f"{base}/root/pypi/+simple/public-pkg/"
    )
    assert location(server, "root/pypi/", headers) == f"{base}/root/pypi"
    # The devpi JSON view of a project: file hrefs are absolute too.
    status, _, body = server.request("GET", "root/pypi/public-pkg", headers=headers)
    assert status == 200, body
    hrefs = [
        link["href"]
        for version in json.loads(body)["result"].values()
        for link in version["+links"]
    ]
    assert hrefs and all(href.startswith(f"{base}/root/pypi/+f/") for href in hrefs)


def test_a_proxy_header_that_is_no_url_is_ignored(server: ServerProcess) -> None:
    headers = {"X-Outside-URL": "outside.example.test", "Host": "pkgs.example.test"}
    assert api(server, "+api", headers)["login"] == "http://pkgs.example.test/+login"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Host": "pkgs.example.test:8080"}, {"X-Outside-URL": "https://outside.example.test/x"}],
)
def test_simple_pages_stay_relative(server: ServerProcess, headers: dict[str, str]) -> None:
    status, _, body = server.request(
        "GET", "root/pypi/+simple/public-pkg/", headers={**HTML_ACCEPT, **headers}
    )
    assert status == 200, body
    hrefs = re.findall(r'href="([^"]+)"', body.decode())
    assert hrefs and all(not re.match(r"[a-z]+://", href) for href in hrefs), hrefs
    status, _, body = server.request(
        "GET", "root/pypi/+simple/public-pkg/", headers={**JSON_SIMPLE, **headers}
    )
    assert status == 200, body
    urls = [f["url"] for f in json.loads(body)["files"]]
    assert urls and all(not re.match(r"[a-z]+://", url) for url in urls), urls


def test_outside_url_option_wins_over_host_headers(
    tmp_path: Path, upstream: UpstreamProcess
) -> None:
    serverdir = tmp_path / "server"
    init_server(serverdir, upstream.url)
    with ServerProcess.start(
        serverdir, "--outside-url", "https://mirror.example.test/pkgs/"
    ) as server:
        base = "https://mirror.example.test/pkgs"
        for headers in ({}, {"Host": "other.test", "X-Forwarded-Host": "proxy.test"}):
            assert api(server, "+api", headers)["login"] == f"{base}/+login"
            assert (
                location(server, "root/pypi/+simple/Public_Pkg/", headers)
                == f"{base}/root/pypi/+simple/public-pkg/"
            )
        # A proxy in front that knows better still says so per request.
        headers = {"X-Outside-URL": "http://inner.example.test"}
        assert api(server, "+api", headers)["login"] == "http://inner.example.test/+login"
