"""
The process edge in memory: the site's stop (refuse, close idle connections, let responses
finish), the drain's deadline, the JSON log observer, log format choice, stale pid files.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, globalLogPublisher, textFileLogObserver
from twisted.python import usage
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pkgmirror.assemble import PkgmirrorSite, drain
from pkgmirror.logs import (
    JSONLinesObserver,
    access_log,
    log_request,
    text_observer,
    use_log_format,
)
from pkgmirror.tap import clear_stale_pidfile


class Held(Resource):
    """Answers ``/now`` at once; ``/held`` only when the test finishes it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render_GET(self, request: Request) -> Any:
        if request.path == b"/held":
            self.held.append(request)
            return NOT_DONE_YET
        return b"now"


class Connection:
    def __init__(self, site: PkgmirrorSite) -> None:
        self.transport = StringTransport()
        self.protocol = site.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def send(self, path: str) -> None:
        self.protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode())

    def received(self) -> bytes:
        return self.transport.value()

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def access(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_namespace") == "pkgmirror.access"]


def test_stop_refuses_new_requests_and_lets_the_ones_under_way_finish(
    events: list[dict[str, Any]],
) -> None:
    resource = Held()
    site = PkgmirrorSite(resource)
    idle, busy, late = Connection(site), Connection(site), Connection(site)
    idle.send("/now")
    assert idle.received().endswith(b"now") and not idle.closing
    busy.send("/held")
    assert len(site.in_flight) == 1

    site.stop_accepting()
    assert idle.closing  # nothing under way there: closed at once
    assert not busy.closing
    late.send("/now")
    assert late.received().startswith(b"HTTP/1.1 503 ")
    assert b"connection: close" in late.received().lower()
    assert late.closing

    (request,) = resource.held
    request.setHeader(b"Content-Length", b"8")
    request.write(b"finished")
    request.finish()
    assert b"connection: close" in busy.received().lower()
    assert busy.received().endswith(b"finished")
    assert busy.closing  # closed once its response is complete
    assert site.in_flight == set()
    logged = [(e["path"], e["status"], e["complete"]) for e in access(events)]
    assert logged == [("/now", 200, True), ("/now", 503, True), ("/held", 200, True)]


def test_a_client_leaving_is_logged_as_incomplete(events: list[dict[str, Any]]) -> None:
    resource = Held()
    site = PkgmirrorSite(resource)
    connection = Connection(site)
    connection.send("/held")
    connection.protocol.connectionLost(Exception("gone"))
    assert site.in_flight == set()
    (event,) = access(events)
    assert event["path"] == "/held" and event["complete"] is False


class FakeFill:
    def __init__(self, fills: dict[str, FakeFill]) -> None:
        self.done = False
        self.reason: str | None = None
        self._fills = fills

    def failed(self, reason: str) -> None:
        self.reason = reason
        self.done = True
        del self._fills["f"]  # as the mirror does once the fill's download has ended


class FakeMirror:
    def __init__(self) -> None:
        self.fills: dict[str, FakeFill] = {}


class FakeServer:
    def __init__(self) -> None:
        self.mirrors = {"root/pypi": FakeMirror()}


def run(clock: Clock, d: Deferred[None], seconds: float) -> float:
    """Advances the clock in small steps until ``d`` fires; returns the time it took."""
    began = clock.seconds()
    while not d.called and clock.seconds() - began < seconds:
        clock.advance(0.05)
    assert d.called
    return clock.seconds() - began


def test_drain_waits_for_work_under_way_then_returns() -> None:
    clock, server = Clock(), FakeServer()
    resource = Held()
    site = PkgmirrorSite(resource)
    Connection(site).send("/held")
    d = Deferred.fromCoroutine(drain(clock, server, site, 10.0))  # type: ignore[arg-type]
    clock.callLater(2, lambda: resource.held[0].finish())
    assert run(clock, d, 20) == pytest.approx(2, abs=0.1)


def test_drain_ends_what_is_left_at_the_deadline() -> None:
    clock, server = Clock(), FakeServer()
    fills = server.mirrors["root/pypi"].fills
    fill = fills["f"] = FakeFill(fills)
    site = PkgmirrorSite(Held())
    connection = Connection(site)
    connection.send("/held")
    d = Deferred.fromCoroutine(drain(clock, server, site, 3.0))  # type: ignore[arg-type]
    assert run(clock, d, 20) == pytest.approx(3, abs=0.1)
    assert fill.reason == "server stopping"
    assert connection.closing


def test_a_second_signal_cuts_the_wait_short() -> None:
    clock, server = Clock(), FakeServer()
    site = PkgmirrorSite(Held())
    Connection(site).send("/held")
    hurry: list[bool] = []
    d = Deferred.fromCoroutine(
        drain(clock, server, site, 10.0, lambda: bool(hurry))  # type: ignore[arg-type]
    )
    clock.callLater(1, hurry.append, True)
    assert run(clock, d, 20) == pytest.approx(1, abs=0.1)


def test_json_lines_carry_the_message_and_the_fields() -> None:
    out = io.StringIO()
    observer = JSONLinesObserver(out)
    log = Logger(namespace="pkgmirror.test", observer=observer)
    log.warn("upstream of {index} failed: {reason}", index="root/pypi", reason="timeout", obj=[1])
    try:
        int("not a number")
    except ValueError:
        log.failure("boom")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == LogLevel.warn.name
    assert first["logger"] == "pkgmirror.test"
    assert first["message"] == "upstream of root/pypi failed: timeout"
    assert first["index"] == "root/pypi" and first["reason"] == "timeout"
    assert "obj" not in first  # only plain values become fields
    assert first["time"].endswith("Z")
    assert second["level"] == "critical" and "ValueError" in second["traceback"]


@attrs.define
class FinishedRequest:
    """What log_request reads of a finished request."""

    method: bytes = b"GET"
    uri: bytes = b"/root/pypi/+simple/a%20b/"
    code: int = 200
    sentLength: int = 1234

    def getClientAddress(self) -> Any:
        return IPv4Address("TCP", "127.0.0.1", 5000)

    def getHeader(self, name: bytes) -> bytes | None:
        return b"pip/26.0" if name == b"user-agent" else None


def test_access_lines_read_as_twistds_classic_text_log() -> None:
    fast, classic = io.StringIO(), io.StringIO()
    observers = [text_observer(fast), textFileLogObserver(classic)]

    def both(event: Any) -> None:
        if event.get("log_namespace") in (access_log.namespace, "pkgmirror.test"):
            for observer in observers:
                observer(event)

    globalLogPublisher.addObserver(both)
    try:
        for complete in (True, False):
            log_request(FinishedRequest(), 0.0123, complete=complete)
        Logger(namespace="pkgmirror.test").info("other {x}", x=1)
    finally:
        globalLogPublisher.removeObserver(both)
    lines = fast.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].endswith("(connection lost)")
    assert (
        '[pkgmirror.access#info] 127.0.0.1 "GET /root/pypi/+simple/a%20b/" 200 1234 12.3ms'
        in lines[0]
    )
    assert fast.getvalue() == classic.getvalue()


