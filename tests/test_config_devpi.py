"""Index configuration as devpi clients send it: key=value lists and ACL spellings."""

from __future__ import annotations

import pytest

from pkgmirror.config import ConfigError, apply_keyvalue_list, make_index_config


def test_setting_a_non_list_key_from_a_keyvalue_list() -> None:
    existing = make_index_config("root", "dev", {})
    changes = apply_keyvalue_list(existing, ["volatile=False", "title=Dev"])
    assert changes == {"volatile": "False", "title": "Dev"}
    config = make_index_config("root", "dev", changes, existing)
    assert config.volatile is False and config.title == "Dev"


def test_list_operations_accumulate() -> None:
    existing = make_index_config("root", "dev", {"mirror_whitelist": "a,b"})
    changes = apply_keyvalue_list(existing, ["mirror_whitelist+=c", "mirror_whitelist-=a"])
    assert changes == {"mirror_whitelist": ["b", "c"]}


def test_list_operators_on_a_plain_key_are_refused() -> None:
    existing = make_index_config("root", "dev", {})
    with pytest.raises(ConfigError, match="not a list"):
        apply_keyvalue_list(existing, ["volatile+=True"])


def test_a_bad_boolean_is_a_config_error() -> None:
    existing = make_index_config("root", "dev", {})
    changes = apply_keyvalue_list(existing, ["volatile=perhaps"])
    with pytest.raises(ConfigError, match="volatile"):
        make_index_config("root", "dev", changes, existing)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (":anonymous:", ":ANONYMOUS:"),
        (":Authenticated:", ":AUTHENTICATED:"),
        ("alice", "alice"),
    ],
)
def test_special_acl_principals_are_spelled_in_capitals(given: str, stored: str) -> None:
    config = make_index_config("root", "dev", {"acl_upload": given})
    assert config.acl_upload == (stored,)
