"""
Frozen values that flow between the layers. No I/O, no Twisted.

Times are UTC. ``upload_time`` values are ISO 8601 strings in the PEP 700 form
(``2026-11-24T15:09:00.123456Z``); ``fetched_at`` style values are POSIX seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from pkgmirror.names import blob_path_parts, normalize


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    if value is None:
        return None
    return {str(k).lower(): str(v) for k, v in value.items()}


def _hashes(value: Mapping[str, str]) -> Mapping[str, str]:
    return {str(k).lower(): str(v).lower() for k, v in value.items()}


def iso_time(when: float) -> str:
    """POSIX seconds as a PEP 700 ``upload-time`` string."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_time(value: str) -> float | None:
    """PEP 700 / RFC 3339 string to POSIX seconds, or None when it does not parse."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@attrs.frozen
class Link:
    """
    One distribution file as a simple page lists it.

    ``url`` is where the bytes are: an absolute upstream URL on a page we parsed, the href we
    emit on a page we render. ``yanked`` is None when not yanked, else the reason ("" for none).
    ``core_metadata`` is None when no PEP 658 file is known to exist, else its hashes ({} when it
    exists but its hash is unknown). ``origin`` names the index that owns the file ("root/local")
    on merged pages.
    """

    filename: str
    url: str
    hashes: Mapping[str, str] = attrs.field(factory=dict, converter=_hashes)
    requires_python: str | None = None
    yanked: str | None = None
    core_metadata: Mapping[str, str] | None = attrs.field(default=None, converter=_frozen_mapping)
    size: int | None = None
    upload_time: str | None = None
    origin: str | None = None

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")


# Typed converters: with a bare ``converter=tuple`` mypy's attrs plugin rejects every argument.
def _links(value: Iterable[Link]) -> tuple[Link, ...]:
    return tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _optional_strings(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


ProjectStatus = Literal["active", "archived", "quarantined", "deprecated"]


@attrs.frozen
class ProjectPage:
    """A project's simple page: its files, and what PEP 700 / PEP 792 add."""

    name: str = attrs.field(converter=normalize)
    links: tuple[Link, ...] = attrs.field(default=(), converter=_links)
    versions: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_strings)
    status: str | None = None
    status_reason: str | None = None
    last_serial: int | None = None


@attrs.frozen
class ProjectList:
    names: tuple[str, ...] = attrs.field(converter=_strings)


IndexType = Literal["stage", "mirror"]


@attrs.frozen
class IndexConfig:
    """
    An index's configuration as stored and as devpi's ``indexconfig`` shows it.

    Build one through :func:`pkgmirror.config.make_index_config`, which normalises the string
    values clients send and refuses unknown keys.
    """

    user: str
    name: str
    type: IndexType = "stage"
    bases: tuple[str, ...] = ()
    volatile: bool = True
    title: str | None = None
    description: str | None = None
    custom_data: str | None = None
    # stages
    acl_upload: tuple[str, ...] = ()
    acl_toxresult_upload: tuple[str, ...] = (":ANONYMOUS:",)
    mirror_whitelist: tuple[str, ...] = ()
    mirror_whitelist_inheritance: str = "intersection"
    private_prefixes: tuple[str, ...] = ()
    min_release_age: str | None = None
    min_release_age_exempt: tuple[str, ...] = ()
    # mirrors
    mirror_url: str | None = None
    mirror_cache_expiry: int | None = None
    mirror_use_external_urls: bool = False
    mirror_no_project_list: bool = False
    mirror_ignore_serial_header: bool = False
    mirror_provides_core_metadata: bool = False
    mirror_web_url_fmt: str | None = None

    @property
    def key(self) -> str:
        return f"{self.user}/{self.name}"

    @property
    def is_mirror(self) -> bool:
        return self.type == "mirror"


@attrs.frozen
class User:
    name: str
    password_hash: str = ""
    email: str | None = None
    created: str | None = None
    title: str | None = None
    description: str | None = None


@attrs.frozen
class ReleaseFile:
    """A file that belongs to a stage: uploaded, or pushed there."""

    index: str
    project: str = attrs.field(converter=normalize)
    version: str
    filename: str
    sha256: str
    size: int
    upload_time: str
    requires_python: str | None = None
    yanked: str | None = None
    metadata_sha256: str | None = None
    uploader: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def path_key(self) -> str:
        a, b = blob_path_parts(self.sha256)
        return f"{a}/{b}"


MirrorPageStatus = Literal["ok", "missing"]


@attrs.frozen
class MirrorPageState:
    """
    What a mirror remembers of one upstream project page.

    ``page`` holds the upstream's links with absolute upstream URLs; it is None when the upstream
    said the project does not exist (``status == "missing"``).
    """

    index: str
    project: str
    status: MirrorPageStatus
    fetched_at: float
    page: ProjectPage | None = None
    etag: str | None = None
    serial: int | None = None


@attrs.frozen
class MirrorFile:
    """
    A file a mirror lists, by the key in our URL (``path_key`` = ``<3 hex>/<13 hex>``).

    ``path_key`` comes from the upstream's sha256 when it gave one, else from a hash of the
    upstream URL. ``cached_sha256`` is set once the bytes are in the blob store.
    """

    index: str
    project: str
    filename: str
    path_key: str
    url: str
    sha256: str | None = None
    size: int | None = None
    upload_time: str | None = None
    cached_sha256: str | None = None
    metadata_sha256: str | None = None
