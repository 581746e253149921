"""
The legacy upload API's body, and what makes an uploaded file acceptable. No Twisted.

Everything here blocks (it reads files): the server runs it in a thread. Failures are
:class:`UploadError` with an HTTP status and a one-line reason meant for the person uploading.

``read_form`` parses ``multipart/form-data`` as a stream from a file: the ``content`` part goes
to a sink chunk by chunk (hashed on the way), never whole into memory. ``check_upload`` then looks
inside the archive: a real zip or tar, not a bomb, with core metadata that agrees with the file
name and the form.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from email.parser import BytesHeaderParser
from typing import IO, Any

import attrs
from packaging.metadata import parse_email
from packaging.version import InvalidVersion, Version

from pkgmirror.names import (
    MAX_FILENAME_LENGTH,
    is_safe_path_segment,
    is_valid_project_name,
    normalize,
    parse_dist_filename,
)

CHUNK = 256 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024
# Every part but the file together: descriptions can be long, but not this long.
MAX_FIELD_BYTES = 8 * 1024 * 1024
# Slack above the file size limit a whole request body may use (the other form fields).
FORM_OVERHEAD = MAX_FIELD_BYTES + 64 * 1024

MAX_METADATA_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 200_000
MAX_UNPACKED_BYTES = 16 * 1024**3
# Unpacked size over packed size beyond which a large archive counts as a bomb. Real wheels
# stay well below 20; a bomb is thousands.
MAX_RATIO = 200
RATIO_FREE_BYTES = 64 * 1024 * 1024

WHEEL_SUFFIX = ".whl"
SDIST_SUFFIXES = (".tar.gz", ".zip")

DIGEST_FIELDS = ("md5_digest", "sha256_digest", "blake2_256_digest")

# What devpi keeps of the form as a version's metadata; the list-valued ones may repeat.
METADATA_KEYS = (
    "name",
    "version",
    "metadata_version",
    "summary",
    "home_page",
    "author",
    "author_email",
    "maintainer",
    "maintainer_email",
    "license",
    "license_expression",
    "license_file",
    "description",
    "description_content_type",
    "keywords",
    "platform",
    "classifiers",
    "download_url",
    "supported_platform",
    "project_urls",
    "provides_dist",
    "obsoletes_dist",
    "requires_dist",
    "requires_external",
    "requires_python",
    "provides_extra",
    "dynamic",
)
LIST_KEYS = frozenset(
    {
        "platform",
        "classifiers",
        "supported_platform",
        "project_urls",
        "provides_dist",
        "obsoletes_dist",
        "requires_dist",
        "requires_external",
        "provides_extra",
        "dynamic",
        "license_file",
    }
)


class UploadError(Exception):
    """An upload refused: ``code`` is the HTTP status, the message one line for a person."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> UploadError:
    return UploadError(400, message)


@attrs.define
class UploadForm:
    """The form of one upload request; the file's bytes went to the sink."""

    fields: dict[str, list[str]] = attrs.field(factory=dict)
    filename: str | None = None
    size: int = 0
    md5: str = ""
    sha256: str = ""
    blake2_256: str = ""

    def get(self, key: str) -> str | None:
        """The first non-blank value of a field (pdm sends empty strings for absent ones)."""
        for value in self.fields.get(key, ()):
            if value.strip():
                return value.strip()
        return None


# --------------------------------------------------------------------------- multipart

