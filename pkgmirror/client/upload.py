"""
The legacy upload form (``:action=file_upload``) as devpi-client and twine send it.

Pure apart from reading the distribution file: the core metadata comes from the wheel's
``*.dist-info/METADATA`` or the sdist's ``PKG-INFO``, the rest from the file name.
"""

from __future__ import annotations

import email.parser
import hashlib
import secrets
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

from pkgmirror.names import SDIST_SUFFIXES, parse_dist_filename

UPLOAD_SUFFIXES = (".whl", *SDIST_SUFFIXES)

# Core metadata header -> form field, as twine names them. Multiple-use fields repeat the field.
_SINGLE_FIELDS = {
    "Metadata-Version": "metadata_version",
    "Summary": "summary",
    "Home-page": "home_page",
    "Download-URL": "download_url",
    "Author": "author",
    "Author-email": "author_email",
    "Maintainer": "maintainer",
    "Maintainer-email": "maintainer_email",
    "License": "license",
    "License-Expression": "license_expression",
    "Keywords": "keywords",
    "Requires-Python": "requires_python",
    "Description-Content-Type": "description_content_type",
}
_MULTI_FIELDS = {
    "Classifier": "classifiers",
    "Requires-Dist": "requires_dist",
    "Provides-Extra": "provides_extra",
    "Project-URL": "project_urls",
    "Platform": "platform",
    "Supported-Platform": "supported_platform",
    "Requires-External": "requires_external",
    "Provides-Dist": "provides_dist",
    "Obsoletes-Dist": "obsoletes_dist",
    "License-File": "license_file",
    "Dynamic": "dynamic",
}
# A PKG-INFO or METADATA larger than this is not read (it would be a broken or hostile file).
MAX_METADATA_BYTES = 10 * 1024 * 1024


class UploadError(Exception):
    """A file that cannot be uploaded; the message says why."""


@attrs.frozen
class UploadForm:
    filename: str
    fields: tuple[tuple[str, str], ...]
    content: bytes

    def field(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None


def filetype_and_pyversion(filename: str) -> tuple[str, str]:
    """``("bdist_wheel", <python tag>)`` for wheels, ``("sdist", "source")`` for sdists."""
    if filename.endswith(".whl"):
        # name-version(-build)?-python-abi-platform.whl; twine sends the python tag ("py3").
        return "bdist_wheel", filename[: -len(".whl")].split("-")[-3]
    return "sdist", "source"


def read_core_metadata(path: Path) -> str | None:
    """The METADATA / PKG-INFO text of a wheel or sdist, or None when it has none we can find."""
    name = path.name
    try:
        if name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    parts = info.filename.split("/")
                    if (
                        len(parts) == 2
                        and parts[0].endswith(".dist-info")
                        and parts[1] == "METADATA"
                        and info.file_size <= MAX_METADATA_BYTES
                    ):
                        return archive.read(info).decode("utf-8", "replace")
            return None
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.count("/") == 1 and info.filename.endswith("/PKG-INFO"):
                        if info.file_size <= MAX_METADATA_BYTES:
                            return archive.read(info).decode("utf-8", "replace")
            return None
        with tarfile.open(path) as archive:
            for member in archive:
                if (
                    member.isfile()
                    and member.name.count("/") == 1
                    and member.name.endswith("/PKG-INFO")
                    and member.size <= MAX_METADATA_BYTES
                ):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        return handle.read().decode("utf-8", "replace")
            return None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise UploadError(f"{name}: cannot read the archive: {error}") from error


def metadata_fields(text: str) -> list[tuple[str, str]]:
    message = email.parser.Parser().parsestr(text)
    fields: list[tuple[str, str]] = []
    for header, field in _SINGLE_FIELDS.items():
        value = message.get(header)
        if value is not None and str(value).strip():
            fields.append((field, str(value)))
    for header, field in _MULTI_FIELDS.items():
        for value in message.get_all(header) or ():
            if str(value).strip():
                fields.append((field, str(value)))
    description = message.get_payload()
    if isinstance(description, str) and description.strip():
        fields.append(("description", description))
    elif message.get("Description"):
        fields.append(("description", str(message["Description"])))
    return fields


def build_upload_form(path: Path) -> UploadForm:
    filename = path.name
    parsed = parse_dist_filename(filename)
    if parsed is None or not filename.endswith(UPLOAD_SUFFIXES):
        raise UploadError(f"{filename}: not a wheel or sdist file name")
    name, version = parsed
    try:
        content = path.read_bytes()
    except OSError as error:
        raise UploadError(f"{filename}: {error.strerror or error}") from error
    metadata = read_core_metadata(path)
    filetype, pyversion = filetype_and_pyversion(filename)
    fields: list[tuple[str, str]] = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("name", name),
        ("version", version),
        ("filetype", filetype),
        ("pyversion", pyversion),
        ("sha256_digest", hashlib.sha256(content).hexdigest()),
    ]
    if metadata is not None:
        fields.extend((k, v) for k, v in metadata_fields(metadata) if k not in ("name", "version"))
    return UploadForm(filename, tuple(fields), content)


def encode_multipart(form: UploadForm, boundary: str | None = None) -> tuple[bytes, str]:
    """The request body and its Content-Type."""
    boundary = boundary or secrets.token_hex(16)
    return b"".join(_parts(form, boundary)), f"multipart/form-data; boundary={boundary}"


def _parts(form: UploadForm, boundary: str) -> Iterator[bytes]:
    for name, value in form.fields:
        yield f"--{boundary}\r\n".encode()
        yield f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        yield value.encode("utf-8") + b"\r\n"
    yield f"--{boundary}\r\n".encode()
    yield (
        f'Content-Disposition: form-data; name="content"; filename="{_quote(form.filename)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield form.content + b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")


def find_dist_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the wheels and sdists directly inside any directory given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.iterdir() if p.is_file() and p.name.endswith(UPLOAD_SUFFIXES)
                )
            )
        else:
            found.append(path)
    return found
