"""
Serving a file while its cache fill is still downloading it: a push producer that tails the
spool file, never past what the fill allows (all but the last byte until the hash matched).
"""

from __future__ import annotations

import os
from typing import IO

from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request
from zope.interface import implementer

from pkgmirror.fill import FileFill
from pkgmirror.web.util import abort

CHUNK = 256 * 1024


@implementer(IPushProducer)
class TailProducer:
    """
    A push producer: it writes whenever the fill has bytes and the client keeps up, and does
    nothing while it waits. (As a pull producer the transport asked it for more on every
    reactor turn while it had nothing, a busy loop that starved the download it waited for:
    5 MB/s.)
    """

    def __init__(self, request: Request, fill: FileFill, handle: IO[bytes]) -> None:
        self._request = request
        self._fill = fill
        self._handle = handle
        self._sent = 0
        self._paused = False
        self._stopped = False

    @classmethod
    def open(cls, request: Request, fill: FileFill) -> TailProducer | None:
        """A producer on the fill's spool, or None when the spool is gone (committed)."""
        try:
            handle = open(fill.spool.path.path, "rb")
        except OSError:
            return None
        return cls(request, fill, handle)

    def start(self) -> None:
        self._fill.listen(self._changed)
        self._request.notifyFinish().addBoth(lambda _: self._stop())
        self._request.registerProducer(self, True)
        self._pump()

    def _changed(self) -> None:
        self._pump()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def _pump(self) -> None:
        # Writing may pause us (the transport's buffer is full): check before every chunk.
        while not self._stopped and not self._paused:
            if self._fill.failure is not None:
                self._failed()
                return
            limit = self._fill.readable
            if self._sent < limit:
                data = os.pread(self._handle.fileno(), min(CHUNK, limit - self._sent), self._sent)
                if not data:
                    return
                self._sent += len(data)
                self._request.write(data)
                continue
            if self._fill.verified and self._sent >= self._fill.spool.size:
                self._stop()
                self._request.unregisterProducer()
                self._request.finish()
            return

    def _failed(self) -> None:
        self._stop()
        if not self._request.startedWriting:
            # Nothing sent yet: a plain 502 tells the client more than a reset.
            assert self._fill.failure is not None
            reason = self._fill.failure.getErrorMessage()
            body = f"could not fetch the file from the upstream: {reason}\n".encode()
            self._request.unregisterProducer()
            self._request.setResponseCode(502)
            self._request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            self._request.setHeader(b"Content-Length", str(len(body)).encode())
            self._request.write(body)
            self._request.finish()
            return
        abort(self._request)

    def stopProducing(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._fill.unlisten(self._changed)
            self._handle.close()
