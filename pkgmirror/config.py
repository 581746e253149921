"""
Index configuration: normalising what clients send (devpi's key=value strings) into IndexConfig.

Pure: no I/O. Errors are ``ConfigError`` with a one-line reason meant for the HTTP 400 body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from pkgmirror.model import IndexConfig
from pkgmirror.names import is_valid_user_or_index_name, normalize


class ConfigError(ValueError):
    """A configuration value or combination the server refuses."""


COMMON_KEYS = frozenset({"type", "volatile", "title", "description", "custom_data", "bases"})
STAGE_KEYS = COMMON_KEYS | {
    "acl_upload",
    "acl_toxresult_upload",
    "mirror_whitelist",
    "mirror_whitelist_inheritance",
    "private_prefixes",
    "min_release_age",
    "min_release_age_exempt",
}
MIRROR_KEYS = COMMON_KEYS | {
    "mirror_url",
    "mirror_cache_expiry",
    "mirror_use_external_urls",
    "mirror_no_project_list",
    "mirror_ignore_serial_header",
    "mirror_provides_core_metadata",
    "mirror_web_url_fmt",
}
LIST_KEYS = frozenset(
    {
        "bases",
        "acl_upload",
        "acl_toxresult_upload",
        "mirror_whitelist",
        "private_prefixes",
        "min_release_age_exempt",
    }
)
BOOL_KEYS = frozenset(
    {
        "volatile",
        "mirror_use_external_urls",
        "mirror_no_project_list",
        "mirror_ignore_serial_header",
        "mirror_provides_core_metadata",
    }
)
# Keys devpi-client or devpi-web may send that mean nothing here; accepted and dropped so a
# config fetched from devpi and sent back whole does not fail.
IGNORED_KEYS = frozenset({"pypi_whitelist", "projects", "push_requires_registration"})

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise ConfigError(f"{key} must be true or false, not {value!r}")


def parse_list(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        items: Iterable[object] = value
    else:
        items = str(value).split(",")
    return tuple(s for s in (str(item).strip() for item in items) if s)


def parse_duration(key: str, value: object) -> int:
    """Seconds from ``3600``, ``90m``, ``3d``, ``1w``."""
    match = _DURATION.match(str(value))
    if match is None:
        raise ConfigError(f"{key} must be a duration like 3600, 30m, 3d, not {value!r}")
    return int(float(match.group(1)) * _DURATION_UNITS[match.group(2)])


def check_mirror_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"mirror_url must be an http:// or https:// URL, not {url!r}")
    # Kept as given, as devpi reads it back; the fetcher joins project names onto it as onto a
    # directory (Upstream.for_mirror_url).
    return url


def _origin_and_path(url: str) -> tuple[tuple[str, str, int | None], str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return (scheme, (parts.hostname or "").lower(), port), parts.path or "/"


def mirror_url_allowed(url: str, allowed: Sequence[str]) -> bool:
    """
    Whether a mirror may fetch from ``url`` on a server that allows only URLs below the
    prefixes ``allowed`` (none: any URL). The same scheme, host and port, and a path at or
    below the prefix's on a segment boundary; credentials in either do not count.
    """
    if not allowed:
        return True
    origin, path = _origin_and_path(url)
    for prefix in allowed:
        want_origin, want_path = _origin_and_path(prefix)
        if origin != want_origin:
            continue
        base = want_path if want_path.endswith("/") else want_path + "/"
        if path == want_path or path.startswith(base):
            return True
    return False


def make_index_config(
    user: str, name: str, raw: Mapping[str, Any], existing: IndexConfig | None = None
) -> IndexConfig:
    """
    An IndexConfig from client-sent values, on top of ``existing`` when modifying.

    Checks keys and values; does not check that bases exist or are acyclic (that needs the
    other indexes: see ``check_bases``).
    """
    if not is_valid_user_or_index_name(name):
        raise ConfigError(f"invalid index name {name!r}")
    index_type = str(raw.get("type", existing.type if existing else "stage"))
    if index_type not in ("stage", "mirror"):
        raise ConfigError(f"unknown index type {index_type!r}: use stage or mirror")
    if existing is not None and index_type != existing.type:
        raise ConfigError("the type of an existing index cannot be changed")
    allowed = MIRROR_KEYS if index_type == "mirror" else STAGE_KEYS
    unknown = sorted(k for k in raw if k not in allowed and k not in IGNORED_KEYS)
    if unknown:
        shown = ", ".join(f"{k}={raw[k]}" for k in unknown)
        raise ConfigError(f"indexconfig got unexpected keyword arguments: {shown}")

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in IGNORED_KEYS or key == "type":
            continue
        if key in BOOL_KEYS:
            values[key] = parse_bool(key, value)
        elif key in LIST_KEYS:
            values[key] = parse_list(value)
        elif key == "mirror_cache_expiry":
            values[key] = None if value in (None, "") else parse_duration(key, value)
        elif key == "mirror_url":
            values[key] = check_mirror_url(str(value).strip())
        elif key == "min_release_age":
            if value in (None, ""):
                values[key] = None
            else:
                parse_duration(key, value)
                values[key] = str(value).strip()
        elif key == "mirror_whitelist_inheritance":
            if value not in ("union", "intersection"):
                raise ConfigError("mirror_whitelist_inheritance must be union or intersection")
            values[key] = value
        else:
            values[key] = None if value is None else str(value)

    if "bases" in values:
        for base in values["bases"]:
            if base.count("/") != 1 or not all(
                is_valid_user_or_index_name(p) for p in base.split("/")
            ):
                raise ConfigError(f"invalid base {base!r}: use USER/INDEX")
    for key in ("acl_upload", "acl_toxresult_upload"):
        if key in values:
            # devpi spells the special principals in capitals; accept any case.
            values[key] = tuple(v.upper() if v.startswith(":") else v for v in values[key])
    for key in ("mirror_whitelist", "min_release_age_exempt"):
        if key in values:
            values[key] = tuple(v if v == "*" else normalize(v) for v in values[key])

    if existing is None:
        defaults: dict[str, Any] = {"type": index_type}
        if index_type == "stage":
            defaults["acl_upload"] = (user,)
        config = IndexConfig(user=user, name=name, **defaults)
    else:
        config = existing
    config = attrs.evolve(config, **values)
    if config.is_mirror and not config.mirror_url and existing is None and "mirror_url" in raw:
        raise ConfigError("mirror_url must not be empty")
    if config.key in config.bases:
        raise ConfigError(f"index {config.key} cannot be its own base")
    return config


def apply_keyvalue_list(existing: IndexConfig, items: Iterable[str]) -> dict[str, Any]:
    """
    devpi's PATCH list syntax against the current config: ``k=v`` sets, ``k+=v`` appends to a
    list, ``k-=v`` removes from a list, ``k-=`` resets the key. Returns the raw values to apply.
    """
    current = index_config_json(existing)
    changes: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"expected key=value strings, got {item!r}")
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)([+-]?)=(.*)\Z", item, re.DOTALL)
        if match is None:
            raise ConfigError(f"malformed key=value item {item!r}")
        key, op, value = match.groups()
        if op and key not in LIST_KEYS:
            if op == "-" and value == "":
                changes[key] = None
                continue
            raise ConfigError(f"{key} is not a list: use {key}=value")
        if not op:
            changes[key] = value
            continue
        # The list so far: an earlier item of this request may have set it as a string.
        base = list(parse_list(changes[key] if key in changes else current.get(key)))
        if op == "+":
            changes[key] = [*base, *parse_list(value)]
        elif value == "":
            changes[key] = []
        else:
            drop = set(parse_list(value))
            changes[key] = [v for v in base if v not in drop]
    return changes


def index_config_json(config: IndexConfig) -> dict[str, Any]:
    """The ``indexconfig`` result devpi clients read (without ``projects``)."""
    data: dict[str, Any] = {"type": config.type, "volatile": config.volatile}
    if config.is_mirror:
        data.update(
            mirror_url=config.mirror_url or "",
            mirror_use_external_urls=config.mirror_use_external_urls,
            mirror_no_project_list=config.mirror_no_project_list,
            mirror_ignore_serial_header=config.mirror_ignore_serial_header,
            mirror_provides_core_metadata=config.mirror_provides_core_metadata,
        )
        if config.mirror_cache_expiry is not None:
            data["mirror_cache_expiry"] = config.mirror_cache_expiry
        if config.mirror_web_url_fmt:
            data["mirror_web_url_fmt"] = config.mirror_web_url_fmt
        data["bases"] = list(config.bases)
    else:
        data.update(
            bases=list(config.bases),
            acl_upload=list(config.acl_upload),
            acl_toxresult_upload=list(config.acl_toxresult_upload),
            mirror_whitelist=list(config.mirror_whitelist),
            mirror_whitelist_inheritance=config.mirror_whitelist_inheritance,
            private_prefixes=list(config.private_prefixes),
            min_release_age_exempt=list(config.min_release_age_exempt),
        )
        if config.min_release_age is not None:
            data["min_release_age"] = config.min_release_age
    for key in ("title", "description", "custom_data"):
        value = getattr(config, key)
        if value is not None:
            data[key] = value
    return data


def check_bases(config: IndexConfig, indexes: Mapping[str, IndexConfig]) -> None:
    """Every base exists, and following bases from ``config`` never comes back to it."""
    for base_key in config.bases:
        if base_key not in indexes:
            raise ConfigError(f"base index {base_key} does not exist")
    seen: set[str] = set()
    stack = list(config.bases)
    while stack:
        key = stack.pop()
        if key == config.key:
            raise ConfigError(f"bases of {config.key} form a cycle through {key}")
        if key in seen:
            continue
        seen.add(key)
        base = indexes.get(key)
        if base is not None:
            stack.extend(base.bases)


def resolution_order(key: str, indexes: Mapping[str, IndexConfig]) -> list[IndexConfig]:
    """
    devpi's order: the index, its non-mirror bases breadth-first (each once), then every mirror
    met on the way, in the order first met.
    """
    start = indexes.get(key)
    if start is None:
        return []
    stages: list[IndexConfig] = []
    mirrors: list[IndexConfig] = []
    seen = {key}
    queue = [start]
    while queue:
        current = queue.pop(0)
        (mirrors if current.is_mirror else stages).append(current)
        for base_key in current.bases:
            base = indexes.get(base_key)
            if base is not None and base_key not in seen:
                seen.add(base_key)
                queue.append(base)
    return stages + mirrors
