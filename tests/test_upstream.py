"""
pkgmirror.upstream against a real twisted.web Site in memory (treq's StubTreq) on a Clock.

StubTreq routes every host name to the one resource, so origins are told apart by the Host
header the resource sees. HTTPS is only announced (no TLS happens).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET, Request

from pkgmirror import upstream as upstream_module
from pkgmirror.simple.parse import ParseError, parse_project_page
from pkgmirror.testing.inmemory import (
    ScriptedResource,
    answer,
    failure_of,
    never,
    outcome,
    result_of,
    start,
)
from pkgmirror.upstream import (
    FileStart,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
    split_credentials,
)

BASE = "http://127.0.0.1:8080/simple/"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PAGE = json.dumps(
    {
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [
            {"filename": "demo-1.0.tar.gz", "url": "../../files/demo-1.0.tar.gz", "hashes": {}}
        ],
    }
).encode()


@pytest.fixture
def site() -> ScriptedResource:
    return ScriptedResource()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    site: ScriptedResource, clock: Clock, url: str = BASE, **kw: float
) -> tuple[Upstream, StubTreq]:
    stub = StubTreq(site)
    return Upstream.for_mirror_url(stub, clock, url, **kw), stub


def test_page_ok_carries_body_type_etag_and_serial(site: ScriptedResource, clock: Clock) -> None:
    site.route("/simple/demo/", answer(PAGE, JSON_TYPE, ETag='"v1"', X_PyPI_Last_Serial="1234"))
    upstream, _ = make(site, clock)
    page = result_of(start(upstream.fetch_page(upstream.project_url("demo"))))
    assert page.status == "ok"
    assert page.body == PAGE
    assert page.content_type == JSON_TYPE
    assert page.etag == '"v1"'
    assert page.serial == 1234
    assert page.url == BASE + "demo/"
    request = site.seen[-1]
    assert "application/vnd.pypi.simple.v1+json" in request.headers["accept"]
    assert request.headers["user-agent"].startswith("pkgmirror/")
    assert "if-none-match" not in request.headers
    assert clock.getDelayedCalls() == [], "the deadline must not outlive the answer"


def test_a_mirror_url_without_the_final_slash_names_the_same_index(
    site: ScriptedResource, clock: Clock
) -> None:
    site.route("/simple/demo/", answer(PAGE, JSON_TYPE))
    upstream, _ = make(site, clock, BASE.rstrip("/"))
    assert upstream.project_url("demo") == BASE + "demo/"
    page = result_of(start(upstream.fetch_page(upstream.project_url("demo"))))
    assert page.status == "ok"


def test_page_revalidation_sends_the_etag_and_reads_304(
    site: ScriptedResource, clock: Clock
) -> None:
    def conditional(request: Request) -> bytes:
        if request.getHeader("if-none-match") == '"v1"':
            request.setResponseCode(304)
            return b""
        return answer(PAGE, JSON_TYPE, ETag='"v1"')(request)  # type: ignore[return-value]

    site.route("/simple/demo/", conditional)
    upstream, _ = make(site, clock)
    page = result_of(start(upstream.fetch_page(BASE + "demo/", etag='"v1"')))
    assert page.status == "not_modified"
    assert page.etag == '"v1"'
    assert site.seen[-1].headers["if-none-match"] == '"v1"'
    fresh = result_of(start(upstream.fetch_page(BASE + "demo/", etag='"v0"')))
    assert fresh.status == "ok" and fresh.body == PAGE


@pytest.mark.parametrize("code", [404, 410])
def test_page_gone_is_missing(site: ScriptedResource, clock: Clock, code: int) -> None:
    site.route("/simple/nope/", answer(b"gone", code=code))
    upstream, _ = make(site, clock)
    page = result_of(start(upstream.fetch_page(BASE + "nope/")))
    assert page.status == "missing"


@pytest.mark.parametrize("code", [500, 502, 503, 401])
def test_page_error_status_fails(site: ScriptedResource, clock: Clock, code: int) -> None:
    site.route("/simple/demo/", answer(b"oops", code=code))
    upstream, _ = make(site, clock)
    error = failure_of(start(upstream.fetch_page(BASE + "demo/")), UpstreamError)
    assert not isinstance(error, UpstreamTimeout)
    assert str(code) in str(error)


def test_garbage_content_type_is_passed_on_and_refused_by_the_parser(
    site: ScriptedResource, clock: Clock
) -> None:
    site.route("/simple/demo/", answer(b"\x89PNG\r\n\x1a\n...", "image/png"))
    upstream, _ = make(site, clock)
    page = result_of(start(upstream.fetch_page(BASE + "demo/")))
    assert page.status == "ok" and page.content_type == "image/png"
    with pytest.raises(ParseError):
        parse_project_page(page.body, page.content_type, page.url, "demo")


def test_page_deadline_is_the_timeout_in_clock_time(site: ScriptedResource, clock: Clock) -> None:
    site.route("/simple/demo/", never)
    upstream, _ = make(site, clock, timeout=7.0)
    box = outcome(start(upstream.fetch_page(BASE + "demo/")))
    clock.advance(6.9)
    assert box == [], "gave up before the deadline"
    clock.advance(0.1)
    assert box, "still waiting after the deadline"
    assert isinstance(box[0].value, UpstreamTimeout), box[0]
    assert "7 s" in str(box[0].value)
    assert clock.getDelayedCalls() == []


def test_connection_lost_mid_page_is_an_error(site: ScriptedResource, clock: Clock) -> None:
    def half(request: Request) -> int:
        request.setHeader(b"Content-Type", JSON_TYPE.encode())
        request.setHeader(b"Content-Length", str(len(PAGE)).encode())
        request.write(PAGE[:10])
        request.channel.transport.loseConnection()  # type: ignore[union-attr]
        return NOT_DONE_YET

    site.route("/simple/demo/", half)
    upstream, stub = make(site, clock)
    box = outcome(start(upstream.fetch_page(BASE + "demo/")))
    stub.flush()
    assert box and isinstance(box[0].value, UpstreamError), box
    assert not isinstance(box[0].value, UpstreamTimeout)


@pytest.mark.parametrize("declared", [True, False])
def test_oversized_page_is_refused(
    site: ScriptedResource, clock: Clock, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    monkeypatch.setattr(upstream_module, "MAX_PAGE_BYTES", 1000)
    dropped: list[object] = []

    def big(request: Request) -> int:
        request.notifyFinish().addErrback(dropped.append)
        request.setHeader(b"Content-Type", JSON_TYPE.encode())
        if declared:
            request.setHeader(b"Content-Length", b"5000")
        for _ in range(5):
            request.write(b" " * 1000)
        return NOT_DONE_YET

    site.route("/simple/demo/", big)
    upstream, stub = make(site, clock)
    box = outcome(start(upstream.fetch_page(BASE + "demo/")))
    stub.flush()
    assert box and isinstance(box[0].value, UpstreamError), box
    assert "too large" in str(box[0].value)
    assert dropped, "the connection is dropped, not read to the end"
    assert clock.getDelayedCalls() == []


# ---------------------------------------------------------------- credentials


def test_split_credentials() -> None:
    url, auth = split_credentials("https://al%40ice:p%3Ass@[::1]:8443/simple/?x=1#frag")
    assert url == "https://[::1]:8443/simple/?x=1"
    assert auth is not None
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == "al%40ice:p%3Ass"
    assert split_credentials("http://host/simple/") == ("http://host/simple/", None)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_go_to_the_mirror_origin_only(site: ScriptedResource, clock: Clock) -> None:
    site.route("/simple/demo/", answer(PAGE, JSON_TYPE))
    site.route("/files/demo-1.0.tar.gz", answer(b"bytes", "application/octet-stream"))
    upstream, _ = make(site, clock, "http://alice:s3cret@127.0.0.1:8080/simple/")
    assert upstream.base_url == BASE, "credentials must not stay in the URL we log and show"

    result_of(start(upstream.fetch_page(BASE + "demo/")))
    assert site.seen[-1].headers["authorization"] == basic("alice", "s3cret")

    same = "http://127.0.0.1:8080/files/demo-1.0.tar.gz"
    result_of(start(upstream.stream_file(same, lambda s: None, lambda b: None)))
    assert site.seen[-1].headers["authorization"] == basic("alice", "s3cret")

    for other in (
        "http://127.0.0.1:9090/files/demo-1.0.tar.gz",  # another port
        "https://127.0.0.1:8080/files/demo-1.0.tar.gz",  # another scheme
        "http://localhost:8080/files/demo-1.0.tar.gz",  # another host name
    ):
        result_of(start(upstream.stream_file(other, lambda s: None, lambda b: None)))
        assert "authorization" not in site.seen[-1].headers, other


def test_credentials_do_not_follow_a_redirect_to_another_origin(
    site: ScriptedResource, clock: Clock
) -> None:
    def redirect(request: Request) -> bytes:
        request.redirect(b"http://files.invalid:9999/files/demo-1.0.tar.gz")
        return b""

    site.route("/simple/demo/", redirect)
    site.route("/files/demo-1.0.tar.gz", answer(PAGE, JSON_TYPE))
    upstream, _ = make(site, clock, "http://alice:s3cret@127.0.0.1:8080/simple/")
    page = result_of(start(upstream.fetch_page(BASE + "demo/")))
    assert page.url == "http://files.invalid:9999/files/demo-1.0.tar.gz", "the final URL"
    first, second = site.seen[-2:]
    assert first.headers["authorization"] == basic("alice", "s3cret")
    assert second.host == "files.invalid:9999"
    assert "authorization" not in second.headers


# ---------------------------------------------------------------- streaming files


class Streamer:
    """A file resource the test feeds chunk by chunk."""

    def __init__(self, length: int | None, **headers: str) -> None:
        self.length = length
        self.headers = headers
        self.request: Request | None = None

    def __call__(self, request: Request) -> int:
        self.request = request
        request.setHeader(b"Content-Type", b"application/octet-stream")
        if self.length is not None:
            request.setHeader(b"Content-Length", str(self.length).encode())
        for name, value in self.headers.items():
            request.setHeader(name.replace("_", "-").encode(), value.encode())
        request.write(b"")  # send the headers now
        return NOT_DONE_YET

    def send(self, data: bytes, flush: Callable[[], None]) -> None:
        assert self.request is not None
        self.request.write(data)
        flush()


FILE_URL = "http://127.0.0.1:8080/files/demo-1.0.tar.gz"


def stream(
    upstream: Upstream,
) -> tuple[list[FileStart], list[bytes], list[Any]]:
    starts: list[FileStart] = []
    chunks: list[bytes] = []
    box = outcome(start(upstream.stream_file(FILE_URL, starts.append, chunks.append)))
    return starts, chunks, box


def test_stream_delivers_chunks_in_order(site: ScriptedResource, clock: Clock) -> None:
    modified = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    streamer = Streamer(9, Last_Modified=format_datetime(modified, usegmt=True))
    site.route("/files/demo-1.0.tar.gz", streamer)
    upstream, stub = make(site, clock)
    starts, chunks, box = stream(upstream)
    stub.flush()
    assert starts == [FileStart(9, modified.timestamp())]
    for piece in (b"abc", b"def", b"ghi"):
        streamer.send(piece, stub.flush)
    assert b"".join(chunks) == b"abcdefghi"
    assert box == [None]
    assert site.seen[-1].headers["accept-encoding"] == "identity"
    assert clock.getDelayedCalls() == []


def test_stream_without_length_ends_with_the_connection(
    site: ScriptedResource, clock: Clock
) -> None:
    streamer = Streamer(None)
    site.route("/files/demo-1.0.tar.gz", streamer)
    upstream, stub = make(site, clock)
    starts, chunks, box = stream(upstream)
    stub.flush()
    assert starts == [FileStart(None, None)]
    streamer.send(b"abc", stub.flush)
    assert streamer.request is not None
    streamer.request.finish()
    stub.flush()
    assert chunks == [b"abc"]
    assert box == [None]


def test_stream_idle_timeout_counts_from_the_last_chunk(
    site: ScriptedResource, clock: Clock
) -> None:
    streamer = Streamer(100)
    site.route("/files/demo-1.0.tar.gz", streamer)
    upstream, stub = make(site, clock, timeout=5.0, idle_timeout=10.0)
    _, chunks, box = stream(upstream)
    stub.flush()
    # Slow but steady: 30 s in all, never 10 s without a byte.
    for _ in range(3):
        clock.advance(9.5)
        streamer.send(b"x", stub.flush)
    assert box == [] and len(chunks) == 3
    clock.advance(9.9)
    assert box == []
    clock.advance(0.1)
    assert box and isinstance(box[0].value, UpstreamTimeout), box
    assert clock.getDelayedCalls() == []


def test_stream_first_answer_deadline(site: ScriptedResource, clock: Clock) -> None:
    site.route("/files/demo-1.0.tar.gz", never)
    upstream, _ = make(site, clock, timeout=5.0, idle_timeout=60.0)
    starts, _, box = stream(upstream)
    clock.advance(5.0)
    assert starts == []
    assert box and isinstance(box[0].value, UpstreamTimeout), box


@pytest.mark.parametrize("code", [404, 403, 500])
def test_stream_non_200_fails_before_start(site: ScriptedResource, clock: Clock, code: int) -> None:
    site.route("/files/demo-1.0.tar.gz", answer(b"no", code=code))
    upstream, _ = make(site, clock)
    starts, chunks, box = stream(upstream)
    assert starts == [] and chunks == []
    assert box and isinstance(box[0].value, UpstreamError), box
    assert str(code) in str(box[0].value)


def test_stream_cut_short_fails(site: ScriptedResource, clock: Clock) -> None:
    streamer = Streamer(100)
    site.route("/files/demo-1.0.tar.gz", streamer)
    upstream, stub = make(site, clock)
    _, chunks, box = stream(upstream)
    stub.flush()
    streamer.send(b"only some", stub.flush)
    assert streamer.request is not None
    streamer.request.channel.transport.loseConnection()  # type: ignore[union-attr]
    stub.flush()
    assert chunks == [b"only some"]
    assert box and isinstance(box[0].value, UpstreamError), box
    assert not isinstance(box[0].value, UpstreamTimeout)
