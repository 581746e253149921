"""
Serving a file while its cache fill is still downloading it: a push producer that follows the
fill, never past what it allows (all but the last byte until the hash matched). Bytes still in
the fill's memory are sent from there; a client that fell behind reads the spool.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from pkgmirror.fill import FileFill
from pkgmirror.interfaces import ISpoolReader
from pkgmirror.web.util import abort

log = Logger()

CHUNK = 256 * 1024


@implementer(IPushProducer)
class TailProducer:
    """
    A push producer: it writes whenever the fill has bytes and the client keeps up, and does
    nothing while it waits. (As a pull producer the transport asked it for more on every
    reactor turn while it had nothing, a busy loop that starved the download it waited for:
    5 MB/s.)
    """

    def __init__(self, request: Request, fill: FileFill, reader: ISpoolReader) -> None:
        self._request = request
        self._fill = fill
        self._reader = reader
        self._sent = 0
        self._paused = False
        self._stopped = False
        self._reading = False

    @classmethod
    def open(cls, request: Request, fill: FileFill) -> TailProducer | None:
        """A producer following the fill, or None when the spool is gone (committed)."""
        reader = fill.spool.reader()
        if reader is None:
            return None
        return cls(request, fill, reader)

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
        while not self._stopped and not self._paused and not self._reading:
            if self._fill.failure is not None:
                self._failed()
                return
            limit = self._fill.readable
            if self._sent < limit:
                wanted = min(CHUNK, limit - self._sent)
                data = self._fill.recent(self._sent, wanted)
                if data is None:
                    self._reading = True
                    self._reader.read(self._sent, wanted).addCallbacks(self._read, self._unread)
                    return
                self._sent += len(data)
                self._request.write(data)
                continue
            if self._fill.verified and self._sent >= self._fill.spool.size:
                self._stop()
                self._request.unregisterProducer()
                self._request.finish()
            return

    def _read(self, data: bytes) -> None:
        self._reading = False
        if self._stopped:
            return
        self._sent += len(data)
        self._request.write(data)
        self._pump()

    def _unread(self, failure: Failure) -> None:
        self._reading = False
        if self._stopped:
            return
        if self._fill.failure is not None:
            self._failed()
            return
        log.failure("reading a download's spool", failure)
        self._stop()
        abort(self._request)

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
            self._reader.close()
