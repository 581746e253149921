"""The ``pkgmirror`` command line against an in-process fake devpi-JSON server."""

from __future__ import annotations

import base64
import configparser
import json
import re
import stat
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pkgmirror.testing.clientfixtures import Cli
    from pkgmirror.testing.fakedevpi import FakeDevpi

pytest_plugins = ["pkgmirror.testing.clientfixtures"]


def state(cli: Cli) -> dict[str, object]:
    return json.loads(cli.state_path.read_text())


# -- use, login, logout ------------------------------------------------------------------------


def test_use_a_server_then_an_index(cli: Cli, fake_devpi: FakeDevpi) -> None:
    fake_devpi.add_index("root", "dev")
    result = cli("use", fake_devpi.url)
    assert result.rc == 0, result.err
    assert fake_devpi.url in result.out
    assert "not logged in" in result.out
    assert [(r.method, r.path) for r in fake_devpi.requests] == [("GET", "/+api")]
    assert fake_devpi.requests[0].headers["accept"] == "application/json"

    result = cli("use", "root/dev")
    assert result.rc == 0, result.err
    assert f"{fake_devpi.url}root/dev/+simple/" in result.out
    assert fake_devpi.requests[-1].path == "/root/dev/+api"
    saved = state(cli)
    assert saved["url"] == fake_devpi.url
    assert saved["index"] == "root/dev"
    assert saved["simpleindex"] == f"{fake_devpi.url}root/dev/+simple/"
    assert stat.S_IMODE(cli.state_path.stat().st_mode) == 0o600


def test_use_accepts_the_simple_url_people_paste(cli: Cli, fake_devpi: FakeDevpi) -> None:
    fake_devpi.add_index("root", "dev")
    assert cli("use", fake_devpi.url + "root/dev/+simple/").rc == 0
    assert state(cli)["index"] == "root/dev"


def test_use_of_an_unknown_index_is_refused(cli: Cli, fake_devpi: FakeDevpi) -> None:
    result = cli("use", fake_devpi.url + "root/nope")
    assert result.rc == 1
    assert "root/nope does not exist" in result.err
    assert not cli.state_path.exists()


def test_use_of_an_unreachable_server(cli: Cli) -> None:
    result = cli("use", "http://127.0.0.1:9/")
    assert result.rc == 1
    assert "cannot reach" in result.err


def test_use_needs_a_full_url_first(cli: Cli) -> None:
    result = cli("use", "root/dev")
    assert result.rc == 2
    assert "full URL" in result.err


def test_login_stores_a_token_that_later_requests_send(cli: Cli, fake_devpi: FakeDevpi) -> None:
    fake_devpi.add_index("root", "dev")
    cli("use", fake_devpi.url + "root/dev")
    result = cli("login", "root", "--password", "rootpw")
    assert result.rc == 0, result.err
    assert "logged in as root" in result.out
    login = fake_devpi.requests[-1]
    assert (login.method, login.path) == ("POST", "/+login")
    assert login.json() == {"user": "root", "password": "rootpw"}
    saved = state(cli)["login"]
    assert isinstance(saved, dict) and saved["user"] == "root"
    assert "rootpw" not in cli.state_path.read_text(), "the password itself is not stored"

    assert cli("index").rc == 0
    sent = fake_devpi.requests[-1].headers["x-devpi-auth"]
    assert base64.b64decode(sent).decode() == f"root:{saved['token']}"
    assert "logged in as root" in cli("use").out


def test_wrong_password(cli: Cli, fake_devpi: FakeDevpi) -> None:
    cli("use", fake_devpi.url)
    result = cli("login", "root", "--password", "nope")
    assert result.rc == 1
    assert "401" in result.err and "could not be authenticated" in result.err
    assert state(cli)["login"] is None


def test_login_without_password_off_a_terminal_is_a_usage_error(
    cli: Cli, fake_devpi: FakeDevpi
) -> None:
    cli("use", fake_devpi.url)
    fake_devpi.requests.clear()
    result = cli("login", "root")
    assert result.rc == 2
    assert "--password" in result.err
    assert fake_devpi.requests == []


