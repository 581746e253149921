"""
pkgmirror.names: properties against the specs and against packaging's own functions.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from packaging.version import Version

from pkgmirror.names import (
    MAX_FILENAME_LENGTH,
    MAX_NAME_LENGTH,
    SDIST_SUFFIXES,
    is_normalized,
    is_safe_path_segment,
    is_valid_project_name,
    normalize,
    parse_dist_filename,
    version_sort_key,
)
from pkgmirror.testing.strategies import project_names, versions

# The name-normalization spec's regex, ASCII only, matched against the whole string.
SPEC = re.compile(r"([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])", re.IGNORECASE | re.ASCII)
NORMALIZED = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")

name_like = st.text(
    alphabet=st.sampled_from("aZ09._-\n \t/\x00\u017f\u212a\u0131\u0130\u00e9"), max_size=12
) | st.text(max_size=12)


@given(project_names())
def test_normalize_is_idempotent_and_matches_packaging(name: str) -> None:
    once = normalize(name)
    assert normalize(once) == once
    assert is_normalized(once)
    assert once == canonicalize_name(name)
    assert NORMALIZED.fullmatch(once)


@given(name_like)
@example("demo\n")
@example("\u212a")  # KELVIN SIGN: case-folds to "k" but is not ASCII
@example("\u017fix")  # LATIN SMALL LETTER LONG S
@example("a" * (MAX_NAME_LENGTH + 1))
@example("-demo")
@example("demo.")
def test_valid_project_name_is_the_spec_regex(text: str) -> None:
    expected = SPEC.fullmatch(text) is not None and len(text) <= MAX_NAME_LENGTH
    assert is_valid_project_name(text) == expected


def test_trailing_newline_is_refused() -> None:
    assert is_valid_project_name("demo")
    assert not is_valid_project_name("demo\n")
    assert not is_valid_project_name("demo\r\n")


@given(project_names(), versions())
def test_wheel_names_from_packaging_parse_back(name: str, version: str) -> None:
    canonical = canonicalize_name(name)
    v = Version(version)
    filename = f"{canonical.replace('-', '_')}-{v}-py3-none-any.whl"
    assert parse_dist_filename(filename) == (canonical, str(v))
    tagged = f"{canonical.replace('-', '_')}-{v}-1build-cp312-cp312-manylinux_2_17_x86_64.whl"
    assert parse_dist_filename(tagged) == (canonical, str(v))


@given(project_names(), versions(), st.sampled_from(SDIST_SUFFIXES))
def test_sdist_names_parse_back(name: str, version: str, suffix: str) -> None:
    canonical = canonicalize_name(name)
    v = Version(version)
    # The sdist spec's form, and the old one with the name as written (dashes kept).
    assert parse_dist_filename(f"{canonical.replace('-', '_')}-{v}{suffix}") == (
        canonical,
        str(v),
    )
    parsed = parse_dist_filename(f"{name}-{version}{suffix}")
    assert parsed is not None and Version(parsed[1]) == v


def test_legacy_and_odd_names() -> None:
    assert parse_dist_filename("python-dateutil-2.8.2.tar.gz") == ("python-dateutil", "2.8.2")
    assert parse_dist_filename("demo-1.0.exe") is None
    assert parse_dist_filename("README.txt") is None
    assert parse_dist_filename("demo-notaversion-py3-none-any.whl") is None
    assert parse_dist_filename("demo.tar.gz") is None


@given(st.text(max_size=300))
@example("..")
@example(".")
@example("")
@example("a/b")
@example("a\\b")
@example("a\x00b")
@example("x" * (MAX_FILENAME_LENGTH + 1))
def test_safe_path_segment(segment: str) -> None:
    safe = is_safe_path_segment(segment)
    if safe:
        assert segment not in ("", ".", "..")
        assert not set(segment) & {"/", "\\", "\x00", "\n", "\r"}
        assert len(segment) <= MAX_FILENAME_LENGTH
    if "/" in segment or "\x00" in segment or segment in ("..", "."):
        assert not safe


def test_ordinary_segments_are_safe() -> None:
    for segment in ("root", "pypi", "demo-1.0.tar.gz", "demo_pkg-1.0-py3-none-any.whl", "..a"):
        assert is_safe_path_segment(segment), segment


@given(st.lists(versions(), min_size=1, max_size=8))
def test_version_sort_key_orders_like_packaging(values: list[str]) -> None:
    ordered = sorted(values, key=version_sort_key)
    assert [Version(v) for v in ordered] == sorted(Version(v) for v in values)
    assert sorted(["junk", *values], key=version_sort_key)[0] == "junk"
