"""
``key=value`` arguments of ``pkgmirror index`` and ``pkgmirror user``: pure parsing, no I/O.

Everything here runs before a request is sent, so a malformed argument changes nothing on the
server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

Op = Literal["=", "+=", "-="]

# Index and user config keys are Python identifiers on every devpi-like server; refusing anything
# else here catches typos such as "bases:=x" or "=x" before they reach the server.
_KEYVALUE = re.compile(
    r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<op>\+=|-=|=)(?P<value>.*)\Z", re.DOTALL
)


class KeyValueError(ValueError):
    """A ``key=value`` argument that cannot be sent; the message says why."""


@attrs.frozen
class KeyValue:
    key: str
    op: Op
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def parse_keyvalue(text: str) -> KeyValue:
    match = _KEYVALUE.match(text)
    if match is None:
        if "=" not in text:
            raise KeyValueError(f"not a key=value argument: {text!r}")
        raise KeyValueError(f"malformed key in {text!r}: keys are letters, digits and '_'")
    op: Op = match["op"]  # type: ignore[assignment]
    return KeyValue(match["key"], op, match["value"])


def parse_keyvalues(texts: Iterable[str], *, allow_list_ops: bool) -> list[KeyValue]:
    """
    Parse every argument or raise :class:`KeyValueError` for the first bad one.

    ``allow_list_ops`` is False where only plain assignment makes sense (creating an index or a
    user sends one JSON object of strings).
    """
    parsed = [parse_keyvalue(text) for text in texts]
    if not allow_list_ops:
        for kv in parsed:
            if kv.op != "=":
                raise KeyValueError(f"{kv}: only key=value is allowed here, not {kv.op}")
    seen: set[str] = set()
    for kv in parsed:
        if kv.op == "=":
            if kv.key in seen:
                raise KeyValueError(f"key {kv.key!r} given twice")
            seen.add(kv.key)
    return parsed


def as_object(keyvalues: Iterable[KeyValue]) -> dict[str, str]:
    """The JSON object of strings devpi's PUT (create) and user PATCH take."""
    return {kv.key: kv.value for kv in keyvalues}


def as_patch_list(keyvalues: Iterable[KeyValue]) -> list[str]:
    """The JSON list of strings a server advertising ``server-keyvalue-parsing`` takes."""
    return [str(kv) for kv in keyvalues]


def apply_locally(config: Mapping[str, object], keyvalues: Iterable[KeyValue]) -> dict[str, object]:
    """
    The config a PATCH with these operations would produce, for servers without
    ``server-keyvalue-parsing`` (they take the whole changed object instead).
    """
    result = dict(config)
    for kv in keyvalues:
        if kv.op == "=":
            result[kv.key] = kv.value
            continue
        current = result.get(kv.key)
        if isinstance(current, str):
            items = [part for part in current.split(",") if part]
        elif isinstance(current, list | tuple):
            items = [str(part) for part in current]
        else:
            items = []
        if kv.op == "+=":
            if kv.value not in items:
                items.append(kv.value)
            result[kv.key] = items
        elif kv.value == "":
            result.pop(kv.key, None)
        else:
            result[kv.key] = [item for item in items if item != kv.value]
    return result
