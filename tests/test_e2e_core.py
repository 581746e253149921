"""
End to end: a real ``twistd -n pkgmirror``, two local upstreams (PEP 503 HTML "intranet" and
PEP 691 JSON "public"), the three usual indexes, and real pip.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest

from pkgmirror.testing.processes import UpstreamProcess
from pkgmirror.testing.server import ServerProcess
from tests.conftest import (
    INTRANET,
    PUBLIC,
    configure_indexes,
    download,
    fill,
    init_server,
    pip,
    stored_blobs,
)

pytestmark = pytest.mark.e2e

JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}


def page(server: ServerProcess, index: str, project: str) -> dict:
    status, headers, body = server.request(
        "GET", f"{index}/+simple/{project}/", headers=JSON_ACCEPT
    )
    assert status == 200, body
    assert headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    return json.loads(body)


def test_stage_over_two_mirrors_online_then_offline(
    tmp_path: Path, pip_env: dict[str, str]
) -> None:
    up_intranet = UpstreamProcess.start(fill(tmp_path / "intranet", INTRANET), "html")
    up_public = UpstreamProcess.start(fill(tmp_path / "public", PUBLIC), "json")
    serverdir = tmp_path / "server"
    init_server(serverdir, None)
    with ServerProcess.start(serverdir, "--request-timeout", "3") as server:
        configure_indexes(server, up_intranet.url, up_public.url)
        index_url = server.url + "root/local/+simple/"

        first = tmp_path / "first"
        # The greatest version of any base wins: 4.0 is only on the public mirror.
        assert download(pip_env, index_url, "shared-pkg", "private-pkg", dest=first) == {
            "shared_pkg-4.0-py3-none-any.whl",
            "private_pkg-1.1-py3-none-any.whl",
        }

        # Every version of every base is listed, each file at the URL of the index owning it.
        listing = page(server, "root/local", "shared-pkg")
        urls = {f["filename"]: f["url"] for f in listing["files"]}
        assert set(urls) == {
            f"shared_pkg-{v}{suffix}"
            for v in ("1.0", "2.0", "3.0", "4.0")
            for suffix in ("-py3-none-any.whl", ".tar.gz")
        }
        assert "/root/python-local/+f/" in urls["shared_pkg-3.0-py3-none-any.whl"]
        assert "/root/pypi/+f/" in urls["shared_pkg-4.0-py3-none-any.whl"]
        assert all(not u.startswith("http") for u in urls.values()), "links must be relative"

        # An older version, which only the intranet mirror has.
        older = tmp_path / "older"
        assert download(pip_env, index_url, "shared-pkg==3.0", "public-pkg", dest=older) == {
            "shared_pkg-3.0-py3-none-any.whl",
            "public_pkg-1.0-py3-none-any.whl",
        }
        # Whole files went out only for what pip chose: the mirror learns the HTML-only
        # upstream's other files with HEAD and range requests (sizes, times, core metadata).
        fetched_from_intranet = [
            e["path"] for e in up_intranet.log() if e["path"].startswith("/files/") and e["whole"]
        ]
        assert sorted(fetched_from_intranet) == [
            "/files/private_pkg-1.1-py3-none-any.whl",
            "/files/shared_pkg-3.0-py3-none-any.whl",
        ]

        # Upstream connections are not logged one by one: the log is for requests and events.
        assert "Starting factory" not in server.log_text()

        # Both upstreams go away: everything fetched before still installs.
        up_intranet.stop()
        up_public.stop()
        offline = tmp_path / "offline"
        assert download(pip_env, index_url, "shared-pkg", "private-pkg", dest=offline) == {
            "shared_pkg-4.0-py3-none-any.whl",
            "private_pkg-1.1-py3-none-any.whl",
        }
        download(pip_env, index_url, "shared-pkg==3.0", dest=offline)
        install = pip(
            pip_env,
            "install",
            "--target",
            str(tmp_path / "site"),
            "-i",
            index_url,
            "private-pkg",
        )
        assert install.returncode == 0, install.stderr
        assert (tmp_path / "site" / "private_pkg" / "__init__.py").exists()

        # A project never fetched: 503 with Retry-After, not a misleading 404.
        status, headers, body = server.request(
            "GET", "root/local/+simple/never-fetched/", headers=JSON_ACCEPT
        )
        assert status == 503, body
        assert int(headers["Retry-After"]) > 0
        status, _, _ = server.request(
            "GET", "root/local/+simple/does-not-exist-anywhere/", headers=JSON_ACCEPT
        )
        assert status == 503

    # All of it survives a restart, with the upstreams still gone.
    with ServerProcess.start(serverdir, "--request-timeout", "3") as server:
        again = tmp_path / "again"
        local = server.url + "root/local/+simple/"
        assert download(pip_env, local, "shared-pkg", "private-pkg", dest=again) == {
            "shared_pkg-4.0-py3-none-any.whl",
            "private_pkg-1.1-py3-none-any.whl",
        }


def test_black_holed_upstream_does_not_make_pip_wait(
    tmp_path: Path, pip_env: dict[str, str]
) -> None:
    up = UpstreamProcess.start(fill(tmp_path / "public", PUBLIC[:3]), "json")
    serverdir = tmp_path / "server"
    init_server(serverdir, up.url)
    # Pages expire at once, so every request wants to revalidate; the upstream timeout is long.
    with ServerProcess.start(
        serverdir, "--mirror-cache-expiry", "0", "--request-timeout", "30"
    ) as server:
        index_url = server.url + "root/pypi/+simple/"
        download(pip_env, index_url, "shared-pkg", dest=tmp_path / "a")
        up.set_fault("hang")
        started = time.monotonic()
        for attempt in range(3):
            download(pip_env, index_url, "shared-pkg", dest=tmp_path / f"b{attempt}")
        # Three pip runs against an upstream that never answers, each far below its 30 s timeout.
        assert time.monotonic() - started < 20
        up.stop()


def test_pass_through_mirror_redirects_files_and_keeps_nothing(
    tmp_path: Path, pip_env: dict[str, str]
) -> None:
    up = UpstreamProcess.start(fill(tmp_path / "public", PUBLIC[:3]), "json")
    serverdir = tmp_path / "server"
    init_server(serverdir, up.url)
    with ServerProcess.start(serverdir) as server:
        status, _, body = server.request(
            "PATCH", "root/pypi", ["mirror_use_external_urls=True"], auth=("root", "rootpw")
        )
        assert status == 200, body
        assert json.loads(body)["result"]["mirror_use_external_urls"] is True
        assert download(
            pip_env, server.url + "root/pypi/+simple/", "public-pkg", dest=tmp_path / "d"
        ) == {"public_pkg-1.0-py3-none-any.whl"}
        # pip got the bytes from the upstream itself, after our redirect.
        assert "/files/public_pkg-1.0-py3-none-any.whl" in [e["path"] for e in up.log()]
        files = page(server, "root/pypi", "public-pkg")["files"]
        wheel = next(f for f in files if f["filename"].endswith(".whl"))
        file_path = urljoin(server.url + "root/pypi/+simple/public-pkg/", wheel["url"])
        file_path = file_path[len(server.url) :]
        status, headers, _ = server.request("GET", file_path)
        assert status == 302
        assert headers["Location"] == up.file_url("public_pkg-1.0-py3-none-any.whl")
    assert stored_blobs(serverdir) == []
    up.stop()
