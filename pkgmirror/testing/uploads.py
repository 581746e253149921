"""
Upload request bodies as the real uploaders build them, for tests that talk to the upload API
without installing twine and friends.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from pathlib import Path

from pkgmirror.names import parse_dist_filename


def multipart(
    fields: Iterable[tuple[str, str]],
    filename: str | None,
    content: bytes,
    *,
    boundary: str | None = None,
    file_content_type: str | None = "application/octet-stream",
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its Content-Type; no file part when filename is None."""
    boundary = boundary or uuid.uuid4().hex
    out: list[bytes] = []
    for name, value in fields:
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    if filename is not None:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        )
        if file_content_type is not None:
            head += f"Content-Type: {file_content_type}\r\n"
        out.append(head.encode() + b"\r\n" + content + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def upload_fields(
    filename: str,
    content: bytes,
    *,
    name: str | None = None,
    version: str | None = None,
    digests: Iterable[str] = ("sha256", "blake2_256"),
    **extra: str,
) -> list[tuple[str, str]]:
    """The fields twine sends for a file (name and version from its file name by default)."""
    parsed = parse_dist_filename(filename) or ("", "")
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("metadata_version", "2.1"),
        ("name", name if name is not None else parsed[0]),
        ("version", version if version is not None else parsed[1]),
        ("filetype", "bdist_wheel" if filename.endswith(".whl") else "sdist"),
        ("pyversion", "py3" if filename.endswith(".whl") else "source"),
    ]
    makers = {
        "md5": lambda: hashlib.md5(content, usedforsecurity=False).hexdigest(),
        "sha256": lambda: hashlib.sha256(content).hexdigest(),
        "blake2_256": lambda: hashlib.blake2b(content, digest_size=32).hexdigest(),
    }
    fields += [(f"{d}_digest", makers[d]()) for d in digests]
    fields += list(extra.items())
    return fields


def upload_body(path: Path, **kw: str) -> tuple[bytes, str]:
    """A twine-like upload of the file at ``path``: (body, Content-Type)."""
    content = path.read_bytes()
    return multipart(upload_fields(path.name, content, **kw), path.name, content)


__all__ = ["multipart", "upload_body", "upload_fields"]
