"""
``/+status`` for people: the same facts as its JSON (``data`` is that JSON's ``result``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pkgmirror.pages.layout import MAX_SHORT, Site, esc, link, page, size_text, table


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _ratio(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "—"


def render_status(site: Site, data: Mapping[str, Any]) -> bytes:
    facts: list[tuple[str, str]] = [
        ("Version", esc(data.get("version"))),
        ("Uptime", esc(_duration(float(data.get("uptime") or 0)))),
        ("Server directory", f"<code>{esc(data.get('serverdir') or '')}</code>"),
        ("Serial", esc(data.get("serial"))),
        ("Mode", "offline" if data.get("offline") else "online"),
        ("Users / indexes", f"{esc(data.get('users'))} / {esc(data.get('indexes'))}"),
    ]
    cache = data.get("cache") or {}
    if cache:
        facts.append(
            (
                "File cache",
                f"{esc(cache.get('files'))} files, {esc(size_text(cache.get('bytes')))}",
            )
        )
        facts.append(("Cache hit ratio", esc(_ratio(cache.get("hit_ratio")))))
    refresh = data.get("refresh")
    if refresh:
        state = "running" if refresh.get("running") else "stopped"
        facts.append(
            (
                "Refresh loop",
                f"{state}, every {esc(refresh.get('interval'))} s: "
                f"{esc(refresh.get('rounds'))} rounds, {esc(refresh.get('refreshed'))} "
                f"pages refreshed, {esc(refresh.get('failed'))} failed",
            )
        )
    parts = ["<h1>Server status</h1>"]
    parts.append(
        '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    )
    parts.append("<h2>Mirrors</h2>")
    rows = []
    for key, mirror in sorted((data.get("mirrors") or {}).items()):
        upstream = mirror.get("upstream") or {}
        state = upstream.get("state", "up")
        tag = f'<span class="tag {"up" if state == "up" else "down"}">{esc(state)}</span>'
        if upstream.get("down_since"):
            tag += f" since {esc(upstream['down_since'])}"
        rows.append(
            (
                link(site.href(*key.split("/")), key),
                f"<code>{esc(mirror.get('mirror_url') or 'none', MAX_SHORT)}</code>",
                tag,
                esc(upstream.get("last_error") or "", MAX_SHORT),
                esc(mirror.get("hits", 0)),
                esc(mirror.get("upstream_requests", 0)),
                esc(_ratio(mirror.get("hit_ratio"))),
            )
        )
    if rows:
        parts.append(
            table(
                ["Mirror", "Upstream", "State", "Last error", "#Hits", "#Fetches", "#Hit ratio"],
                rows,
                "Mirrors",
            )
        )
    else:
        parts.append("<p class=muted>No mirrors.</p>")
    parts.append(
        "<p>Health for containers: "
        f'<a href="{site.href("+health", "live")}">/+health/live</a>, '
        f'<a href="{site.href("+health", "ready")}">/+health/ready</a></p>'
    )
    return page(site, "Status", "".join(parts), crumbs=[("Home", site.href()), ("Status", None)])
