"""
The HTML pages rendered from values, without a server: user text is escaped and bounded,
descriptions are sanitised, and name search finds what a naive scan finds.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.model import IndexConfig, ReleaseFile, User
from pkgmirror.pages import indexes, project, search, status
from pkgmirror.pages.layout import MAX_DESCRIPTION, MAX_LINE, Site, clip, esc
from pkgmirror.pages.readme import render_description
from pkgmirror.testing.strategies import hostile_text, project_names
from pkgmirror.web.pages import parse_core_metadata

SITE = Site(base="/prefix", outside_url="http://example.test/prefix")
# Every tag our pages may contain; user text must never add another.
OUR_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "a", "form", "label", "input",
    "button", "main", "nav", "ol", "li", "h1", "h2", "h3", "p", "small", "strong", "dl", "dt",
    "dd", "div", "table", "caption", "thead", "tbody", "tr", "th", "td", "code", "pre", "span",
    "ul", "br", "footer", "link",
}  # fmt: skip


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(body: bytes) -> Parsed:
    parser = Parsed()
    parser.feed(body.decode("utf-8"))
    parser.close()
    return parser


def assert_safe(parsed: Parsed, allowed: set[str] = OUR_TAGS) -> None:
    for tag, attributes in parsed.tags:
        assert tag in allowed, tag
        for name, value in attributes.items():
            assert not name.startswith("on"), (tag, name)
            if name == "href" and value and tag == "a":
                assert not value.strip().lower().startswith(("javascript:", "data:")), value


def visible(parsed: Parsed) -> str:
    return "".join(parsed.text)


def shown(text: str) -> str:
    """What of ``text`` a page shows: unprintable characters dropped."""
    return clip(text, MAX_LINE).strip()


@given(hostile_text(max_size=60), st.integers(1, 100))
def test_esc_round_trips_and_leaves_no_markup(text: str, limit: int) -> None:
    escaped = esc(text, limit)
    assert not set("<>\"'") & set(escaped)
    assert html.unescape(escaped) == clip(text, limit)
    assert len(clip(text, limit)) <= limit


def stage(user: str = "root", name: str = "local", **kw: object) -> IndexConfig:
    return IndexConfig(user=user, name=name, **kw)  # type: ignore[arg-type]


@settings(max_examples=50)
@given(hostile_text(min_size=1), hostile_text(min_size=1), hostile_text(min_size=1))
def test_index_pages_escape_titles_and_descriptions(
    title: str, description: str, user_title: str
) -> None:
    config = stage(title=title, description=description)
    mirror = IndexConfig(user="root", name="pypi", type="mirror", title=title)
    health = {"root/pypi": indexes.Health("down", 1.0, description, "http://up.test/simple/")}
    user = User(name="root", title=user_title, description=description)
    home = parse(indexes.render_home(SITE, [user], [config, mirror], health))
    assert_safe(home)
    assert shown(title) in visible(home)
    view = indexes.IndexView(config=config, order=[config, mirror], projects=[], total=0)
    page = parse(indexes.render_index(SITE, view))
    assert_safe(page)
    assert shown(description) in visible(page)
    assert_safe(parse(indexes.render_user(SITE, user, [config], health)))


def release(version: str = "1.0", **metadata: object) -> ReleaseFile:
    return ReleaseFile(
        index="root/local",
        project="hostile",
        version=version,
        filename=f"hostile-{version}.tar.gz",
        sha256="ab" * 32,
        size=10,
        upload_time="2026-11-24T15:09:00.000000Z",
        metadata=metadata,
    )


@settings(max_examples=50)
@given(hostile_text(min_size=1), hostile_text(min_size=1), hostile_text(min_size=1))
def test_version_page_escapes_every_metadata_field(summary: str, author: str, yanked: str) -> None:
    files = [
        project.FileView(
            filename=f"x{summary}.whl",
            url="/root/local/+f/abc/def/x.whl",
            index="root/local",
            yanked=yanked,
            requires_python=author,
        )
    ]
    view = project.VersionView(
        index="root/local",
        project="hostile",
        version="1.0",
        files=files,
        metadata={
            "summary": summary,
            "author": author,
            "classifiers": [summary, author],
            "project_urls": [f"{summary}, javascript:alert(1)", f"Home, https://x.test/{author}"],
            "home_page": f"javascript:{author}",
        },
        hidden=[("root/pypi", summary)],
    )
    parsed = parse(project.render_version(SITE, view))
    assert_safe(parsed)
    text = visible(parsed)
    assert shown(summary) in text and shown(author) in text
    page = parse(
        project.render_project(
            SITE,
            project.ProjectView(
                "root/local", "hostile", [project.VersionFiles("1.0", files)], status="archived"
            ),
        )
    )
    assert_safe(page)
    assert "yanked" in visible(page)


def test_huge_metadata_is_bounded() -> None:
    huge = "<script>alert(1)</script>" * 400_000  # 10 MB
    view = project.VersionView(
        index="root/local",
        project="hostile",
        version="1.0",
        files=[],
        metadata={"summary": huge, "classifiers": [huge] * 10_000},
        description_html=render_description(huge, "text/markdown"),
    )
    body = project.render_version(SITE, view)
    assert len(body) < 3 * MAX_DESCRIPTION + 200 * MAX_LINE
    parsed = parse(body)
    assert_safe(parsed, OUR_TAGS | {"p"})
    assert "longer than this page shows" in visible(parsed)


def test_descriptions_are_rendered_and_sanitised() -> None:
    markdown = (
        "# Title\n\nSome *text* and `code`.\n\n<script>alert(1)</script>\n"
        "[click](javascript:alert(1)) <img src=x onerror=alert(1)>\n"
    )
    rendered = render_description(markdown, "text/markdown; charset=UTF-8")
    assert "<h1" in rendered and "<em>text</em>" in rendered
    lowered = rendered.lower()
    assert "<script" not in lowered and "onerror" not in lowered and "javascript:" not in lowered
    rst = render_description("Title\n=====\n\n*em*\n\n.. raw:: html\n\n   <script>x</script>\n")
    assert "<script" not in rst.lower()
    plain = render_description("<b>bold?</b>", "text/plain")
    assert "<b>" not in plain and "&lt;b&gt;" in plain
    assert render_description("   ") == ""


def test_core_metadata_becomes_the_upload_keys() -> None:
    data = (
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nSummary: A demo\n"
        b"Classifier: A\nClassifier: B\nRequires-Dist: attrs\nProject-URL: Docs, https://d.test\n"
        b"Description-Content-Type: text/markdown\n\n# Demo\n\nLong text.\n"
    )
    meta = parse_core_metadata(data)
    assert meta["summary"] == "A demo"
    assert meta["classifiers"] == ["A", "B"]
    assert meta["requires_dist"] == ["attrs"]
    assert meta["project_urls"] == ["Docs, https://d.test"]
    assert meta["description"].startswith("# Demo")


def test_status_page_shows_mirror_state() -> None:
    data = {
        "version": "1",
        "uptime": 3700,
        "serverdir": "/srv/<x>",
        "serial": 3,
        "offline": False,
        "users": 1,
        "indexes": 2,
        "cache": {"files": 3, "bytes": 2048, "hit_ratio": 0.5},
        "refresh": {"running": True, "interval": 60, "rounds": 2, "refreshed": 1, "failed": 0},
        "mirrors": {
            "root/pypi": {
                "mirror_url": "http://up.test/simple/",
                "upstream": {"state": "down", "down_since": "2026-11-24", "last_error": "<boom>"},
                "hits": 1,
                "upstream_requests": 1,
                "hit_ratio": 0.5,
            }
        },
    }
    parsed = parse(status.render_status(SITE, data))
    assert_safe(parsed)
    text = visible(parsed)
    assert "/srv/<x>" in text and "<boom>" in text and "1 h 1 min" in text
    assert "down since 2026-11-24" in text


# ---------------------------------------------------------------- search
names_lists = st.lists(project_names(), max_size=60)
queries = st.one_of(project_names(), st.sampled_from(["a", "-", "1", "x_y", "A.B"]))


@given(names_lists, queries, st.integers(1, 20))
def test_name_index_matches_a_naive_scan(names: list[str], query: str, limit: int) -> None:
    from pkgmirror.names import normalize

    index = search.NameIndex(names)
    everything = sorted({normalize(n) for n in names})
    q = search.normalize_query(query)
    assert index.prefix(q, limit) == [n for n in everything if n.startswith(q)][:limit]
    assert index.substring(q, limit) == [n for n in everything if q in n][:limit]
    assert len(index) == len(everything)


@given(names_lists, names_lists, queries)
def test_search_ranks_exact_then_prefix_then_substring(
    own: list[str], base: list[str], query: str
) -> None:
    result = search.search(
        [("u/own", search.NameIndex(own)), ("u/base", search.NameIndex(base))], query, 1000
    )
    q = result.query
    names = [h.name for h in result.hits]
    assert len(names) == len(set(names))
    ranks = [0 if h.exact else 1 if h.name.startswith(q) else 2 for h in result.hits]
    assert ranks == sorted(ranks)
    assert all(q in n for n in names)
    own_index = search.NameIndex(own)
    for hit in result.hits:
        assert hit.index == ("u/own" if hit.name in own_index else "u/base")
    expected = {n for n in search.NameIndex(own + base).names if q and q in n}
    assert set(names) == expected


def test_search_normalises_the_query_and_stops_at_the_limit() -> None:
    index = search.NameIndex(f"Pkg_{i:05d}" for i in range(100_000))
    result = search.search([("root/pypi", index)], "  PKG.0001 ", limit=5)
    assert result.query == "pkg-0001"
    assert [h.name for h in result.hits] == [f"pkg-0001{i}" for i in range(5)]
    assert result.more and result.searched == 100_000
    inner = search.search([("root/pypi", index)], "99999")
    assert [h.name for h in inner.hits] == ["pkg-99999"] and not inner.more
    assert search.search([("root/pypi", index)], " ").hits == ()


@settings(max_examples=30)
@given(hostile_text(min_size=1, max_size=40))
def test_search_page_escapes_the_query(query: str) -> None:
    result = search.search([("root/local", search.NameIndex(["a", "b"]))], query)
    parsed = parse(search.render_search(SITE, "root/local", query, result))
    assert_safe(parsed)
    fields = [a for t, a in parsed.tags if t == "input"]
    assert fields[0]["value"] == clip(query, 200).replace("\r", "\n")
