"""
devpi-client and the ``pkgmirror`` command line against a real ``twistd pkgmirror``.

The usual devpi set-up (``use``, ``login``, ``index``, ``use --venv``) must work unchanged, pip in
the venv must then install from root/local, and the same steps through ``pkgmirror`` must leave
the server in the same state. Refusals (wrong password, expired token, someone else's index, an
unknown index, a malformed ``key=value``) must say why, exit with the documented code and change
nothing.

devpi-client is the one in the test environment: ``.ci/run`` installs it from the package index
into a fresh virtualenv (the ``test`` extra), so CI tests the released client without the tests
themselves needing the network. ``PKGMIRROR_TEST_DEVPI`` may name another ``devpi`` executable.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pkgmirror.testing.dists import build_sdist, build_wheel
from pkgmirror.testing.processes import UpstreamProcess, clean_client_env
from pkgmirror.testing.server import REPO_ROOT, ServerProcess
from tests.conftest import ROOT_PASSWORD, init_server

pytestmark = pytest.mark.e2e


def _find_devpi() -> str | None:
    configured = os.environ.get("PKGMIRROR_TEST_DEVPI")
    if configured:
        return configured
    beside = Path(sys.executable).with_name("devpi")
    return str(beside) if beside.exists() else shutil.which("devpi")


DEVPI = _find_devpi()
needs_devpi = pytest.mark.skipif(DEVPI is None, reason="devpi-client is not installed")


class Tool:
    """A command line in a subprocess with a private HOME and client directory."""

    def __init__(self, command: list[str], home: Path, extra_env: dict[str, str]) -> None:
        self.command = command
        self.env = clean_client_env(home, extra_env)
        # These tests check the config files the tools write; nothing else may be read.
        self.env["XDG_CONFIG_HOME"] = str(home / ".config")
        self.env["XDG_CONFIG_DIRS"] = str(home / "xdg")

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def __call__(self, *args: str, cwd: Path | None = None) -> str:
        """Runs and insists on exit code 0; returns stdout."""
        done = self.run(*args, cwd=cwd)
        assert done.returncode == 0, f"{self.command[-1]} {args}: {done.stdout}{done.stderr}"
        return done.stdout


def devpi_tool(home: Path) -> Tool:
    assert DEVPI is not None
    return Tool([DEVPI], home, {"DEVPI_CLIENTDIR": str(home / "devpi-client")})


def pkgmirror_tool(home: Path) -> Tool:
    # The checkout's client, not whatever `pkgmirror` an installed copy put on PATH.
    return Tool(
        [sys.executable, "-m", "pkgmirror.client.main"],
        home,
        {"PKGMIRROR_CLIENTDIR": str(home / "pkgmirror-client"), "PYTHONPATH": str(REPO_ROOT)},
    )


def new_server(base: Path, name: str, public_url: str, *args: str) -> ServerProcess:
    serverdir = base / name
    init_server(serverdir, public_url)
    return ServerProcess.start(serverdir, *args)


def get_json(server: ServerProcess, path: str, **kw: Any) -> Any:
    status, _, body = server.request("GET", path, **kw)
    assert status == 200, body
    return json.loads(body)


def server_state(server: ServerProcess) -> Any:
    """Users and index configs, without creation times: what a refused command must not touch."""
    users = get_json(server, "")["result"]
    for config in users.values():
        config.pop("created", None)
    return users


def token_header(user: str, token: str) -> dict[str, str]:
    return {"X-Devpi-Auth": base64.b64encode(f"{user}:{token}".encode()).decode()}


def login_token(server: ServerProcess, user: str, password: str) -> str:
    status, _, body = server.request("POST", "+login", {"user": user, "password": password})
    assert status == 200, body
    token: str = json.loads(body)["result"]["password"]
    return token


def venv_pip_download(venv: Path, env: dict[str, str], target: Path, index_url: str) -> list[str]:
    """
    ``pip download shared-pkg private-pkg`` by the venv's own pip, configured by nothing but
    the venv's pip.conf (an empty PIP_CONFIG_FILE and a private HOME keep the rest out).
    """
    empty = target.parent / "empty.conf"
    empty.write_text("")
    done = subprocess.run(
        [
            *(str(venv / "bin" / "python"), "-m", "pip", "download", "--no-cache-dir"),
            *("--no-deps", "-d", str(target), "shared-pkg", "private-pkg"),
        ],
        env={**env, "PIP_CONFIG_FILE": str(empty), "VIRTUAL_ENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Looking in indexes: {index_url}" in done.stdout
    return sorted(p.name for p in target.iterdir())


def venv_uv_install(venv: Path, env: dict[str, str], index_url: str) -> dict[str, str]:
    """
    ``uv pip install private-pkg`` into the venv, run inside it so that uv finds the venv's
    uv.toml (uv reads config from the working directory up, not from the target venv).
    """
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.skip("uv is not installed")
    uv_env = {k: v for k, v in env.items() if k != "UV_NO_CONFIG"}
    uv_env["UV_CACHE_DIR"] = str(venv.parent / "uv-cache")
    done = subprocess.run(
        [
            *(str(uv), "pip", "install", "--python", str(venv / "bin" / "python")),
            *("--no-deps", "-v", "private-pkg"),
        ],
        env=uv_env,
        cwd=venv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert index_url in done.stderr, done.stderr
    listed = subprocess.run(
        [str(uv), "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "json"],
        env=uv_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    wanted = {"private-pkg"}
    return {p["name"]: p["version"] for p in json.loads(listed.stdout) if p["name"] in wanted}


@pytest.fixture(scope="module")
def scratch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv (pip from ensurepip, no network) for ``use --venv`` to configure."""
    venv = tmp_path_factory.mktemp("scratch") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    return venv


