"""
End to end: uploads to a real ``twistd -n pkgmirror`` with real twine, uv publish and devpi,
installs back with real pip, every refusal, and the dependency-confusion rules.

One server and one upstream serve the whole module; each test uses its own project names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
import pytest

from pkgmirror.testing.dists import build_sdist, build_wheel
from pkgmirror.testing.processes import UpstreamProcess, clean_client_env
from pkgmirror.testing.server import ServerProcess
from pkgmirror.testing.uploads import multipart, upload_body, upload_fields
from tests.conftest import ROOT_PASSWORD, download, fill, init_server, pip, stored_blobs

pytestmark = pytest.mark.e2e

ROOT = ("root", ROOT_PASSWORD)
ALICE = ("alice", "alicepw")
JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
UPSTREAM = [("confused-pkg", "9.9"), ("acme-secret", "1.0"), ("mirrored-pkg", "1.0")]
LIMIT = 2 * 1024 * 1024
BIN = Path(sys.executable).parent


@attrs.define
class Env:
    server: ServerProcess
    upstream: UpstreamProcess
    dists: Path
    home: Path
    client_env: dict[str, str]

    def url(self, index: str) -> str:
        return f"{self.server.url}{index}/"

    def simple(self, index: str) -> str:
        return f"{self.server.url}{index}/+simple/"


def ok(response: tuple[int, dict[str, str], bytes]) -> Any:
    status, _, body = response
    assert status in (200, 201), body
    return json.loads(body) if body.startswith(b"{") else body


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("uploads")
    upstream = UpstreamProcess.start(fill(base / "public", UPSTREAM), "json")
    serverdir = base / "server"
    init_server(serverdir, upstream.url)
    server = ServerProcess.start(serverdir, "--max-upload-size", str(LIMIT))
    try:
        ok(server.request("PUT", "root/local", {"bases": "root/pypi"}, auth=ROOT))
        ok(server.request("PUT", "root/prod", {"volatile": "False"}, auth=ROOT))
        ok(server.request("PUT", "alice", {"password": ALICE[1]}))
        ok(server.request("PUT", "alice/dev", {"bases": "root/local"}, auth=ALICE))
        home = base / "home"
        yield Env(server, upstream, base / "dists", home, clean_client_env(home))
    finally:
        server.stop()
        upstream.stop()


def upload(
    env: Env,
    index: str,
    body: tuple[bytes, str],
    auth: tuple[str, str] | None = ROOT,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data, content_type = body
    all_headers = {"Content-Type": content_type, "Accept": "*/*", **(headers or {})}
    return env.server.request("POST", f"{index}/", data, headers=all_headers, auth=auth)


def files_of(env: Env, index: str, project: str) -> dict[str, str]:
    """filename -> sha256 on an index's simple page ({} when it has none)."""
    status, _, body = env.server.request("GET", f"{index}/+simple/{project}/", headers=JSON_ACCEPT)
    if status == 404:
        return {}
    assert status == 200, body
    return {f["filename"]: f["hashes"]["sha256"] for f in json.loads(body)["files"]}


def spool_leftovers(env: Env) -> list[Path]:
    return list((env.server.serverdir / "blobs" / "tmp").iterdir())


def login_token(env: Env) -> str:
    result = ok(env.server.request("POST", "+login", {"user": "root", "password": ROOT_PASSWORD}))
    return str(result["result"]["password"])