def test_logout_forgets_the_token_without_a_request(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("logout")
    assert result.rc == 0
    assert "logged out root" in result.out
    assert logged_in.requests == []
    assert state(cli)["login"] is None
    assert "not logged in" in cli("use").out


def test_expired_token(cli: Cli, logged_in: FakeDevpi) -> None:
    logged_in.expire_tokens()
    result = cli("index", "dev", "title=x")
    assert result.rc == 1
    assert "401" in result.err
    assert "pkgmirror login root" in result.err
    assert logged_in.users["root"]["indexes"]["dev"].get("title") is None
    # The 401 came with the login URL as Location (devpi's sign of a stale token): forgotten.
    assert state(cli)["login"] is None

    result = cli("use")
    assert result.rc == 0
    assert "not logged in" in result.out


def test_token_past_its_local_expiry_is_not_sent(cli: Cli, logged_in: FakeDevpi) -> None:
    saved = state(cli)
    assert isinstance(saved["login"], dict)
    saved["login"]["expires"] = 1.0
    cli.state_path.write_text(json.dumps(saved))
    result = cli("index", "-c", "new")
    assert result.rc == 2
    assert "expired" in result.err and "pkgmirror login root" in result.err
    assert logged_in.requests == []
    result = cli("index", "-c", "root/new")
    assert result.rc == 1
    assert "403" in result.err and "login" in result.err
    assert "x-devpi-auth" not in logged_in.requests[-1].headers


# -- index -------------------------------------------------------------------------------------


def test_index_create_sends_an_object_of_strings(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("index", "-c", "stage", "bases=root/dev", "volatile=False", "title=My stage")
    assert result.rc == 0, result.err
    put = logged_in.requests[0]
    assert (put.method, put.path) == ("PUT", "/root/stage")
    assert put.json() == {"bases": "root/dev", "volatile": "False", "title": "My stage"}
    assert "root/stage" in result.out
    assert "volatile:" in result.out and "False" in result.out
    assert logged_in.users["root"]["indexes"]["stage"]["bases"] == ["root/dev"]


def test_index_modify_sends_a_list_of_operations(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("index", "dev", "mirror_whitelist+=foo", "title=T", "volatile=False")
    assert result.rc == 0, result.err
    patch = logged_in.requests[0]
    assert (patch.method, patch.path) == ("PATCH", "/root/dev")
    assert patch.json() == ["mirror_whitelist+=foo", "title=T", "volatile=False"]
    config = logged_in.users["root"]["indexes"]["dev"]
    assert config["mirror_whitelist"] == ["foo"]
    assert config["volatile"] is False
    assert cli("index", "root/dev", "mirror_whitelist-=foo").rc == 0
    assert logged_in.users["root"]["indexes"]["dev"]["mirror_whitelist"] == []


def test_index_modify_of_the_current_index(cli: Cli, logged_in: FakeDevpi) -> None:
    assert cli("index", "title=current").rc == 0
    assert logged_in.requests[0].path == "/root/dev"


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "dev", "title"],
        ["index", "dev", "=x"],
        ["index", "dev", "ti tle=x"],
        ["index", "-c", "new", "bases+=root/dev"],
        ["index", "-c", "new", "title=a", "title=b"],
        ["user", "-m", "root", "email"],
        ["user", "-c", "bob", "password+=x"],
    ],
)
def test_malformed_keyvalues_send_nothing(cli: Cli, logged_in: FakeDevpi, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.rc == 2
    assert result.err
    assert logged_in.requests == []


def test_unknown_key_is_refused_by_the_server(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("index", "dev", "bogus_key=1")
    assert result.rc == 1
    assert "unexpected keyword arguments: bogus_key=1" in result.err


def test_another_users_index(cli: Cli, logged_in: FakeDevpi) -> None:
    logged_in.users["alice"] = {"password": "a", "created": "", "indexes": {}}
    logged_in.add_index("alice", "prod")
    assert cli("logout").rc == 0
    assert cli("login", "alice", "--password", "a").rc == 0
    result = cli("index", "root/dev", "title=mine")
    assert result.rc == 1
    assert "403" in result.err and "no permission" in result.err
    assert "title" not in logged_in.users["root"]["indexes"]["dev"]
    result = cli("index", "-c", "root/evil")
    assert result.rc == 1
    assert "evil" not in logged_in.users["root"]["indexes"]


def test_unknown_index(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("index", "nope", "title=x")
    assert result.rc == 1
    assert "404" in result.err and "root/nope does not exist" in result.err


def test_index_list_and_delete(cli: Cli, logged_in: FakeDevpi) -> None:
    logged_in.add_index("root", "pypi", type="mirror", mirror_url="http://127.0.0.1:1/simple/")
    result = cli("index", "-l")
    assert result.rc == 0
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines] == ["root/dev", "root/pypi"]
    assert "mirror" in lines[1]
    assert logged_in.requests[-1].path == "/root"

    result = cli("index", "--delete", "pypi")
    assert result.rc == 2, "no confirmation without a terminal or -y"
    assert "-y" in result.err
    result = cli("index", "--delete", "-y", "pypi")
    assert result.rc == 0
    assert (logged_in.requests[-1].method, logged_in.requests[-1].path) == ("DELETE", "/root/pypi")
    assert "pypi" not in logged_in.users["root"]["indexes"]


def test_index_list_needs_a_login(cli: Cli, fake_devpi: FakeDevpi) -> None:
    cli("use", fake_devpi.url)
    fake_devpi.requests.clear()
    result = cli("index", "-l")
    assert result.rc == 2
    assert "not logged in" in result.err
    assert fake_devpi.requests == []
    assert cli("index", "-l", "root").rc == 0


def test_json_output_is_the_servers_result(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("--json", "index", "dev")
    assert result.rc == 0
    assert json.loads(result.out) == logged_in.users["root"]["indexes"]["dev"]
    result = cli("index", "-l", "--json")
    assert json.loads(result.out) == logged_in.users["root"]["indexes"]


# -- user, passwd ------------------------------------------------------------------------------


def test_user_create_list_modify_delete(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("user", "-c", "alice", "password=secret", "email=alice@example.test")
    assert result.rc == 0, result.err
    put = logged_in.requests[-1]
    assert (put.method, put.path) == ("PUT", "/alice")
    assert put.json() == {"password": "secret", "email": "alice@example.test"}

    result = cli("user", "-l")
    assert result.rc == 0
    assert [line.split()[0] for line in result.out.splitlines()] == ["alice", "root"]
    assert "alice@example.test" in result.out

    assert cli("user", "-m", "alice", "email=new@example.test").rc == 0
    assert logged_in.requests[-1].json() == {"email": "new@example.test"}
    assert logged_in.users["alice"]["email"] == "new@example.test"

    assert cli("user", "--delete", "-y", "alice").rc == 0
    assert "alice" not in logged_in.users


def test_user_create_twice(cli: Cli, logged_in: FakeDevpi) -> None:
    assert cli("user", "-c", "alice", "password=x").rc == 0
    result = cli("user", "-c", "alice", "password=y")
    assert result.rc == 1
    assert "409" in result.err and "already exists" in result.err
    assert logged_in.users["alice"]["password"] == "x"


def test_passwd(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("passwd", "--password", "newpw")
    assert result.rc == 0
    patch = logged_in.requests[-1]
    assert (patch.method, patch.path, patch.json()) == ("PATCH", "/root", {"password": "newpw"})
    assert cli("logout").rc == 0
    assert cli("login", "root", "--password", "rootpw").rc == 1
    assert cli("login", "root", "--password", "newpw").rc == 0


# -- projects ----------------------------------------------------------------------------------


def make_wheel(directory: Path, name: str = "demo_pkg", version: str = "0.1") -> Path:
    import zipfile

    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        archive.writestr(
            f"{name}-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
            "Summary: A demo\nRequires-Python: >=3.8\nClassifier: A :: B\nClassifier: C :: D\n"
            "\nLong description.\n",
        )
    return path


def make_sdist(directory: Path, name: str = "demo_pkg", version: str = "0.1") -> Path:
    import io
    import tarfile

    path = directory / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_upload_list_remove(cli: Cli, logged_in: FakeDevpi, tmp_path: Path) -> None:
    wheel, sdist = make_wheel(tmp_path), make_sdist(tmp_path)
    result = cli("upload", str(wheel), str(sdist))
    assert result.rc == 0, result.err
    posts = logged_in.requests
    assert [(r.method, r.path) for r in posts] == [("POST", "/root/dev/")] * 2
    body = posts[0].body
    assert b'name=":action"\r\n\r\nfile_upload\r\n' in body
    assert b'name="protocol_version"\r\n\r\n1\r\n' in body
    assert b'name="filetype"\r\n\r\nbdist_wheel\r\n' in body
    assert b'name="requires_python"\r\n\r\n>=3.8\r\n' in body
    assert body.count(b'name="classifiers"') == 2
    assert b'name="content"; filename="demo_pkg-0.1-py3-none-any.whl"' in body
    assert b'name="pyversion"\r\n\r\nsource\r\n' in posts[1].body
    assert "uploaded demo_pkg-0.1-py3-none-any.whl to root/dev" in result.out

    make_wheel(tmp_path, version="0.2")
    assert cli("upload", str(tmp_path / "demo_pkg-0.2-py3-none-any.whl")).rc == 0

    result = cli("list")
    assert result.out.split() == ["demo-pkg"]
    result = cli("list", "Demo_Pkg")
    assert result.rc == 0
    lines = result.out.splitlines()
    assert lines[0] == "demo-pkg 0.2"
    assert "demo-pkg 0.1" in lines
    assert any(line.strip().endswith("demo_pkg-0.1.tar.gz") for line in lines)
    assert logged_in.requests[-1].path == "/root/dev/demo-pkg"

    logged_in.requests.clear()
    result = cli("remove", "demo-pkg==0.1")
    assert result.rc == 2, "asks for -y without a terminal"
    assert [r.method for r in logged_in.requests] == ["GET"]
    result = cli("remove", "-y", "demo-pkg==0.1")
    assert result.rc == 0, result.err
    assert (logged_in.requests[-1].method, logged_in.requests[-1].path) == (
        "DELETE",
        "/root/dev/demo-pkg/0.1",
    )
    assert list(logged_in.projects["root/dev"]["demo-pkg"]) == ["0.2"]
    assert cli("remove", "-y", "demo-pkg").rc == 0
    assert logged_in.projects["root/dev"] == {}


def test_remove_with_confirmation_on_a_terminal(
    cli: Cli, logged_in: FakeDevpi, tmp_path: Path
) -> None:
    assert cli("upload", str(make_wheel(tmp_path))).rc == 0
    result = cli("remove", "demo-pkg", stdin="n\n", tty=True)
    assert result.rc == 1
    assert "remove demo-pkg from root/dev?" in result.err
    assert "demo-pkg" in logged_in.projects["root/dev"]
    result = cli("remove", "demo-pkg", stdin="y\n", tty=True)
    assert result.rc == 0
    assert logged_in.projects["root/dev"] == {}


def test_upload_refusals(cli: Cli, logged_in: FakeDevpi, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("x")
    wheel = make_wheel(tmp_path)
    result = cli("upload", str(wheel), str(bogus))
    assert result.rc == 2
    assert "notes.txt" in result.err
    assert logged_in.requests == [], "nothing is sent when any file is wrong"

    logged_in.add_index("root", "pypi", type="mirror", mirror_url="http://127.0.0.1:1/simple/")
    result = cli("upload", "--index", "root/pypi", str(wheel))
    assert result.rc == 1
    assert "cannot submit to mirror index" in result.err

    assert cli("logout").rc == 0
    result = cli("upload", str(wheel))
    assert result.rc == 1
    assert "401" in result.err and "pkgmirror login" in result.err


def test_upload_without_files_outside_a_project(
    cli: Cli, logged_in: FakeDevpi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("upload")
    assert result.rc == 2
    assert "pyproject.toml" in result.err
    assert logged_in.requests == []


def test_list_and_remove_of_unknown_projects(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("list", "nothing")
    assert result.rc == 1 and "404" in result.err
    result = cli("remove", "-y", "nothing")
    assert result.rc == 1 and "404" in result.err
    assert [r.method for r in logged_in.requests] == ["GET", "GET"]
    result = cli("remove", "-y", "bad>=1")
    assert result.rc == 2


def test_refresh(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("refresh", "Foo_Bar")
    assert result.rc == 0, result.err
    post = logged_in.requests[-1]
    assert (post.method, post.path) == ("POST", "/root/dev/+simple/foo-bar/refresh")
    assert "x-devpi-auth" not in post.headers
    assert len(logged_in.requests) == 1, "the redirect to the page is not followed"


def test_getjson(cli: Cli, logged_in: FakeDevpi) -> None:
    result = cli("getjson", "/root/dev")
    assert result.rc == 0
    assert json.loads(result.out)["type"] == "indexconfig"
    result = cli("getjson", logged_in.url + "root/dev/")
    assert result.rc == 0, "redirects are followed"
    assert json.loads(result.out)["type"] == "indexconfig"
    result = cli("getjson", "/root/nope")
    assert result.rc == 1
    assert json.loads(result.out)["message"] == "index root/nope does not exist"


# -- pip and uv configuration ------------------------------------------------------------------


def test_use_venv_writes_pip_and_uv_config_and_dash_clears_it(
    cli: Cli, logged_in: FakeDevpi, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pip.conf").write_text("[global]\ntimeout = 3\nindex-url = http://old.test/simple/\n")
    result = cli("use", "--venv", str(venv))
    assert result.rc == 0, result.err
    simple = f"{logged_in.url}root/dev/+simple/"
    assert f"index-url = {simple}" in result.out, "the written lines are shown"
    assert "UV_CONFIG_FILE" in result.out
    parser = configparser.RawConfigParser()
    parser.read(venv / "pip.conf")
    assert parser.get("global", "index-url") == simple
    assert parser.get("global", "trusted-host") == "127.0.0.1"
    assert parser.get("global", "timeout") == "3"
    assert parser.get("search", "index") == f"{logged_in.url}root/dev/"
    assert simple in (venv / "uv.toml").read_text()
    assert state(cli)["venv"] == str(venv.resolve())

    result = cli("use", "--venv", "-")
    assert result.rc == 0
    assert (venv / "pip.conf").read_text() == (
        "[global]\ntimeout = 3\nindex-url = http://old.test/simple/\n"
    )
    assert not (venv / "uv.toml").exists()
    assert state(cli)["venv"] is None


def test_use_set_cfg_writes_the_user_config(
    cli: Cli, logged_in: FakeDevpi, client_env: Path
) -> None:
    result = cli("use", "--set-cfg")
    assert result.rc == 0, result.err
    pip_conf = client_env / ".config/pip/pip.conf"
    uv_toml = client_env / ".config/uv/uv.toml"
    assert "root/dev/+simple/" in pip_conf.read_text()
    assert "root/dev/+simple/" in uv_toml.read_text()
    assert str(pip_conf) in result.out
    assert cli("use", "--unset-cfg").rc == 0
    assert not pip_conf.exists() and not uv_toml.exists()


def test_use_venv_needs_an_index_and_a_directory(
    cli: Cli, fake_devpi: FakeDevpi, tmp_path: Path
) -> None:
    assert cli("use", fake_devpi.url).rc == 0
    result = cli("use", "--venv", str(tmp_path))
    assert result.rc == 2 and "no current index" in result.err
    result = cli("use", "--venv", str(tmp_path / "missing"))
    assert result.rc == 2 and "no such directory" in result.err


# -- init, usage -------------------------------------------------------------------------------


def test_init_calls_the_server_initialiser(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[object, ...]] = []

    class InitError(Exception):
        pass

    def init_serverdir(*args: object) -> None:
        calls.append(args)
        if len(calls) > 1:
            raise InitError("server directory already initialised")

    module = types.ModuleType("pkgmirror.serverinit")
    module.InitError = InitError  # type: ignore[attr-defined]
    module.init_serverdir = init_serverdir  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pkgmirror.serverinit", module)
    monkeypatch.setenv("PKGMIRROR_PYPI_URL", "http://127.0.0.1:18081/simple/")
    serverdir = str(tmp_path / "server")
    result = cli("init", "--serverdir", serverdir, "--root-passwd", "pw")
    assert result.rc == 0, result.err
    assert calls == [
        (serverdir, "pw", "sqlite", "standalone", False, "http://127.0.0.1:18081/simple/")
    ]
    result = cli("init", "--serverdir", serverdir, "--no-root-pypi", "--pypi-url", "http://x/")
    assert result.rc == 1
    assert "already initialised" in result.err
    assert calls[1][4:] == (True, "http://x/")


@pytest.mark.parametrize(
    "argv",
    [[], ["nosuchcommand"], ["login"], ["index", "-c", "-l", "x"], ["remove"]],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv).rc == 2


def test_commands_without_a_server_say_so(cli: Cli) -> None:
    result = cli("list")
    assert result.rc == 2
    assert "pkgmirror use" in result.err


def test_upload_without_files_builds_the_project_here(
    cli: Cli, logged_in: FakeDevpi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("build")
    pytest.importorskip("setuptools")
    project = tmp_path / "proj"
    (project / "tiny_demo").mkdir(parents=True)
    (project / "tiny_demo/__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny-demo"\nversion = "1.2"\nrequires-python = ">=3.9"\n'
    )
    monkeypatch.chdir(project)
    # --no-isolation: the test must not fetch a build backend from any index.
    result = cli("upload", "--no-isolation", "--sdist")
    assert result.rc == 0, result.err
    assert re.search(r"uploaded tiny[-_]demo-1\.2\.tar\.gz to root/dev", result.out)
    assert list(logged_in.projects["root/dev"]["tiny-demo"]) == ["1.2"]
    assert b'name="requires_python"\r\n\r\n>=3.9\r\n' in logged_in.requests[-1].body


def test_a_server_under_a_path_prefix() -> None:
    from pkgmirror.client.commands import _root_and_index

    api = {"login": "http://internal:3141/devpi/+login", "index": "x"}
    assert _root_and_index("https://pkgs.example.test/devpi/root/dev/", api) == (
        "https://pkgs.example.test/devpi/",
        "root/dev",
    )
    assert _root_and_index("https://pkgs.example.test/devpi/", api) == (
        "https://pkgs.example.test/devpi/",
        None,
    )
    # A server that announces no login URL: the index is the last two segments.
    assert _root_and_index("http://h/p/root/dev/", {"index": "x"}) == ("http://h/p/", "root/dev")


def test_wrong_password_gives_no_login_hint(cli: Cli, fake_devpi: FakeDevpi) -> None:
    cli("use", fake_devpi.url)
    result = cli("login", "root", "--password", "nope")
    assert result.rc == 1
    assert "run 'pkgmirror login" not in result.err


def test_passwords_are_asked_for_on_a_terminal(
    cli: Cli, logged_in: FakeDevpi, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["newpw", "newpw", "pw1", "pw2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert cli("passwd", tty=True).rc == 0
    assert logged_in.users["root"]["password"] == "newpw"
    result = cli("user", "-c", "bob", tty=True)
    assert result.rc == 2 and "differ" in result.err
    assert "bob" not in logged_in.users


def test_servers_without_keyvalue_parsing_get_the_whole_config(
    cli: Cli, logged_in: FakeDevpi
) -> None:
    saved = state(cli)
    saved["features"] = ["push-no-docs"]
    cli.state_path.write_text(json.dumps(saved))
    assert cli("index", "dev", "mirror_whitelist+=foo", "title=T").rc == 0
    assert [r.method for r in logged_in.requests] == ["GET", "PATCH"]
    body = logged_in.requests[1].json()
    assert isinstance(body, dict)
    assert body["mirror_whitelist"] == ["foo"] and body["title"] == "T"
    assert logged_in.users["root"]["indexes"]["dev"]["mirror_whitelist"] == ["foo"]
