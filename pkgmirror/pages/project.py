"""
The pages of ``/USER/INDEX/PROJECT`` (every version and file) and ``/USER/INDEX/PROJECT/VERSION``
(metadata, description, files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pkgmirror.pages.layout import (
    MAX_LINE,
    MAX_SHORT,
    SearchBox,
    Site,
    esc,
    link,
    page,
    size_text,
    table,
    time_text,
)

# Versions shown in full on a project page; older ones are listed by name only.
VERSIONS_WITH_FILES = 50
MAX_LIST_ITEMS = 200


@attrs.frozen
class FileView:
    filename: str
    url: str  # server-relative, not escaped
    index: str
    size: int | None = None
    upload_time: str | None = None
    sha256: str | None = None
    requires_python: str | None = None
    yanked: str | None = None  # None: not yanked; else the reason ("" for none given)


@attrs.frozen
class VersionFiles:
    version: str
    files: Sequence[FileView]


@attrs.frozen
class ProjectView:
    index: str
    project: str
    versions: Sequence[VersionFiles]  # newest first
    hidden: Sequence[tuple[str, str]] = ()  # (index, why) releases left out
    status: str | None = None
    status_reason: str | None = None


def _crumbs(site: Site, index: str, project: str, version: str | None = None) -> list[Any]:
    user, _, name = index.partition("/")
    crumbs: list[tuple[str, str | None]] = [
        ("Home", site.href()),
        (user, site.href(user)),
        (name, site.href(user, name)),
        (project, site.href(user, name, project)),
    ]
    if version is not None:
        crumbs.append((version, None))
    return crumbs


def install_lines(site: Site, index: str, project: str, version: str | None = None) -> str:
    user, _, name = index.partition("/")
    simple = site.absolute(user, name, "+simple", trailing=True)
    requirement = f"{project}=={version}" if version else project
    return (
        "<h2>Install</h2>"
        "<p>With pip:</p>"
        f"<pre>pip install --index-url {esc(simple)} {esc(requirement)}</pre>"
        "<p>With uv:</p>"
        f"<pre>uv pip install --index-url {esc(simple)} {esc(requirement)}</pre>"
    )


def _yanked(file: FileView) -> str:
    if file.yanked is None:
        return ""
    why = f": {esc(file.yanked, MAX_SHORT)}" if file.yanked else ""
    return f'<span class="tag yanked">yanked</span>{why}'


def files_table(site: Site, files: Sequence[FileView], caption: str) -> str:
    rows = []
    for f in files:
        name = f'<a href="{esc(f.url)}">{esc(f.filename, MAX_SHORT)}</a>'
        state = _yanked(f)
        if state:
            name += f"<br>{state}"
        rows.append(
            (
                name,
                size_text(f.size),
                time_text(f.upload_time),
                link(site.href(*f.index.split("/")), f.index),
                esc(f.requires_python or "", MAX_SHORT),
                f'<code class="hash">{esc(f.sha256 or "", 128)}</code>',
            )
        )
    return table(
        ["File", "#Size", "Uploaded", "Index", "Requires Python", "SHA-256"], rows, caption
    )


def _notes(view_hidden: Sequence[tuple[str, str]], status: str | None, reason: str | None) -> str:
    parts = []
    if status and status != "active":
        why = f": {esc(reason, MAX_SHORT)}" if reason else ""
        parts.append(f'<p class="note">This project is marked {esc(status)}{why}.</p>')
    for index, why in view_hidden:
        parts.append(f'<p class="note">Not listed from {esc(index)}: {esc(why)}</p>')
    return "".join(parts)


def render_project(site: Site, view: ProjectView) -> bytes:
    user, _, name = view.index.partition("/")
    parts = [f"<h1>{esc(view.project)} <small class=muted>on {esc(view.index)}</small></h1>"]
    parts.append(_notes(view.hidden, view.status, view.status_reason))
    latest = view.versions[0].version if view.versions else None
    if latest:
        parts.append(
            "<p>Latest version: "
            + link(site.href(user, name, view.project, latest), latest)
            + f" · {len(view.versions)} versions</p>"
        )
    parts.append(install_lines(site, view.index, view.project))
    parts.append("<h2>Versions</h2>")
    if not view.versions:
        parts.append("<p class=muted>No files are listed.</p>")
    for release in view.versions[:VERSIONS_WITH_FILES]:
        parts.append(
            f"<h3>{link(site.href(user, name, view.project, release.version), release.version)}"
            "</h3>"
        )
        parts.append(files_table(site, release.files, f"Files of {release.version}"))
    older = view.versions[VERSIONS_WITH_FILES:]
    if older:
        parts.append("<h3>Older versions</h3><p>")
        parts.append(
            ", ".join(
                link(site.href(user, name, view.project, r.version), r.version) for r in older
            )
        )
        parts.append("</p>")
    return page(
        site,
        f"{view.project} on {view.index}",
        "".join(parts),
        crumbs=_crumbs(site, view.index, view.project),
        search=SearchBox(view.index),
    )


@attrs.frozen
class VersionView:
    index: str
    project: str
    version: str
    files: Sequence[FileView]
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    description_html: str = ""  # already rendered and sanitised (pages.readme)
    hidden: Sequence[tuple[str, str]] = ()


# Core metadata fields shown, in order, with the label people know them by.
META_FIELDS = [
    ("summary", "Summary"),
    ("author", "Author"),
    ("author_email", "Author e-mail"),
    ("maintainer", "Maintainer"),
    ("maintainer_email", "Maintainer e-mail"),
    ("license", "License"),
    ("license_expression", "License"),
    ("home_page", "Home page"),
    ("requires_python", "Requires Python"),
    ("requires_dist", "Requires"),
    ("provides_extra", "Extras"),
    ("project_urls", "Project links"),
    ("keywords", "Keywords"),
    ("classifiers", "Classifiers"),
    ("platform", "Platform"),
]


def _values(value: Any) -> list[str]:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value[:MAX_LIST_ITEMS] if v not in (None, "")]
    return [str(value)]


def _is_web_url(text: str) -> bool:
    return text.lower().startswith(("https://", "http://"))


# One-line fields people scan: a longer value is cut where a person stops reading anyway.
SHORT_FIELDS = {
    "author", "author_email", "maintainer", "maintainer_email", "home_page", "requires_python",
    "keywords", "platform", "classifiers", "requires_dist", "provides_extra",
}  # fmt: skip


def _meta_value(key: str, values: list[str]) -> str:
    limit = MAX_SHORT if key in SHORT_FIELDS else MAX_LINE

    def one(v: str) -> str:
        if key == "project_urls" and "," in v:
            label, _, url = v.partition(",")
            url = url.strip()
            if _is_web_url(url):
                return f'<a href="{esc(url)}" rel="nofollow">{esc(label.strip(), MAX_SHORT)}</a>'
        if key == "home_page" and _is_web_url(v):
            return f'<a href="{esc(v)}" rel="nofollow">{esc(v, MAX_SHORT)}</a>'
        return esc(v, limit)

    if len(values) == 1:
        return one(values[0])
    return '<ul class="plain">' + "".join(f"<li>{one(v)}</li>" for v in values) + "</ul>"


def render_version(site: Site, view: VersionView) -> bytes:
    parts = [
        f"<h1>{esc(view.project)} {esc(view.version, MAX_SHORT)} "
        f"<small class=muted>on {esc(view.index)}</small></h1>"
    ]
    parts.append(_notes(view.hidden, None, None))
    meta = {str(k).lower().replace("-", "_"): v for k, v in view.metadata.items()}
    rows = []
    for key, label in META_FIELDS:
        values = _values(meta.get(key))
        if values:
            rows.append(f"<dt>{esc(label)}</dt><dd>{_meta_value(key, values)}</dd>")
    if rows:
        parts.append('<dl class="meta">' + "".join(rows) + "</dl>")
    else:
        parts.append(
            "<p class=muted>No metadata is known for this version yet (a mirror learns it "
            "when a client asks for the file's metadata).</p>"
        )
    parts.append(install_lines(site, view.index, view.project, view.version))
    parts.append("<h2>Files</h2>")
    if view.files:
        parts.append(files_table(site, view.files, f"Files of {view.version}"))
    else:
        parts.append("<p class=muted>No files.</p>")
    if view.description_html:
        parts.append(
            '<h2>Description</h2><div class="description">' + view.description_html + "</div>"
        )
    return page(
        site,
        f"{view.project} {view.version}",
        "".join(parts),
        crumbs=_crumbs(site, view.index, view.project, view.version),
        search=SearchBox(view.index),
    )
