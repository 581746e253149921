"""
Real, installable distributions for tests and benchmarks, built in milliseconds without setuptools.

``build_wheel`` writes ``<name_underscored>-<version>-py3-none-any.whl``; ``build_sdist`` writes
``<name_underscored>-<version>.tar.gz`` (PEP 625 spelling). Both install a top-level module named
by ``module_name(name)`` whose ``__version__`` is the version. An sdist carries its own tiny PEP 517
backend (see ``_inline_backend``), so pip builds it with ``--no-index`` and nothing else installed.

``payload_size`` adds that many incompressible bytes as ``<module>/payload.bin``. The bytes come
from a generator seeded by name and version, so the same call always yields the same file content.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from pkgmirror.testing import _inline_backend
from pkgmirror.testing._inline_backend import WHEEL_TAG, WheelWriter, filename_stem, normalize

__all__ = [
    "build_sdist",
    "build_wheel",
    "module_name",
    "render_metadata",
    "sdist_filename",
    "sha256_file",
    "wheel_filename",
]

_CHUNK = 1 << 20
_MTIME = 315532800  # 1980-01-01, as in the wheels


def module_name(name: str) -> str:
    """The importable top-level module a test distribution of ``name`` installs."""
    module = normalize(name).replace("-", "_")
    return module if module.isidentifier() else "_" + module


def wheel_filename(name: str, version: str) -> str:
    return f"{filename_stem(name, version)}-{WHEEL_TAG}.whl"


def sdist_filename(name: str, version: str) -> str:
    return f"{filename_stem(name, version)}.tar.gz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def render_metadata(
    name: str,
    version: str,
    *,
    summary: str = "",
    requires_python: str | None = None,
    requires_dist: Iterable[str] = (),
    description: str = "",
) -> bytes:
    """Core metadata 2.1, as both a wheel's METADATA and an sdist's PKG-INFO."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {_one_line(summary)}")
    if requires_python:
        lines.append(f"Requires-Python: {_one_line(requires_python)}")
    lines.extend(f"Requires-Dist: {_one_line(req)}" for req in requires_dist)
    lines.append("Description-Content-Type: text/plain")
    text = "\n".join(lines) + "\n"
    if description:
        text += "\n" + description + ("" if description.endswith("\n") else "\n")
    return text.encode("utf-8")


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"metadata field values must be one line: {value!r}")
    return value


def _module_source(name: str, version: str) -> bytes:
    return (
        f'"""Test distribution {name} {version}, built by pkgmirror.testing.dists."""\n\n'
        f"__version__ = {version!r}\n"
        f"DIST_NAME = {name!r}\n"
    ).encode()


def _payload_chunks(name: str, version: str, size: int) -> Iterator[bytes]:
    rng = random.Random(f"{normalize(name)}=={version}")
    left = size
    while left > 0:
        n = min(_CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def build_wheel(
    dest_dir: Path,
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Iterable[str] = (),
    summary: str = "",
    payload_size: int = 0,
    description: str = "",
) -> Path:
    """Write a wheel into ``dest_dir`` (created if missing) and return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    metadata = render_metadata(
        name,
        version,
        summary=summary,
        requires_python=requires_python,
        requires_dist=requires_dist,
        description=description,
    )
    module = module_name(name)
    writer = WheelWriter(dest_dir / wheel_filename(name, version), name, version)
    writer.add_bytes(f"{module}/__init__.py", _module_source(name, version))
    if payload_size:
        writer.add_chunks(
            f"{module}/payload.bin", _payload_chunks(name, version, payload_size), payload_size
        )
    return writer.close(metadata)


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of chunks, for ``tarfile.addfile``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def build_sdist(
    dest_dir: Path,
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Iterable[str] = (),
    summary: str = "",
    payload_size: int = 0,
    description: str = "",
) -> Path:
    """
    Write an sdist into ``dest_dir`` (created if missing) and return its path.

    Building it (``pip install --no-binary :all:``) yields the same files as ``build_wheel``.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = filename_stem(name, version)
    module = module_name(name)
    pkg_info = render_metadata(
        name,
        version,
        summary=summary,
        requires_python=requires_python,
        requires_dist=requires_dist,
        description=description,
    )
    pyproject = (
        b"[build-system]\n"
        b"requires = []\n"
        b'backend-path = ["_backend"]\n'
        b'build-backend = "inline_backend"\n'
    )
    backend = Path(_inline_backend.__file__).read_bytes()
    members: list[tuple[str, bytes]] = [
        ("PKG-INFO", pkg_info),
        ("pyproject.toml", pyproject),
        ("_backend/inline_backend.py", backend),
        (f"src/{module}/__init__.py", _module_source(name, version)),
    ]
    path = dest_dir / sdist_filename(name, version)
    # Incompressible payloads only cost time at higher levels.
    level = 1 if payload_size else 9
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for directory in ("", "_backend", "src", f"src/{module}"):
            tar.addfile(_tar_info(f"{stem}/{directory}".rstrip("/"), 0, is_dir=True))
        for arcname, data in members:
            tar.addfile(_tar_info(f"{stem}/{arcname}", len(data)), io.BytesIO(data))
        if payload_size:
            reader = io.BufferedReader(
                _ChunkReader(_payload_chunks(name, version, payload_size)), _CHUNK
            )
            tar.addfile(_tar_info(f"{stem}/src/{module}/payload.bin", payload_size), reader)
    return path


def _tar_info(arcname: str, size: int, *, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.size = size
    info.mtime = _MTIME
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info