@pytest.fixture(scope="module")
def devpi_server(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, UpstreamProcess]
) -> Iterator[ServerProcess]:
    with new_server(
        tmp_path_factory.mktemp("devpi-server"), "server", upstreams["public"].url
    ) as server:
        yield server


@pytest.fixture(scope="module")
def devpi_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devpi-home")


@pytest.fixture(scope="module")
def devpi_setup(
    devpi_server: ServerProcess, devpi_home: Path, upstreams: dict[str, UpstreamProcess]
) -> Tool:
    """The usual set-up, with devpi-client, exactly as people type it."""
    if DEVPI is None:
        pytest.skip("devpi-client is not installed")
    devpi = devpi_tool(devpi_home)
    devpi("use", "--always-set-cfg", "no", devpi_server.url)
    devpi("login", "--password", ROOT_PASSWORD, "root")
    devpi("index", "pypi", "mirror_use_external_urls=True")
    devpi(
        "index",
        "-c",
        "python-local",
        f"mirror_url={upstreams['intranet'].url}",
        "title=Intranet: python-local",
        "type=mirror",
        "volatile=False",
    )
    devpi(
        "index",
        "-c",
        "local",
        "bases=root/python-local,root/pypi",
        "title=Local: personal index",
    )
    devpi("use", "--venv", "-", "root/local")
    return devpi


@needs_devpi
def test_devpi_setup_then_pip_installs_from_root_local(
    devpi_setup: Tool, devpi_server: ServerProcess, scratch_venv: Path, tmp_path: Path
) -> None:
    devpi = devpi_setup
    out = devpi("use", "--set-cfg", "--venv", str(scratch_venv), "root/local")
    assert "only setting venv pip/uv config" in out
    index_url = devpi_server.url + "root/local/+simple/"
    assert index_url in (scratch_venv / "pip.conf").read_text()

    downloaded = venv_pip_download(scratch_venv, devpi.env, tmp_path / "downloads", index_url)
    # 4.0 comes from root/pypi (the public upstream), 1.1 from root/python-local: both only
    # through root/local's merge of its bases.
    assert downloaded == ["private_pkg-1.1-py3-none-any.whl", "shared_pkg-4.0-py3-none-any.whl"]

    config = get_json(devpi_server, "root/local?no_projects=")["result"]
    assert config["bases"] == ["root/python-local", "root/pypi"]
    assert config["title"] == "Local: personal index"
    pypi = get_json(devpi_server, "root/pypi?no_projects=")["result"]
    assert pypi["mirror_use_external_urls"] is True
    intranet = get_json(devpi_server, "root/python-local?no_projects=")["result"]
    assert intranet["type"] == "mirror" and intranet["volatile"] is False
    devpi("use", "--venv", "-")


