"""
A minimal PEP 517 build backend, standard library only.

This file has two lives. ``pkgmirror.testing.dists`` imports it to write wheels, and copies it
verbatim into every sdist it builds as ``_backend/inline_backend.py`` (``backend-path``), so that
pip can build those sdists with no index at all: the build needs nothing but this file.

Inside an sdist it reads ``PKG-INFO`` for the name and version, and puts every file under
``src/`` into the wheel, with ``PKG-INFO`` as the wheel's ``METADATA``.

Keep it free of imports outside the standard library, and keep it working on Python 3.8+.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

WHEEL_TAG = "py3-none-any"
# Fixed timestamps make builds of the same inputs byte-identical.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def filename_stem(name: str, version: str) -> str:
    """``<name>-<version>`` as wheel and sdist file names spell it (PEP 427 / PEP 625)."""
    return "{}-{}".format(normalize(name).replace("-", "_"), version.replace("-", "_"))


def record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _wheel_file() -> bytes:
    return (
        "Wheel-Version: 1.0\n"
        "Generator: pkgmirror.testing\n"
        "Root-Is-Purelib: true\n"
        f"Tag: {WHEEL_TAG}\n"
    ).encode()


class WheelWriter:
    """
    Writes a wheel entry by entry, hashing as it goes, and the RECORD last.

    Big entries are streamed (``add_chunks``) so no file is held in memory whole.
    """

    def __init__(self, path: Path, name: str, version: str) -> None:
        self.path = path
        self.dist_info = filename_stem(name, version) + ".dist-info"
        self._records: list[str] = []
        self._zip = zipfile.ZipFile(path, "w")

    def add_bytes(self, arcname: str, data: bytes) -> None:
        info = zipfile.ZipInfo(arcname, ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)
        self._records.append(f"{arcname},{record_hash(hashlib.sha256(data).digest())},{len(data)}")

    def add_chunks(self, arcname: str, chunks: Iterable[bytes], size_hint: int = 0) -> None:
        # Stored, not deflated: the big entries are incompressible test payloads.
        info = zipfile.ZipInfo(arcname, ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        info.file_size = size_hint
        digest = hashlib.sha256()
        size = 0
        with self._zip.open(info, "w", force_zip64=size_hint >= 1 << 31) as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        self._records.append(f"{arcname},{record_hash(digest.digest())},{size}")

    def add_file(self, arcname: str, source: Path) -> None:
        def chunks() -> Iterable[bytes]:
            with open(source, "rb") as f:
                while True:
                    block = f.read(_CHUNK)
                    if not block:
                        return
                    yield block

        size = source.stat().st_size
        if size <= _CHUNK:
            self.add_bytes(arcname, source.read_bytes())
        else:
            self.add_chunks(arcname, chunks(), size)

    def close(self, metadata: bytes) -> Path:
        self.add_bytes(self.dist_info + "/METADATA", metadata)
        wheel = (
            "Wheel-Version: 1.0\n"
            "Generator: pkgmirror.testing\n"
            "Root-Is-Purelib: true\n"
            f"Tag: {WHEEL_TAG}\n"
        ).encode()
        self.add_bytes(self.dist_info + "/WHEEL", wheel)
        record_name = self.dist_info + "/RECORD"
        record = "\n".join([*self._records, record_name + ",,", ""]).encode("utf-8")
        info = zipfile.ZipInfo(record_name, ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, record)
        self._zip.close()
        return self.path


def _read_pkg_info(source_dir: Path) -> tuple[str, str, bytes]:
    raw = (source_dir / "PKG-INFO").read_bytes()
    headers = email.parser.BytesHeaderParser().parsebytes(raw)
    return str(headers["Name"]), str(headers["Version"]), raw


# PEP 517 hooks.


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: object = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: object = None
) -> str:
    name, version, raw = _read_pkg_info(Path.cwd())
    dist_info = filename_stem(name, version) + ".dist-info"
    target = Path(metadata_directory) / dist_info
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_bytes(raw)
    (target / "WHEEL").write_bytes(_wheel_file())
    return dist_info


def build_wheel(
    wheel_directory: str, config_settings: object = None, metadata_directory: object = None
) -> str:
    source_dir = Path.cwd()
    name, version, raw = _read_pkg_info(source_dir)
    filename = f"{filename_stem(name, version)}-{WHEEL_TAG}.whl"
    writer = WheelWriter(Path(wheel_directory) / filename, name, version)
    src = source_dir / "src"
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for file in sorted(files):
            path = Path(root) / file
            writer.add_file(path.relative_to(src).as_posix(), path)
    writer.close(raw)
    return filename
