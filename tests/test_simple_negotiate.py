"""Content negotiation for simple pages (checklist section 4) and the devpi JSON API switch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgmirror.simple.negotiate import (
    HTML_V1,
    JSON_V1,
    TEXT_HTML,
    negotiate,
    parse_accept,
    wants_json_api,
)

PIP = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
POETRY = "application/vnd.pypi.simple.v1+json, */*;q=0.1"
PDM = PIP  # pdm sends pip's string (captured in clients.md)
UV_PUBLISH = "application/json;q=0.9, text/plain;q=0.8, text/html;q=0.7"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        pytest.param(None, TEXT_HTML, id="C5-missing"),
        pytest.param("*/*", TEXT_HTML, id="C5-any"),
        pytest.param(PIP, JSON_V1, id="pip"),
        pytest.param(UV, JSON_V1, id="uv"),
        pytest.param(POETRY, JSON_V1, id="poetry"),
        pytest.param(PDM, JSON_V1, id="pdm"),
        pytest.param(HTML_V1, HTML_V1, id="v1-html-exact"),
        pytest.param("text/html", TEXT_HTML, id="text-html"),
        pytest.param("application/vnd.pypi.simple.latest+json", JSON_V1, id="C3-latest-json"),
        pytest.param("application/vnd.pypi.simple.latest+html", HTML_V1, id="C3-latest-html"),
        pytest.param(f"{JSON_V1};q=0, text/html", TEXT_HTML, id="q0-excludes-json"),
        pytest.param("application/json", None, id="C1-application-json-is-not-an-alias"),
        pytest.param("application/vnd.pypi.simple.v2+json", None, id="unknown-major"),
    ],
)
def test_checklist_table(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize("accept", [None, "*/*", PIP, "application/json", "text/html;q=0"])
def test_valid_format_parameter_wins_over_accept(accept: str | None) -> None:
    assert negotiate(accept, JSON_V1) == JSON_V1
    assert negotiate(accept, "text/html") == TEXT_HTML
    assert negotiate(accept, HTML_V1) == HTML_V1


def test_format_parameter_latest_maps_to_v1() -> None:
    assert negotiate(None, "application/vnd.pypi.simple.latest+json") == JSON_V1
    assert negotiate(None, " Application/Vnd.Pypi.Simple.Latest+HTML ") == HTML_V1


@pytest.mark.parametrize("bad", ["application/json", "*/*", "text/*", "json", "", f"{JSON_V1};q=1"])
def test_invalid_format_parameter_falls_back_to_accept(bad: str) -> None:
    assert negotiate(PIP, bad) == JSON_V1
    assert negotiate("text/html", bad) == TEXT_HTML


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        # Equal q, both named: the most expressive format (PEP 691's recommendation).
        (f"text/html, {JSON_V1}", JSON_V1),
        (f"{HTML_V1}, text/html", HTML_V1),
        (f"text/html, {HTML_V1}, {JSON_V1}", JSON_V1),
        # Equal q, reached only through wildcards: HTML, the format every client reads.
        ("text/*", TEXT_HTML),
        ("application/*", HTML_V1),
        ("application/*, text/*", TEXT_HTML),
        # A named format beats a wildcard at the same q.
        (f"*/*, {JSON_V1}", JSON_V1),
        (f"application/*, {JSON_V1};q=1", JSON_V1),
        # q decides before anything else.
        (f"{JSON_V1};q=0.5, text/html", TEXT_HTML),
        (f"*/*;q=0.9, {JSON_V1};q=0.8", TEXT_HTML),
        ("text/html;q=0.5, */*;q=0.1", TEXT_HTML),
        (f"{JSON_V1};q=0.001, text/html;q=0", JSON_V1),
    ],
)
def test_ties_and_wildcards(accept: str, expected: str) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        # The most specific range sets the q, even when a wider one would allow the format.
        (f"{JSON_V1};q=0, */*", TEXT_HTML),
        (f"text/html;q=0, {HTML_V1};q=0, */*", JSON_V1),
        ("text/*;q=0, */*", HTML_V1),
        ("*/*;q=0", None),
        ("text/html;q=0", None),
        (f"application/*;q=0, {JSON_V1}", JSON_V1),
        # An exact type is more specific than its "latest" alias.
        (f"application/vnd.pypi.simple.latest+json, {JSON_V1};q=0, text/html;q=0.1", TEXT_HTML),
    ],
)
def test_q_zero_excludes(accept: str, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("Application/VND.PyPI.Simple.V1+JSON", JSON_V1),
        ("TEXT/HTML;Q=0.5", TEXT_HTML),
        ("text/html; charset=utf-8", TEXT_HTML),
        (f'{JSON_V1}; foo="bar, baz"', JSON_V1),
        (f"{JSON_V1};q=0.5;level=1, text/html;q=0.4", JSON_V1),
        (f"  {JSON_V1}  ;  q = 0.3 ,text/html;q=0.2", JSON_V1),
        (UV_PUBLISH, TEXT_HTML),
    ],
)
def test_spelling_tolerance(accept: str, expected: str) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize("garbage", ["", "   ", "garbage", ",,,;;;", "*/json", "/", "a/b/c;q"])
def test_unusable_header_counts_as_missing(garbage: str) -> None:
    assert negotiate(garbage) == TEXT_HTML


@pytest.mark.parametrize("bad_q", ["2", "-0.1", "abc", "nan", "inf", "", "0.5.5"])
def test_entry_with_invalid_q_is_ignored(bad_q: str) -> None:
    assert negotiate(f"{JSON_V1};q={bad_q}, {HTML_V1};q=0.5") == HTML_V1
    assert parse_accept(f"{JSON_V1};q={bad_q}") == []


def test_parse_accept_shape() -> None:
    assert parse_accept(PIP) == [
        (JSON_V1, {}, 1.0),
        (HTML_V1, {}, 0.1),
        ("text/html", {}, 0.01),
    ]
    assert parse_accept("Text/HTML; Charset=UTF-8; q=0.5; ext=1") == [
        ("text/html", {"charset": "UTF-8"}, 0.5)
    ]
    assert parse_accept(None) == []


def test_hostile_header_is_bounded() -> None:
    header = ", ".join(["text/plain"] * 100_000 + [JSON_V1])
    assert len(parse_accept(header)) <= 64
    assert negotiate(header) is None


@given(st.text())
def test_parse_accept_never_raises(header: str) -> None:
    for media, params, q in parse_accept(header):
        assert "/" in media
        assert 0.0 <= q <= 1.0
        assert isinstance(params, dict)
    assert negotiate(header) in (JSON_V1, HTML_V1, TEXT_HTML, None)
    assert isinstance(wants_json_api(header), bool)


_RANGES = st.sampled_from(
    [
        JSON_V1,
        HTML_V1,
        "text/html",
        "application/vnd.pypi.simple.latest+json",
        "application/vnd.pypi.simple.latest+html",
        "application/json",
        "text/*",
        "application/*",
        "*/*",
        "image/png",
    ]
)
_QS = st.sampled_from(["", ";q=0", ";q=0.01", ";q=0.1", ";q=0.5", ";q=1"])


@given(st.lists(st.tuples(_RANGES, _QS), min_size=1, max_size=6), st.randoms())
def test_order_of_entries_does_not_matter(entries: list[tuple[str, str]], rnd: object) -> None:
    header = ", ".join(m + q for m, q in entries)
    shuffled = list(entries)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert negotiate(header) == negotiate(", ".join(m + q for m, q in shuffled))


@given(st.lists(st.tuples(_RANGES, _QS), min_size=1, max_size=6))
def test_never_answers_a_type_the_client_refused(entries: list[tuple[str, str]]) -> None:
    header = ", ".join(m + q for m, q in entries)
    chosen = negotiate(header)
    if chosen is None:
        return
    aliases = {"application/vnd.pypi.simple.latest+json": JSON_V1}
    aliases["application/vnd.pypi.simple.latest+html"] = HTML_V1
    named = [(aliases.get(m, m), q) for m, q in entries]
    exact = [q for m, q in named if m == chosen]
    # When the client named the chosen type, some naming of it has a non-zero q.
    if exact:
        assert any(q != ";q=0" for q in exact)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", True),  # devpi-client
        ("application/json, text/plain", True),
        (UV_PUBLISH, True),
        ("Application/JSON; charset=utf-8", True),
        ("application/json;q=0, */*", False),
        (PIP, False),
        ("*/*", False),
        ("", False),
        (None, False),
        ("text/html", False),
    ],
)
def test_wants_json_api(accept: str | None, expected: bool) -> None:
    assert wants_json_api(accept) is expected