_PARAM = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="x"; filename="y"`` -> (``form-data``, {name: x, filename: y})."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(";" + rest):
        raw = raw.strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return main.strip().lower(), params


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary a Content-Type names; UploadError(400) when it is no form."""
    if not content_type:
        raise _bad("expected a multipart/form-data upload (no Content-Type given)")
    kind, params = header_params(content_type)
    if kind != "multipart/form-data":
        raise _bad(f"expected a multipart/form-data upload, not {kind[:60]}")
    boundary = params.get("boundary", "")
    if not 0 < len(boundary) <= 200:
        raise _bad("multipart/form-data without a usable boundary")
    return boundary.encode("latin-1", "replace")


class _Reader:
    """A window over a stream for finding delimiters without reading it whole."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        # The first delimiter may come without the CRLF that precedes every later one.
        self.buf = b"\r\n"
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.stream.read(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True


def read_form(
    stream: IO[bytes],
    boundary: bytes,
    sink: Callable[[bytes], None],
    max_file_size: int,
) -> UploadForm:
    """
    Parses a ``multipart/form-data`` body from ``stream``. The part named ``content`` is written
    to ``sink`` in chunks and hashed; other parts are kept as text fields (repeats kept, order
    irrelevant). UploadError(413) once the file exceeds ``max_file_size``, UploadError(400) for
    a malformed body.
    """
    form = UploadForm()
    reader = _Reader(stream)
    delimiter = b"\r\n--" + boundary
    field_bytes = 0
    # Preamble: skip to the first delimiter.
    _skip_to(reader, delimiter)
    while True:
        # After a delimiter: "--" ends the body, else optional padding and CRLF start a part.
        while len(reader.buf) < 2 and reader.fill():
            pass
        if reader.buf.startswith(b"--"):
            break
        headers = _read_headers(reader)
        disposition, params = header_params(headers.get("content-disposition", ""))
        if disposition != "form-data" or "name" not in params:
            raise _bad("a form part without Content-Disposition: form-data; name=...")
        name = params["name"]
        if name == "content":
            if form.filename is not None:
                raise _bad("more than one file part named content")
            filename = params.get("filename")
            if filename is None:
                raise _bad("the content part carries no filename")
            form.filename = filename
            file_sink = _FileSink(filename, sink, max_file_size)
            _copy_part(reader, delimiter, file_sink.write)
            form.size = file_sink.size
            form.md5, form.sha256, form.blake2_256 = (h.hexdigest() for h in file_sink.hashes)
            continue
        parts: list[bytes] = []
        field_bytes = _copy_part(reader, delimiter, parts.append, field_bytes, MAX_FIELD_BYTES)
        if "filename" in params:
            continue  # another file (a signature, say): not kept
        try:
            value = b"".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"form field {name[:60]!r} is not UTF-8 text") from None
        form.fields.setdefault(name, []).append(value)
    return form


def _skip_to(reader: _Reader, delimiter: bytes) -> None:
    while True:
        at = reader.buf.find(delimiter)
        if at >= 0:
            reader.buf = reader.buf[at + len(delimiter) :]
            return
        reader.buf = reader.buf[-len(delimiter) :]
        if not reader.fill():
            raise _bad("the multipart body has no part with the declared boundary")


def _read_headers(reader: _Reader) -> dict[str, str]:
    while True:
        end = reader.buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(reader.buf) > MAX_PART_HEADER_BYTES:
            raise _bad("a form part's headers are too long")
        if not reader.fill():
            raise _bad("the upload ended inside a form part's headers (truncated body)")
    block = reader.buf[:end]
    reader.buf = reader.buf[end + 4 :]
    # The rest of the delimiter line (transport padding) comes first, then the headers.
    _, _, block = block.partition(b"\r\n")
    message = BytesHeaderParser().parsebytes(block + b"\r\n\r\n")
    return {k.lower(): str(v) for k, v in message.items()}


class _FileSink:
    """Counts, hashes and passes on the file's bytes; refuses them past the size limit."""

    def __init__(self, filename: str, sink: Callable[[bytes], None], limit: int) -> None:
        self.filename = filename
        self.sink = sink
        self.limit = limit
        self.size = 0
        self.hashes = (
            hashlib.md5(usedforsecurity=False),
            hashlib.sha256(),
            hashlib.blake2b(digest_size=32),
        )

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadError(
                413,
                f"{self.filename} is larger than this server's upload limit of {_size(self.limit)}",
            )
        for h in self.hashes:
            h.update(chunk)
        self.sink(chunk)


def _copy_part(
    reader: _Reader,
    delimiter: bytes,
    out: Callable[[bytes], None],
    used: int = 0,
    limit: int | None = None,
) -> int:
    """Copies one part's body to ``out``; fires with ``used`` plus its size (capped at limit)."""
    keep = len(delimiter) - 1
    while True:
        at = reader.buf.find(delimiter)
        if at >= 0:
            chunk, reader.buf = reader.buf[:at], reader.buf[at + len(delimiter) :]
        elif len(reader.buf) > keep:
            chunk, reader.buf = reader.buf[:-keep], reader.buf[-keep:]
        else:
            chunk = b""
        if chunk:
            used += len(chunk)
            if limit is not None and used > limit:
                raise UploadError(413, f"the form fields are larger than {_size(limit)}")
            out(chunk)
        if at >= 0:
            return used
        if not reader.fill():
            raise _bad("the upload ended before the form did (truncated body)")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


# --------------------------------------------------------------------------- checks


@attrs.frozen
class CheckedUpload:
    """An upload that passed every check: what to store."""

    project: str
    version: str
    filename: str
    core_metadata: bytes
    requires_python: str | None
    metadata: Mapping[str, Any]


