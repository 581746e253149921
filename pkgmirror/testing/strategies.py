"""
Hypothesis strategies for model values, for our tests and anyone testing against pkgmirror.

Text that ends up in HTML attributes is hostile on purpose (``<>&"'``, entity look-alikes,
non-ASCII, newlines) so that round trips prove the escaping.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import strategies as st

from pkgmirror.model import Link, ProjectPage, iso_time

HOSTILE_CHARACTERS = "<>&\"'=#;/\\ \n\r\t"


def hostile_text(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    """Printable text rich in HTML metacharacters and entity fragments."""
    pieces = st.one_of(
        st.sampled_from(HOSTILE_CHARACTERS),
        st.sampled_from(["&amp;", "&lt;", "&#39;", "&quot", "</a>", "-->", ">=3.8", "<4"]),
        st.characters(exclude_categories=("Cs", "Cc")),
    )
    return (
        st.lists(pieces, min_size=min_size, max_size=max_size)
        .map("".join)
        .filter(lambda s: len(s) >= min_size)
    )


def project_names() -> st.SearchStrategy[str]:
    """Valid project names in any spelling (not normalised)."""
    return st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,18}[A-Za-z0-9])?", fullmatch=True)


def versions() -> st.SearchStrategy[str]:
    release = st.lists(st.integers(0, 30), min_size=1, max_size=3).map(
        lambda parts: ".".join(map(str, parts))
    )
    suffix = st.sampled_from(["", "", "a1", "b2", "rc1", ".post1", ".dev3"])
    return st.builds(lambda r, s: r + s, release, suffix)


def dist_filenames() -> st.SearchStrategy[str]:
    """Wheel and sdist names, and now and then a name no parser would recognise."""
    wheel = st.builds(
        lambda n, v: f"{n.replace('-', '_').replace('.', '_')}-{v}-py3-none-any.whl",
        project_names(),
        versions(),
    )
    sdist = st.builds(lambda n, v: f"{n}-{v}.tar.gz", project_names(), versions())
    odd = hostile_text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and "/" not in s)
    return st.one_of(wheel, wheel, sdist, odd)


def _hex(size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=size, max_size=size).map(bytes.hex)


def hash_maps() -> st.SearchStrategy[dict[str, str]]:
    """Hash name to lower-case hex; often sha256, sometimes others only, sometimes nothing."""
    return st.fixed_dictionaries(
        {},
        optional={
            "sha256": _hex(32),
            "sha512": _hex(64),
            "md5": _hex(16),
            "blake2b_256": _hex(32),
        },
    )


_URL_PREFIXES = (
    "https://files.example.org/packages/ab/cd/",
    "http://127.0.0.1:3141/root/pypi/+f/abc/def0123456789/",
    "../../+f/abc/def0123456789/",
    "/root/dev/+f/012/3456789abcdef/",
    "",
)


@st.composite
def links(draw: st.DrawFn) -> Link:
    """A Link whose url ends in its quoted filename and carries no fragment."""
    filename = draw(dist_filenames())
    url = draw(st.sampled_from(_URL_PREFIXES)) + quote(filename, safe="")
    if draw(st.booleans()):
        url += draw(st.sampled_from(["?a=1&b=2", "?x=<y>"]))
    return Link(
        filename=filename,
        url=url,
        hashes=draw(hash_maps()),
        requires_python=draw(st.none() | hostile_text(min_size=1)),
        yanked=draw(st.none() | st.just("") | hostile_text(min_size=1)),
        core_metadata=draw(st.none() | hash_maps()),
        size=draw(st.none() | st.integers(0, 2**40)),
        upload_time=draw(
            st.none() | st.floats(0, 4e9, allow_nan=False, allow_infinity=False).map(iso_time)
        ),
        origin=draw(st.none() | st.sampled_from(["root/pypi", "alice/dev"]) | hostile_text()),
    )


@st.composite
def project_pages(draw: st.DrawFn, max_links: int = 8) -> ProjectPage:
    status = draw(st.none() | st.sampled_from(["active", "archived", "quarantined", "deprecated"]))
    return ProjectPage(
        name=draw(project_names()),
        links=draw(st.lists(links(), max_size=max_links)),
        versions=draw(st.none() | st.lists(versions(), unique=True, max_size=6)),
        status=status,
        status_reason=draw(st.none() | hostile_text()) if status is not None else None,
        last_serial=draw(st.none() | st.integers(0, 2**40)),
    )
