"""
How a stage index merges its bases: pure functions over pages already fetched.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import attrs

from pkgmirror.config import parse_duration
from pkgmirror.model import IndexConfig, Link, ProjectPage, parse_iso_time
from pkgmirror.names import normalize


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
    are left out unless whitelisted. As devpi-server does it, the stages' whitelists are
    combined in resolution order (by union, or by intersection, as ``order[0]`` says) and the
    project is whitelisted once the combination so far names it or ``*``. So with ``union``
    any stage's whitelist is enough; with ``intersection`` (the default for new indexes) only
    the whitelist of the index asked for counts: its bases' lists never widen it.
    """
    if not stages_with_project or not order:
        return True
    union = order[0].mirror_whitelist_inheritance == "union"
    combined: set[str] | None = None
    for config in order:
        if config.is_mirror:
            continue
        own = set(config.mirror_whitelist)
        combined = own if combined is None else (combined | own if union else combined & own)
        if combined & {"*", project}:
            return True
    return False


def release_cutoff(config: IndexConfig, project: str, now: float) -> float | None:
    """Uploads after this POSIX time are not listed yet (``min_release_age``)."""
    if not config.min_release_age or project in config.min_release_age_exempt:
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
    by file name (first wins), mirror links dropped when a stage shadows the project.
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
    merged = ProjectPage(
        name=project,
        links=links,
        versions=None,
        status=status,
        status_reason=status_reason,
    )
    return merged, hidden