def metadata_is_servable(filename: str, core_metadata: bytes) -> bool:
    """
    Whether ``core_metadata`` may be offered as the file's PEP 658 metadata. A wheel's always;
    an sdist's only from Metadata-Version 2.2 (PEP 643) on and when the fields resolvers read are
    not marked Dynamic: older PKG-INFO may list dependencies the built wheel does not have.
    """
    if filename.endswith(".whl"):
        return True
    import email.parser

    headers = email.parser.BytesHeaderParser().parsebytes(core_metadata)
    try:
        version = tuple(int(p) for p in (headers.get("Metadata-Version") or "0").split(".")[:2])
    except ValueError:
        return False
    dynamic = {d.strip().lower() for d in headers.get_all("Dynamic") or []}
    return version >= (2, 2) and not dynamic & {"requires-dist", "requires-python"}


def check_form(form: UploadForm) -> None:
    """The checks that need no file: action, protocol, digests."""
    action = form.get(":action")
    if action != "file_upload":
        raise _bad(f":action must be file_upload, not {action!r}")
    protocol = form.get("protocol_version")
    if protocol not in (None, "1"):
        raise _bad(f"protocol_version {protocol!r} is not supported (only 1)")
    if form.filename is None:
        raise _bad("no file: the form has no part named content")
    for key, actual in (
        ("md5_digest", form.md5),
        ("sha256_digest", form.sha256),
        ("blake2_256_digest", form.blake2_256),
    ):
        given = form.get(key)
        if given is not None and given.lower() != actual:
            raise _bad(
                f"{key} {given[:80]} does not match the uploaded file ({actual}): "
                "the upload was damaged or the digest is wrong"
            )


def check_filename(filename: str) -> tuple[str, str]:
    """The normalised project name and version of an uploadable file name."""
    if not is_safe_path_segment(filename) or len(filename) > MAX_FILENAME_LENGTH:
        raise _bad(f"invalid file name {filename[:100]!r}")
    lower = filename.lower()
    if not (lower.endswith(WHEEL_SUFFIX) or lower.endswith(SDIST_SUFFIXES)):
        raise _bad(
            f"{filename}: only wheels (.whl) and source distributions (.tar.gz, .zip) "
            "can be uploaded"
        )
    parsed = parse_dist_filename(filename)
    if parsed is None:
        shape = (
            "NAME-VERSION(-BUILD)-PY-ABI-PLATFORM.whl"
            if lower.endswith(".whl")
            else ("NAME-VERSION.tar.gz")
        )
        raise _bad(f"cannot read a project name and version from {filename}: expected {shape}")
    return parsed


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def check_upload(form: UploadForm, path: str) -> CheckedUpload:
    """
    Checks a received upload whose file is at ``path``: the form, the file name against the
    form's ``name`` and ``version``, the archive and its core metadata.
    """
    check_form(form)
    assert form.filename is not None
    filename = form.filename
    file_project, file_version = check_filename(filename)
    name = form.get("name")
    version = form.get("version")
    if name is None or version is None:
        raise _bad("the form must give the project's name and version")
    if not is_valid_project_name(name):
        raise _bad(f"invalid project name {name[:100]!r}")
    if normalize(name) != file_project:
        raise _bad(f"file {filename} is of project {file_project}, but the form says {name}")
    try:
        Version(version)
    except InvalidVersion:
        raise _bad(f"version {version[:60]!r} is not a valid (PEP 440) version") from None
    if not _same_version(version, file_version):
        raise _bad(f"file {filename} is of version {file_version}, but the form says {version}")
    if form.size == 0:
        raise _bad(f"{filename} is empty")

    core = read_core_metadata(path, filename)
    meta_name, meta_version, requires_python = _parse_core_metadata(core, filename)
    if normalize(meta_name) != file_project:
        raise _bad(f"{filename} says in its metadata it is project {meta_name}")
    if not _same_version(meta_version, file_version):
        raise _bad(f"{filename} says in its metadata it is version {meta_version}")
    return CheckedUpload(
        project=file_project,
        version=str(Version(version)),
        filename=filename,
        core_metadata=core,
        requires_python=requires_python or form.get("requires_python"),
        metadata=form_metadata(form),
    )


def form_metadata(form: UploadForm) -> dict[str, Any]:
    """The form's metadata fields as devpi keeps them; blank values are left out."""
    result: dict[str, Any] = {}
    for key in METADATA_KEYS:
        values = [v for v in form.fields.get(key, ()) if v.strip()]
        if not values:
            continue
        result[key] = values if key in LIST_KEYS else values[0]
    return result


