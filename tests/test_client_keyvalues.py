from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgmirror.client.keyvalues import (
    KeyValue,
    KeyValueError,
    apply_locally,
    as_object,
    as_patch_list,
    parse_keyvalue,
    parse_keyvalues,
)

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
values = st.text(max_size=30)
ops = st.sampled_from(["=", "+=", "-="])


@given(keys, ops, values)
def test_an_argument_reads_back_as_written(key: str, op: str, value: str) -> None:
    parsed = parse_keyvalue(f"{key}{op}{value}")
    assert (parsed.key, parsed.op, parsed.value) == (key, op, value)
    assert str(parsed) == f"{key}{op}{value}"


@pytest.mark.parametrize(
    "text",
    ["volatile", "=x", "+=x", "bad key=x", "bases:=x", "1abc=x", "ti-tle=x", ""],
)
def test_malformed_arguments_are_refused(text: str) -> None:
    with pytest.raises(KeyValueError):
        parse_keyvalue(text)


def test_values_may_hold_equals_signs_and_be_empty() -> None:
    assert parse_keyvalue("title=a=b") == KeyValue("title", "=", "a=b")
    assert parse_keyvalue("bases=") == KeyValue("bases", "=", "")
    assert parse_keyvalue("mirror_whitelist-=") == KeyValue("mirror_whitelist", "-=", "")


def test_creation_takes_only_plain_assignments() -> None:
    with pytest.raises(KeyValueError, match=r"\+="):
        parse_keyvalues(["bases+=root/pypi"], allow_list_ops=False)
    assert as_object(parse_keyvalues(["a=1", "b=2"], allow_list_ops=False)) == {"a": "1", "b": "2"}


def test_a_key_assigned_twice_is_refused() -> None:
    with pytest.raises(KeyValueError, match="twice"):
        parse_keyvalues(["title=a", "title=b"], allow_list_ops=True)


def test_patch_list_keeps_order_and_operators() -> None:
    parsed = parse_keyvalues(["bases+=root/a", "bases-=root/b", "x="], allow_list_ops=True)
    assert as_patch_list(parsed) == ["bases+=root/a", "bases-=root/b", "x="]


def test_local_application_matches_the_server_side_rules() -> None:
    config = {"bases": ["root/a"], "title": "t", "mirror_whitelist": "x,y"}
    changed = apply_locally(
        config,
        parse_keyvalues(
            ["bases+=root/b", "mirror_whitelist-=x", "title-=", "volatile=False"],
            allow_list_ops=True,
        ),
    )
    assert changed == {
        "bases": ["root/a", "root/b"],
        "mirror_whitelist": ["y"],
        "volatile": "False",
    }
    assert config["bases"] == ["root/a"], "the input is not changed"
