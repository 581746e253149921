"""
Upstream simple pages to model values: PEP 503 HTML and PEP 691 JSON (API 1.0 to 1.4). Pure.

Parsing is tolerant of what real indexes serve: entries that cannot be used are skipped, odd
values are dropped rather than trusted. Only a body that cannot be a simple page at all (invalid
JSON, a JSON document of the wrong shape, a content type that is neither HTML nor JSON, a newer
major API version) raises :class:`ParseError`.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import html
import json
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

from pkgmirror.model import Link, ProjectList, ProjectPage, parse_iso_time
from pkgmirror.namelist import NameList, NameSorter
from pkgmirror.names import is_dist_filename


class ParseError(ValueError):
    """The body is not a simple page we can read; ``str()`` is a short reason."""


_HEX = re.compile(r"[0-9a-fA-F]+\Z")
_VERSIONED_TYPE = re.compile(r"application/vnd\.pypi\.simple\.v(\d+)\+(json|html)\Z")
_JSON_TYPES = frozenset(
    {"application/vnd.pypi.simple.latest+json", "application/json", "text/json"}
)
# "text_html": devpi-server (6.x) labels HTML so when the Accept header names only types it
# does not offer; a mirror of a devpi index can meet it.
_HTML_TYPES = frozenset(
    {"text/html", "application/vnd.pypi.simple.latest+html", "application/xhtml+xml", "text_html"}
)
_SERIAL_COMMENT = re.compile(r"\s*SERIAL\s+(\d+)\s*\Z")
# Good enough for a root page: one project per anchor, the text is the name.
_LIST_ANCHOR = re.compile(r"<a\b[^>]*>([^<]*)</a\s*>", re.IGNORECASE)

Format = Literal["json", "html"]


def _format_of(content_type: str, body: bytes) -> tuple[Format, str]:
    """(format, charset) for a response; raises ParseError for anything else."""
    media, _, rest = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = "utf-8"
    for param in rest.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    versioned = _VERSIONED_TYPE.match(media)
    if versioned is not None:
        if versioned.group(1) != "1":
            raise ParseError(f"unsupported simple API version in content type {media!r}")
        return ("json" if versioned.group(2) == "json" else "html"), charset
    if media in _JSON_TYPES:
        return "json", charset
    if media in _HTML_TYPES:
        return "html", charset
    if not media:
        # No content type at all (some static file servers): look at the body.
        return ("json" if body.lstrip()[:1] == b"{" else "html"), charset
    raise ParseError(f"not a simple page content type: {media!r}")


def _check_api_version(version: object) -> None:
    """PEP 629: a greater major version must fail; a greater minor is fine for us."""
    if version is None:
        return
    major = str(version).strip().partition(".")[0]
    if major.isdigit() and int(major) > 1:
        raise ParseError(f"unsupported simple API version {version!r}")


def parse_project_page(
    body: bytes, content_type: str, base_url: str | None, name: str
) -> ProjectPage:
    """
    An upstream project page as a :class:`ProjectPage` named ``name``.

    URLs are resolved against ``base_url`` (the page's own URL, after redirects) when given, and
    kept as written when it is None; fragments are removed from them (HTML hash fragments become
    ``hashes``). Raises :class:`ParseError` when the body cannot be a simple page.
    """
    fmt, charset = _format_of(content_type, body)
    if fmt == "json":
        return _parse_json_page(_load_json(body), base_url, name)
    return _parse_html_page(body.decode(charset, errors="replace"), base_url, name)


def _load_json(body: bytes, object_pairs_hook: Any = None) -> dict[str, Any]:
    try:
        document = json.loads(body, object_pairs_hook=object_pairs_hook)
    except (ValueError, RecursionError) as e:
        raise ParseError(f"invalid JSON: {e}") from None
    if not isinstance(document, dict):
        raise ParseError("JSON page is not an object")
    meta = document.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ParseError("JSON 'meta' is not an object")
    _check_api_version((meta or {}).get("api-version"))
    return document


def _join(base_url: str | None, url: str) -> str:
    """``urljoin``, faster on pages with thousands of links (urljoin was half the parse time)."""
    if not base_url:
        return url
    head, slash, tail = url.rpartition("/")
    if tail and _PLAIN_TAIL.match(tail) and _tail_is_in_path(url, len(head)):
        # Only the directory part needs resolving, and pages repeat directories.
        directory = _join_directory(base_url, head + slash if slash else "./")
        if directory is not None:
            return directory + tail
    return urljoin(base_url, url)


# A last segment that urljoin would copy verbatim: no query, fragment, or dot segment.
_PLAIN_TAIL = re.compile(r"(?!\.\.?\Z)[^?#]+\Z")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _tail_is_in_path(url: str, last_slash: int) -> bool:
    """False when what follows the last slash is (part of) a scheme or an authority."""
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    if url.startswith("//", start):
        authority_end = url.find("/", start + 2)
        return authority_end != -1 and authority_end <= last_slash
    # "scheme:relative" is resolved in odd ways; leave it to urljoin.
    return scheme is None and ":" not in url[last_slash:]


@functools.lru_cache(maxsize=1024)
def _join_directory(base_url: str, directory: str) -> str | None:
    joined = urljoin(base_url, directory)
    return joined if joined.endswith("/") else None


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k.lower(): v.lower() for k, v in value.items() if isinstance(k, str) and _is_hex(v)}


def _is_hex(value: object) -> bool:
    return isinstance(value, str) and _HEX.match(value) is not None


def _json_core_metadata(entry: Mapping[str, Any]) -> Mapping[str, str] | None:
    for key in ("core-metadata", "dist-info-metadata", "data-dist-info-metadata"):
        if key in entry:
            value = entry[key]
            if value is True:
                return {}
            if isinstance(value, dict):
                return _str_map(value)
            return None
    return None


def _json_yanked(value: object) -> str | None:
    # As pip reads it: true or a reason means yanked; false, null and "" mean not yanked.
    if isinstance(value, str):
        return value or None
    return "" if value else None


def _json_link(entry: object, base_url: str | None) -> Link | None:
    if not isinstance(entry, dict):
        return None
    raw_url = entry.get("url")
    if not isinstance(raw_url, str) or not raw_url.strip():
        return None
    try:
        reference, fragment = _split_fragment(raw_url.strip())
        url = _join(base_url, reference)
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename:
            filename = _filename_of(url)
    except ValueError:
        return None
    if not filename:
        return None
    hashes = _str_map(entry.get("hashes"))
    for algorithm, digest in _fragment_hash(fragment).items():
        hashes.setdefault(algorithm, digest)
    requires_python = entry.get("requires-python")
    size = entry.get("size")
    upload_time = entry.get("upload-time")
    origin = entry.get("_pkgmirror-index")
    return Link(
        filename=filename,
        url=url,
        hashes=hashes,
        requires_python=requires_python
        if isinstance(requires_python, str) and requires_python
        else None,
        yanked=_json_yanked(entry.get("yanked")),
        core_metadata=_json_core_metadata(entry),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=(
            upload_time
            if isinstance(upload_time, str) and parse_iso_time(upload_time) is not None
            else None
        ),
        origin=origin if isinstance(origin, str) else None,
    )


def _parse_json_page(document: dict[str, Any], base_url: str | None, name: str) -> ProjectPage:
    files = document.get("files")
    if not isinstance(files, list):
        raise ParseError("JSON page has no 'files' list")
    links = [link for link in (_json_link(entry, base_url) for entry in files) if link]
    versions = document.get("versions")
    status = document.get("project-status")
    status_name = status_reason = None
    if isinstance(status, dict):
        value, reason = status.get("status"), status.get("reason")
        status_name = value if isinstance(value, str) and value else None
        status_reason = reason if status_name is not None and isinstance(reason, str) else None
    serial = (document.get("meta") or {}).get("_last-serial")
    return ProjectPage(
        name=name,
        links=links,
        versions=(
            tuple(v for v in versions if isinstance(v, str)) if isinstance(versions, list) else None
        ),
        status=status_name,
        status_reason=status_reason,
        last_serial=serial if isinstance(serial, int) and not isinstance(serial, bool) else None,
    )


def _split_fragment(url: str) -> tuple[str, str]:
    # Not urldefrag: it re-assembles the URL and can change it (drops an empty "?", for one).
    head, _, fragment = url.partition("#")
    return head, fragment


def _filename_of(url: str) -> str:
    """The URL's last path segment, unquoted ("" when the path ends in a slash or is empty)."""
    without_query = url.partition("?")[0]
    head, _, segment = without_query.rpartition("/")
    if not _tail_is_in_path(without_query, len(head)):
        segment = urlsplit(url).path.rpartition("/")[2]
    return unquote(segment) if "%" in segment else segment


def _fragment_hash(fragment: str) -> dict[str, str]:
    algorithm, eq, digest = fragment.partition("=")
    algorithm = algorithm.lower()
    if eq and algorithm in hashlib.algorithms_guaranteed and _is_hex(digest):
        return {algorithm: digest.lower()}
    return {}


def _html_core_metadata(value: str | None) -> Mapping[str, str] | None:
    if value is None:
        return None
    value = value.strip()
    if value.lower() == "true":
        return {}
    # Anything else but "name=hex" (notably "false") is treated as "not announced": announcing it
    # onwards would send clients after a .metadata file that may not exist.
    parsed = _fragment_hash(value)
    return parsed or None


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str] = {}
        self.base_href: str | None = None
        self.serial: int | None = None
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._finish_anchor()
            found: dict[str, str | None] = {}
            for key, value in attrs:
                found.setdefault(key, value)  # HTML: the first of duplicate attributes wins
            self._open = found
            self._text = []
        elif tag == "meta":
            found = dict(attrs)
            meta_name, content = found.get("name"), found.get("content")
            if meta_name and content is not None:
                self.meta.setdefault(meta_name.lower(), content)
        elif tag == "base" and self.base_href is None:
            self.base_href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._finish_anchor()

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_comment(self, data: str) -> None:
        match = _SERIAL_COMMENT.match(data)
        if match is not None:
            self.serial = int(match.group(1))

    def close(self) -> None:
        super().close()
        self._finish_anchor()

    def _finish_anchor(self) -> None:
        if self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