def _parse_core_metadata(data: bytes, filename: str) -> tuple[str, str, str | None]:
    raw, _unparsed = parse_email(data)
    name = raw.get("name")
    version = raw.get("version")
    if not name or not version:
        raise _bad(f"the core metadata in {filename} has no Name or no Version")
    requires_python = raw.get("requires_python")
    return str(name), str(version), str(requires_python) if requires_python else None


def read_core_metadata(path: str, filename: str) -> bytes:
    """
    The core metadata file inside the archive at ``path`` (a wheel's ``.dist-info/METADATA``,
    an sdist's ``PKG-INFO``), after checking the archive is real and not a bomb.
    """
    lower = filename.lower()
    if lower.endswith(".tar.gz"):
        return _from_tar(path, filename)
    wheel = lower.endswith(WHEEL_SUFFIX)
    return _from_zip(path, filename, ".dist-info/METADATA" if wheel else "/PKG-INFO")


def _check_totals(filename: str, members: int, unpacked: int, packed: int) -> None:
    if members > MAX_MEMBERS:
        raise _bad(f"{filename} has more than {MAX_MEMBERS} members")
    if unpacked > MAX_UNPACKED_BYTES or (
        unpacked > RATIO_FREE_BYTES and unpacked > MAX_RATIO * max(packed, 1)
    ):
        raise _bad(
            f"{filename} would unpack to {_size(unpacked)} from {_size(packed)}: "
            "refused as a decompression bomb"
        )


def _check_member_name(filename: str, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise _bad(f"{filename} contains an unsafe path {name[:100]!r}")


def _from_zip(path: str, filename: str, suffix: str) -> bytes:
    packed = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_totals(filename, len(infos), sum(i.file_size for i in infos), packed)
            candidates = []
            for info in infos:
                _check_member_name(filename, info.filename)
                if info.filename.count("/") == 1 and info.filename.endswith(suffix):
                    candidates.append(info)
            if not candidates:
                where = "*.dist-info/METADATA" if suffix.startswith(".dist") else "PKG-INFO"
                raise _bad(f"{filename} has no {where}: not a valid distribution")
            stem = "-".join(filename.split("-")[:2]).lower()
            candidates.sort(key=lambda i: not i.filename.lower().startswith(stem))
            info = candidates[0]
            if info.file_size > MAX_METADATA_BYTES:
                raise _bad(
                    f"{filename}: {info.filename} is larger than {_size(MAX_METADATA_BYTES)}"
                )
            with archive.open(info) as member:
                data = member.read(MAX_METADATA_BYTES + 1)
            if len(data) > MAX_METADATA_BYTES:
                raise _bad(f"{filename}: {info.filename} is larger than it says")
            return data
    except zipfile.BadZipFile as e:
        raise _bad(f"{filename} is not a valid zip archive ({e})") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as e:
        raise _bad(f"{filename} cannot be read as a zip archive ({e})") from None


def _from_tar(path: str, filename: str) -> bytes:
    packed = os.path.getsize(path)
    found: bytes | None = None
    members = 0
    unpacked = 0
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            while (info := archive.next()) is not None:
                members += 1
                unpacked += max(info.size, 0)
                _check_totals(filename, members, unpacked, packed)
                _check_member_name(filename, info.name)
                name = posixpath.normpath(info.name)
                if (
                    found is None
                    and info.isfile()
                    and name.count("/") == 1
                    and name.endswith("/PKG-INFO")
                ):
                    if info.size > MAX_METADATA_BYTES:
                        raise _bad(f"{filename}: {name} is larger than {_size(MAX_METADATA_BYTES)}")
                    member = archive.extractfile(info)
                    if member is not None:
                        found = member.read(MAX_METADATA_BYTES + 1)
    except tarfile.TarError as e:
        raise _bad(f"{filename} is not a valid gzipped tar archive ({e})") from None
    except (OSError, EOFError, zlib.error) as e:
        raise _bad(f"{filename} is not a valid gzipped tar archive ({e})") from None
    if members == 0:
        raise _bad(f"{filename} is an empty archive")
    if found is None:
        raise _bad(f"{filename} has no PKG-INFO in its top directory: not a valid sdist")
    return found


__all__ = [
    "FORM_OVERHEAD",
    "CheckedUpload",
    "UploadError",
    "UploadForm",
    "boundary_of",
    "check_filename",
    "check_form",
    "check_upload",
    "read_core_metadata",
    "read_form",
]