@needs_devpi
def test_devpi_user_index_and_read_commands(devpi_setup: Tool, devpi_server: ServerProcess) -> None:
    devpi = devpi_setup
    devpi("use", "root/local")
    devpi("user", "-c", "carol", "password=carolpw", "email=carol@example.test")
    assert "carol" in devpi("user", "-l").split()
    # devpi-client sends the whole fetched userconfig back, "created" and all.
    devpi("user", "-m", "carol", "email=c@example.test")
    assert get_json(devpi_server, "carol")["result"]["email"] == "c@example.test"
    devpi("user", "-m", "carol", "password=newcarolpw")
    login_token(devpi_server, "carol", "newcarolpw")

    assert {"root/local", "root/pypi", "root/python-local"} <= set(devpi("index", "-l").split())
    devpi("index", "-c", "scratch", "bases=root/local")
    devpi("index", "scratch", "mirror_whitelist+=shared-pkg", "title=Scratch")
    scratch = get_json(devpi_server, "root/scratch")["result"]
    assert scratch["mirror_whitelist"] == ["shared-pkg"] and scratch["title"] == "Scratch"
    devpi("index", "scratch", "mirror_whitelist-=shared-pkg")
    assert get_json(devpi_server, "root/scratch")["result"]["mirror_whitelist"] == []

    listing = devpi("list", "shared-pkg")
    assert "/root/python-local/+f/" in listing and "shared_pkg-3.0-py3-none-any.whl" in listing
    assert "/root/pypi/+f/" in listing and "shared_pkg-4.0-py3-none-any.whl" in listing
    assert json.loads(devpi("getjson", "/root/local"))["result"]["type"] == "stage"
    assert "Refreshed shared-pkg" in devpi("refresh", "shared-pkg")

    devpi("index", "-y", "--delete", "root/scratch")
    assert "root/scratch" not in devpi("index", "-l").split()
    devpi("user", "-y", "--delete", "carol")
    assert "carol" not in devpi("user", "-l").split()


@needs_devpi
def test_devpi_upload_list_push_remove(
    devpi_setup: Tool, devpi_server: ServerProcess, tmp_path: Path
) -> None:
    devpi = devpi_setup
    devpi("use", "root/local")
    wheel = build_wheel(tmp_path, "demo-pkg", "0.1", summary="demo")
    sdist = build_sdist(tmp_path, "demo-pkg", "0.1", summary="demo")
    devpi("upload", str(wheel), str(sdist))
    assert "demo-pkg" in devpi("list").split()
    assert wheel.name in devpi("list", "demo-pkg")

    devpi("index", "-c", "pushdst")
    out = devpi("push", "demo-pkg==0.1", "root/pushdst")
    assert "store_releasefile" in out
    pushed = get_json(devpi_server, "root/pushdst/demo-pkg")["result"]
    assert sorted(link["href"].rsplit("/", 1)[1] for link in pushed["0.1"]["+links"]) == sorted(
        [wheel.name, sdist.name]
    )

    devpi("remove", "-y", "demo-pkg==0.1")
    status, _, _ = devpi_server.request("GET", "root/local/demo-pkg/0.1")
    assert status == 404
    # The pushed copy names the same blobs; removing the original must not take them away.
    href = pushed["0.1"]["+links"][0]["href"]
    status, _, body = devpi_server.request("GET", href.split("/", 3)[3], headers={"Accept": "*/*"})
    assert status == 200 and body
    devpi("index", "-y", "--delete", "root/pushdst")


# -- the same set-up through the pkgmirror command line ------------------------------------------


