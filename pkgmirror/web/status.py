"""
``/+status`` for people and monitoring, ``/+health/live`` and ``/+health/ready`` for containers.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.web.server import Request

from pkgmirror import __version__
from pkgmirror.server import Refused
from pkgmirror.web.util import AsyncResource, envelope, json_body


class StatusResource(AsyncResource):
    async def handle_GET(self, request: Request) -> bytes:
        server = self.app
        mirrors: dict[str, Any] = {}
        for key, mirror in server.mirrors.items():
            mirrors[key] = {
                "mirror_url": mirror.upstream_url,
                "upstream": mirror.health.as_json(),
                **mirror.stats,
            }
        return envelope(
            request,
            "status",
            {
                "version": __version__,
                # devpi's shape: `devpi --version` prints these as the server's versions.
                "versioninfo": {"pkgmirror": __version__},
                "uuid": server.uuid,
                "uptime": round(time.time() - server.started, 1),
                "serial": server.generation,
                "offline": server.settings.mirror.offline,
                "mirrors": mirrors,
                "indexes": len(server.indexes),
                "users": len(server.users),
            },
        )


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
