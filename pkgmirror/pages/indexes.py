"""
The pages of ``/`` (every user's indexes), ``/USER`` and ``/USER/INDEX``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from pkgmirror.model import IndexConfig, ReleaseFile, User
from pkgmirror.pages.layout import (
    MAX_SHORT,
    SearchBox,
    Site,
    ago_text,
    esc,
    link,
    page,
    table,
    time_text,
)

PROJECTS_PER_PAGE = 500


@attrs.frozen
class Health:
    """What a person is told of a mirror's upstream."""

    state: str  # "up", "down", "none" (no upstream), "offline"
    down_since: float | None = None
    last_error: str | None = None
    upstream_url: str | None = None


def health_html(health: Health | None) -> str:
    if health is None:
        return ""
    if health.state == "down":
        since = f" since {ago_text(health.down_since)}" if health.down_since else ""
        error = f": {esc(health.last_error, MAX_SHORT)}" if health.last_error else ""
        return f'<span class="tag down">down</span>{esc(since)}{error}'
    if health.state == "none":
        return '<span class="tag down">no upstream</span>'
    if health.state == "offline":
        return '<span class="tag down">offline mode</span>'
    return '<span class="tag up">up</span>'


def _index_link(site: Site, key: str) -> str:
    return link(site.href(*key.split("/")), key)


def _bases(site: Site, config: IndexConfig) -> str:
    return ", ".join(_index_link(site, b) for b in config.bases) or '<span class="muted">—</span>'


def _index_rows(
    site: Site, configs: Sequence[IndexConfig], health: Mapping[str, Health]
) -> list[tuple[str, ...]]:
    return [
        (
            _index_link(site, c.key),
            esc(c.type),
            _bases(site, c),
            esc(c.title or "", MAX_SHORT),
            health_html(health.get(c.key)),
        )
        for c in configs
    ]


INDEX_HEADERS = ["Index", "Type", "Bases", "Title", "Upstream"]


def render_home(
    site: Site,
    users: Sequence[User],
    indexes: Sequence[IndexConfig],
    health: Mapping[str, Health],
) -> bytes:
    parts = ["<h1>Indexes</h1>"]
    if not users:
        parts.append("<p>No users yet.</p>")
    for user in sorted(users, key=lambda u: u.name):
        configs = sorted((c for c in indexes if c.user == user.name), key=lambda c: c.name)
        parts.append(f"<h2>{link(site.href(user.name), user.name)}</h2>")
        if user.title:
            parts.append(f"<p>{esc(user.title, MAX_SHORT)}</p>")
        if configs:
            parts.append(
                table(INDEX_HEADERS, _index_rows(site, configs, health), f"Indexes of {user.name}")
            )
        else:
            parts.append("<p class=muted>No indexes.</p>")
    return page(site, "Indexes", "".join(parts))


def render_user(
    site: Site, user: User, indexes: Sequence[IndexConfig], health: Mapping[str, Health]
) -> bytes:
    configs = sorted((c for c in indexes if c.user == user.name), key=lambda c: c.name)
    parts = [f"<h1>{esc(user.name)}</h1>"]
    if user.title:
        parts.append(f"<p>{esc(user.title, MAX_SHORT)}</p>")
    if user.description:
        parts.append(f"<p>{esc(user.description)}</p>")
    parts.append("<h2>Indexes</h2>")
    if configs:
        parts.append(table(INDEX_HEADERS, _index_rows(site, configs, health), "Indexes"))
    else:
        parts.append("<p class=muted>No indexes.</p>")
    return page(site, user.name, "".join(parts), crumbs=[("Home", site.href()), (user.name, None)])


@attrs.frozen
class IndexView:
    """What the page of one index shows; ``projects`` is the slice for this page number."""

    config: IndexConfig
    order: Sequence[IndexConfig]
    projects: Sequence[tuple[str, str | None]]  # (name, latest version or None when unknown)
    total: int
    page_number: int = 1
    recent: Sequence[ReleaseFile] = ()
    health: Health | None = None
    projects_note: str = ""


def render_index(site: Site, view: IndexView) -> bytes:
    config = view.config
    user, name = config.user, config.name
    parts = [f"<h1>{esc(config.key)}</h1>"]
    if config.title:
        parts.append(f"<p><strong>{esc(config.title, MAX_SHORT)}</strong></p>")
    if config.description:
        parts.append(f"<p>{esc(config.description)}</p>")
    facts = [("Type", esc(config.type)), ("Volatile", "yes" if config.volatile else "no")]
    if config.is_mirror:
        facts.append(("Upstream", health_html(view.health)))
        if view.health is not None and view.health.upstream_url:
            facts.append(("Mirror of", f"<code>{esc(view.health.upstream_url)}</code>"))
    chain = " → ".join(_index_link(site, c.key) for c in view.order)
    facts.append(("Resolution order", chain))
    simple = site.absolute(user, name, "+simple", trailing=True)
    facts.append(("Simple index", f"<code>{esc(simple)}</code>"))
    parts.append(
        '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    )
    if view.recent:
        parts.append("<h2>Recent uploads</h2>")
        uploads = [
            (
                link(site.href(user, name, f.project, f.version), f"{f.project} {f.version}"),
                f"<code>{esc(f.filename, MAX_SHORT)}</code>",
                time_text(f.upload_time),
            )
            for f in view.recent
        ]
        parts.append(table(["Release", "File", "Uploaded"], uploads, "Recent uploads"))
    parts.append(f"<h2>Projects ({view.total:,})</h2>")
    if view.projects_note:
        parts.append(f"<p class=muted>{esc(view.projects_note)}</p>")
    if view.projects:
        rows = [
            (
                link(site.href(user, name, project), project),
                esc(latest or "", MAX_SHORT),
            )
            for project, latest in view.projects
        ]
        parts.append(table(["Project", "Latest version"], rows, "Projects"))
        parts.append(_pager(site, user, name, view))
    elif not view.projects_note:
        parts.append("<p class=muted>No projects yet.</p>")
    return page(
        site,
        config.key,
        "".join(parts),
        crumbs=[("Home", site.href()), (user, site.href(user)), (name, None)],
        search=SearchBox(config.key),
    )


def _pager(site: Site, user: str, name: str, view: IndexView) -> str:
    pages = max(1, -(-view.total // PROJECTS_PER_PAGE))
    if pages == 1:
        return ""
    links = []
    if view.page_number > 1:
        links.append(
            link(site.href(user, name, query=f"page={view.page_number - 1}"), "← previous")
        )
    links.append(f"page {view.page_number} of {pages}")
    if view.page_number < pages:
        links.append(link(site.href(user, name, query=f"page={view.page_number + 1}"), "next →"))
    return '<nav aria-label="Pages"><p>' + " · ".join(links) + "</p></nav>"
