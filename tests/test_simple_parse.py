"""Parsing upstream simple pages: PEP 503 HTML, PEP 691 JSON, root pages."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.model import Link
from pkgmirror.simple.negotiate import HTML_V1, JSON_V1
from pkgmirror.simple.parse import ParseError, parse_project_list, parse_project_page

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_M = "c" * 64
PAGE_URL = "https://index.example.org/simple/foo-bar/"


def json_page(files: list[Any], **extra: Any) -> bytes:
    document = {"meta": {"api-version": "1.4"}, "name": "foo-bar", "files": files, **extra}
    return json.dumps(document).encode()


# -- JSON ------------------------------------------------------------------------------------


def test_json_page_with_every_field() -> None:
    body = json_page(
        [
            {
                "filename": "foo_bar-1.0-py3-none-any.whl",
                "url": "https://files.example.org/packages/aa/bb/foo_bar-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA_A.upper(), "blake2b_256": "d" * 64},
                "requires-python": ">=3.8",
                "core-metadata": {"sha256": SHA_M},
                "dist-info-metadata": {"sha256": SHA_M},
                "size": 1234,
                "upload-time": "2026-01-02T03:04:05.123456Z",
                "yanked": "broken build",
                "provenance": None,
                "gpg-sig": False,
                "some-future-key": [1, 2],
            }
        ],
        versions=["1.0", "2.0"],
        **{"project-status": {"status": "archived", "reason": "moved to baz"}},
    )
    page = parse_project_page(body, JSON_V1, PAGE_URL, "Foo.Bar")
    assert page.name == "foo-bar"
    assert page.versions == ("1.0", "2.0")
    assert page.status == "archived"
    assert page.status_reason == "moved to baz"
    assert page.links == (
        Link(
            filename="foo_bar-1.0-py3-none-any.whl",
            url="https://files.example.org/packages/aa/bb/foo_bar-1.0-py3-none-any.whl",
            hashes={"sha256": SHA_A, "blake2b_256": "d" * 64},
            requires_python=">=3.8",
            yanked="broken build",
            core_metadata={"sha256": SHA_M},
            size=1234,
            upload_time="2026-01-02T03:04:05.123456Z",
        ),
    )


def test_json_api_1_0_page_has_no_versions() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.0"},
            "name": "foo",
            "files": [{"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz", "hashes": {}}],
        }
    ).encode()
    page = parse_project_page(body, JSON_V1, None, "foo")
    assert page.versions is None
    assert page.links[0].size is None
    assert page.links[0].upload_time is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, ""), ("reason", "reason"), (False, None), (None, None), ("", None)],
)
def test_json_yanked_values(value: object, expected: str | None) -> None:
    body = json_page(
        [{"filename": "f-1.tar.gz", "url": "f-1.tar.gz", "hashes": {}, "yanked": value}]
    )
    assert parse_project_page(body, JSON_V1, None, "f").links[0].yanked == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"core-metadata": True}, {}),
        ({"core-metadata": {"sha256": SHA_M}}, {"sha256": SHA_M}),
        ({"core-metadata": False}, None),
        ({}, None),
        # PEP 714: the legacy key alone still counts.
        ({"dist-info-metadata": {"sha256": SHA_M}}, {"sha256": SHA_M}),
        ({"dist-info-metadata": True}, {}),
        # The new key wins when both disagree.
        ({"core-metadata": False, "dist-info-metadata": True}, None),
    ],
)
def test_json_core_metadata(entry: dict[str, Any], expected: dict[str, str] | None) -> None:
    body = json_page([{"filename": "f-1.tar.gz", "url": "f-1.tar.gz", "hashes": {}, **entry}])
    assert parse_project_page(body, JSON_V1, None, "f").links[0].core_metadata == expected


def test_json_relative_urls_resolve_against_the_page_url() -> None:
    body = json_page(
        [
            {
                "filename": "f-1.tar.gz",
                "url": "../../files/f-1.tar.gz#sha256=" + SHA_A,
                "hashes": {},
            },
            {"filename": "f-2.tar.gz", "url": "/abs/f-2.tar.gz", "hashes": {"sha256": SHA_B}},
        ]
    )
    resolved = parse_project_page(body, JSON_V1, PAGE_URL, "f")
    assert [link.url for link in resolved.links] == [
        "https://index.example.org/files/f-1.tar.gz",
        "https://index.example.org/abs/f-2.tar.gz",
    ]
    # A hash given only in the fragment is kept.
    assert resolved.links[0].hashes == {"sha256": SHA_A}
    as_is = parse_project_page(body, JSON_V1, None, "f")
    assert [link.url for link in as_is.links] == ["../../files/f-1.tar.gz", "/abs/f-2.tar.gz"]


def test_json_skips_unusable_entries_and_values() -> None:
    body = json_page(
        [
            "not an object",
            {"filename": "no-url-1.0.tar.gz", "hashes": {}},
            {"url": "https://files.example.org/p/derived-1.0.tar.gz", "hashes": []},
            {
                "filename": "odd-1.0.tar.gz",
                "url": "odd-1.0.tar.gz",
                "hashes": {"sha256": 5, "md5": "not hex"},
                "size": -1,
                "upload-time": "yesterday",
                "requires-python": 3,
            },
        ]
    )
    page = parse_project_page(body, JSON_V1, None, "x")
    assert [link.filename for link in page.links] == ["derived-1.0.tar.gz", "odd-1.0.tar.gz"]
    odd = page.links[1]
    assert (odd.hashes, odd.size, odd.upload_time, odd.requires_python) == ({}, None, None, None)


def test_json_last_serial_from_meta() -> None:
    body = json.dumps({"meta": {"api-version": "1.1", "_last-serial": 42}, "files": []}).encode()
    assert parse_project_page(body, JSON_V1, None, "x").last_serial == 42


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", JSON_V1),
        (b"[]", JSON_V1),
        (b'{"meta": {"api-version": "1.0"}}', JSON_V1),
        (b'{"meta": {"api-version": "1.0"}, "files": {}}', JSON_V1),
        (b'{"meta": "1.0", "files": []}', JSON_V1),
        (b'{"meta": {"api-version": "2.0"}, "files": []}', JSON_V1),
        (b'{"files": []}', "application/vnd.pypi.simple.v2+json"),
        (b"\xff\xfe\x00garbage", JSON_V1),
        (b"<html></html>", "image/png"),
        (b"<html></html>", "text/plain"),
        (b'<meta name="pypi:repository-version" content="2.0">', "text/html"),
    ],
)
def test_garbage_raises_parse_error(body: bytes, content_type: str) -> None:
    with pytest.raises(ParseError):
        parse_project_page(body, content_type, None, "x")


def test_devpi_bogus_text_html_type_is_html() -> None:
    body = b'<a href="/f/x-1.0.tar.gz#sha256=' + b"a" * 64 + b'">x-1.0.tar.gz</a>'
    page = parse_project_page(body, "text_html", "http://up/simple/x/", "x")
    assert [link.filename for link in page.links] == ["x-1.0.tar.gz"]


def test_parse_error_is_a_value_error() -> None:
    assert issubclass(ParseError, ValueError)


# -- HTML ------------------------------------------------------------------------------------

# Shaped like what warehouse, devpi and a static tree serve, with the odd bits real indexes have.
HTML_PAGE = f"""<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.4">
    <meta name="pypi:project-status" content="deprecated">
    <meta name="pypi:project-status-reason" content="use &lt;baz&gt; &amp; co">
    <title>Links for foo-bar</title>
  </head>
  <body>
    <h1>Links for foo-bar</h1>
    <a href="https://files.example.org/packages/foo_bar-1.0-py3-none-any.whl#sha256={SHA_A}"
       data-requires-python="&gt;=3.8,&lt;4" data-core-metadata="sha256={SHA_M}"
       data-dist-info-metadata="sha256={SHA_M}">foo_bar-1.0-py3-none-any.whl</a><br/>
    <a href="../../files/foo-bar-0.9.tar.gz#md5=0123456789ABCDEF0123456789abcdef"
       data-yanked>foo-bar-0.9.tar.gz</a><br/>
    <a href="foo-bar-0.8.tar.gz#egg=foo" data-yanked="bad &quot;bug&quot;"
       data-core-metadata="false">x</a>
    <A HREF="/other/foo%20bar-0.7.zip" DATA-DIST-INFO-METADATA="true"
       data-pkgmirror-index="root/pypi">foo bar-0.7.zip</A>
    <a href="/dir/">dir-text</a>
    <a href="/">  </a>
    <a name="no-href">nothing</a>
  </body>
