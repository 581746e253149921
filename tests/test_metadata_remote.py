"""
Reading a wheel's METADATA through byte ranges: the pure zip pieces (against zipfile's own
reading), and Upstream.probe_file against an in-memory HTTP server that honours Range.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Request

from pkgmirror.metadata import (
    TAIL_BYTES,
    central_directory_span,
    extract_core_metadata,
    find_member,
    member_bytes,
)
from pkgmirror.testing.dists import build_wheel
from pkgmirror.testing.inmemory import serve_bytes
from pkgmirror.upstream import FileProbe, Upstream


def read_remotely(
    data: bytes, filename: str, tail_size: int = TAIL_BYTES
) -> tuple[bytes | None, int]:
    """METADATA through the range functions, as Upstream does it; also how many bytes it read."""
    fetched = 0

    def fetch(first: int, length: int) -> bytes:
        nonlocal fetched
        piece = data[first : first + length]
        fetched += len(piece)
        return piece

    tail_first = max(0, len(data) - tail_size)
    tail = fetch(tail_first, tail_size)
    offset, size = central_directory_span(tail, tail_first)
    if offset >= tail_first:
        central = tail[offset - tail_first : offset - tail_first + size]
    else:
        central = fetch(offset, size)
    member = find_member(central, filename)
    if member is None:
        return None, fetched
    first, length = member.local_span()
    local = fetch(first, length)
    result = member_bytes(local, member)
    if isinstance(result, int):
        result = member_bytes(fetch(first, result), member)
    assert isinstance(result, bytes)
    return result, fetched


def make_wheel(
    metadata: bytes,
    *,
    members: int = 3,
    compression: int = zipfile.ZIP_DEFLATED,
    force_zip64: bool = False,
    padding: int = 0,
) -> bytes:
    buffer = io.BytesIO()
    rng = random.Random(members)
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("demo/__init__.py", b"x = 1\n" + rng.randbytes(padding))
        for i in range(members):
            archive.writestr(f"demo/a_rather_long_module_name_to_grow_the_directory_{i:05}.py", b"")
        with archive.open("demo-1.0.dist-info/METADATA", "w", force_zip64=force_zip64) as f:
            f.write(metadata)
        archive.writestr("demo-1.0.dist-info/RECORD", b"")
    return buffer.getvalue()


def test_built_wheel_metadata_matches_zipfile(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, "demo-pkg", "1.2", requires_dist=["other>=1"])
    data = path.read_bytes()
    got, _ = read_remotely(data, path.name)
    assert got == extract_core_metadata(str(path), path.name)
    assert got is not None and b"Requires-Dist: other>=1" in got


@settings(max_examples=40, deadline=None)
@given(
    metadata=st.binary(max_size=5000),
    members=st.integers(0, 1500),
    stored=st.booleans(),
    force_zip64=st.booleans(),
    tail_size=st.sampled_from([200, 4096, TAIL_BYTES]),
)
def test_any_wheel_layout_reads_back(
    metadata: bytes, members: int, stored: bool, force_zip64: bool, tail_size: int
) -> None:
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    data = make_wheel(metadata, members=members, compression=compression, force_zip64=force_zip64)
    got, _ = read_remotely(data, "demo-1.0-py3-none-any.whl", tail_size)
    assert got == metadata


def test_big_wheel_is_not_read_whole() -> None:
    data = make_wheel(b"Metadata-Version: 2.1\nName: demo\n", padding=5_000_000)
    got, fetched = read_remotely(data, "demo-1.0-py3-none-any.whl")
    assert got is not None and got.startswith(b"Metadata-Version")
    assert fetched < 2 * TAIL_BYTES + 4096 < len(data) // 10


class RangeServer(Resource):
    """Files of a directory with single byte ranges, HEAD and Last-Modified, logging requests."""

    isLeaf = True

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.requests: list[tuple[bytes, bytes | None]] = []

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        self.requests.append((request.method, request.getHeader(b"range")))
        path = self.directory / request.postpath[-1].decode()
        if not path.is_file():
            request.setResponseCode(404)
            return b""
        data = path.read_bytes()
        request.setHeader(b"Last-Modified", b"Tue, 01 Jan 2019 00:00:00 GMT")
        request.setHeader(b"Accept-Ranges", b"bytes")
        return serve_bytes(request, data)


def run(stub: StubTreq, coro: Any) -> Any:
    d = Deferred.fromCoroutine(coro)
    results: list[Any] = []
    d.addBoth(results.append)
    stub.flush()
    assert results, "probe did not finish"
    if isinstance(results[0], BaseException) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def test_probe_file_reads_wheel_metadata_with_ranges_only(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0", payload_size=2_000_000)
    (tmp_path / "demo_pkg-1.0.tar.gz").write_bytes(b"sdist bytes")
    recorder = RangeServer(tmp_path)
    stub = StubTreq(recorder)
    upstream = Upstream(stub, Clock(), "http://upstream.test/simple/")

    probe = run(stub, upstream.probe_file(f"http://upstream.test/files/{wheel.name}", wheel.name))
    assert isinstance(probe, FileProbe)
    assert probe.size == wheel.stat().st_size
    assert probe.metadata == extract_core_metadata(str(wheel), wheel.name)
    assert probe.last_modified is not None
    assert recorder.requests and all(r is not None for _, r in recorder.requests)

    recorder.requests.clear()
    sdist = run(
        stub,
        upstream.probe_file(
            "http://upstream.test/files/demo_pkg-1.0.tar.gz", "demo_pkg-1.0.tar.gz"
        ),
    )
    assert sdist.size == len(b"sdist bytes") and sdist.metadata is None
    assert [m for m, _ in recorder.requests] == [b"HEAD"]