def _html_link(attrs: Mapping[str, str | None], text: str, base: str | None) -> Link | None:
    href = attrs.get("href")
    if not href or not href.strip():
        return None
    try:
        reference, fragment = _split_fragment(href.strip())
        url = _join(base, reference)
        segment = _filename_of(url)
    except ValueError:
        return None
    # PEP 503: the text must be the URL's last segment. When a server breaks that rule with a
    # download URL like ".../download?id=7", the text is the better file name.
    filename = (
        segment if segment and (is_dist_filename(segment) or not is_dist_filename(text)) else text
    )
    if not filename:
        return None
    # Presence means yanked; a bare attribute (value None) is a yank without reason.
    yanked = (attrs["data-yanked"] or "") if "data-yanked" in attrs else None
    metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
    requires_python = attrs.get("data-requires-python")
    size = attrs.get("data-size")  # not a standard; uv reads it, so we do too
    upload_time = attrs.get("data-upload-time")
    return Link(
        filename=filename,
        url=url,
        hashes=_fragment_hash(fragment),
        requires_python=requires_python or None,
        yanked=yanked,
        core_metadata=_html_core_metadata(metadata),
        size=int(size) if size and size.isascii() and size.isdigit() else None,
        upload_time=(
            upload_time if upload_time and parse_iso_time(upload_time) is not None else None
        ),
        origin=(attrs["data-pkgmirror-index"] or "") if "data-pkgmirror-index" in attrs else None,
    )


