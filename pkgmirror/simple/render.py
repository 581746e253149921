"""
Our simple pages as bytes: PEP 503/629/658/714/792 HTML and PEP 691/700 JSON. Pure.

The caller gives links whose ``url`` is already the href to emit (quoted, without fragment).

API version: HTML always says 1.1 (1.1 adds nothing mandatory to HTML). JSON says 1.1 only when
it can carry what 1.1 makes mandatory: ``versions`` (always present: derived from the file names
when the page has none) and ``size`` on *every* file. When any link lacks a size the JSON claims
1.0 instead of lying (as proxpi does); a caller that wants 1.1 must fill ``Link.size`` (stages know
it from the upload, mirrors from the upstream's JSON or from the cached blob).
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
from packaging.version import InvalidVersion, Version

from pkgmirror.model import Link, ProjectPage
from pkgmirror.names import normalize, parse_dist_filename, version_sort_key
from pkgmirror.simple.negotiate import HTML_V1, JSON_V1, TEXT_HTML

REPOSITORY_VERSION = "1.1"
API_VERSION_FULL = "1.1"
API_VERSION_NO_SIZE = "1.0"

# hashlib's guaranteed algorithms, the only ones clients verify in a URL fragment, in the order
# we prefer them when a link carries several (sha256 first: PEP 503 says SHOULD).
FRAGMENT_HASHES = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")

# html.escape(quote=True)'s set, plus CR: HTML5 parsers turn a raw CR in an attribute into LF.
_ESCAPE_NEEDED = re.compile(r"[&<>\"'\r]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "\r": "&#13;"}


def _esc(text: str) -> str:
    # html.escape(quote=True) runs five replaces on every string; file names and hashes almost
    # never need any, and a 10,000-file page calls this ~50,000 times.
    if _ESCAPE_NEEDED.search(text) is None:
        return text
    return _ESCAPE_NEEDED.sub(lambda m: _ESCAPES[m.group()], text)


def preferred_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    """The (name, hex) an HTML page carries for these hashes, or None when none is usable there."""
    for name in FRAGMENT_HASHES:
        value = hashes.get(name)
        if value:
            return name, value
    return None


def _metadata_attr_value(core_metadata: Mapping[str, str]) -> str:
    chosen = preferred_hash(core_metadata)
    return "true" if chosen is None else f"{chosen[0]}={chosen[1]}"


def _head(title: str, extra_meta: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta charset="utf-8">\n'
        f'    <meta name="pypi:repository-version" content="{REPOSITORY_VERSION}">\n'
        f"{extra_meta}"
        f"    <title>{title}</title>\n"
        "  </head>\n  <body>\n"
    )


_TAIL = "  </body>\n</html>\n"


def _link_html(link: Link) -> str:
    href = link.url
    chosen = preferred_hash(link.hashes)
    if chosen is not None:
        href = f"{href}#{chosen[0]}={chosen[1]}"
    parts = ['    <a href="', _esc(href), '"']
    if link.requires_python:
        parts += [' data-requires-python="', _esc(link.requires_python), '"']
    if link.yanked is not None:
        parts += [' data-yanked="', _esc(link.yanked), '"']
    if link.core_metadata is not None:
        value = _esc(_metadata_attr_value(link.core_metadata))
        parts += [' data-core-metadata="', value, '" data-dist-info-metadata="', value, '"']
    if link.origin is not None:
        parts += [' data-pkgmirror-index="', _esc(link.origin), '"']
    parts += [">", _esc(link.filename), "</a><br>\n"]
    return "".join(parts)


def render_project_html(page: ProjectPage) -> bytes:
    """A PEP 503 detail page (valid HTML5, UTF-8)."""
    name = _esc(page.name)
    meta = ""
    if page.status is not None:
        meta += f'    <meta name="pypi:project-status" content="{_esc(page.status)}">\n'
        if page.status_reason is not None:
            meta += (
                '    <meta name="pypi:project-status-reason" '
                f'content="{_esc(page.status_reason)}">\n'
            )
    body = [_head(f"Links for {name}", meta), f"    <h1>Links for {name}</h1>\n"]
    body.extend(map(_link_html, page.links))
    body.append(_TAIL)
    if page.last_serial is not None:
        # Where warehouse puts it; mirrors of us can read it like they read the public index.
        body.append(f"<!--SERIAL {int(page.last_serial)}-->\n")
    return "".join(body).encode("utf-8", errors="xmlcharrefreplace")


def derive_versions(links: Iterable[Link]) -> tuple[str, ...]:
    """The versions the file names carry, each once, oldest first."""
    found: set[str] = set()
    for link in links:
        version = _version_of(link.filename)
        if version is not None:
            found.add(version)
    return tuple(sorted(found, key=_sort_key))


def _version_of(filename: str) -> str | None:
    # A project with thousands of wheels repeats each version string five to fifty times:
    # parse the version once per string, not the whole file name once per file.
    if filename.endswith(".whl"):
        parts = filename.split("-")
        if len(parts) in (5, 6):
            return _wheel_version(parts[1])
    parsed = parse_dist_filename(filename)
    return None if parsed is None else parsed[1]


@functools.lru_cache(maxsize=8192)
def _wheel_version(raw: str) -> str | None:
    try:
        return str(Version(raw))
    except InvalidVersion:
        return None


_sort_key = functools.lru_cache(maxsize=8192)(version_sort_key)


def _link_json(link: Link) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": link.filename,
        "url": link.url,
        "hashes": dict(link.hashes),
    }
    if link.requires_python:
        entry["requires-python"] = link.requires_python
    if link.yanked is not None:
        # PEP 691: a reason must be non-empty; no reason is plain true.
        entry["yanked"] = link.yanked or True
    if link.core_metadata is not None:
        value: Any = dict(link.core_metadata) or True
        entry["core-metadata"] = value
        entry["dist-info-metadata"] = value
    if link.size is not None:
        entry["size"] = link.size
    if link.upload_time is not None:
        entry["upload-time"] = link.upload_time
    if link.origin is not None:
        entry["_pkgmirror-index"] = link.origin
    return entry


def json_api_version(page: ProjectPage) -> str:
    """The ``meta.api-version`` :func:`render_project_json` claims for this page."""
    if all(link.size is not None for link in page.links):
        return API_VERSION_FULL
    return API_VERSION_NO_SIZE


def render_project_json(page: ProjectPage) -> bytes:
    """A PEP 691 detail page (UTF-8 JSON); see the module docstring for its api-version."""
    meta: dict[str, Any] = {"api-version": json_api_version(page)}
    if page.last_serial is not None:
        meta["_last-serial"] = page.last_serial
    document: dict[str, Any] = {
        "meta": meta,
        "name": page.name,
        "files": [_link_json(link) for link in page.links],
        "versions": list(
            page.versions if page.versions is not None else derive_versions(page.links)
        ),
    }
    if page.status is not None:
        status: dict[str, str] = {"status": page.status}
        if page.status_reason is not None:
            status["reason"] = page.status_reason
        document["project-status"] = status
    return _dumps(document)


def render_project(page: ProjectPage, media_type: str) -> bytes:
    """The page in the format :func:`pkgmirror.simple.negotiate.negotiate` chose."""
    if media_type == JSON_V1:
        return render_project_json(page)
    if media_type in (HTML_V1, TEXT_HTML):
        return render_project_html(page)
    raise ValueError(f"not a simple page media type: {media_type!r}")


def render_list(names: Iterable[str], media_type: str) -> bytes:
    """The root page in the format :func:`pkgmirror.simple.negotiate.negotiate` chose."""
    if media_type == JSON_V1:
        return render_list_json(names)
    if media_type in (HTML_V1, TEXT_HTML):
        return render_list_html(names)
    raise ValueError(f"not a simple page media type: {media_type!r}")


# Root pages are written in blocks of this many names: a million names then cost the page's
# bytes once, not a list of a million strings, their join and its encoding on top.
_LIST_BLOCK = 4096


def render_list_html(names: Iterable[str], title: str = "Simple index") -> bytes:
    """
    The PEP 503 root page: one ``<a href="NORMALIZED/">NAME</a><br>`` per name, in the order given.

    The href uses the normalised name so clients reach the project without a redirect.
    """
    return _joined(iter_list_html(names, title))


def iter_list_html(names: Iterable[str], title: str = "Simple index") -> Iterator[bytes]:
    """:func:`render_list_html` in pieces of a few hundred KB (their concatenation is the page)."""
    yield _head(_esc(title)).encode("utf-8", errors="xmlcharrefreplace")
    block: list[str] = []
    append = block.append
    for name in names:
        text = _esc(name)
        href = _esc(normalize(name))
        append(f'    <a href="{href}/">{text}</a><br>\n')
        if len(block) >= _LIST_BLOCK:
            yield "".join(block).encode("utf-8", errors="xmlcharrefreplace")
            block.clear()
    block.append(_TAIL)
    yield "".join(block).encode("utf-8", errors="xmlcharrefreplace")


def render_list_json(names: Iterable[str]) -> bytes:
    """The PEP 691 root page: ``{"meta": {"api-version": "1.1"}, "projects": [{"name": ..}]}``."""
    return _joined(iter_list_json(names))


def iter_list_json(names: Iterable[str]) -> Iterator[bytes]:
    """:func:`render_list_json` in pieces of a few hundred KB (their concatenation is the page)."""
    yield _dumps({"meta": {"api-version": API_VERSION_FULL}, "projects": []})[:-2]
    block: list[dict[str, str]] = []
    separator = b""
    for name in names:
        block.append({"name": name})
        if len(block) >= _LIST_BLOCK:
            yield separator + _dumps_list(block)
            separator = b","
            block.clear()
    if block:
        yield separator + _dumps_list(block)
    yield b"]}"


def _joined(pieces: Iterable[bytes]) -> bytes:
    out = io.BytesIO()
    for piece in pieces:
        out.write(piece)
    return out.getvalue()


def _dumps_list(items: list[dict[str, str]]) -> bytes:
    """The JSON of ``items`` without the brackets."""
    return _ENCODER.encode(items)[1:-1].encode("utf-8", errors="backslashreplace")


# The documents are trees we just built, so the circular-reference check is wasted time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _dumps(document: dict[str, Any]) -> bytes:
    # backslashreplace: a lone surrogate (legal in a parsed JSON string, not in UTF-8) comes
    # out as the JSON escape it came in as.
    return _ENCODER.encode(document).encode("utf-8", errors="backslashreplace")


def html_subset(page: ProjectPage) -> ProjectPage:
    """
    What of ``page`` survives :func:`render_project_html` and parsing back.

    HTML has no place for ``size``, ``upload_time`` or ``versions``; it carries one hash per file
    (see :data:`FRAGMENT_HASHES`; none when the link only has others) and one metadata hash
    (``true`` when no usable one). Everything else (requires-python, yank reasons, origin, status
    and its reason, the serial) comes back unchanged.
    """

    def reduce(link: Link) -> Link:
        chosen = preferred_hash(link.hashes)
        metadata = link.core_metadata
        if metadata is not None:
            picked = preferred_hash(metadata)
            metadata = {} if picked is None else dict([picked])
        return attrs.evolve(
            link,
            hashes={} if chosen is None else dict([chosen]),
            core_metadata=metadata,
            requires_python=link.requires_python or None,
            size=None,
            upload_time=None,
        )

    return attrs.evolve(page, links=tuple(map(reduce, page.links)), versions=None)
