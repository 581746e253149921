"""
pkgmirror.config: how client-sent index configuration is normalised, checked and ordered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.config import (
    ConfigError,
    apply_keyvalue_list,
    check_bases,
    index_config_json,
    make_index_config,
    resolution_order,
)
from pkgmirror.model import IndexConfig

# ---------------------------------------------------------------- normalising values

names = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
index_keys = st.builds(lambda u, i: f"{u}/{i}", names, names)


def as_client_sends(value: Any) -> Any:
    """What devpi-client puts on the wire for a value: strings, lists joined by commas."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(value)
    return value


@st.composite
def stage_values(draw: st.DrawFn) -> dict[str, Any]:
    optional = {
        "volatile": st.booleans(),
        "bases": st.lists(index_keys, unique=True, max_size=3),
        "acl_upload": st.lists(st.sampled_from(["alice", "bob", ":ANONYMOUS:"]), unique=True),
        "mirror_whitelist": st.lists(st.sampled_from(["demo", "other-pkg", "*"]), unique=True),
        "mirror_whitelist_inheritance": st.sampled_from(["union", "intersection"]),
        "private_prefixes": st.lists(st.sampled_from(["corp-", "internal-"]), unique=True),
        "min_release_age": st.sampled_from(["3d", "3600", "2h"]),
        "title": st.text(max_size=10),
    }
    return draw(st.fixed_dictionaries({}, optional=optional))


