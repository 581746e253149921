"""
How values are written as JSON in storage, and read back.

Readers ignore keys they do not know, so a database written by a newer pkgmirror can still be
read by an older one, and fields added to a value class do not need a schema migration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from pkgmirror.model import IndexConfig, Link, ProjectPage

T = TypeVar("T")


def _known(cls: type[T], data: Mapping[str, Any]) -> dict[str, Any]:
    names = attrs.fields_dict(cls)  # type: ignore[arg-type]
    return {k: v for k, v in data.items() if k in names}


def index_config_to_json(config: IndexConfig) -> str:
    return json.dumps(attrs.asdict(config), sort_keys=True)


def index_config_from_json(text: str) -> IndexConfig:
    # JSON has no tuples, and IndexConfig keeps its sequences as tuples without a converter.
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
    return IndexConfig(**_known(IndexConfig, data))


def page_to_json(page: ProjectPage) -> str:
    return json.dumps(attrs.asdict(page), separators=(",", ":"))


def page_from_json(text: str) -> ProjectPage:
    data = _known(ProjectPage, json.loads(text))
    data["links"] = tuple(Link(**_known(Link, link)) for link in data.get("links", ()))
    return ProjectPage(**data)


def metadata_to_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(dict(metadata), separators=(",", ":"))


def metadata_from_json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
