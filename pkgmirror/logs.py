"""
The process's log: one event per request (``pkgmirror.access``), and ``--log-format json``,
which turns every log event, whatever logged it, into one JSON object a line.

Process edge: used by ``tap`` (the runner's log observer) and ``assemble`` (the access log).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python import usage
from twisted.python.logfile import LogFile
from zope.interface import implementer

access_log = Logger(namespace="pkgmirror.access")


# Keys twisted.python.log's legacy events carry besides their text; not worth a JSON field.
_LEGACY_KEYS = frozenset(
    {"message", "system", "isError", "time", "format", "why", "failure", "line"}
)


def log_request(request: Any, took: float, complete: bool) -> None:
    """One access-log event for ``request``: who, what, the outcome, how big, how long."""
    client = getattr(request.getClientAddress(), "host", None) or "-"
    agent = request.getHeader(b"user-agent")
    method = request.method.decode("latin-1")
    path = request.uri.decode("latin-1", "replace")
    ms = round(took * 1000, 1)
    # The line is formatted here, once: the logger formatting six fields from a format string
    # cost more than serving a cached page (measured with bench/).
    line = f'{client} "{method} {path}" {request.code} {request.sentLength} {ms:.1f}ms'
    access_log.info(
        "{line}" if complete else "{line} (connection lost)",
        line=line,
        client=client,
        method=method,
        path=path,
        status=request.code,
        bytes=request.sentLength,
        ms=ms,
        complete=complete,
        agent=agent.decode("latin-1", "replace") if agent else None,
    )


def _iso(seconds: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds % 1 * 1000):03d}Z"
    )


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each event as one JSON object on one line: ``time``, ``level``, ``logger``,
    ``message`` (the text a text log would show), the event's plain fields (an access line's
    ``client``, ``method``, ``path``, ``status``, ``bytes``, ``ms``...) and, for failures,
    ``traceback``.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": _iso(event.get("log_time") or time.time()),
            "level": getattr(level, "name", "info"),
            "logger": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if key.startswith("log_") or key in _LEGACY_KEYS or key in record:
                continue
            if value is None or isinstance(value, (str, int, float, bool)):
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._out.flush()


def text_observer(out: IO[Any]) -> FileLogObserver:
    """
    twistd's classic text log, with access lines formatted without the general formatter,
    which cost a cached page's request as much as serving it (measured with py-spy): the
    same bytes, the time stamp made once a second.
    """
    stamp: list[Any] = ["", None]

    def format_event(event: LogEvent) -> str | None:
        line = event.get("line")
        if event.get("log_namespace") != access_log.namespace or not isinstance(line, str):
            return formatEventAsClassicLogText(event)
        when = int(event.get("log_time") or time.time())
        if when != stamp[1]:
            stamp[0], stamp[1] = formatTime(when), when
        lost = "" if event.get("complete", True) else " (connection lost)"
        return f"{stamp[0]} [{access_log.namespace}#info] {line}{lost}\n"

    return FileLogObserver(out, format_event)


def use_log_format(
    runner: MutableMapping[str, Any] | None, log_format: str | None
) -> Callable[[], ILogObserver] | None:
    """
    Makes the runner whose options are ``runner`` (twistd's or twist's; None when there is no
    runner) log in ``log_format`` ("text", "json", or None: text for twistd, twist's own choice
    for twist). For twistd the returned factory's observer goes on the application
    (``ILogObserver``); None leaves twistd's own (``--syslog``, ``--logger``).
    """
    if runner is None:
        return None
    if "fileLogObserverFactory" in runner:
        # twist: it opens --log-file (stdout by default) and hands it to this factory.
        if log_format is not None:
            runner["fileLogObserverFactory"] = (
                JSONLinesObserver if log_format == "json" else text_observer
            )
        return None
    if "logfile" not in runner:
        return None
    json_lines = log_format == "json"
    if runner.get("syslog") or runner.get("logger"):
        if json_lines:
            raise usage.UsageError("--log-format json cannot be combined with --syslog or --logger")
        return None
    name = runner.get("logfile") or ""
    foreground = bool(runner.get("nodaemon") or runner.get("debug"))
    if name == "-" and not foreground:
        if json_lines:
            raise usage.UsageError("a daemon cannot log to stdout: give twistd --logfile FILE")
        return None
    make: Callable[[IO[Any]], ILogObserver] = JSONLinesObserver if json_lines else text_observer

    # The file twistd itself would log to: stdout in the foreground without --logfile, else
    # the file (twistd.log by default), rotated at the same size as twistd's text log.
    def factory() -> ILogObserver:
        # Called before twistd starts logging and redirects sys.stdout into the log.
        if name == "-" or (foreground and not name):
            return make(sys.stdout)
        return make(LogFile.fromFullPath(name or "twistd.log"))  # type: ignore[arg-type]

    return factory