</html>
<!--SERIAL 31337-->
"""


def test_html_page() -> None:
    page = parse_project_page(HTML_PAGE.encode(), "text/html; charset=utf-8", PAGE_URL, "Foo_Bar")
    assert page.name == "foo-bar"
    assert page.status == "deprecated"
    assert page.status_reason == "use <baz> & co"
    assert page.last_serial == 31337
    assert page.versions is None
    assert page.links == (
        Link(
            filename="foo_bar-1.0-py3-none-any.whl",
            url="https://files.example.org/packages/foo_bar-1.0-py3-none-any.whl",
            hashes={"sha256": SHA_A},
            requires_python=">=3.8,<4",
            core_metadata={"sha256": SHA_M},
        ),
        Link(
            filename="foo-bar-0.9.tar.gz",
            url="https://index.example.org/files/foo-bar-0.9.tar.gz",
            hashes={"md5": "0123456789abcdef0123456789abcdef"},
            yanked="",
        ),
        Link(
            filename="foo-bar-0.8.tar.gz",
            url="https://index.example.org/simple/foo-bar/foo-bar-0.8.tar.gz",
            yanked='bad "bug"',
        ),
        Link(
            filename="foo bar-0.7.zip",
            url="https://index.example.org/other/foo%20bar-0.7.zip",
            core_metadata={},
            origin="root/pypi",
        ),
        Link(filename="dir-text", url="https://index.example.org/dir/"),
    )


def test_html_urls_kept_as_written_without_base_url() -> None:
    page = parse_project_page(HTML_PAGE.encode(), HTML_V1, None, "foo-bar")
    assert [link.url for link in page.links][1:3] == [
        "../../files/foo-bar-0.9.tar.gz",
        "foo-bar-0.8.tar.gz",
    ]


def test_html_anchor_text_names_the_file_when_the_url_does_not() -> None:
    body = (
        b'<a href="https://files.example.org/download?id=7">foo-1.0.tar.gz</a>'
        b'<a href="https://files.example.org/foo-2.0.tar.gz">download</a>'
    )
    first, second = parse_project_page(body, "text/html", None, "foo").links
    assert first.filename == "foo-1.0.tar.gz"
    assert first.url == "https://files.example.org/download?id=7"
    assert second.filename == "foo-2.0.tar.gz"


def test_html_base_tag_is_honoured() -> None:
    body = b'<html><head><base href="/mirror/files/"></head><a href="f-1.tar.gz">f-1.tar.gz</a>'
    page = parse_project_page(body, "text/html", PAGE_URL, "f")
    assert page.links[0].url == "https://index.example.org/mirror/files/f-1.tar.gz"


def test_html_reads_uvs_nonstandard_size_and_upload_time() -> None:
    body = (
        b'<a href="f-1.tar.gz" data-size="77" data-upload-time="2026-01-01T00:00:00Z">f</a>'
        b'<a href="f-2.tar.gz" data-size="-3" data-upload-time="soon">f</a>'
    )
    first, second = parse_project_page(body, "text/html", None, "f").links
    assert (first.size, first.upload_time) == (77, "2026-01-01T00:00:00Z")
    assert (second.size, second.upload_time) == (None, None)


def test_html_charset_from_content_type() -> None:
    body = '<a href="caf%C3%A9-1.0.tar.gz" data-requires-python="\u2265 3">x</a>'.encode(
        "latin-1", "replace"
    )
    page = parse_project_page(body, "text/html; charset=ISO-8859-1", None, "cafe")
    assert page.links[0].filename == "café-1.0.tar.gz"


def test_missing_content_type_is_sniffed() -> None:
    as_json = json_page([{"filename": "f-1.tar.gz", "url": "f-1.tar.gz", "hashes": {}}])
    assert parse_project_page(as_json, "", None, "f").links[0].filename == "f-1.tar.gz"
    as_html = b'<a href="f-1.tar.gz">f-1.tar.gz</a>'
    assert parse_project_page(as_html, "", None, "f").links[0].filename == "f-1.tar.gz"


def test_unclosed_anchors() -> None:
    body = b'<a href="f-1.tar.gz">f-1.tar.gz<a href="f-2.tar.gz">f-2.tar.gz <!-- '
    page = parse_project_page(body, "text/html", None, "f")
    assert [link.filename for link in page.links] == ["f-1.tar.gz", "f-2.tar.gz"]


def test_markup_the_parser_gives_up_on_is_a_parse_error_not_half_a_page() -> None:
    # Older html.parser versions raise on this, newer ones read past it: either is fine.
    body = b'<a href="f-1.tar.gz">f-1.tar.gz</a> <![ x <a href="f-2.tar.gz">f-2.tar.gz</a>'
    try:
        page = parse_project_page(body, "text/html", None, "f")
    except ParseError:
        return
    assert "f-1.tar.gz" in [link.filename for link in page.links]


@given(st.binary(max_size=2000), st.sampled_from(["text/html", JSON_V1, "", "application/json"]))
def test_arbitrary_bytes_parse_or_raise_parse_error(body: bytes, content_type: str) -> None:
    try:
        parse_project_page(body, content_type, PAGE_URL, "x")
    except ParseError:
        pass


@given(st.text(max_size=500))
def test_arbitrary_html_text_never_raises(text: str) -> None:
    try:
        page = parse_project_page(("<a href='" + text).encode(), "text/html", PAGE_URL, "x")
    except ParseError:
        return
    assert all(link.filename for link in page.links)


# -- root pages ------------------------------------------------------------------------------


def test_project_list_json() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.0"},
            "projects": [
                {"name": "Foo.Bar"},
                {"name": ""},
                {"nom": "x"},
                {"name": 3},
                {"name": "baz"},
            ],
        }
    ).encode()
    assert parse_project_list(body, JSON_V1).names == ("Foo.Bar", "baz")
    # Objects are read as their names as they are parsed (a million dicts cost too much), so a
    # bare string in the list passes for a name too.
    body = json.dumps({"meta": {"api-version": "1.0"}, "projects": ["y"]}).encode()
    assert parse_project_list(body, JSON_V1).names == ("y",)


def test_project_list_html() -> None:
    body = b"""<!DOCTYPE html><html><head><title>Simple index</title></head><body>
    <a href="/simple/foo-bar/">Foo.Bar</a><br/>
    <A HREF="a-b/" class="x">a&amp;b</A>
    <a href="empty/"> </a><a href="c/">
      c </a  >
    </body></html>"""
    assert parse_project_list(body, "text/html").names == ("Foo.Bar", "a&b", "c")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"{}", JSON_V1), (b"nope", JSON_V1), (b'{"projects": {}}', JSON_V1), (b"", "image/gif")],
)
def test_project_list_garbage(body: bytes, content_type: str) -> None:
    with pytest.raises(ParseError):
        parse_project_list(body, content_type)


def test_project_list_of_a_million_names() -> None:
    body = "".join(f'<a href="/simple/p{i}/">P_{i}</a>\n' for i in range(1_000_000)).encode()
    names = parse_project_list(body, "text/html").names
    assert len(names) == 1_000_000
    assert names[123456] == "P_123456"


_BASES = st.sampled_from(
    [
        PAGE_URL,
        "https://index.example.org/simple/foo-bar",
        "https://index.example.org",
        "https://index.example.org/a/b/?q=1",
        "http://127.0.0.1:3141/root/pypi/+simple/foo-bar/",
    ]
)
_PIECES = st.sampled_from(
    [
        "..",
        ".",
        "a",
        "+f",
        "%2F",
        "x?y",
        "b;c",
        "//h",
        "http:",
        "https://o.example.org",
        "f.whl",
        "a:b",
    ]
)


@settings(max_examples=500)
@given(
    _BASES, st.lists(_PIECES, min_size=1, max_size=6).map("/".join) | st.lists(_PIECES).map("".join)
)
def test_relative_urls_resolve_as_urljoin_does(base: str, href: str) -> None:
    body = json_page([{"url": href + "#sha256=" + SHA_A, "hashes": {}}])
    links = parse_project_page(body, JSON_V1, base, "f").links
    expected_url = urljoin(base, href.strip())
    # Without a "filename" key the file is named by the URL's last path segment.
    expected_name = unquote(urlsplit(expected_url).path.rpartition("/")[2])
    if expected_name:
        assert (links[0].url, links[0].filename) == (expected_url, expected_name)
    else:
        assert links == ()
