"""
pytest fixtures for testing the ``pkgmirror`` command line against :class:`FakeDevpi`.

Use from a test module with ``pytest_plugins = ["pkgmirror.testing.clientfixtures"]``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from pkgmirror.client.main import main
from pkgmirror.testing.fakedevpi import FakeDevpi


@attrs.frozen
class CliResult:
    rc: int
    out: str
    err: str


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@attrs.define
class Cli:
    """Runs ``main(argv)`` in-process with captured output and a given stdin."""

    clientdir: Path

    def __call__(self, *argv: str, stdin: str = "", tty: bool = False) -> CliResult:
        """``tty`` makes stdin claim to be a terminal, so the command asks and reads it."""
        out, err = io.StringIO(), io.StringIO()
        rc = main(list(argv), stdout=out, stderr=err, stdin=(_Tty if tty else io.StringIO)(stdin))
        return CliResult(rc, out.getvalue(), err.getvalue())

    @property
    def state_path(self) -> Path:
        return self.clientdir / "current.json"


@pytest.fixture
def client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME, XDG config dir and client dir; no proxy or pip/uv settings leak in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("PKGMIRROR_CLIENTDIR", str(tmp_path / "client"))
    for name in (
        "PIP_CONFIG_FILE",
        "UV_CONFIG_FILE",
        "PKGMIRROR_PYPI_URL",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def cli(client_env: Path, tmp_path: Path) -> Cli:
    return Cli(tmp_path / "client")


@pytest.fixture
def fake_devpi() -> Iterator[FakeDevpi]:
    with FakeDevpi(root_password="rootpw") as fake:
        yield fake


@pytest.fixture
def logged_in(cli: Cli, fake_devpi: FakeDevpi) -> FakeDevpi:
    """root logged in, index root/dev created and in use; the recorded requests reset."""
    fake_devpi.add_index("root", "dev", bases="")
    assert cli("use", fake_devpi.url + "root/dev").rc == 0
    assert cli("login", "root", "--password", "rootpw").rc == 0
    fake_devpi.requests.clear()
    return fake_devpi
