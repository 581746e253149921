"""
The page frame every HTML page shares, its one stylesheet, and the helpers that make user text
safe: everything a page shows passes through :func:`esc` (text) or :func:`href` (URLs).
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from urllib.parse import quote

import attrs

from pkgmirror import __version__

# Limits on what one piece of user-supplied text may take on a page: metadata is the uploader's
# to choose, and a 10 MB "summary" must not become a 10 MB page.
MAX_SHORT = 200
MAX_LINE = 2_000
MAX_DESCRIPTION = 200_000

STYLESHEET = """
:root{--fg:#1b1f23;--muted:#4a5560;--bg:#fff;--line:#d5dbe1;--accent:#0645ad;--warn:#8a3c00;
--bad:#a0141e;--ok:#14632e;--code:#f3f5f7}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header{background:#24323f;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1rem;
align-items:center}
header a{color:#fff}
header .brand{font-weight:700;text-decoration:none;margin-right:auto}
header form{display:flex;gap:.25rem;flex:1 1 16rem;max-width:28rem}
header input{flex:1;min-width:0;padding:.35rem .5rem;border:1px solid #8a99a8;border-radius:3px;
font:inherit}
header button{padding:.35rem .75rem;border:0;border-radius:3px;background:#e8eef3;color:#1b1f23;
font:inherit;cursor:pointer}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.skip:focus{position:static;width:auto;height:auto;clip:auto}
main{max-width:72rem;margin:0 auto;padding:1rem}
nav.crumbs{font-size:.95rem;color:var(--muted);margin-bottom:.5rem}
nav.crumbs ol{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap}
nav.crumbs li+li::before{content:"/";padding:0 .4rem;color:var(--muted)}
h1{font-size:1.6rem;margin:.25rem 0 .75rem;overflow-wrap:anywhere}
h2{font-size:1.25rem;margin:1.5rem 0 .5rem;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem;margin:1rem 0 .25rem}
a{color:var(--accent)}
a:focus,input:focus,button:focus{outline:3px solid #f2b90d;outline-offset:1px}
p,dd{overflow-wrap:anywhere}
.muted{color:var(--muted)}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f4}
td.num{text-align:right;white-space:nowrap}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;
background:var(--code);border-radius:3px}
code{padding:0 .2rem;overflow-wrap:anywhere}
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.hash{word-break:break-all;font-size:.8rem}
.tag{display:inline-block;padding:0 .4rem;border-radius:3px;font-size:.85rem;font-weight:600}
.up{background:#dcf3e3;color:var(--ok)}
.down,.yanked{background:#fbe1e3;color:var(--bad)}
.note{background:#fff4e0;color:var(--warn);padding:.5rem .75rem;border-radius:3px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dl.meta dt{font-weight:600}
dl.meta dd{margin:0}
.description{border-top:1px solid var(--line);margin-top:1rem;padding-top:.5rem;overflow-x:auto}
.description img{max-width:100%}
ul.plain{padding-left:1.2rem}
footer{max-width:72rem;margin:2rem auto 1rem;padding:0 1rem;color:var(--muted);font-size:.85rem}
@media (max-width:40rem){
body{font-size:15px}
dl.meta{grid-template-columns:1fr}
dl.meta dd{margin-bottom:.4rem}
/* Tables become one card per row, each cell labelled, instead of scrolling sideways. */
thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table,tbody,tr,td{display:block;width:100%}
tr{border-bottom:1px solid var(--line);padding:.3rem 0}
td{border:0;padding:.1rem 0;display:grid;grid-template-columns:7.5rem 1fr;gap:.5rem}
td::before{content:attr(data-label);font-weight:600;color:var(--muted)}
td.num{text-align:left}
td:empty{display:none}
}
""".strip()


def esc(value: object, limit: int = MAX_LINE) -> str:
    """``value`` as HTML text: escaped, control characters dropped, cut at ``limit``."""
    text = "" if value is None else str(value)
    return html.escape(clip(text, limit), quote=True)


def clip(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # Control characters (but newlines and tabs) are not text a person can read.
    if not text.isprintable():
        text = "".join(c for c in text if c.isprintable() or c in "\n\t")
    return text


@attrs.frozen
class Site:
    """What every page needs to know about where it is served from."""

    # Path prefix of the server's root as clients see it ("" or "/pypi-proxy"), no trailing slash.
    base: str = ""
    # Scheme, host and prefix, for the install lines a user copies ("http://host:3141").
    outside_url: str = "http://localhost:3141"

    def href(self, *parts: str, trailing: bool = False, query: str = "") -> str:
        """An escaped attribute value: the server-relative URL of ``/part/part``."""
        path = "/".join(quote(p, safe="+") for p in parts if p)
        url = f"{self.base}/{path}" + ("/" if trailing and path else "")
        if query:
            url += "?" + query
        return html.escape(url, quote=True)

    def absolute(self, *parts: str, trailing: bool = False) -> str:
        path = "/".join(quote(p, safe="+") for p in parts if p)
        return f"{self.outside_url}/{path}" + ("/" if trailing and path else "")


@attrs.frozen
class SearchBox:
    """The search form in the header: which index it searches, and the query shown."""

    index: str | None = None
    query: str = ""


def link(url: str, text: str) -> str:
    """``url`` must come from :meth:`Site.href` (already escaped); ``text`` is escaped here."""
    return f'<a href="{url}">{esc(text, MAX_SHORT)}</a>'


def crumbs_html(site: Site, crumbs: Sequence[tuple[str, str | None]]) -> str:
    if not crumbs:
        return ""
    items = []
    for i, (text, url) in enumerate(crumbs):
        last = i == len(crumbs) - 1
        if url is None or last:
            current = ' aria-current="page"' if last else ""
            items.append(f"<li{current}>{esc(text, MAX_SHORT)}</li>")
        else:
            items.append(f"<li>{link(url, text)}</li>")
    return f'<nav class="crumbs" aria-label="Breadcrumbs"><ol>{"".join(items)}</ol></nav>'


def search_form(site: Site, box: SearchBox) -> str:
    if box.index:
        user, _, name = box.index.partition("/")
        action = site.href(user, name, "+search")
        label = f"Search projects on {box.index}"
    else:
        action = site.href("+search")
        label = "Search projects on every index"
    return (
        f'<form role="search" method="get" action="{action}">'
        f'<label class="vh" for="q">{esc(label)}</label>'
        f'<input id="q" name="q" type="search" value="{esc(box.query, MAX_SHORT)}" '
        f'placeholder="{esc(label)}" autocomplete="off">'
        f"<button type=submit>Search</button></form>"
    )


def page(
    site: Site,
    title: str,
    body: str,
    *,
    crumbs: Sequence[tuple[str, str | None]] = (),
    search: SearchBox | None = None,
) -> bytes:
    """A complete HTML document; ``body`` is trusted HTML built with the helpers here."""
    box = search or SearchBox()
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title, MAX_SHORT)} · pkgmirror</title>"
        # No icon: without this line every browser asks for /favicon.ico and logs a 404.
        '<link rel="icon" href="data:,">'
        f"<style>{STYLESHEET}</style></head><body>"
        '<a class="vh skip" href="#main">Skip to content</a>'
        f'<header><a class="brand" href="{site.href()}">pkgmirror</a>'
        f"{search_form(site, box)}</header>"
        f'<main id="main">{crumbs_html(site, crumbs)}{body}</main>'
        f'<footer>pkgmirror {esc(__version__)} · <a href="{site.href("+status")}">status</a>'
        "</footer></body></html>\n"
    ).encode()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str = "") -> str:
    """Rows are trusted HTML cells; headers are escaped. Headers starting '#' are numeric."""
    head = "".join(
        f'<th scope="col"{" class=num" if h.startswith("#") else ""}>{esc(h.lstrip("#"))}</th>'
        for h in headers
    )
    numeric = [h.startswith("#") for h in headers]
    labels = [esc(h.lstrip("#")) for h in headers]
    body = "".join(
        "<tr>"
        + "".join(
            # One box per cell, so the phone layout's grid has two items: label and content.
            f'<td data-label="{labels[i]}"{" class=num" if numeric[i] else ""}>'
            + (f"<div>{cell}</div>" if cell else "")
            + "</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    cap = f'<caption class="vh">{esc(caption)}</caption>' if caption else ""
    return (
        f'<div class="table"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def size_text(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""  # pragma: no cover


def time_text(iso: str | None) -> str:
    """An upload time as people read it: ``2026-11-24 15:09 UTC``."""
    if not iso:
        return ""
    return esc(iso[:16].replace("T", " ") + " UTC") if len(iso) >= 16 else esc(iso)


def ago_text(seconds: float | None, now: float | None = None) -> str:
    if seconds is None:
        return ""
    delta = max(0.0, (now if now is not None else time.time()) - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if delta >= size:
            return f"{int(delta // size)} {unit} ago"
    return f"{int(delta)} s ago"