@needs_devpi
def test_pkgmirror_setup_gives_the_same_server_state(
    devpi_setup: Tool,
    devpi_server: ServerProcess,
    scratch_venv: Path,
    tmp_path_factory: pytest.TempPathFactory,
    upstreams: dict[str, UpstreamProcess],
) -> None:
    base = tmp_path_factory.mktemp("pkgmirror-setup")
    with new_server(base, "server", upstreams["public"].url) as server:
        pm = pkgmirror_tool(base / "home")
        pm("use", server.url)
        pm("login", "root", "--password", ROOT_PASSWORD)
        pm("index", "pypi", "mirror_use_external_urls=True")
        pm(
            "index",
            "-c",
            "python-local",
            f"mirror_url={upstreams['intranet'].url}",
            "title=Intranet: python-local",
            "type=mirror",
            "volatile=False",
        )
        pm(
            "index",
            "-c",
            "local",
            "bases=root/python-local,root/pypi",
            "title=Local: personal index",
        )
        pm("use", "--venv", "-", "root/local")
        # pip in a venv whose pip.conf `pkgmirror use --venv` wrote installs from root/local;
        # `--venv -` takes our lines out again.
        venv = scratch_venv
        pm("use", "--venv", str(venv))
        index_url = server.url + "root/local/+simple/"
        assert index_url in (venv / "pip.conf").read_text()
        assert index_url in (venv / "uv.toml").read_text()
        downloaded = venv_pip_download(venv, pm.env, base / "downloads", index_url)
        assert downloaded == [
            "private_pkg-1.1-py3-none-any.whl",
            "shared_pkg-4.0-py3-none-any.whl",
        ]
        uv_installed = venv_uv_install(venv, pm.env, index_url)
        assert uv_installed == {"private-pkg": "1.1"}
        pm("use", "--venv", "-")
        for name in ("pip.conf", "uv.toml"):
            path = venv / name
            assert not path.exists() or index_url not in path.read_text()
        for index in ("root/local", "root/python-local", "root/pypi"):
            # Without the project lists: what the mirrors cached depends on the tests before.
            path = f"{index}?no_projects="
            assert get_json(server, path) == get_json(devpi_server, path), index
        assert get_json(server, "root/local")["result"]["projects"] == []
        mine, theirs = server_state(server)["root"], server_state(devpi_server)["root"]
        usual = ("local", "pypi", "python-local")
        assert {k: mine["indexes"][k] for k in usual} == {k: theirs["indexes"][k] for k in usual}
        assert {k: v for k, v in mine.items() if k != "indexes"} == {
            k: v for k, v in theirs.items() if k != "indexes"
        }


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, UpstreamProcess]
) -> Iterator[ServerProcess]:
    """A server with root/local and user alice (who owns alice/dev), for the refusal tests."""
    base = tmp_path_factory.mktemp("refusals")
    with new_server(base, "server", upstreams["public"].url) as server:
        auth = ("root", ROOT_PASSWORD)
        for path, body in (
            ("root/local", {"bases": "root/pypi"}),
            ("alice", {"password": "alicepw", "email": "alice@example.test"}),
        ):
            status, _, reply = server.request("PUT", path, body, auth=auth)
            assert status in (200, 201), reply
        status, _, reply = server.request(
            "PUT", "alice/dev", {"bases": ""}, auth=("alice", "alicepw")
        )
        assert status == 200, reply
        yield server


@pytest.fixture
def pm(shared: ServerProcess, tmp_path: Path) -> Tool:
    tool = pkgmirror_tool(tmp_path / "home")
    tool("use", shared.url + "root/local")
    return tool


def refused(tool: Tool, server: ServerProcess, *args: str, rc: int) -> str:
    """Runs a command that must fail with ``rc`` and leave the server as it was; its stderr."""
    before = server_state(server)
    done = tool.run(*args)
    assert done.returncode == rc, f"{args}: rc {done.returncode}: {done.stdout}{done.stderr}"
    assert server_state(server) == before, f"{args} changed the server"
    return done.stderr


def test_wrong_password(pm: Tool, shared: ServerProcess) -> None:
    err = refused(pm, shared, "login", "root", "--password", "wrong", rc=1)
    assert "401" in err and "could not be authenticated" in err
    assert "not logged in" in pm("use")


