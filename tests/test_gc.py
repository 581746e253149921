"""
``pkgmirror gc``: stored files nothing references go, everything a stage or a mirror lists stays
and still installs, and it never runs beside a server.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from pkgmirror.gc import GcReport, collect
from pkgmirror.interfaces import IStorage
from pkgmirror.testing.dists import build_wheel
from pkgmirror.testing.memory import MemoryBlobStore
from pkgmirror.testing.processes import UpstreamProcess, clean_client_env
from pkgmirror.testing.server import ServerProcess
from pkgmirror.testing.uploads import upload_body
from tests.conftest import ROOT_PASSWORD, download, fill, init_server, stored_blobs

BIN = Path(sys.executable).parent
ROOT = ("root", ROOT_PASSWORD)


def gc(serverdir: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pkgmirror"), "gc", "--serverdir", str(serverdir), *args],
        capture_output=True,
        text=True,
        env=clean_client_env(home),
        timeout=120,
    )


def plant_blob(serverdir: Path, data: bytes) -> Path:
    sha = hashlib.sha256(data).hexdigest()
    path = serverdir / "blobs" / sha[:2] / sha[2:4] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.e2e
def test_gc_removes_only_what_nothing_references(tmp_path: Path, pip_env: dict[str, str]) -> None:
    upstream = UpstreamProcess.start(fill(tmp_path / "public", [("mirrored-pkg", "1.0")]), "json")
    serverdir = tmp_path / "server"
    init_server(serverdir, upstream.url)
    build_wheel(tmp_path / "dists", "own-pkg", "2.0")
    (wheel,) = (tmp_path / "dists").glob("own_pkg-*.whl")
    with ServerProcess.start(serverdir) as server:
        status, _, body = server.request("PUT", "root/local", {"bases": "root/pypi"}, auth=ROOT)
        assert status in (200, 201), body
        data, content_type = upload_body(wheel)
        status, _, body = server.request(
            "POST", "root/local/", data, headers={"Content-Type": content_type}, auth=ROOT
        )
        assert status == 200, body
        index_url = server.url + "root/local/+simple/"
        assert download(pip_env, index_url, "mirrored-pkg", "own-pkg", dest=tmp_path / "a")
        # Never beside a running server: it may be about to reference a blob it just stored.
        refused = gc(serverdir, tmp_path / "home")
        assert refused.returncode == 1
        assert (
            refused.stderr.strip()
            .splitlines()[-1]
            .endswith(f"in use by another pkgmirror (pid {server.process.pid}): stop it first")
        )
    upstream.stop()

    kept = set(stored_blobs(serverdir, core_metadata=True))
    orphan = plant_blob(serverdir, b"bytes whose record a crash lost")
    spool = serverdir / "blobs" / "tmp" / "spool-0123456789abcdef"
    spool.write_bytes(b"half a download")

    dry = gc(serverdir, tmp_path / "home", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["unreferenced"] == [orphan.name]
    assert report["blobs"] == len(kept) + 1
    assert orphan.exists() and spool.exists()

    done = gc(serverdir, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "removed 1 that nothing references (31 bytes)" in done.stdout
    assert not orphan.exists() and not spool.exists()
    assert set(stored_blobs(serverdir, core_metadata=True)) == kept

    # Everything listed still installs, with the upstream gone.
    with ServerProcess.start(serverdir) as server:
        index_url = server.url + "root/local/+simple/"
        assert download(pip_env, index_url, "mirrored-pkg", "own-pkg", dest=tmp_path / "b") == {
            "mirrored_pkg-1.0-py3-none-any.whl",
            wheel.name,
        }


def test_gc_of_something_else_is_one_line(tmp_path: Path) -> None:
    result = gc(tmp_path, tmp_path / "home")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"pkgmirror gc: {tmp_path} is not a pkgmirror server directory"
    )


class References:
    """The part of IStorage that ``collect`` asks: which of these blobs no record names."""

    def __init__(self, referenced: set[str]) -> None:
        self.referenced = referenced
        self.asked = 0

    def unreferenced(self, names: list[str]) -> Deferred[list[str]]:
        self.asked += 1
        return succeed(sorted(n for n in names if n not in self.referenced))


def run(d: Deferred[GcReport] | Any) -> Any:
    box: list[Any] = []
    Deferred.fromCoroutine(d).addBoth(box.append) if not isinstance(d, Deferred) else d.addBoth(
        box.append
    )
    (value,) = box
    if isinstance(value, Failure):
        value.raiseException()
    return value


def test_collect_walks_every_prefix_and_keeps_what_is_referenced() -> None:
    blobs = MemoryBlobStore()
    names = [run(blobs.put_bytes(f"blob {i}".encode())) for i in range(2000)]
    assert len({n[:2] for n in names}) == 256
    storage = References(set(names[::2]))
    dry = run(collect(cast(IStorage, storage), blobs, dry_run=True))
    assert dry.blobs == 2000 and set(dry.unreferenced) == set(names[1::2])
    assert dry.unreferenced_bytes == sum(len(f"blob {i}") for i in range(1, 2000, 2))
    assert len(blobs.blobs) == 2000, "a dry run removes nothing"
    done = run(collect(cast(IStorage, storage), blobs))
    assert done.unreferenced == dry.unreferenced
    assert set(blobs.blobs) == set(names[::2])
    assert storage.asked == 512  # one question per prefix with blobs, in both walks