def test_log_format_choice_reaches_the_runner(tmp_path: Path) -> None:
    twist: dict[str, Any] = {"fileLogObserverFactory": None}
    use_log_format(twist, "json")
    assert twist["fileLogObserverFactory"] is JSONLinesObserver
    use_log_format(twist, None)  # twist's own choice stands
    assert twist["fileLogObserverFactory"] is JSONLinesObserver

    logfile = tmp_path / "server.log"
    twistd = {"logfile": str(logfile), "nodaemon": False, "syslog": False, "logger": None}
    factory = use_log_format(twistd, "json")
    assert factory is not None
    factory()(
        {"log_format": "hello", "log_level": LogLevel.info, "log_namespace": "t", "log_time": 0}
    )
    assert json.loads(logfile.read_text())["message"] == "hello"
    # Text (also the default) is twistd's classic format, to the same file.
    logfile.unlink()
    for choice in ("text", None):
        text = use_log_format(twistd, choice)
        assert text is not None
        text()(
            {"log_format": "hi", "log_level": LogLevel.info, "log_namespace": "t", "log_time": 0}
        )
    assert logfile.read_text().splitlines()[-1].endswith("[t#info] hi")
    assert use_log_format({**twistd, "syslog": True}, None) is None  # twistd's own

    with pytest.raises(usage.UsageError, match="cannot log to stdout"):
        use_log_format({**twistd, "logfile": "-"}, "json")
    with pytest.raises(usage.UsageError, match="syslog"):
        use_log_format({**twistd, "syslog": True}, "json")


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    "content", [lambda: str(dead_pid()), lambda: str(os.getpid()), lambda: "", lambda: "x"]
)
def test_stale_pid_files_are_removed(tmp_path: Path, content: Any) -> None:
    # Dead, this very process (a container's PID 1 after a restart), empty, damaged.
    pidfile = tmp_path / "twistd.pid"
    pidfile.write_text(content())
    message = clear_stale_pidfile({"pidfile": str(pidfile)})
    assert message is not None and str(pidfile) in message
    assert not pidfile.exists()


def test_a_pid_file_of_another_program_is_stale(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        pidfile = tmp_path / "twistd.pid"
        pidfile.write_text(str(other.pid))
        assert clear_stale_pidfile({"pidfile": str(pidfile)}) is not None
        assert not pidfile.exists()
    finally:
        other.kill()
        other.wait()


def test_no_pid_file_nothing_to_do(tmp_path: Path) -> None:
    assert clear_stale_pidfile(None) is None
    assert clear_stale_pidfile({"pidfile": ""}) is None
    assert clear_stale_pidfile({"pidfile": str(tmp_path / "none.pid")}) is None