def test_someone_elses_index(pm: Tool, shared: ServerProcess) -> None:
    pm("login", "alice", "--password", "alicepw")
    err = refused(pm, shared, "index", "root/local", "title=mine now", rc=1)
    assert "403" in err and "no permission to modify index root/local" in err
    err = refused(pm, shared, "index", "-c", "root/evil", rc=1)
    assert "403" in err and "no permission to create index root/evil" in err
    err = refused(pm, shared, "index", "-y", "--delete", "root/local", rc=1)
    assert "403" in err
    err = refused(pm, shared, "user", "-m", "root", "email=alice@example.test", rc=1)
    assert "403" in err and "no permission to modify user root" in err
    err = refused(pm, shared, "passwd", "root", "--password", "pwned", rc=1)
    assert "403" in err
    # Her own index is hers to change.
    pm("index", "dev", "title=Alice's")
    assert get_json(shared, "alice/dev")["result"]["title"] == "Alice's"


def test_anonymous_changes_are_refused(pm: Tool, shared: ServerProcess) -> None:
    status, _, body = shared.request("PUT", "root/anon", {})
    assert status == 403, body
    assert json.loads(body)["message"].startswith("no permission to create index root/anon")
    status, _, _ = shared.request("PATCH", "root/local", ["title=x"])
    assert status == 403
    status, _, _ = shared.request("DELETE", "alice")
    assert status == 403


def test_unknown_index(pm: Tool, shared: ServerProcess) -> None:
    pm("login", "root", "--password", ROOT_PASSWORD)
    err = refused(pm, shared, "index", "root/nope", "title=x", rc=1)
    assert "404" in err and "root/nope does not exist" in err
    err = refused(pm, shared, "use", shared.url + "root/nope", rc=1)
    assert "root/nope does not exist" in err
    err = refused(pm, shared, "list", "--index", "nobody/nope", rc=1)
    assert "404" in err


def test_malformed_keyvalues(pm: Tool, shared: ServerProcess) -> None:
    pm("login", "root", "--password", ROOT_PASSWORD)
    # Caught before anything is sent: usage, exit 2.
    err = refused(pm, shared, "index", "local", "title", rc=2)
    assert "key=value" in err
    err = refused(pm, shared, "index", "-c", "new", "=x", rc=2)
    assert "malformed key" in err
    # Well-formed but refused by the server: exit 1 with the server's reason.
    err = refused(pm, shared, "index", "local", "bogus_key=1", rc=1)
    assert "400" in err and "bogus_key" in err
    err = refused(pm, shared, "index", "local", "volatile=perhaps", rc=1)
    assert "volatile" in err
    err = refused(pm, shared, "index", "local", "bases=nobody/nothing", rc=1)
    assert "nobody/nothing" in err


@needs_devpi
def test_devpi_client_refusals(shared: ServerProcess, tmp_path: Path) -> None:
    devpi = devpi_tool(tmp_path / "home")
    devpi("use", "--always-set-cfg", "no", shared.url + "root/local")
    before = server_state(shared)
    done = devpi.run("login", "--password", "wrong", "root")
    assert done.returncode == 1 and "could not be authenticated" in done.stdout + done.stderr
    devpi("login", "--password", "alicepw", "alice")
    done = devpi.run("index", "root/local", "title=mine now")
    assert done.returncode == 1
    assert "403" in done.stdout and "no permission to modify index root/local" in done.stdout
    done = devpi.run("index", "dev", "bogus_key=1")
    assert done.returncode == 1 and "bogus_key" in done.stdout
    done = devpi.run("index", "-c", "root/evil")
    assert done.returncode == 1 and "no permission to create index root/evil" in done.stdout
    assert server_state(shared) == before


# -- tokens ---------------------------------------------------------------------------------------


def test_a_token_the_server_refuses_is_forgotten(pm: Tool, shared: ServerProcess) -> None:
    status, _, body = shared.request("PUT", "dora", {"password": "dorapw"})
    assert status == 201, body
    pm("login", "dora", "--password", "dorapw")
    status, _, body = shared.request("DELETE", "dora", auth=("root", ROOT_PASSWORD))
    assert status == 200, body
    err = refused(pm, shared, "index", "-c", "root/mine", rc=1)
    assert "401" in err and "no longer exists" in err and "pkgmirror login dora" in err
    assert "not logged in" in pm("use")