def _parse_html_page(text: str, base_url: str | None, name: str) -> ProjectPage:
    parser = _PageParser()
    try:
        parser.feed(text)
        parser.close()
    except (ValueError, AssertionError) as e:  # html.parser's own complaints on broken markup
        raise ParseError(f"unparseable HTML: {e}") from None
    _check_api_version(parser.meta.get("pypi:repository-version"))
    base = base_url
    if parser.base_href:
        try:
            base = _join(base_url, parser.base_href.strip())
        except ValueError:
            pass
    links = [link for link in (_html_link(a, t, base) for a, t in parser.anchors) if link]
    status = parser.meta.get("pypi:project-status") or None
    return ProjectPage(
        name=name,
        links=links,
        status=status,
        status_reason=parser.meta.get("pypi:project-status-reason") if status else None,
        last_serial=parser.serial,
    )


def _list_object(pairs: list[tuple[str, Any]]) -> Any:
    """
    A root page's ``{"name": ...}`` object read as just its name: a million dicts would cost
    their memory and, freed, leave it scattered between the names that stay.
    """
    for key, value in pairs:
        if key == "name":
            return _Name(value) if not isinstance(value, str) else value
    return dict(pairs)


class _Name:
    """A ``name`` that is no string (so no name): kept apart from real names."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def parse_project_list(body: bytes, content_type: str) -> ProjectList:
    """
    An upstream root page's project names, as written (not normalised), in page order.

    JSON: ``projects[].name``; HTML: the text of every anchor. Raises :class:`ParseError` when
    the body cannot be a root page.
    """
    fmt, charset = _format_of(content_type, body)
    if fmt == "json":
        document = _load_json(body, _list_object)
        projects = document.get("projects")
        if not isinstance(projects, list):
            raise ParseError("JSON root page has no 'projects' list")
        return ProjectList(names=[entry for entry in projects if isinstance(entry, str) and entry])
    names = []
    for raw in _LIST_ANCHOR.findall(body.decode(charset, errors="replace")):
        found = (html.unescape(raw) if "&" in raw else raw).strip()
        if found:
            names.append(found)
    return ProjectList(names=names)


def _group_1(match: re.Match[str]) -> str:
    return match.group(1)


class _Taken:
    """What a ``{"name": ...}`` object becomes once its name went to the sorter."""

    __slots__ = ()


def parse_name_list(body: bytes, content_type: str) -> NameList:
    """
    The names of :func:`parse_project_list`, sorted and unique as a :class:`NameList` (names
    with a newline are left out). A million names never exist as separate objects all at once:
    they go to a :class:`NameSorter` as they are read.
    """
    fmt, charset = _format_of(content_type, body)
    sorter = NameSorter()
    if fmt == "html":
        text = body.decode(charset, errors="replace")
        sorter.extend(
            (html.unescape(raw) if "&" in raw else raw).strip()
            for raw in map(_group_1, _LIST_ANCHOR.finditer(text))
        )
        return sorter.result()
    taken = _Taken()
    count = 0
    found: list[str] = []

    def name_object(pairs: list[tuple[str, Any]]) -> Any:
        nonlocal count
        for key, value in pairs:
            if key == "name":
                if isinstance(value, str) and value:
                    found.append(value)
                    count += 1
                    if len(found) >= 4096:
                        sorter.extend(found)
                        found.clear()
                    return taken
                return None
        return dict(pairs)

    document = _load_json(body, name_object)
    sorter.extend(found)
    projects = document.pop("projects", None)
    del document
    if not isinstance(projects, list):
        raise ParseError("JSON root page has no 'projects' list")
    in_projects = projects.count(taken)
    if in_projects != len(projects):
        # parse_project_list takes a bare string entry as a name too.
        sorter.extend(entry for entry in projects if isinstance(entry, str) and entry)
    del projects
    if in_projects != count:
        # Some {"name": ...} object was not a project (one inside "meta", say): read it again
        # the exact way.
        return NameList.of(parse_project_list(body, content_type).names)
    return sorter.result()
