"""
Core metadata of distributions: reading it out of wheels and sdists. Blocking; run in a thread.
"""

from __future__ import annotations

import zipfile

# A METADATA file larger than this is not core metadata we want to serve.
MAX_METADATA_BYTES = 16 * 1024 * 1024


def extract_core_metadata(path: str, filename: str) -> bytes | None:
    """The ``*.dist-info/METADATA`` of the wheel at ``path``, or None when it has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            candidates = [
                info
                for info in archive.infolist()
                if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
            ]
            if not candidates:
                return None
            stem = "-".join(filename.split("-")[:2]).lower()
            candidates.sort(key=lambda i: not i.filename.lower().startswith(stem))
            info = candidates[0]
            if info.file_size > MAX_METADATA_BYTES:
                return None
            return archive.read(info)
    except (OSError, zipfile.BadZipFile, KeyError):
        return None
