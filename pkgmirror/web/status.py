"""
``/+status`` for people and monitoring, ``/+health/live`` and ``/+health/ready`` for containers.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.web.server import Request

from pkgmirror import __version__
from pkgmirror.server import Refused
from pkgmirror.web import pages
from pkgmirror.web.util import AsyncResource, envelope, json_body, wants_json


def _ratio(hits: int, misses: int) -> float | None:
    return round(hits / (hits + misses), 4) if hits + misses else None


class StatusResource(AsyncResource):
    async def handle_GET(self, request: Request) -> bytes:
        server = self.app
        mirrors: dict[str, Any] = {}
        hits = fetches = 0
        for key, mirror in server.mirrors.items():
            stats = mirror.stats
            hits += stats.get("hits", 0)
            fetches += stats.get("upstream_requests", 0)
            mirrors[key] = {
                "mirror_url": mirror.upstream_url,
                "upstream": mirror.health.as_json(),
                **stats,
                "hit_ratio": _ratio(stats.get("hits", 0), stats.get("upstream_requests", 0)),
            }
        refresher = server.refresher
        data = {
            "version": __version__,
            # devpi's shape: `devpi --version` prints these as the server's versions.
            "versioninfo": {"pkgmirror": __version__},
            "uuid": server.uuid,
            "uptime": round(time.time() - server.started, 1),
            "serverdir": server.serverdir,
            "serial": server.generation,
            "offline": server.settings.mirror.offline,
            "mirrors": mirrors,
            "indexes": len(server.indexes),
            "users": len(server.users),
            # Hits: pages and files served from the cache; fetches: upstream requests.
            "cache": {**(await pages.cache_size(server) or {}), "hit_ratio": _ratio(hits, fetches)},
            "refresh": None
            if refresher is None
            else {
                "running": bool(refresher.running),
                "interval": refresher.interval,
                "rounds": refresher.rounds,
                "refreshed": refresher.refreshed,
                "failed": refresher.failed,
            },
        }
        if not wants_json(request):
            return pages.status(request, server, data)
        return envelope(request, "status", data)


class HealthResource(AsyncResource):
    async def handle_GET(self, request: Request) -> bytes:
        which = [p.decode("utf-8", "replace") for p in request.postpath or [] if p]
        if which == ["live"]:
            return json_body(request, 200, {"status": "live"})
        if which == ["ready"]:
            if not self.app.uuid:
                raise Refused(503, "not ready: storage not loaded")
            return json_body(request, 200, {"status": "ready"})
        raise Refused(404, "use /+health/live or /+health/ready")
