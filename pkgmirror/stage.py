"""
How a stage index merges its bases: pure functions over pages already fetched.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from pkgmirror.config import parse_duration
from pkgmirror.model import IndexConfig, Link, ProjectPage, parse_iso_time
from pkgmirror.names import normalize, parse_dist_filename


@attrs.frozen
class Hidden:
    """Releases left out of a merged page, and why: shown to people, never to installers."""

    index: str
    reason: str


def _pattern_matches(pattern: str, name: str) -> bool:
    norm = normalize(pattern.replace("*", "\x00")).replace("\x00", "*")
    if any(c in norm for c in "*?["):
        return fnmatch.fnmatchcase(name, norm)
    return name == norm or name.startswith(norm + "-") or name.startswith(norm)


def is_private(order: Sequence[IndexConfig], project: str) -> str | None:
    """The pattern that keeps ``project`` away from every mirror, if any stage has one."""
    for config in order:
        for pattern in config.private_prefixes:
            if _pattern_matches(pattern, project):
                return pattern
    return None


def mirror_allowed(
    order: Sequence[IndexConfig], project: str, stages_with_project: Sequence[str]
) -> bool:
    """
    devpi's shadowing rule: when a stage in the order has the project itself, mirror releases
    are left out unless whitelisted.

    As devpi walks the stages in order it folds their ``mirror_whitelist`` together with the
    first stage's ``mirror_whitelist_inheritance``, and the project counts as whitelisted once
    the folded list names it (or ``*``). So with ``union`` a whitelist on any stage in the order
    is enough; with ``intersection`` (the default for new indexes) the folded list can only
    shrink and only the first stage's own list counts.
    """
    if not stages_with_project or not order:
        return True
    merge_union = order[0].mirror_whitelist_inheritance == "union"
    folded: set[str] | None = None
    for config in order:
        if config.is_mirror:
            continue
        own = set(config.mirror_whitelist)
        if folded is None:
            folded = own
        else:
            folded = folded | own if merge_union else folded & own
        if "*" in folded or project in folded:
            return True
    return False


def release_cutoff(config: IndexConfig, project: str, now: float) -> float | None:
    """Uploads after this POSIX time are not listed yet (``min_release_age``)."""
    exempt = config.min_release_age_exempt
    if not config.min_release_age or project in exempt or "*" in exempt:
        return None
    return now - parse_duration("min_release_age", config.min_release_age)


def merge_pages(
    project: str,
    order: Sequence[IndexConfig],
    pages: Sequence[ProjectPage | None],
    now: float,
) -> tuple[ProjectPage, list[Hidden]]:
    """
    The merged page of ``order[0]``: links of every index in resolution order, de-duplicated
    by file name (first wins), mirror links dropped when a stage shadows the project, files
    younger than ``min_release_age`` left out. A page marked ``quarantined`` (PEP 792) offers
    no files; when no other index offers any, the merged page is marked quarantined too.
    ``pages[i]`` is ``order[i]``'s own page, None when it does not have the project.
    """
    hidden: list[Hidden] = []
    stages_with = [
        c.key for c, p in zip(order, pages, strict=True) if not c.is_mirror and p and p.links
    ]
    allow_mirrors = mirror_allowed(order, project, stages_with)
    cutoff = release_cutoff(order[0], project, now) if order else None
    seen: set[str] = set()
    links: list[Link] = []
    status: str | None = None
    status_reason: str | None = None
    quarantine: str | Literal[False] | None = False
    for config, page in zip(order, pages, strict=True):
        if page is None:
            continue
        if config.is_mirror and not allow_mirrors:
            if page.links:
                hidden.append(
                    Hidden(
                        config.key,
                        f"{project} is not in the mirror_whitelist, so no releases from "
                        f"{config.key} are included",
                    )
                )
            continue
        if page.status == "quarantined":
            if quarantine is False:
                quarantine = page.status_reason
            if page.links:
                hidden.append(
                    Hidden(
                        config.key,
                        f"{project} is quarantined on {config.key}"
                        + (f" ({page.status_reason})" if page.status_reason else "")
                        + ": none of its files are offered",
                    )
                )
            continue
        if status is None and page.status:
            status, status_reason = page.status, page.status_reason
        young = 0
        for link in page.links:
            if link.filename in seen:
                continue
            if cutoff is not None and link.upload_time:
                uploaded = parse_iso_time(link.upload_time)
                if uploaded is not None and uploaded > cutoff:
                    young += 1
                    continue
            seen.add(link.filename)
            links.append(link)
        if young:
            hidden.append(
                Hidden(config.key, f"{young} files younger than min_release_age are not listed")
            )
    if quarantine is not False and not links:
        status, status_reason = "quarantined", quarantine
    merged = ProjectPage(
        name=project,
        links=links,
        versions=None,
        status=status,
        status_reason=status_reason,
    )
    return merged, hidden


def apply_yanks(page: ProjectPage, yanks: Sequence[Mapping[str, str]]) -> ProjectPage:
    """
    The page with releases yanked by stages (version -> reason, the first stage's reason wins)
    marked yanked, unless their own index yanked them already.
    """
    wanted: dict[str, str] = {}
    for versions in yanks:
        for version, reason in versions.items():
            wanted.setdefault(version, reason)
    if not wanted:
        return page
    links = []
    for link in page.links:
        parsed = parse_dist_filename(link.filename) if link.yanked is None else None
        if parsed is not None and parsed[1] in wanted:
            link = attrs.evolve(link, yanked=wanted[parsed[1]])
        links.append(link)
    return attrs.evolve(page, links=links)
