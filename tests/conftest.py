"""
Shared fixtures: upstream indexes filled with distributions the tests build, and a real
``twistd -n pkgmirror`` with root/pypi, root/python-local and root/local configured as users set
them up. Slow pieces are module-scoped so each end-to-end module pays for them once.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgmirror.testing.dists import build_sdist, build_wheel
from pkgmirror.testing.processes import UpstreamProcess, clean_client_env
from pkgmirror.testing.server import ServerProcess

ROOT_PASSWORD = "rootpw"

# (name, version) per upstream. "shared-pkg" is in both with different versions; the greatest
# (4.0) is only on the public one. "private-pkg" is only on the intranet one.
INTRANET = [
    ("shared-pkg", "1.0"),
    ("shared-pkg", "3.0"),
    ("private-pkg", "1.0"),
    ("private-pkg", "1.1"),
]
PUBLIC = [
    ("shared-pkg", "2.0"),
    ("shared-pkg", "4.0"),
    ("public-pkg", "1.0"),
    ("never-fetched", "1.0"),
    ("big-pkg", "1.0"),
]


def fill(root: Path, dists: list[tuple[str, str]]) -> Path:
    for name, version in dists:
        size = 3_000_000 if name == "big-pkg" else 0
        build_wheel(root, name, version, summary=f"{name} test dist", payload_size=size)
        build_sdist(root, name, version, summary=f"{name} test dist")
    return root


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, UpstreamProcess]]:
    base = tmp_path_factory.mktemp("upstreams")
    intranet = UpstreamProcess.start(fill(base / "intranet", INTRANET), "html")
    public = UpstreamProcess.start(fill(base / "public", PUBLIC), "json")
    yield {"intranet": intranet, "public": public}
    intranet.stop()
    public.stop()


def start_server(serverdir: Path, *args: str) -> ServerProcess:
    return ServerProcess.start(serverdir, *args)


def init_server(serverdir: Path, pypi_url: str | None) -> None:
    from pkgmirror.serverinit import init_serverdir

    init_serverdir(str(serverdir), ROOT_PASSWORD, "sqlite", "standalone", False, pypi_url)


def configure_indexes(server: ServerProcess, intranet_url: str, public_url: str) -> None:
    """The usual set-up, through the management API as devpi-client sends it."""
    auth = ("root", ROOT_PASSWORD)
    status, _, body = server.request("PATCH", "root/pypi", [f"mirror_url={public_url}"], auth=auth)
    assert status == 200, body
    status, _, body = server.request(
        "PUT",
        "root/python-local",
        {
            "type": "mirror",
            "mirror_url": intranet_url,
            "title": "Intranet: python-local",
            "volatile": "False",
        },
        auth=auth,
    )
    assert status == 200, body
    status, _, body = server.request(
        "PUT",
        "root/local",
        {"bases": "root/python-local,root/pypi", "title": "Local: personal index"},
        auth=auth,
    )
    assert status == 200, body


@pytest.fixture
def pip_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return clean_client_env(home)


def pip(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Real pip from the test environment, isolated from the machine's configuration."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--no-cache-dir", "--disable-pip-version-check", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def download(env: dict[str, str], index_url: str, *requirements: str, dest: Path) -> set[str]:
    """``pip download --no-deps`` from ``index_url`` into ``dest``, which must succeed."""
    result = pip(env, "download", "--no-deps", "-d", str(dest), "-i", index_url, *requirements)
    assert result.returncode == 0, result.stderr
    return {p.name for p in dest.iterdir()}


def stored_blobs(serverdir: Path, *, core_metadata: bool = False) -> list[Path]:
    """
    Committed blobs in a server directory (not the spool of partial downloads): package files,
    and with ``core_metadata`` also the METADATA files mirrors extract from upstream wheels.
    """
    blobs = serverdir / "blobs"
    found = [p for p in blobs.rglob("*") if p.is_file() and p.relative_to(blobs).parts[0] != "tmp"]
    if core_metadata:
        return found
    return [p for p in found if not _is_core_metadata(p)]


def _is_core_metadata(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(17) == b"Metadata-Version:"
