"""
A scripted upstream for Mirror tests: answers pages from a dict (ETag-aware), holds them when
asked, and lets the test drive every download. ``make_rig`` builds a Mirror on MemoryStorage,
MemoryBlobStore and a Clock around it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from pkgmirror.mirror import Mirror, MirrorSettings
from pkgmirror.model import IndexConfig, MirrorPageState
from pkgmirror.testing.inmemory import result_of, start
from pkgmirror.testing.memory import MemoryBlobStore, MemoryStorage
from pkgmirror.upstream import FileStart, PageResponse, Upstream

BASE = "http://upstream.invalid/simple/"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
EXPIRY = 600
T0 = 1_700_000_000.0


def page_body(project: str, files: dict[str, bytes], upload_time: str | None = None) -> bytes:
    entries = []
    for filename, data in files.items():
        entry: dict[str, Any] = {
            "filename": filename,
            "url": f"../../files/{filename}",
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        }
        if upload_time is not None:
            entry["upload-time"] = upload_time
        entries.append(entry)
    return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": entries}).encode()


@attrs.define
class FakeStream:
    """One download the test drives: headers, chunks, then the end (or a failure)."""

    url: str
    on_start: Any
    on_data: Any
    done: Deferred[None] = attrs.field(factory=Deferred)

    def send(self, data: bytes, length: int | None = None) -> None:
        self.on_start(FileStart(len(data) if length is None else length, None))
        self.on_data(data)
        self.done.callback(None)


class FakeUpstream:
    """
    The part of ``Upstream`` a Mirror uses. Pages answer at once from ``pages`` (ETag-aware)
    unless ``hold`` is set, in which case each fetch waits in ``held`` until the test releases
    it; an Exception in ``pages`` is raised. Downloads always wait in ``streams``.
    """

    base_url = BASE

    def __init__(self) -> None:
        self.pages: dict[str, PageResponse | Exception] = {}
        self.page_calls: list[tuple[str, str | None]] = []
        self.hold = False
        self.held: list[Deferred[None]] = []
        self.streams: list[FakeStream] = []

    def serve(self, project: str, files: dict[str, bytes], etag: str = '"v1"', **kw: Any) -> None:
        url = self.project_url(project)
        self.pages[url] = PageResponse(
            "ok", url, page_body(project, files, **kw), JSON_TYPE, etag=etag, serial=7
        )

    def project_url(self, project: str) -> str:
        return f"{BASE}{project}/"

    async def fetch_page(self, url: str, etag: str | None = None) -> PageResponse:
        self.page_calls.append((url, etag))
        if self.hold:
            gate: Deferred[None] = Deferred()
            self.held.append(gate)
            await gate
        answer = self.pages.get(url)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return PageResponse("missing", url)
        if etag is not None and etag == answer.etag:
            return PageResponse("not_modified", url, etag=etag)
        return answer

    def release(self) -> None:
        held, self.held = self.held, []
        for gate in held:
            gate.callback(None)

    async def stream_file(
        self, url: str, on_start: Any, on_data: Any, on_source: Any = None
    ) -> None:
        # No producer for on_source: a fill that never pauses its download (see test_tail).
        stream = FakeStream(url, on_start, on_data)
        self.streams.append(stream)
        await stream.done


@attrs.define
class Rig:
    clock: Clock
    upstream: FakeUpstream
    storage: MemoryStorage
    blobs: MemoryBlobStore
    mirror: Mirror
    config: IndexConfig

    def restart(self) -> Mirror:
        """A new Mirror on the same storage: what a process restart keeps."""
        return Mirror(
            self.config,
            self.storage,
            self.blobs,
            cast(Upstream, self.upstream),
            self.clock,
            self.mirror.settings,
        )

    def get(self, project: str, mirror: Mirror | None = None) -> MirrorPageState:
        return result_of(start((mirror or self.mirror).get_state(project)))

    def stored(self, project: str) -> MirrorPageState | None:
        return result_of(self.storage.get_mirror_page(self.config.key, project))


def make_rig(
    settings: MirrorSettings | None = None,
    upstream: bool = True,
    clock: Clock | None = None,
    name: str = "pypi",
    **config: Any,
) -> Rig:
    """A mirror ``root/<name>`` (expiry EXPIRY unless ``config`` says otherwise) at time T0."""
    if clock is None:
        clock = Clock()
        clock.advance(T0)
    fake = FakeUpstream()
    storage = MemoryStorage()
    blobs = MemoryBlobStore()
    config.setdefault("mirror_cache_expiry", EXPIRY)
    index = IndexConfig(
        user="root",
        name=name,
        type="mirror",
        mirror_url=BASE if upstream else None,
        **config,
    )
    result_of(storage.put_index(index))
    mirror = Mirror(
        index,
        storage,
        blobs,
        cast(Upstream, fake) if upstream else None,
        clock,
        settings or MirrorSettings(stale_grace=1.0, backoff_min=5.0, backoff_max=40.0),
    )
    return Rig(clock, fake, storage, blobs, mirror, index)