def test_expired_token(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, UpstreamProcess]
) -> None:
    base = tmp_path_factory.mktemp("expiry")
    with new_server(base, "server", upstreams["public"].url, "--token-ttl", "2") as server:
        token = login_token(server, "root", ROOT_PASSWORD)
        pm = pkgmirror_tool(base / "home")
        pm("use", server.url)
        out = pm("login", "root", "--password", ROOT_PASSWORD)
        assert "valid for" in out
        status, _, body = server.request(
            "PUT", "root/fresh", {}, headers=token_header("root", token)
        )
        assert status == 200, body
        time.sleep(2.2)

        before = server_state(server)
        status, headers, body = server.request(
            "PUT", "root/stale", {}, headers=token_header("root", token)
        )
        assert status == 401
        assert "expired" in json.loads(body)["message"]
        assert headers["Location"].endswith("/+login")
        status, _, body = server.request("GET", "+api", headers=token_header("root", token))
        assert status == 200 and json.loads(body)["result"]["authstatus"][0] == "expired"

        # The command line knows when its token expires and says so before sending anything.
        done = pm.run("index", "-c", "stale")
        assert done.returncode == 2 and "expired" in done.stderr
        assert "not logged in" in pm("use")
        if DEVPI is not None:
            devpi = devpi_tool(base / "devpi-home")
            devpi("use", "--always-set-cfg", "no", server.url)
            devpi("login", "--password", ROOT_PASSWORD, "root")
            time.sleep(2.2)
            done = devpi.run("index", "-c", "stale")
            assert done.returncode == 1
            assert "removed expired authentication information" in done.stdout + done.stderr
        assert server_state(server) == before


def test_tokens_survive_a_restart(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, UpstreamProcess]
) -> None:
    base = tmp_path_factory.mktemp("restart")
    server = new_server(base, "server", upstreams["public"].url)
    pm = pkgmirror_tool(base / "home")
    try:
        pm("use", server.url)
        pm("login", "root", "--password", ROOT_PASSWORD)
        server.stop()
        server = ServerProcess.start(server.serverdir, port=server.port)
        pm("index", "-c", "after-restart")
        assert get_json(server, "root/after-restart")["result"]["type"] == "stage"
    finally:
        server.stop()


def test_repeated_login_failures_are_slowed_down(shared: ServerProcess) -> None:
    def attempt(user: str, password: str) -> tuple[int, float]:
        started = time.monotonic()
        status, _, _ = shared.request("POST", "+login", {"user": user, "password": password})
        return status, time.monotonic() - started

    first = [attempt("alice", f"guess{i}") for i in range(4)]
    assert all(status == 401 for status, _ in first)
    status, took = attempt("alice", "guess4")
    assert status == 401 and took >= 0.45, took
    status, took = attempt("alice", "guess5")
    assert status == 401 and took >= 0.95, took
    # The slow-down is per user: root is not held up by guesses at alice.
    status, took = attempt("root", ROOT_PASSWORD)
    assert status == 200 and took < 0.45
    # alice herself still gets in, after the same wait.
    status, took = attempt("alice", "alicepw")
    assert status == 200 and took >= 0.45


def test_pkgmirror_upload_list_remove(pm: Tool, shared: ServerProcess, tmp_path: Path) -> None:
    pm("login", "root", "--password", ROOT_PASSWORD)
    wheel = build_wheel(tmp_path, "up-pkg", "1.0", summary="uploaded")
    out = pm("upload", str(wheel))
    assert f"uploaded {wheel.name} to root/local" in out
    assert "up-pkg" in pm("list").split()
    listing = pm("list", "up-pkg")
    assert "up-pkg 1.0" in listing and "root/local/+f/" in listing
    versions = json.loads(pm("list", "up-pkg", "--json"))
    assert list(versions) == ["1.0"]
    pm("remove", "-y", "up-pkg==1.0")
    status, _, _ = shared.request("GET", "root/local/up-pkg/1.0")
    assert status == 404
