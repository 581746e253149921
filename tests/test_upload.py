"""
The upload body parser and the checks on uploaded files, without a server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.testing.dists import build_sdist, build_wheel
from pkgmirror.testing.uploads import multipart, upload_fields
from pkgmirror.upload import (
    UploadError,
    UploadForm,
    boundary_of,
    check_upload,
    metadata_is_servable,
    read_form,
)


class Chunky(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, to split delimiters."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = data
        self.step = step
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.step if size < 0 else min(size, self.step)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


def parse(
    body: bytes, content_type: str, limit: int = 1 << 30, step: int = 1 << 20
) -> tuple[UploadForm, bytes]:
    out: list[bytes] = []
    form = read_form(Chunky(body, step), boundary_of(content_type), out.append, limit)  # type: ignore[arg-type]
    return form, b"".join(out)


field_names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\;'),
    min_size=1,
    max_size=20,
).filter(lambda s: s != "content")


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(st.tuples(field_names, st.text(max_size=200)), max_size=8),
    content=st.binary(max_size=3000),
    step=st.integers(1, 700),
    file_first=st.booleans(),
)
def test_form_round_trip(
    fields: list[tuple[str, str]], content: bytes, step: int, file_first: bool
) -> None:
    boundary = "b0undary"
    # The file may contain what looks like a boundary, just not the delimiter itself.
    content = content.replace(b"\r\n--" + boundary.encode(), b"")
    content = b"--" + boundary.encode() + content
    body, content_type = multipart(fields, "x.whl", content, boundary=boundary)
    if file_first:
        body, content_type = multipart([], "x.whl", content, boundary=boundary)
        extra, _ = multipart(fields, None, b"", boundary=boundary)
        body = body[: -len(f"--{boundary}--\r\n")] + extra
    form, received = parse(body, content_type, step=step)
    assert received == content
    assert form.filename == "x.whl"
    assert form.size == len(content)
    assert form.sha256 == hashlib.sha256(content).hexdigest()
    expected: dict[str, list[str]] = {}
    for name, value in fields:
        expected.setdefault(name, []).append(value.replace("\r\n", "\n").replace("\n", "\r\n"))
    assert {
        k: [v.replace("\r\n", "\n").replace("\n", "\r\n") for v in vs]
        for k, vs in form.fields.items()
    } == expected


def test_uv_style_part_without_content_type_and_repeated_fields() -> None:
    body, content_type = multipart(
        [("classifiers", "A"), ("classifiers", "B"), ("home_page", "")],
        "demo-1.0.tar.gz",
        b"data",
        file_content_type=None,
    )
    form, received = parse(body, content_type)
    assert received == b"data"
    assert form.fields["classifiers"] == ["A", "B"]
    assert form.get("home_page") is None, "blank values (pdm) count as absent"


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        (None, "no Content-Type"),
        ("application/json", "not application/json"),
        ("multipart/form-data", "boundary"),
    ],
)
def test_not_a_form(content_type: str | None, reason: str) -> None:
    with pytest.raises(UploadError) as e:
        boundary_of(content_type)
    assert e.value.code == 400 and reason in e.value.message


def test_truncated_body() -> None:
    body, content_type = multipart([("a", "b")], "x.whl", b"x" * 1000)
    with pytest.raises(UploadError) as e:
        parse(body[:600], content_type)
    assert e.value.code == 400 and "truncated" in e.value.message


def test_file_over_limit_is_413_before_the_end() -> None:
    body, content_type = multipart([], "x.whl", b"x" * 10_000)
    seen: list[bytes] = []
    with pytest.raises(UploadError) as e:
        read_form(Chunky(body, 1000), boundary_of(content_type), seen.append, 5000)  # type: ignore[arg-type]
    assert e.value.code == 413 and "upload limit" in e.value.message
    assert sum(map(len, seen)) <= 5000


# --------------------------------------------------------------------------- checks


def form_for(path: Path, **kw: str) -> UploadForm:
    content = path.read_bytes()
    body, content_type = multipart(upload_fields(path.name, content, **kw), path.name, content)
    form, _ = parse(body, content_type)
    return form


def test_good_wheel_and_sdist(tmp_path: Path) -> None:
    for path in (
        build_wheel(tmp_path, "Demo.Pkg", "1.0", requires_python=">=3.8"),
        build_sdist(tmp_path, "Demo.Pkg", "1.0", requires_python=">=3.8"),
    ):
        checked = check_upload(form_for(path), str(path))
        assert (checked.project, checked.version) == ("demo-pkg", "1.0")
        assert checked.requires_python == ">=3.8"
        assert b"Name: Demo.Pkg" in checked.core_metadata
        assert checked.metadata["name"] == "demo-pkg"


def rejected(form: UploadForm, path: Path) -> str:
    with pytest.raises(UploadError) as e:
        check_upload(form, str(path))
    assert e.value.code == 400
    assert "\n" not in e.value.message
    return e.value.message


def test_name_version_and_digest_disagreements(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    assert "the form says other" in rejected(form_for(wheel, name="other"), wheel)
    assert "the form says 2.0" in rejected(form_for(wheel, version="2.0"), wheel)
    assert "not a valid (PEP 440) version" in rejected(form_for(wheel, version="one"), wheel)
    assert "invalid project name" in rejected(form_for(wheel, name="-demo-pkg-"), wheel)
    form = form_for(wheel)
    form.fields["sha256_digest"] = ["0" * 64]
    assert "sha256_digest" in rejected(form, wheel)
    form = form_for(wheel, digests=("md5",))
    form.fields["md5_digest"] = ["f" * 32]
    assert "md5_digest" in rejected(form, wheel)
    form = form_for(wheel)
    form.fields[":action"] = ["doc_upload"]
    assert ":action must be file_upload" in rejected(form, wheel)


def test_metadata_must_agree_with_file_name(tmp_path: Path) -> None:
    other = build_wheel(tmp_path / "o", "other-pkg", "1.0")
    renamed = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    renamed.write_bytes(other.read_bytes())
    assert "in its metadata it is project other-pkg" in rejected(form_for(renamed), renamed)
    newer = build_sdist(tmp_path / "n", "demo-pkg", "2.0")
    renamed = tmp_path / "demo_pkg-1.0.tar.gz"
    renamed.write_bytes(newer.read_bytes())
    assert "in its metadata it is version 2.0" in rejected(form_for(renamed), renamed)


def test_file_names(tmp_path: Path) -> None:
    for filename, reason in (
        ("demo_pkg-1.0-py2.7.egg", "only wheels"),
        ("demo_pkg-latest-py3-none-any.whl", "cannot read a project name and version"),
        ("..", "invalid file name"),
    ):
        path = tmp_path / "f"
        path.write_bytes(b"data")
        content = path.read_bytes()
        body, content_type = multipart(
            upload_fields(filename, content, name="demo-pkg", version="1.0"), filename, content
        )
        form, _ = parse(body, content_type)
        assert reason in rejected(form, path)


def write_as(tmp_path: Path, filename: str, data: bytes) -> Path:
    path = tmp_path / filename
    path.write_bytes(data)
    return path


def test_archives_that_are_not_distributions(tmp_path: Path) -> None:
    junk = write_as(tmp_path, "demo_pkg-1.0-py3-none-any.whl", b"PK\x03\x04 not really")
    assert "not a valid zip archive" in rejected(form_for(junk), junk)
    junk = write_as(tmp_path, "demo_pkg-1.0.tar.gz", b"\x1f\x8b not really")
    assert "not a valid gzipped tar archive" in rejected(form_for(junk), junk)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("demo_pkg/__init__.py", "")
    bare = write_as(tmp_path, "demo_pkg-1.0-py3-none-any.whl", buffer.getvalue())
    assert "has no *.dist-info/METADATA" in rejected(form_for(bare), bare)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        info = tarfile.TarInfo("demo_pkg-1.0/setup.py")
        t.addfile(info, io.BytesIO(b""))
    bare = write_as(tmp_path, "demo_pkg-1.0.tar.gz", buffer.getvalue())
    assert "has no PKG-INFO" in rejected(form_for(bare), bare)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        info = tarfile.TarInfo("../../etc/evil")
        t.addfile(info, io.BytesIO(b""))
    evil = write_as(tmp_path, "demo_pkg-1.0.tar.gz", buffer.getvalue())
    assert "unsafe path" in rejected(form_for(evil), evil)


def test_bombs(tmp_path: Path) -> None:
    zeros = b"\0" * (1 << 20)
    wheel = build_wheel(tmp_path / "w", "demo-pkg", "1.0")
    bomb = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as good, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for info in good.infolist():
            z.writestr(info, good.read(info))
        with z.open("demo_pkg/zeros.bin", "w") as member:
            for _ in range(100):
                member.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    assert "decompression bomb" in rejected(form_for(bomb), bomb)

    sdist = build_sdist(tmp_path / "s", "demo-pkg", "1.0")
    bomb = tmp_path / sdist.name
    with (
        tarfile.open(sdist) as good,
        open(bomb, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w") as t,
    ):
        for info in good.getmembers():
            t.addfile(info, good.extractfile(info) if info.isfile() else None)
        info = tarfile.TarInfo("demo_pkg-1.0/zeros.bin")
        info.size = 100 << 20
        t.addfile(info, io.BytesIO(b"\0" * info.size))
    assert "decompression bomb" in rejected(form_for(bomb), bomb)


@pytest.mark.parametrize(
    ("filename", "metadata", "servable"),
    [
        ("demo-1.0-py3-none-any.whl", b"Metadata-Version: 2.1\nName: demo\n", True),
        ("demo-1.0.tar.gz", b"Metadata-Version: 2.1\nName: demo\n", False),
        ("demo-1.0.tar.gz", b"Metadata-Version: 2.2\nName: demo\n", True),
        ("demo-1.0.tar.gz", b"Metadata-Version: 2.4\nName: demo\nDynamic: Requires-Dist\n", False),
        ("demo-1.0.tar.gz", b"Metadata-Version: 2.4\nName: demo\nDynamic: Keywords\n", True),
        ("demo-1.0.tar.gz", b"Metadata-Version: two\nName: demo\n", False),
    ],
)
def test_sdist_metadata_is_offered_only_when_reliable(
    filename: str, metadata: bytes, servable: bool
) -> None:
    # Resolvers trust PEP 658 files; an sdist's PKG-INFO before 2.2 may not name its real deps.
    assert metadata_is_servable(filename, metadata) is servable
