"""
``/USER/INDEX/+f/<3 hex>/<13 hex>/<filename>``: package files and their ``.metadata``.

Stored files go out through ``twisted.web.static.File`` (Range, HEAD, If-Modified-Since, a pull
producer). Mirror files not cached yet are streamed from their cache fill as it downloads.
"""

from __future__ import annotations

from typing import Any

from twisted.python.filepath import FilePath
from twisted.web import static
from twisted.web.server import NOT_DONE_YET, Request

from pkgmirror.fill import FileFill, FillFailed
from pkgmirror.mirror import Mirror
from pkgmirror.model import IndexConfig, MirrorFile, ReleaseFile
from pkgmirror.names import is_safe_path_segment
from pkgmirror.server import Refused, Server
from pkgmirror.web import sendfile
from pkgmirror.web.tail import TailProducer
from pkgmirror.web.upload import delete_file
from pkgmirror.web.util import AsyncResource, finish, query_flag, wants_json

IMMUTABLE = b"max-age=365000000, immutable, public"
METADATA_SUFFIX = ".metadata"
# Requests static.File answers (ranges, conditional requests); the rest of small blobs are
# served from memory.
_STATIC_FILE_HEADERS = (b"range", b"if-range", b"if-modified-since")


class _BlobFile(static.File):
    # Blob paths have no extension; never let a .gz-looking name turn into Content-Encoding.
    contentEncodings: dict[str, str] = {}


def serve_path(request: Request, path: FilePath[Any], content_type: str) -> None:
    """Hands the request to static.File, which finishes it (now, or through its producer)."""
    resource = _BlobFile(path.path, defaultType=content_type)
    resource.type = content_type
    resource.encoding = None
    body = resource.render(request)
    if body is NOT_DONE_YET:
        return
    if body:
        request.write(body)
    request.finish()


