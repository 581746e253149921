"""
Rendering our simple pages.

Round trips: JSON carries every field of a page, so ``parse(render_json(page)) == page`` (with
``versions`` filled in from the file names when the page had none). HTML carries less: no size,
upload time or versions, one hash per file and per metadata file. The HTML round trip is
``parse(render_html(page)) == html_subset(page)``, and ``html_subset`` is what says so.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import unquote

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.model import Link, ProjectPage
from pkgmirror.simple.negotiate import HTML_V1, JSON_V1, TEXT_HTML
from pkgmirror.simple.parse import parse_project_list, parse_project_page
from pkgmirror.simple.render import (
    derive_versions,
    html_subset,
    json_api_version,
    render_list,
    render_list_html,
    render_list_json,
    render_project,
    render_project_html,
    render_project_json,
)
from pkgmirror.testing.strategies import hostile_text, links, project_names, project_pages

SHA_A = "a" * 64
SHA_M = "c" * 64


def whl(version: str, tag: str = "py3-none-any") -> Link:
    filename = f"foo_bar-{version}-{tag}.whl"
    return Link(filename=filename, url=f"../../+f/abc/def/{filename}", size=10)


# -- round trips -----------------------------------------------------------------------------


@given(project_pages())
def test_json_round_trip_keeps_everything(page: ProjectPage) -> None:
    parsed = parse_project_page(render_project_json(page), JSON_V1, None, page.name)
    versions = page.versions if page.versions is not None else derive_versions(page.links)
    assert parsed == attrs.evolve(page, versions=versions)


@given(project_pages())
def test_html_round_trip_keeps_what_html_carries(page: ProjectPage) -> None:
    parsed = parse_project_page(render_project_html(page), "text/html", None, page.name)
    assert parsed == html_subset(page)


@given(st.lists(project_names(), max_size=30))
def test_list_round_trips(names: list[str]) -> None:
    assert parse_project_list(render_list_html(names), "text/html").names == tuple(names)
    assert parse_project_list(render_list_json(names), JSON_V1).names == tuple(names)


# -- escaping --------------------------------------------------------------------------------

# Every anchor as a strict pattern: attribute values hold no raw quote or angle bracket.
_STRICT_ANCHOR = re.compile(r'    <a(?: [a-z-]+="[^"<>]*")+>[^<>]*</a><br>\n')
_STRICT_META = re.compile(r'    <meta name="[a-z:-]+" content="[^"<>]*">\n')


class _Recorder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []
        self.meta: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attributes))
        elif tag == "meta" and dict(attributes).get("name"):
            self.meta[str(dict(attributes)["name"])] = dict(attributes).get("content")


@given(project_pages())
def test_every_attribute_value_is_escaped(page: ProjectPage) -> None:
    text = render_project_html(page).decode()
    assert len(_STRICT_ANCHOR.findall(text)) == len(page.links)
    expected_meta = 1 + (page.status is not None) + (page.status_reason is not None)
    assert len(_STRICT_META.findall(text)) == expected_meta

    recorder = _Recorder()
    recorder.feed(text)
    recorder.close()
    assert len(recorder.anchors) == len(page.links)
    for link, anchor in zip(page.links, recorder.anchors, strict=True):
        assert str(anchor["href"]).partition("#")[0] == link.url
        assert anchor.get("data-requires-python") == (link.requires_python or None)
        assert anchor.get("data-yanked") == link.yanked
        assert anchor.get("data-pkgmirror-index") == link.origin
        assert anchor.get("data-core-metadata") == anchor.get("data-dist-info-metadata")
    if page.status is not None:
        assert recorder.meta["pypi:project-status"] == page.status
        assert recorder.meta.get("pypi:project-status-reason") == page.status_reason


@given(st.lists(hostile_text(min_size=1), max_size=20))
def test_list_page_escapes_names(names: list[str]) -> None:
    text = render_list_html(names).decode()
    assert len(re.findall(r'    <a href="[^"<>]*/">[^<>]*</a><br>\n', text)) == len(names)


# -- HTML details ----------------------------------------------------------------------------


def test_html_page_shape() -> None:
    page = ProjectPage(name="Foo.Bar", links=[whl("1.0")], status="archived")
    text = render_project_html(page).decode()
    assert text.startswith("<!DOCTYPE html>\n<html>")
    assert '<meta name="pypi:repository-version" content="1.1">' in text
    assert "<title>Links for foo-bar</title>" in text
    assert '<meta name="pypi:project-status" content="archived">' in text
    assert "project-status-reason" not in text
    assert text.count("<br>") == 1
    assert ">foo_bar-1.0-py3-none-any.whl</a><br>" in text


def test_html_without_status_has_no_status_meta() -> None:
    assert b"project-status" not in render_project_html(ProjectPage(name="x"))


@pytest.mark.parametrize(
    ("hashes", "fragment"),
    [
        ({"sha256": SHA_A, "md5": "1" * 32}, f"#sha256={SHA_A}"),
        ({"md5": "1" * 32, "sha512": "2" * 128}, f"#sha512={'2' * 128}"),
        ({"blake2b_256": "3" * 64}, None),
        ({}, None),
    ],
)
def test_html_hash_fragment(hashes: dict[str, str], fragment: str | None) -> None:
    link = Link(filename="f-1.tar.gz", url="https://files.example.org/f-1.tar.gz", hashes=hashes)
    text = render_project_html(ProjectPage(name="f", links=[link])).decode()
    href = re.search(r'href="([^"]*)"', text)
    assert href is not None
    if fragment is None:
        assert href.group(1) == link.url
    else:
        assert href.group(1) == link.url + fragment


@pytest.mark.parametrize(
    ("core_metadata", "value"),
    [({"sha256": SHA_M}, f"sha256={SHA_M}"), ({}, "true"), ({"blake2b_256": SHA_M}, "true")],
)
def test_html_metadata_attributes_match(core_metadata: dict[str, str], value: str) -> None:
    link = attrs.evolve(whl("1.0"), core_metadata=core_metadata)
    text = render_project_html(ProjectPage(name="f", links=[link])).decode()
    assert f'data-core-metadata="{value}"' in text
    assert f'data-dist-info-metadata="{value}"' in text


def test_html_omits_optional_attributes_when_unknown() -> None:
    text = render_project_html(ProjectPage(name="f", links=[whl("1.0")])).decode()
    for attribute in (
        "data-yanked",
        "data-core-metadata",
        "data-dist-info-metadata",
        "data-requires-python",
        "data-pkgmirror-index",
        "false",
    ):
        assert attribute not in text


def test_html_yank_without_reason_is_an_empty_attribute() -> None:
    link = attrs.evolve(whl("1.0"), yanked="")
    assert b'data-yanked=""' in render_project_html(ProjectPage(name="f", links=[link]))


def test_html_requires_python_is_escaped() -> None:
    link = attrs.evolve(whl("1.0"), requires_python='>=3.8,<4,!="x"')
    text = render_project_html(ProjectPage(name="f", links=[link])).decode()
    assert 'data-requires-python="&gt;=3.8,&lt;4,!=&quot;x&quot;"' in text


# -- JSON details ----------------------------------------------------------------------------


def test_json_page_shape() -> None:
    link = Link(
        filename="foo_bar-1.0-py3-none-any.whl",
        url="../../+f/abc/def/foo_bar-1.0-py3-none-any.whl",
        hashes={"sha256": SHA_A},
        requires_python=">=3.8",
        yanked="",
        core_metadata={},
        size=5,
        upload_time="2026-01-01T00:00:00.000000Z",
        origin="root/pypi",
    )
    page = ProjectPage(name="Foo.Bar", links=[link], status="deprecated", status_reason="r")
    body = render_project_json(page)
    assert b", " not in body and b": " not in body  # compact separators
    document = json.loads(body)
    assert document == {
        "meta": {"api-version": "1.1"},
        "name": "foo-bar",
        "files": [
            {
                "filename": "foo_bar-1.0-py3-none-any.whl",
                "url": "../../+f/abc/def/foo_bar-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA_A},
                "requires-python": ">=3.8",
                "yanked": True,
                "core-metadata": True,
                "dist-info-metadata": True,
                "size": 5,
                "upload-time": "2026-01-01T00:00:00.000000Z",
                "_pkgmirror-index": "root/pypi",
            }
        ],
        "versions": ["1.0"],
        "project-status": {"status": "deprecated", "reason": "r"},
    }


def test_json_minimal_file_has_only_mandatory_keys() -> None:
    link = Link(filename="f-1.tar.gz", url="f-1.tar.gz")
    document = json.loads(render_project_json(ProjectPage(name="f", links=[link])))
    assert document["files"] == [{"filename": "f-1.tar.gz", "url": "f-1.tar.gz", "hashes": {}}]
    assert "project-status" not in document


def test_json_yank_reason_and_metadata_hash() -> None:
    link = attrs.evolve(whl("1.0"), yanked="broken", core_metadata={"sha256": SHA_M})
    (entry,) = json.loads(render_project_json(ProjectPage(name="f", links=[link])))["files"]
    assert entry["yanked"] == "broken"
    assert entry["core-metadata"] == entry["dist-info-metadata"] == {"sha256": SHA_M}


def test_json_claims_1_1_only_when_every_size_is_known() -> None:
    sized = ProjectPage(name="f", links=[whl("1.0"), whl("2.0")])
    assert json.loads(render_project_json(sized))["meta"]["api-version"] == "1.1"
    unsized = ProjectPage(name="f", links=[whl("1.0"), attrs.evolve(whl("2.0"), size=None)])
    document = json.loads(render_project_json(unsized))
    assert document["meta"]["api-version"] == "1.0" == json_api_version(unsized)
    assert "size" not in document["files"][1]


def test_json_versions_derived_from_file_names() -> None:
    page = ProjectPage(
        name="foo-bar",
        links=[
            whl("1.10"),
            whl("1.9"),
            whl("1.9", "cp311-cp311-manylinux_2_17_x86_64"),
            Link(filename="foo-bar-1.9.tar.gz", url="foo-bar-1.9.tar.gz", size=1),
            Link(filename="Foo_Bar-2.0rc1.zip", url="x/Foo_Bar-2.0rc1.zip", size=1),
            Link(filename="foo_bar-01.0-py3-none-any.whl", url="y", size=1),
            Link(filename="README.txt", url="README.txt", size=1),
        ],
    )
    versions = json.loads(render_project_json(page))["versions"]
    assert versions == ["1.0", "1.9", "1.10", "2.0rc1"]


def test_json_versions_from_page_when_set() -> None:
    page = ProjectPage(name="f", links=[whl("1.0")], versions=["1.0", "0.5"])
    assert json.loads(render_project_json(page))["versions"] == ["1.0", "0.5"]


def test_json_survives_lone_surrogates_from_a_parsed_page() -> None:
    body = (
        b'{"meta":{"api-version":"1.0"},'
        b'"files":[{"filename":"f","url":"f","hashes":{},"yanked":"\\ud800"}]}'
    )
    page = parse_project_page(body, JSON_V1, None, "f")
    assert parse_project_page(render_project_json(page), JSON_V1, None, "f") == attrs.evolve(
        page, versions=()
    )


def test_render_in_the_negotiated_format() -> None:
    page = ProjectPage(name="f", links=[whl("1.0")])
    assert render_project(page, JSON_V1) == render_project_json(page)
    assert render_project(page, TEXT_HTML) == render_project(page, HTML_V1)
    assert render_project(page, HTML_V1) == render_project_html(page)
    assert render_list(["a"], JSON_V1) == render_list_json(["a"])
    assert render_list(["a"], TEXT_HTML) == render_list_html(["a"])
    with pytest.raises(ValueError):
        render_project(page, "application/json")


# -- root pages ------------------------------------------------------------------------------


def test_list_html_links_to_normalized_names() -> None:
    text = render_list_html(["Foo.Bar", "baz"]).decode()
    assert '<a href="foo-bar/">Foo.Bar</a><br>' in text
    assert '<a href="baz/">baz</a><br>' in text
    assert '<meta name="pypi:repository-version" content="1.1">' in text


def test_list_json_shape() -> None:
    assert json.loads(render_list_json(["Foo.Bar", "é"])) == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "Foo.Bar"}, {"name": "é"}],
    }
    assert "é".encode() in render_list_json(["é"])  # UTF-8, not \u escapes


# -- what pip makes of our pages ------------------------------------------------------------


def _pip_links(body: bytes, content_type: str) -> list[object]:
    collector = pytest.importorskip("pip._internal.index.collector")
    content = collector.IndexContent(
        body, content_type, "utf-8", "https://index.example.org/simple/foo-bar/"
    )
    return list(collector.parse_links(content))


@pytest.mark.parametrize("render", [render_project_html, render_project_json])
def test_pip_reads_our_pages(render: object) -> None:
    link = Link(
        filename="foo_bar-1.0-py3-none-any.whl",
        url="../../+f/abc/def/foo_bar-1.0-py3-none-any.whl",
        hashes={"sha256": SHA_A},
        requires_python=">=3.8,<4",
        yanked='bad "build" <x>',
        core_metadata={"sha256": SHA_M},
        size=1,
    )
    plain = Link(filename="foo-bar-0.9.tar.gz", url="foo-bar-0.9.tar.gz", size=1)
    page = ProjectPage(name="foo-bar", links=[link, plain])
    content_type = "text/html" if render is render_project_html else JSON_V1
    first, second = _pip_links(render(page), content_type)  # type: ignore[operator]
    assert first.filename == "foo_bar-1.0-py3-none-any.whl"  # type: ignore[attr-defined]
    # pip re-quotes the path ("+" becomes "%2B"); the server sees the same path once decoded.
    assert unquote(first.url) == (  # type: ignore[attr-defined]
        f"https://index.example.org/+f/abc/def/foo_bar-1.0-py3-none-any.whl#sha256={SHA_A}"
    )
    assert first.requires_python == ">=3.8,<4"  # type: ignore[attr-defined]
    assert first.yanked_reason == 'bad "build" <x>'  # type: ignore[attr-defined]
    assert first.metadata_file_data.hashes == {"sha256": SHA_M}  # type: ignore[attr-defined]
    assert second.yanked_reason is None  # type: ignore[attr-defined]
    assert second.metadata_file_data is None  # type: ignore[attr-defined]


# -- speed -----------------------------------------------------------------------------------


def test_big_project_page_renders_every_file() -> None:
    files = [
        Link(
            filename=f"foo_bar-1.{v}-cp3{k}-cp3{k}-manylinux_2_17_x86_64.whl",
            url=f"../../+f/abc/def0123456789/foo_bar-1.{v}-cp3{k}-cp3{k}-manylinux_2_17_x86_64.whl",
            hashes={"sha256": SHA_A},
            requires_python=">=3.8",
            core_metadata={"sha256": SHA_M},
            size=123456,
            upload_time="2026-01-01T00:00:00.000000Z",
        )
        for v in range(2000)
        for k in range(5)
    ]
    page = ProjectPage(name="foo-bar", links=files)
    # Its speed is measured by bench/ (2,000 versions is the size of the biggest real projects).
    assert render_project_html(page).count(b"<a ") == 10_000
    document = json.loads(render_project_json(page))
    assert len(document["files"]) == 10_000
    assert len(document["versions"]) == 2000


def test_list_of_a_million_names_renders() -> None:
    names = [f"Project_{i}" for i in range(1_000_000)]
    html_body = render_list_html(names)
    json_body = render_list_json(names)
    assert html_body.count(b"<br>") == 1_000_000
    assert b'<a href="project-999999/">Project_999999</a><br>' in html_body
    assert json_body.count(b'{"name":') == 1_000_000


@settings(max_examples=25)
@given(st.lists(links(), min_size=1, max_size=3))
def test_no_raw_cr_in_output(page_links: list[Link]) -> None:
    # HTML5 parsers turn a raw CR into LF, which would change a value on the way to the client.
    assert b"\r" not in render_project_html(ProjectPage(name="x", links=page_links))
