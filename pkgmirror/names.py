"""
Project names, versions and distribution file names: pure functions, no I/O.
"""

from __future__ import annotations

import re

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# PEP 508 / name-normalization spec; \Z (not $) so a trailing newline is refused, and ASCII
# because IGNORECASE alone lets [A-Z] match letters that case-fold to ASCII (KELVIN SIGN).
_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
_SEPARATORS = re.compile(r"[-_.]+")

# Longest name we accept anywhere; longer ones are refused before they reach storage or an upstream.
MAX_NAME_LENGTH = 200
MAX_FILENAME_LENGTH = 255

SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar")
DIST_SUFFIXES = (".whl", *SDIST_SUFFIXES, ".egg", ".exe", ".msi", ".rpm", ".dmg")


def is_valid_project_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _VALID_NAME.match(name) is not None


def normalize(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of ``-_.`` become one ``-``."""
    return _SEPARATORS.sub("-", name).lower()


def is_normalized(name: str) -> bool:
    return normalize(name) == name


def is_safe_path_segment(segment: str) -> bool:
    """
    A URL path segment that may name a user, an index, a project or a file.

    Segments arrive percent-decoded, so ``%2e%2e`` is ``..`` and ``%2F`` is ``/`` by now.
    """
    return (
        0 < len(segment) <= MAX_FILENAME_LENGTH
        and segment not in (".", "..")
        and "/" not in segment
        and "\\" not in segment
        and "\x00" not in segment
        and segment.isprintable()
    )


def is_valid_user_or_index_name(name: str) -> bool:
    return (
        is_safe_path_segment(name)
        and len(name) <= 64
        and re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z", name) is not None
        and not name.startswith("+")
    )


def is_dist_filename(filename: str) -> bool:
    return is_safe_path_segment(filename) and filename.lower().endswith(DIST_SUFFIXES)


def parse_dist_filename(filename: str) -> tuple[str, str] | None:
    """
    The normalised project name and version string a distribution file name carries,
    or None when it is not a wheel or sdist name we can read.
    """
    if filename.endswith(".whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            return None
        return str(name), str(version)
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            try:
                name, version = parse_sdist_filename(
                    filename
                    if suffix in (".tar.gz", ".zip")
                    else filename[: -len(suffix)] + ".tar.gz"
                )
            except (InvalidSdistFilename, InvalidVersion):
                return _parse_legacy_sdist(filename[: -len(suffix)])
            return str(name), str(version)
    return None


def _parse_legacy_sdist(stem: str) -> tuple[str, str] | None:
    # Old sdists kept dashes in the name ("python-dateutil-2.8.2"): the version is the
    # first dash-separated tail that parses as a PEP 440 version.
    parts = stem.split("-")
    for i in range(1, len(parts)):
        candidate = "-".join(parts[i:])
        try:
            version = Version(candidate)
        except InvalidVersion:
            continue
        return canonicalize_name("-".join(parts[:i])), str(version)
    return None


def version_sort_key(version: str) -> tuple[int, Version | str]:
    """Sorts PEP 440 versions properly and anything unparseable before them."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)  # type: ignore[return-value]


def blob_path_parts(sha256: str) -> tuple[str, str]:
    """The two directory parts of a file URL: ``+f/<3 hex>/<13 hex>/<filename>``."""
    return sha256[:3], sha256[3:16]
