"""
Project name search: prefix and substring matches over normalised names, in milliseconds for a
million names, and the results page.

A :class:`NameIndex` holds one index's names sorted and joined into one string: prefix matches
are a bisection of it, substring matches a ``str.find`` loop, which scans at memory speed.
It is immutable: the server builds a new one when an index's names change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from pkgmirror.namelist import NameList
from pkgmirror.names import normalize
from pkgmirror.pages.layout import MAX_SHORT, SearchBox, Site, esc, link, page, table

DEFAULT_LIMIT = 100


def normalize_query(query: str) -> str:
    """The query as a name fragment: no whitespace, PEP 503 normalised."""
    return normalize("".join(query.split()))[:MAX_SHORT]


class NameIndex:
    """
    The names of one index, normalised, ready to search. Build it off the reactor for big
    lists. Held as one :class:`NameList` string (a million names in ~16 MB), not as a million
    ``str`` objects (~130 MB more, and a second or more to build).
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = NameList.of(normalize(n) for n in names if n and "\n" not in n)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def prefix(self, query: str, limit: int) -> list[str]:
        """Names starting with ``query`` (normalised), in order, at most ``limit``."""
        return self.names.starting_with(query, limit) if query else []

    def substring(self, query: str, limit: int) -> list[str]:
        """Names containing ``query`` (normalised) anywhere, in order, at most ``limit``."""
        return self.names.containing(query, limit)


@attrs.frozen
class Hit:
    name: str
    index: str  # the first index of the order that has it
    exact: bool = False


@attrs.frozen
class SearchResult:
    query: str
    hits: tuple[Hit, ...]
    more: bool
    searched: int  # how many names were searched, over every index


def search(
    indexes: Sequence[tuple[str, NameIndex]], raw_query: str, limit: int = DEFAULT_LIMIT
) -> SearchResult:
    """
    Searches ``indexes`` (an index and its bases, in resolution order): the exact name first,
    then names starting with the query, then names containing it; each name once, credited to
    the first index that has it.
    """
    query = normalize_query(raw_query)
    searched = sum(len(n) for _, n in indexes)
    if not query:
        return SearchResult(query, (), False, searched)
    hits: dict[str, Hit] = {}
    for key, names in indexes:
        if query in names and query not in hits:
            hits[query] = Hit(query, key, exact=True)
    # One more than asked tells whether there is more.
    for finder in (NameIndex.prefix, NameIndex.substring):
        for key, names in indexes:
            if len(hits) > limit:
                break
            for name in finder(names, query, limit + 1 - len(hits)):
                if name not in hits:
                    hits[name] = Hit(name, key)
    ordered = list(hits.values())
    exact = [h for h in ordered if h.exact]
    starting = sorted((h for h in ordered if not h.exact and h.name.startswith(query)), key=_key)
    inside = sorted((h for h in ordered if not h.name.startswith(query)), key=_key)
    ranked = (exact + starting + inside)[: limit + 1]
    return SearchResult(query, tuple(ranked[:limit]), len(ranked) > limit, searched)


def _key(hit: Hit) -> str:
    return hit.name


def render_search(site: Site, scope: str | None, raw_query: str, result: SearchResult) -> bytes:
    """The results page; ``scope`` is the index searched, None for every index."""
    where = scope or "every index"
    crumbs: list[tuple[str, str | None]] = [("Home", site.href())]
    if scope:
        user, _, name = scope.partition("/")
        crumbs += [(user, site.href(user)), (name, site.href(user, name))]
    crumbs.append(("Search", None))
    parts = [f"<h1>Search {esc(where)}</h1>"]
    if not result.query:
        parts.append("<p>Type part of a project name.</p>")
    elif not result.hits:
        parts.append(
            f"<p>No project name on {esc(where)} contains <code>{esc(result.query)}</code> "
            f"({result.searched:,} names searched).</p>"
        )
    else:
        count = f"{len(result.hits)}{'+' if result.more else ''}"
        matches = "1 project matches" if count == "1" else f"{count} projects match"
        parts.append(
            f"<p>{matches} <code>{esc(result.query)}</code> "
            f"({result.searched:,} names searched).</p>"
        )
        rows = []
        for hit in result.hits:
            user, _, name = (scope or hit.index).partition("/")
            title = link(site.href(user, name, hit.name), hit.name)
            if hit.exact:
                title += ' <span class="tag up">exact</span>'
            rows.append((title, link(site.href(*hit.index.split("/")), hit.index)))
        parts.append(table(["Project", "Found on"], rows, "Matching projects"))
        if result.more:
            parts.append("<p class=muted>Only the first matches are shown: type more.</p>")
    return page(
        site,
        f"Search: {raw_query}" if raw_query else "Search",
        "".join(parts),
        crumbs=crumbs,
        search=SearchBox(scope, raw_query),
    )