@given(stage_values(), st.booleans())
def test_stage_config_round_trips(raw: dict[str, Any], stringly: bool) -> None:
    sent = {k: as_client_sends(v) for k, v in raw.items()} if stringly else raw
    config = make_index_config("alice", "dev", sent)
    assert config.type == "stage"
    for key, value in raw.items():
        got = getattr(config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    # What a client reads back and sends again unchanged is the same configuration.
    assert make_index_config("alice", "dev", index_config_json(config)) == config
    stringified = {k: as_client_sends(v) for k, v in index_config_json(config).items()}
    assert make_index_config("alice", "dev", stringified) == config


def test_strings_are_normalised() -> None:
    config = make_index_config(
        "alice",
        "dev",
        {
            "volatile": "False",
            "bases": "root/pypi, root/local",
            "mirror_whitelist": "Foo_Bar,*",
            "acl_upload": "alice,:ANONYMOUS:",
        },
    )
    assert config.volatile is False
    assert config.bases == ("root/pypi", "root/local")
    assert config.mirror_whitelist == ("foo-bar", "*")
    assert config.acl_upload == ("alice", ":ANONYMOUS:")
    for text, value in (("true", True), ("Yes", True), ("1", True), ("no", False), ("", False)):
        assert make_index_config("a", "b", {"volatile": text}).volatile is value
    with pytest.raises(ConfigError, match="true or false"):
        make_index_config("a", "b", {"volatile": "maybe"})


def test_defaults_of_a_new_stage() -> None:
    config = make_index_config("alice", "dev", {})
    assert config.acl_upload == ("alice",)
    assert config.volatile is True
    assert config.mirror_whitelist_inheritance == "intersection"
    assert config.bases == ()


def test_mirror_values() -> None:
    config = make_index_config(
        "root",
        "pypi",
        {
            "type": "mirror",
            "mirror_url": "http://127.0.0.1:9/simple",
            "mirror_cache_expiry": "30m",
            "mirror_use_external_urls": "True",
        },
    )
    assert config.mirror_url == "http://127.0.0.1:9/simple"  # read back as given, as devpi does
    assert config.mirror_cache_expiry == 1800
    assert config.mirror_use_external_urls is True
    assert (
        make_index_config(
            "r", "m", {"type": "mirror", "mirror_cache_expiry": "1w"}
        ).mirror_cache_expiry
        == 604800
    )
    for bad in ("ftp://host/simple/", "not a url", "http:///nohost"):
        with pytest.raises(ConfigError, match="mirror_url"):
            make_index_config("r", "m", {"type": "mirror", "mirror_url": bad})
    with pytest.raises(ConfigError, match="duration"):
        make_index_config("r", "m", {"type": "mirror", "mirror_cache_expiry": "soon"})


@pytest.mark.parametrize(
    ("index_type", "raw"),
    [
        ("stage", {"mirror_url": "http://127.0.0.1/simple/"}),
        ("stage", {"bogus": "1"}),
        ("mirror", {"acl_upload": "alice"}),
        ("mirror", {"mirror_whitelist": "x"}),
    ],
)
def test_unknown_keys_are_refused_as_devpi_words_it(index_type: str, raw: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        make_index_config("alice", "dev", {"type": index_type, **raw})
    key, value = next(iter(raw.items()))
    assert str(info.value) == f"indexconfig got unexpected keyword arguments: {key}={value}"


def test_keys_devpi_clients_send_back_are_ignored() -> None:
    config = make_index_config("alice", "dev", {"pypi_whitelist": [], "projects": ["x"]})
    assert config == make_index_config("alice", "dev", {})


def test_other_refusals() -> None:
    existing = make_index_config("alice", "dev", {})
    with pytest.raises(ConfigError, match="cannot be changed"):
        make_index_config("alice", "dev", {"type": "mirror"}, existing)
    with pytest.raises(ConfigError, match="own base"):
        make_index_config("alice", "dev", {"bases": "alice/dev"})
    for base in ("nouser", "a/b/c", "a/../b", "a/+b"):
        with pytest.raises(ConfigError, match="invalid base"):
            make_index_config("alice", "dev", {"bases": base})
    with pytest.raises(ConfigError, match="union or intersection"):
        make_index_config("alice", "dev", {"mirror_whitelist_inheritance": "both"})
    with pytest.raises(ConfigError, match="type"):
        make_index_config("alice", "dev", {"type": "cache"})
    with pytest.raises(ConfigError, match="index name"):
        make_index_config("alice", "../etc", {})


def test_modifying_keeps_what_is_not_sent() -> None:
    existing = make_index_config("alice", "dev", {"bases": "root/pypi", "title": "Dev"})
    changed = make_index_config("alice", "dev", {"volatile": "False"}, existing)
    assert changed == attrs.evolve(existing, volatile=False)


# ---------------------------------------------------------------- key=value lists


def test_keyvalue_list_operations() -> None:
    existing = make_index_config("alice", "dev", {"bases": "root/a,root/b", "title": "T"})
    assert apply_keyvalue_list(existing, ["bases+=root/c"]) == {
        "bases": ["root/a", "root/b", "root/c"]
    }
    assert apply_keyvalue_list(existing, ["bases-=root/a"]) == {"bases": ["root/b"]}
    assert apply_keyvalue_list(existing, ["bases-="]) == {"bases": []}
    assert apply_keyvalue_list(existing, ["title-="]) == {"title": None}
    assert apply_keyvalue_list(existing, ["title=a=b"]) == {"title": "a=b"}
    assert apply_keyvalue_list(existing, ["bases+=root/c", "bases-=root/a"]) == {
        "bases": ["root/b", "root/c"]
    }
    # A plain set of a key whose value is no string (a bool, an int) once failed with a 500.
    assert apply_keyvalue_list(existing, ["volatile=False"]) == {"volatile": "False"}
    mirror = make_index_config("root", "pypi", {"type": "mirror", "mirror_cache_expiry": "60"})
    assert apply_keyvalue_list(mirror, ["mirror_cache_expiry=0"]) == {"mirror_cache_expiry": "0"}
    # An earlier item of the same request counts as a list too.
    assert apply_keyvalue_list(existing, ["bases=root/x", "bases+=root/y"]) == {
        "bases": ["root/x", "root/y"]
    }
    with pytest.raises(ConfigError, match="not a list"):
        apply_keyvalue_list(existing, ["title+=x"])
    with pytest.raises(ConfigError, match="malformed"):
        apply_keyvalue_list(existing, ["no equals sign"])
    changes = apply_keyvalue_list(existing, ["volatile=False", "mirror_whitelist+=Demo"])
    applied = make_index_config("alice", "dev", changes, existing)
    assert applied.volatile is False and applied.mirror_whitelist == ("demo",)


@given(st.lists(index_keys, unique=True, max_size=4), index_keys)
def test_keyvalue_add_then_remove_is_identity(bases: list[str], extra: str) -> None:
    existing = IndexConfig(user="alice", name="dev", bases=tuple(b for b in bases if b != extra))
    added = apply_keyvalue_list(existing, [f"bases+={extra}"])
    assert added["bases"][-1] == extra
    config = make_index_config("alice", "dev", added, existing)
    removed = apply_keyvalue_list(config, [f"bases-={extra}"])
    assert make_index_config("alice", "dev", removed, config) == existing


# ---------------------------------------------------------------- bases and resolution order


@st.composite
def graphs(draw: st.DrawFn, acyclic: bool) -> dict[str, IndexConfig]:
    """Indexes u/i0..u/iN; stages have bases among the others (earlier ones if acyclic)."""
    count = draw(st.integers(1, 7))
    keys = [f"u/i{n}" for n in range(count)]
    indexes: dict[str, IndexConfig] = {}
    for n, key in enumerate(keys):
        mirror = n > 0 and draw(st.booleans())
        if mirror:
            indexes[key] = IndexConfig(user="u", name=f"i{n}", type="mirror")
            continue
        pool = keys[n + 1 :] if acyclic else [k for k in keys if k != key]
        bases = draw(st.lists(st.sampled_from(pool), unique=True, max_size=3)) if pool else []
        indexes[key] = IndexConfig(user="u", name=f"i{n}", bases=tuple(bases))
    return indexes


def reachable(start: str, indexes: Mapping[str, IndexConfig]) -> set[str]:
    found: set[str] = set()
    stack = list(indexes[start].bases)
    while stack:
        key = stack.pop()
        if key in found or key not in indexes:
            continue
        found.add(key)
        stack.extend(indexes[key].bases)
    return found


def devpi_sro(key: str, indexes: Mapping[str, IndexConfig]) -> list[str]:
    """devpi-server's stage resolution order (its ``sro``), duplicates then dropped."""
    todo = [indexes[key]]
    todo_mirrors: list[IndexConfig] = []
    seen: set[str] = set()
    order: list[str] = []
    while todo:
        stage = todo.pop(0)
        order.append(stage.key)
        seen.add(stage.key)
        for base in stage.bases:
            current = indexes.get(base)
            if current is None or base in seen:
                continue
            (todo_mirrors if current.is_mirror else todo).append(current)
    order.extend(m.key for m in todo_mirrors)
    return list(dict.fromkeys(order))


@settings(max_examples=100, deadline=None)
@given(graphs(acyclic=True))
def test_resolution_order_is_devpis(indexes: dict[str, IndexConfig]) -> None:
    order = resolution_order("u/i0", indexes)
    keys = [c.key for c in order]
    assert keys == devpi_sro("u/i0", indexes)
    assert keys[0] == "u/i0"
    assert len(keys) == len(set(keys))
    assert set(keys) == {"u/i0"} | reachable("u/i0", indexes)
    kinds = [c.is_mirror for c in order]
    assert kinds == sorted(kinds), "every mirror after every stage"


@settings(max_examples=100, deadline=None)
@given(graphs(acyclic=False))
def test_cycles_are_refused_and_never_loop(indexes: dict[str, IndexConfig]) -> None:
    config = indexes["u/i0"]
    cyclic = "u/i0" in reachable("u/i0", indexes)
    if cyclic:
        with pytest.raises(ConfigError, match="cycle"):
            check_bases(config, indexes)
    else:
        check_bases(config, indexes)
    keys = [c.key for c in resolution_order("u/i0", indexes)]
    assert len(keys) == len(set(keys))
    assert set(keys) == {"u/i0"} | reachable("u/i0", indexes)


def test_missing_base_is_refused() -> None:
    config = IndexConfig(user="u", name="dev", bases=("root/gone",))
    with pytest.raises(ConfigError, match="root/gone does not exist"):
        check_bases(config, {"u/dev": config})
    assert resolution_order("u/nope", {}) == []


def test_documented_order() -> None:
    # local -> [python-local (mirror), pypi (mirror), team]; team -> [shared]; shared -> [pypi]
    indexes = {
        c.key: c
        for c in (
            IndexConfig(
                user="root", name="local", bases=("root/python-local", "root/pypi", "root/team")
            ),
            IndexConfig(user="root", name="python-local", type="mirror"),
            IndexConfig(user="root", name="pypi", type="mirror"),
            IndexConfig(user="root", name="team", bases=("root/shared",)),
            IndexConfig(user="root", name="shared", bases=("root/pypi",)),
        )
    }
    assert [c.key for c in resolution_order("root/local", indexes)] == [
        "root/local",
        "root/team",
        "root/shared",
        "root/python-local",
        "root/pypi",
    ]