class FilesResource(AsyncResource):
    def __init__(self, server: Server, index: IndexConfig) -> None:
        super().__init__(server)
        self.index = index

    def _parse(self, request: Request) -> tuple[str, str]:
        parts = [p.decode("utf-8", "replace") for p in request.postpath or []]
        if len(parts) != 3 or not all(is_safe_path_segment(p) for p in parts):
            raise Refused(404, "no such file")
        a, b, filename = parts
        if len(a) != 3 or len(b) != 13 or not all(c in "0123456789abcdef" for c in a + b):
            raise Refused(404, "no such file")
        return f"{a}/{b}", filename

    async def handle_GET(self, request: Request) -> bytes | None:
        path_key, filename = self._parse(request)
        metadata = filename.endswith(METADATA_SUFFIX)
        if metadata:
            filename = filename[: -len(METADATA_SUFFIX)]
        mirror = self.app.mirrors.get(self.index.key)
        if mirror is None:
            return await self._stage_file(request, path_key, filename, metadata)
        return await self._mirror_file(request, mirror, path_key, filename, metadata)

    async def handle_DELETE(self, request: Request) -> bytes:
        path_key, filename = self._parse(request)
        if filename.endswith(METADATA_SUFFIX):
            raise Refused(405, "core metadata goes with its file: delete the file")
        mirror = self.app.mirrors.get(self.index.key)
        record: ReleaseFile | MirrorFile | None
        if mirror is None:
            record = await self.app.release_file(self.index.key, path_key, filename)
        else:
            record = await mirror.file_record(path_key, filename)
        if record is None:
            raise Refused(404, f"no file {filename} on {self.index.key}")
        force = query_flag(request, b"force")
        return await delete_file(request, self.app, self.index, record, force=force)

    async def _serve_blob(self, request: Request, sha256: str, content_type: str) -> bool:
        path = self.app.blobs.local_path(sha256)
        if path is None:
            return False
        request.setHeader(b"Cache-Control", IMMUTABLE)
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"Content-Type", content_type.encode())
        if not any(request.getHeader(h) is not None for h in _STATIC_FILE_HEADERS):
            data = await self._small_blob(sha256, path)
            if data is not None:
                finish(request, data)
                return True
            transport = sendfile.usable(request) if request.method == b"GET" else None
            if transport is not None and sendfile.send(request, path.path, transport):
                return True
        serve_path(request, path, content_type)
        return True

    async def _small_blob(self, sha256: str, path: FilePath[Any]) -> bytes | None:
        """The blob's bytes when it is small (kept in memory after the first read), else None."""
        kept = self.app.small_blobs
        data = kept.get(sha256)
        if data is not None:
            return data
        try:
            if path.getsize() > kept.max_item:
                return None
            data = await self.app.blobs.read(sha256)
        except OSError:
            return None
        kept.put(sha256, data)
        return data

    async def _stage_file(
        self, request: Request, path_key: str, filename: str, metadata: bool
    ) -> bytes | None:
        record = await self.app.release_file(self.index.key, path_key, filename)
        if record is None:
            raise Refused(404, f"no file {filename} on {self.index.key}")
        if wants_json(request) and not metadata:
            return _file_json(request, record.project, record.version, record.sha256)
        sha = record.metadata_sha256 if metadata else record.sha256
        if sha is None:
            raise Refused(404, f"no core metadata for {filename}")
        if await self._serve_blob(request, sha, _type(metadata)):
            return None
        raise Refused(404, f"the bytes of {filename} are missing from the store")

    async def _mirror_file(
        self, request: Request, mirror: Mirror, path_key: str, filename: str, metadata: bool
    ) -> bytes | None:
        record = await mirror.file_record(path_key, filename)
        if record is None:
            raise Refused(404, f"no file {filename} on {self.index.key}")
        if await mirror.is_quarantined(record.project):
            raise Refused(404, f"{record.project} is quarantined upstream; no files are offered")
        if metadata:
            return await self._mirror_metadata(request, mirror, record)
        record = await mirror.settled(record)
        if record.cached_sha256 and await self._serve_blob(
            request, record.cached_sha256, "application/octet-stream"
        ):
            mirror.stats["hits"] += 1
            return None
        if self.index.mirror_use_external_urls:
            request.setResponseCode(302)
            request.setHeader(b"Location", record.url.encode("utf-8"))
            return b""
        if mirror.settings.offline:
            raise Refused(
                503, f"offline mode: {filename} was never cached", {"Retry-After": "3600"}
            )
        if mirror.health.is_down() and (record.path_key, record.filename) not in mirror.fills:
            raise Refused(
                503,
                f"upstream of {self.index.key} is unreachable ({mirror.health.last_error})",
                {"Retry-After": str(mirror.health.retry_after())},
            )
        fill = mirror.start_fill(record)
        try:
            start = await fill.when_started()
        except FillFailed as e:
            raise Refused(502, f"could not fetch {filename} from the upstream: {e}") from None
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(b"Accept-Ranges", b"bytes")
        if request.method == b"HEAD":
            # Range applies to GET only (RFC 9110 14.2): HEAD answers for the whole file.
            if start.length is not None:
                request.setHeader(b"Content-Length", str(start.length).encode())
            request.finish()
            return None
        if request.getHeader(b"range") is not None:
            # A range is answered from the verified blob, never from bytes still unchecked:
            # the tail ranges clients ask for first need the last byte (released only once
            # the hash matched) anyway, and later ranges find the fill done.
            return await self._after_fill(request, fill, filename)
        if start.length is not None:
            request.setHeader(b"Content-Length", str(start.length).encode())
        producer = TailProducer.open(request, fill)
        if producer is None:
            # The fill committed between our look-up and now: the blob is there.
            return await self._after_fill(request, fill, filename)
        producer.start()
        return None

    async def _after_fill(self, request: Request, fill: FileFill, filename: str) -> bytes | None:
        try:
            sha = await fill.when_stored()
        except FillFailed as e:
            raise Refused(502, f"could not fetch {filename} from the upstream: {e}") from None
        if await self._serve_blob(request, sha, "application/octet-stream"):
            return None
        raise Refused(502, f"could not fetch {filename}")

    async def _mirror_metadata(
        self, request: Request, mirror: Mirror, record: MirrorFile
    ) -> bytes | None:
        found = await mirror.core_metadata(record)
        if found is None:
            raise Refused(404, f"no core metadata for {record.filename}")
        if found.data is not None and request.getHeader(b"range") is None:
            request.setHeader(b"Cache-Control", IMMUTABLE)
            request.setHeader(b"Content-Type", _type(True).encode())
            return found.data
        if not await self._serve_blob(request, found.sha256, _type(True)):
            raise Refused(404, f"no core metadata for {record.filename}")
        return None


def _type(metadata: bool) -> str:
    return "text/plain; charset=utf-8" if metadata else "application/octet-stream"


def _file_json(request: Request, project: str, version: str, sha256: str) -> bytes:
    from pkgmirror.web.util import envelope

    return envelope(
        request,
        "releasefilemeta",
        {
            "hash_spec": f"sha256={sha256}",
            "hashes": {"sha256": sha256},
            "project": project,
            "version": version,
        },
    )