def run(env: Env, *command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env.client_env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


# --------------------------------------------------------------------------- real uploaders


def test_twine_uv_and_devpi_upload_and_pip_installs_back(env: Env, tmp_path: Path) -> None:
    made = {}
    for name in ("twine-demo", "twine-token-demo", "uv-demo", "uv-basic-demo", "devpi-demo"):
        made[name] = (
            build_wheel(env.dists, name, "1.0", requires_python=">=3.8"),
            build_sdist(env.dists, name, "1.0", requires_python=">=3.8"),
        )
    token = login_token(env)
    twine = [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar"]
    twine += ["--repository-url", env.url("root/local")]
    result = run(env, *twine, "-u", "root", "-p", ROOT_PASSWORD, *map(str, made["twine-demo"]))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(env, *twine, "-u", "__token__", "-p", token, *map(str, made["twine-token-demo"]))
    assert result.returncode == 0, result.stdout + result.stderr

    uv = [str(BIN / "uv"), "publish", "--no-progress", "--publish-url", env.url("root/local")]
    result = run(env, *uv, "--token", token, *map(str, made["uv-demo"]))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(env, *uv, "-u", "root", "-p", ROOT_PASSWORD, *map(str, made["uv-basic-demo"]))
    assert result.returncode == 0, result.stdout + result.stderr

    clientdir = str(tmp_path / "devpi")
    devpi = [str(BIN / "devpi")]
    result = run(env, *devpi, "use", "--clientdir", clientdir, env.url("root/local"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(
        env, *devpi, "login", "--clientdir", clientdir, "root", "--password", ROOT_PASSWORD
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(env, *devpi, "upload", "--clientdir", clientdir, *map(str, made["devpi-demo"]))
    assert result.returncode == 0, result.stdout + result.stderr

    for name, (wheel, sdist) in made.items():
        listed = files_of(env, "root/local", name)
        assert listed == {
            wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest(),
            sdist.name: hashlib.sha256(sdist.read_bytes()).hexdigest(),
        }, name

    # Every file has an upload time (PEP 700); every wheel its core metadata (PEP 658). The test
    # sdists carry Metadata-Version 2.1, which resolvers may not trust, so theirs is not offered.
    status, _, body = env.server.request("GET", "root/local/+simple/uv-demo/", headers=JSON_ACCEPT)
    for entry in json.loads(body)["files"]:
        assert entry["upload-time"]
        assert entry["requires-python"] == ">=3.8"
        if not entry["filename"].endswith(".whl"):
            assert "core-metadata" not in entry
            continue
        assert entry["core-metadata"]["sha256"]
        url = entry["url"].replace("../../../../", "")
        status, _, metadata = env.server.request("GET", url + ".metadata")
        assert status == 200 and b"Name: uv-demo" in metadata
        assert hashlib.sha256(metadata).hexdigest() == entry["core-metadata"]["sha256"]

    # Wheels and, built from source, sdists install back through root/local.
    names = list(made)
    wheels = pip(
        env.client_env,
        "install",
        "--target",
        str(tmp_path / "w"),
        "-i",
        env.simple("root/local"),
        *names,
    )
    assert wheels.returncode == 0, wheels.stderr
    sdists = pip(
        env.client_env,
        "install",
        "--no-binary",
        ":all:",
        "--target",
        str(tmp_path / "s"),
        "-i",
        env.simple("root/local"),
        *names,
    )
    assert sdists.returncode == 0, sdists.stderr
    for name in names:
        module = name.replace("-", "_")
        assert (tmp_path / "w" / module / "__init__.py").exists()
        assert (tmp_path / "s" / module / "__init__.py").exists()


def poetry_executable() -> str | None:
    beside = Path(sys.executable).with_name("poetry")
    return (
        os.environ.get("PKGMIRROR_TEST_POETRY")
        or (str(beside) if beside.exists() else None)
        or shutil.which("poetry")
    )


@pytest.mark.skipif(poetry_executable() is None, reason="poetry is not installed")
def test_poetry_publish(env: Env, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "poetry-demo"\nversion = "1.0"\n')
    wheel = build_wheel(tmp_path / "dist", "poetry-demo", "1.0")
    sdist = build_sdist(tmp_path / "dist", "poetry-demo", "1.0")
    settings = {
        "POETRY_REPOSITORIES_LOCAL_URL": env.url("root/prod"),
        "POETRY_HTTP_BASIC_LOCAL_USERNAME": "root",
        "POETRY_HTTP_BASIC_LOCAL_PASSWORD": ROOT_PASSWORD,
    }
    command = [str(poetry_executable()), "publish", "-n", "--repository", "local"]
    for extra in ([], ["--skip-existing"]):
        result = subprocess.run(
            [*command, *extra],
            env={**env.client_env, **settings},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert set(files_of(env, "root/prod", "poetry-demo")) == {wheel.name, sdist.name}


# --------------------------------------------------------------------------- refusals


def refused(
    env: Env,
    index: str,
    body: tuple[bytes, str],
    status: int,
    reason: str,
    auth: tuple[str, str] | None = ROOT,
    project: str = "bad-pkg",
) -> dict[str, str]:
    """Checks an upload is refused with ``status`` and ``reason``, and that nothing stayed."""
    before = sorted(stored_blobs(env.server.serverdir))
    got, headers, text = upload(env, index, body, auth=auth)
    assert got == status, text
    message = text.decode()
    assert reason in message, message
    assert message.count("\n") <= 1
    assert sorted(stored_blobs(env.server.serverdir)) == before
    assert spool_leftovers(env) == []
    assert files_of(env, index, project) == {}
    return headers


def renamed(src: Path, dest_dir: Path, filename: str) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / filename
    path.write_bytes(src.read_bytes())
    return path


def test_every_invalid_upload_is_a_400_with_a_reason(env: Env, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "bad-pkg", "1.0")
    sdist = build_sdist(tmp_path, "bad-pkg", "1.0")
    content = wheel.read_bytes()
    cases: list[tuple[tuple[bytes, str], str]] = [
        (
            upload_body(wheel, name="other-pkg"),
            "is of project bad-pkg, but the form says other-pkg",
        ),
        (upload_body(wheel, version="2.0"), "is of version 1.0, but the form says 2.0"),
        (upload_body(sdist, version="one.two"), "is not a valid (PEP 440) version"),
        (upload_body(wheel, name="bad pkg"), "invalid project name"),
        (
            upload_body(
                renamed(wheel, tmp_path / "e", "bad_pkg-1.0-py3.egg"), name="bad-pkg", version="1.0"
            ),
            "only wheels",
        ),
        (
            upload_body(
                renamed(wheel, tmp_path / "n", "bad_pkg-1.0.whl"), name="bad-pkg", version="1.0"
            ),
            "cannot read a project name and version",
        ),
        (
            upload_body(renamed(sdist, tmp_path / "z", "bad_pkg-1.0-py3-none-any.whl")),
            "not a valid zip archive",
        ),
        (
            upload_body(renamed(wheel, tmp_path / "t", "bad_pkg-1.0.tar.gz")),
            "not a valid gzipped tar archive",
        ),
        (
            upload_body(
                renamed(build_wheel(tmp_path / "o", "other-pkg", "1.0"), tmp_path / "m", wheel.name)
            ),
            "says in its metadata it is project other-pkg",
        ),
        (
            multipart(
                [*upload_fields(wheel.name, content)[:-2], ("sha256_digest", "0" * 64)],
                wheel.name,
                content,
            ),
            "sha256_digest",
        ),
        (
            multipart(
                [*upload_fields(wheel.name, content, digests=()), ("md5_digest", "0" * 32)],
                wheel.name,
                content,
            ),
            "md5_digest",
        ),
        (multipart(upload_fields(wheel.name, content), None, b""), "no file"),
        ((b"{}", "application/json"), "multipart/form-data"),
    ]
    for body, reason in cases:
        refused(env, "root/local", body, 400, reason)


def test_bombs_and_archives_without_metadata_are_refused(env: Env, tmp_path: Path) -> None:
    import io
    import zipfile

    wheel = build_wheel(tmp_path / "w", "bad-pkg", "1.0")
    bomb = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as good, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for info in good.infolist():
            z.writestr(info, good.read(info))
        with z.open("bad_pkg/zeros.bin", "w") as member:
            for _ in range(100):
                member.write(b"\0" * (1 << 20))
    refused(env, "root/local", upload_body(bomb), 400, "decompression bomb")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("bad_pkg/__init__.py", "")
    bare = tmp_path / "bare" / wheel.name
    bare.parent.mkdir()
    bare.write_bytes(buffer.getvalue())
    refused(env, "root/local", upload_body(bare), 400, "has no *.dist-info/METADATA")


def test_size_limit(env: Env, tmp_path: Path) -> None:
    big = build_wheel(tmp_path, "bad-pkg", "1.0", payload_size=LIMIT + 1000)
    refused(env, "root/local", upload_body(big), 413, "upload limit of 2 MiB")

    # A body announced far beyond the limit is answered before a byte of it is sent.
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /root/local/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        started = time.monotonic()
        answer = sock.recv(4096)
        assert time.monotonic() - started < 2
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"limit" in answer and b"100 Continue" not in answer
    assert spool_leftovers(env) == []


def test_who_may_upload(env: Env, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "bad-pkg", "1.0")
    headers = refused(
        env, "root/local", upload_body(wheel), 401, "authentication required", auth=None
    )
    assert headers["WWW-Authenticate"] == 'Basic realm="pkgmirror"'
    headers = refused(
        env,
        "root/local",
        upload_body(wheel),
        401,
        "could not be authenticated",
        auth=("root", "wrong"),
    )
    assert headers["WWW-Authenticate"] == 'Basic realm="pkgmirror"'
    headers = refused(
        env,
        "root/local",
        upload_body(wheel),
        401,
        "could not be authenticated",
        auth=("nobody", "x"),
    )
    assert headers["WWW-Authenticate"] == 'Basic realm="pkgmirror"'
    refused(
        env,
        "root/local",
        upload_body(wheel),
        403,
        "user alice may not upload to root/local (acl_upload: root)",
        auth=ALICE,
    )
    refused(env, "root/pypi", upload_body(wheel), 405, "it is a mirror")
    refused(env, "root/nothing", upload_body(wheel), 404, "does not exist")
    bad_token = base64.b64encode(b"root:not-a-token").decode()
    status, headers, _ = upload(
        env, "root/local", upload_body(wheel), auth=None, headers={"X-Devpi-Auth": bad_token}
    )
    assert status == 401 and "WWW-Authenticate" in headers

    # :AUTHENTICATED: lets any user in; :ANONYMOUS: anyone at all.
    ok(env.server.request("PATCH", "alice/dev", ["acl_upload=:AUTHENTICATED:"], auth=ALICE))
    assert upload(env, "alice/dev", upload_body(wheel), auth=ROOT)[0] == 200
    ok(env.server.request("PATCH", "alice/dev", ["acl_upload=:ANONYMOUS:"], auth=ALICE))
    sdist = build_sdist(tmp_path, "bad-pkg", "1.0")
    assert upload(env, "alice/dev", upload_body(sdist), auth=None)[0] == 200
    ok(env.server.request("PATCH", "alice/dev", ["acl_upload=alice"], auth=ALICE))
    ok(env.server.request("DELETE", "alice/dev/bad-pkg", auth=ALICE))
    assert files_of(env, "alice/dev", "bad-pkg") == {}


def test_non_volatile_index_keeps_what_it_has(env: Env, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "a", "steady-pkg", "1.0", summary="first")
    other = build_wheel(tmp_path / "b", "steady-pkg", "1.0", summary="second")
    assert upload(env, "root/prod", upload_body(wheel))[0] == 200
    # The same again, to the index URL without its slash (no redirect: twine would stop).
    data, content_type = upload_body(wheel)
    status, _, body = env.server.request(
        "POST", "root/prod", data, headers={"Content-Type": content_type}, auth=ROOT
    )
    assert status == 200 and b"identical" in body
    blobs = sorted(stored_blobs(env.server.serverdir))
    status, _, body = upload(env, "root/prod", upload_body(other))
    assert status == 409 and b"already exists in non-volatile index root/prod" in body
    assert sorted(stored_blobs(env.server.serverdir)) == blobs
    assert spool_leftovers(env) == []
    want = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert files_of(env, "root/prod", "steady-pkg") == {wheel.name: want}
    for path in ("root/prod/steady-pkg/1.0", "root/prod/steady-pkg"):
        status, _, body = env.server.request("DELETE", path, auth=ROOT)
        assert status == 403 and b"non-volatile" in body
    assert files_of(env, "root/prod", "steady-pkg") == {wheel.name: want}


def test_volatile_index_overwrites_and_deletes(env: Env, tmp_path: Path) -> None:
    first = build_wheel(tmp_path / "a", "fluid-pkg", "1.0", summary="first")
    second = build_wheel(tmp_path / "b", "fluid-pkg", "1.0", summary="second")
    sdist = build_sdist(tmp_path, "fluid-pkg", "2.0")
    assert upload(env, "root/local", upload_body(first))[0] == 200
    assert upload(env, "root/local", upload_body(second))[0] == 200
    assert upload(env, "root/local", upload_body(sdist))[0] == 200
    assert files_of(env, "root/local", "fluid-pkg") == {
        second.name: hashlib.sha256(second.read_bytes()).hexdigest(),
        sdist.name: hashlib.sha256(sdist.read_bytes()).hexdigest(),
    }
    # The overwritten bytes are gone from the store.
    names = {p.name for p in stored_blobs(env.server.serverdir)}
    assert hashlib.sha256(first.read_bytes()).hexdigest() not in names

    status, _, body = env.server.request("DELETE", "root/local/fluid-pkg/1.0", auth=ALICE)
    assert status == 403, body
    ok(env.server.request("DELETE", "root/local/fluid-pkg/1.0", auth=ROOT))
    assert set(files_of(env, "root/local", "fluid-pkg")) == {sdist.name}
    status, _, _ = env.server.request("DELETE", "root/local/fluid-pkg/1.0", auth=ROOT)
    assert status == 404
    ok(env.server.request("DELETE", "root/local/fluid-pkg", auth=ROOT))
    assert files_of(env, "root/local", "fluid-pkg") == {}
    gone = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second, sdist)}
    assert gone.isdisjoint(p.name for p in stored_blobs(env.server.serverdir))


def test_concurrent_uploads_of_one_name_have_one_winner(env: Env, tmp_path: Path) -> None:
    bodies = [
        upload_body(
            build_wheel(
                tmp_path / str(i), "race-pkg", "1.0", summary=f"take {i}", payload_size=200_000
            )
        )
        for i in range(8)
    ]
    results: list[tuple[int, bytes] | None] = [None] * len(bodies)

    def go(i: int) -> None:
        status, _, body = upload(env, "root/prod", bodies[i])
        results[i] = (status, body)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r[0] for r in results if r is not None]
    assert sorted(statuses) == [200] + [409] * (len(bodies) - 1), results
    winner = statuses.index(200)
    stored = files_of(env, "root/prod", "race-pkg")
    content = bodies[winner][0]
    wheel_bytes = (tmp_path / str(winner) / "race_pkg-1.0-py3-none-any.whl").read_bytes()
    assert wheel_bytes in content
    assert stored == {"race_pkg-1.0-py3-none-any.whl": hashlib.sha256(wheel_bytes).hexdigest()}
    assert spool_leftovers(env) == []


# --------------------------------------------------------------------------- dependency confusion


def test_dependency_confusion(env: Env, tmp_path: Path) -> None:
    local = build_wheel(tmp_path, "confused-pkg", "0.0.1")
    assert upload(env, "root/local", upload_body(local))[0] == 200

    def downloaded(project: str, index: str = "root/local") -> set[str]:
        dest = tmp_path / f"d{time.monotonic_ns()}"
        return download(env.client_env, env.simple(index), project, dest=dest)

    # The upstream's 9.9 is hidden by the upload, on root/local and on a stage built on it.
    assert downloaded("confused-pkg") == {local.name}
    assert downloaded("confused-pkg", "alice/dev") == {local.name}
    status, _, body = env.server.request("GET", "root/local/confused-pkg")
    hidden = json.loads(body)["hidden"]
    assert hidden and "not in the mirror_whitelist" in hidden[0]["reason"]

    ok(env.server.request("PATCH", "root/local", ["mirror_whitelist+=confused-pkg"], auth=ROOT))
    assert downloaded("confused-pkg") == {"confused_pkg-9.9-py3-none-any.whl"}

    # Names under a private prefix are never asked of any upstream, from any stage on top.
    ok(env.server.request("PATCH", "root/local", ["private_prefixes=acme"], auth=ROOT))
    tools = build_wheel(tmp_path, "acme-tools", "1.0")
    assert upload(env, "root/local", upload_body(tools))[0] == 200
    env.upstream.reset_log()
    assert downloaded("acme-tools") == {tools.name}
    assert downloaded("acme-tools", "alice/dev") == {tools.name}
    status, _, body = env.server.request("GET", "alice/dev/acme-tools")
    assert status == 200, body
    assert "private_prefixes pattern 'acme'" in json.loads(body)["hidden"][0]["reason"]
    result = pip(
        env.client_env,
        "download",
        "--no-deps",
        "-d",
        str(tmp_path / "x"),
        "-i",
        env.simple("root/local"),
        "acme-secret",
    )
    assert result.returncode != 0
    for path in ("root/local/+simple/acme-secret/", "alice/dev/+simple/acme-secret/"):
        status, _, body = env.server.request("GET", path, headers=JSON_ACCEPT)
        assert status == 404 and b"private" in body
    status, _, _ = env.server.request("POST", "root/local/+simple/acme-secret/refresh")
    assert [e["path"] for e in env.upstream.log() if "acme" in e["path"]] == []


# --------------------------------------------------------------------------- yanks and mirrors


def yanked_of(env: Env, index: str, project: str) -> dict[str, Any]:
    status, _, body = env.server.request("GET", f"{index}/+simple/{project}/", headers=JSON_ACCEPT)
    assert status == 200, body
    return {f["filename"]: f.get("yanked", False) for f in json.loads(body)["files"]}


def test_yanks(env: Env, tmp_path: Path) -> None:
    for version in ("1.0", "2.0"):
        wheel = build_wheel(tmp_path, "yank-pkg", version)
        assert upload(env, "root/local", upload_body(wheel))[0] == 200
    status, headers, _ = env.server.request(
        "PATCH", "root/local/yank-pkg/2.0", {"yanked": "broken build"}
    )
    assert status == 401 and "WWW-Authenticate" in headers
    ok(
        env.server.request(
            "PATCH", "root/local/yank-pkg/2.0", {"yanked": "broken build"}, auth=ROOT
        )
    )
    assert yanked_of(env, "root/local", "yank-pkg") == {
        "yank_pkg-1.0-py3-none-any.whl": False,
        "yank_pkg-2.0-py3-none-any.whl": "broken build",
    }
    result = pip(
        env.client_env,
        "download",
        "--no-deps",
        "-d",
        str(tmp_path / "d"),
        "-i",
        env.simple("root/local"),
        "yank-pkg",
    )
    assert result.returncode == 0 and (tmp_path / "d" / "yank_pkg-1.0-py3-none-any.whl").exists()
    status, _, body = env.server.request(
        "GET", "root/local/+simple/yank-pkg/", headers={"Accept": "text/html"}
    )
    assert b'data-yanked="broken build"' in body

    # A mirrored release, yanked for root/local and the stages on it, not for the mirror.
    ok(env.server.request("PATCH", "root/local/mirrored-pkg/1.0", {"yanked": True}, auth=ROOT))
    assert set(yanked_of(env, "root/local", "mirrored-pkg").values()) == {True}
    assert set(yanked_of(env, "alice/dev", "mirrored-pkg").values()) == {True}
    assert set(yanked_of(env, "root/pypi", "mirrored-pkg").values()) == {False}
    status, _, _ = env.server.request(
        "PATCH", "root/local/mirrored-pkg/7.0", {"yanked": True}, auth=ROOT
    )
    assert status == 404
    ok(env.server.request("PATCH", "root/local/mirrored-pkg/1.0", {"yanked": False}, auth=ROOT))
    assert set(yanked_of(env, "root/local", "mirrored-pkg").values()) == {False}
    status, _, _ = env.server.request(
        "PATCH", "root/local/mirrored-pkg/1.0", {"yanked": 3}, auth=ROOT
    )
    assert status == 400


def test_deleting_a_mirrors_cached_files(env: Env, tmp_path: Path) -> None:
    def fetch(dest: Path) -> None:
        download(env.client_env, env.simple("root/pypi"), "mirrored-pkg==1.0", dest=dest)

    fetch(tmp_path / "d")
    wheel_sha = hashlib.sha256(
        (tmp_path / "d" / "mirrored_pkg-1.0-py3-none-any.whl").read_bytes()
    ).hexdigest()
    assert wheel_sha in {p.name for p in stored_blobs(env.server.serverdir)}
    status, _, _ = env.server.request("DELETE", "root/pypi/mirrored-pkg/1.0", auth=ALICE)
    assert status == 403
    ok(env.server.request("DELETE", "root/pypi/mirrored-pkg/1.0", auth=ROOT))
    assert wheel_sha not in {p.name for p in stored_blobs(env.server.serverdir)}
    env.upstream.reset_log()
    fetch(tmp_path / "again")
    assert "/files/mirrored_pkg-1.0-py3-none-any.whl" in [e["path"] for e in env.upstream.log()]
    ok(env.server.request("DELETE", "root/pypi/mirrored-pkg", auth=ROOT))
    assert wheel_sha not in {p.name for p in stored_blobs(env.server.serverdir)}


def file_paths(env: Env, index: str, project: str) -> dict[str, str]:
    """filename -> the path of its file URL, from an index's simple page."""
    page_url = f"{env.simple(index)}{project}/"
    status, _, body = env.server.request("GET", f"{index}/+simple/{project}/", headers=JSON_ACCEPT)
    assert status == 200, body
    return {
        f["filename"]: urlsplit(urljoin(page_url, f["url"])).path.lstrip("/")
        for f in json.loads(body)["files"]
    }


def test_deleting_one_file_by_its_url(env: Env, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "single-pkg", "1.0")
    sdist = build_sdist(tmp_path, "single-pkg", "1.0")
    for dist in (wheel, sdist):
        assert upload(env, "root/local", upload_body(dist))[0] == 200
    paths = file_paths(env, "root/local", "single-pkg")
    wheel_sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    status, _, body = env.server.request("GET", paths[wheel.name] + ".metadata")
    assert status == 200
    metadata_sha = hashlib.sha256(body).hexdigest()

    def stored() -> set[str]:
        return {p.name for p in stored_blobs(env.server.serverdir, core_metadata=True)}

    assert {wheel_sha, metadata_sha} <= stored()

    status, headers, _ = env.server.request("DELETE", paths[wheel.name])
    assert status == 401 and "WWW-Authenticate" in headers
    status, _, body = env.server.request("DELETE", paths[wheel.name], auth=ALICE)
    assert status == 403, body
    status, _, body = env.server.request("DELETE", paths[wheel.name] + ".metadata", auth=ROOT)
    assert status == 405 and b"delete the file" in body
    result = ok(env.server.request("DELETE", paths[wheel.name], auth=ROOT))
    assert wheel.name in result["message"]
    # Only that file is gone: the sdist of the same version stays, and so does its project.
    assert set(files_of(env, "root/local", "single-pkg")) == {sdist.name}
    assert {wheel_sha, metadata_sha}.isdisjoint(stored())
    for path in (paths[wheel.name], paths[wheel.name] + ".metadata"):
        assert env.server.request("GET", path)[0] == 404
    status, _, body = env.server.request("DELETE", paths[wheel.name], auth=ROOT)
    assert status == 404 and wheel.name.encode() in body

    # A non-volatile index keeps its files unless forced (devpi's ?force).
    kept = build_wheel(tmp_path / "prod", "single-pkg", "1.0")
    assert upload(env, "root/prod", upload_body(kept))[0] == 200
    path = file_paths(env, "root/prod", "single-pkg")[kept.name]
    status, _, body = env.server.request("DELETE", path, auth=ROOT)
    assert status == 403 and b"non-volatile" in body
    assert kept.name in files_of(env, "root/prod", "single-pkg")
    ok(env.server.request("DELETE", path + "?force", auth=ROOT))
    assert files_of(env, "root/prod", "single-pkg") == {}


def test_deleting_a_mirrored_file_drops_only_the_cached_copy(env: Env, tmp_path: Path) -> None:
    download(env.client_env, env.simple("root/pypi"), "mirrored-pkg==1.0", dest=tmp_path / "a")
    name = "mirrored_pkg-1.0-py3-none-any.whl"
    cached = hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest()
    assert cached in {p.name for p in stored_blobs(env.server.serverdir)}
    path = file_paths(env, "root/pypi", "mirrored-pkg")[name]
    status, _, _ = env.server.request("DELETE", path, auth=ALICE)
    assert status == 403
    result = ok(env.server.request("DELETE", path, auth=ROOT))
    assert "cached copy dropped" in result["message"]
    assert cached not in {p.name for p in stored_blobs(env.server.serverdir)}
    # Still listed, and fetched again from the upstream when next asked for.
    assert name in files_of(env, "root/pypi", "mirrored-pkg")
    env.upstream.reset_log()
    download(env.client_env, env.simple("root/pypi"), "mirrored-pkg==1.0", dest=tmp_path / "b")
    assert f"/files/{name}" in [e["path"] for e in env.upstream.log()]


# --------------------------------------------------------------------------- crash


def test_sigkill_mid_upload_leaves_no_trace(tmp_path: Path) -> None:
    serverdir = tmp_path / "server"
    init_server(serverdir, None)
    wheel = build_wheel(tmp_path, "crash-pkg", "1.0", payload_size=3_000_000)
    body, content_type = upload_body(wheel)
    server = ServerProcess.start(serverdir)
    try:
        ok(server.request("PUT", "root/local", {}, auth=ROOT))
        before = sorted(stored_blobs(serverdir))
        auth = base64.b64encode(f"root:{ROOT_PASSWORD}".encode()).decode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                f"POST /root/local/ HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Authorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            time.sleep(0.3)
            server.stop(signal.SIGKILL)
    finally:
        server.stop()
    assert sorted(stored_blobs(serverdir)) == before
    with ServerProcess.start(serverdir) as server:
        assert list((serverdir / "blobs" / "tmp").iterdir()) == []
        status, _, text = server.request(
            "POST", "root/local/", body, headers={"Content-Type": content_type}, auth=ROOT
        )
        assert status == 200, text
        status, _, page = server.request(
            "GET", "root/local/+simple/crash-pkg/", headers=JSON_ACCEPT
        )
        assert [f["filename"] for f in json.loads(page)["files"]] == [wheel.name]
