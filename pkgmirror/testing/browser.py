"""
Headless Chromium for tests that look at pages as a person would: open a page, click a link,
type into a form, take a screenshot, and hear about every console error.

It speaks the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages separated by NUL
on file descriptors 3 and 4), so it needs nothing but the ``chromium`` binary. Stdlib only.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

# Flags for a machine with no network but loopback, run as root, no display.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]

PHONE = (390, 844)

_TRAMPOLINE = """
import os, sys
read, write = int(sys.argv[1]), int(sys.argv[2])
os.dup2(read, 3)
os.dup2(write, 4)
os.close(read)
os.close(write)
os.execv(sys.argv[3], sys.argv[3:])
"""
DESKTOP = (1280, 900)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium process with one page (tab). Use as a context manager."""

    def __init__(self, process: subprocess.Popen[bytes], to_chrome: int, from_chrome: int) -> None:
        self._process = process
        self._to = to_chrome
        self._from = from_chrome
        self._next_id = 0
        self._lock = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = ""
        self.console: list[str] = []  # "level: text" of every console message and log entry

    @classmethod
    def start(cls, executable: str | None = None) -> Self:
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("chromium not found")
        profile = tempfile.mkdtemp(prefix="pkgmirror-chromium-")
        # Chromium reads commands from fd 3 and writes answers to fd 4.
        chrome_in, to_chrome = os.pipe()
        from_chrome, chrome_out = os.pipe()

        # A tiny trampoline puts our pipe ends at 3 and 4 (no preexec_fn: tests run threads),
        # from fds high enough that the moves cannot clobber each other.
        high_in = fcntl.fcntl(chrome_in, fcntl.F_DUPFD, 100)
        high_out = fcntl.fcntl(chrome_out, fcntl.F_DUPFD, 100)
        os.close(chrome_in)
        os.close(chrome_out)
        chrome_in, chrome_out = high_in, high_out
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _TRAMPOLINE,
                str(chrome_in),
                str(chrome_out),
                executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(chrome_in, chrome_out),
        )
        os.close(chrome_in)
        os.close(chrome_out)
        browser = cls(process, to_chrome, from_chrome)
        browser._profile = profile
        try:
            browser._attach()
        except Exception:
            browser.close()
            raise
        return browser

    _profile = ""

    def _attach(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            targets = self.command("Target.getTargets")["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError("chromium opened no page")
            time.sleep(0.1)
        attached = self.command(
            "Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.command(f"{domain}.enable", session=True)

    # ---------------------------------------------------------------- protocol
    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._closed = True
                    self._lock.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._note(message)
                        self._events.append(message)
                    self._lock.notify_all()

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console.append(f"error: {details.get('text')} {details.get('exception', '')}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append(f"{entry['level']}: {entry['text']} ({entry.get('url', '')})")

    def command(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: bool = False,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while ident not in self._replies:
                if self._closed:
                    raise BrowserError(f"chromium exited during {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no answer to {method} in {timeout} s")
                self._lock.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def _wait_event(self, method: str, since: int, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for event in self._events[since:]:
                    if event.get("method") == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"no {method} within {timeout} s")
                self._lock.wait(left)

    def _mark(self) -> int:
        with self._lock:
            return len(self._events)

    # ---------------------------------------------------------------- what a test does
    def goto(self, url: str) -> None:
        mark = self._mark()
        result = self.command("Page.navigate", {"url": url}, session=True)
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired", mark)

    def evaluate(self, expression: str) -> Any:
        result = self.command(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """Clicks the first element ``selector`` matches and waits for the next page."""
        mark = self._mark()
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        if not found:
            raise BrowserError(f"nothing matches {selector!r} on {self.url}")
        self._wait_event("Page.loadEventFired", mark)

    def click_link(self, text: str) -> None:
        """Clicks the first link whose visible text is ``text``, like a person would."""
        mark = self._mark()
        found = self.evaluate(
            "(() => { const a = [...document.querySelectorAll('a')]"
            f".find(a => a.textContent.trim() === {json.dumps(text)});"
            " if (!a) return false; a.click(); return true; })()"
        )
        if not found:
            raise BrowserError(f"no link {text!r} on {self.url}")
        self._wait_event("Page.loadEventFired", mark)

    def type_and_submit(self, selector: str, text: str) -> None:
        """Types ``text`` into the field and submits its form (as pressing Enter does)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.command(
            "Input.dispatchKeyEvent",
            {"type": "keyDown", "key": "a", "modifiers": 2},  # select what is there
            session=True,
        )
        self.command("Input.insertText", {"text": text}, session=True)
        mark = self._mark()
        self.evaluate(f"document.querySelector({json.dumps(selector)}).form.requestSubmit()")
        self._wait_event("Page.loadEventFired", mark)

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    @property
    def text(self) -> str:
        """What a person reads: the page's visible text."""
        return str(self.evaluate("document.body.innerText"))

    def links(self) -> list[tuple[str, str]]:
        """(text, absolute href) of every link on the page."""
        value = self.evaluate(
            "[...document.querySelectorAll('a')].map(a => [a.textContent.trim(), a.href])"
        )
        return [(str(t), str(h)) for t, h in value]

    def screenshot(self, path: Path, size: Sequence[int] = DESKTOP, mobile: bool = False) -> None:
        """The whole page at a viewport of ``size`` (width, height), as a PNG."""
        width, height = size
        self.command(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            session=True,
        )
        try:
            shot = self.command(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=True,
            )
        finally:
            self.command("Emulation.clearDeviceMetricsOverride", session=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def scroll_width(self, width: int) -> int:
        """How wide the page lays out at a viewport ``width``: more means sideways scrolling."""
        self.command(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": True},
            session=True,
        )
        try:
            return int(self.evaluate("document.documentElement.scrollWidth"))
        finally:
            self.command("Emulation.clearDeviceMetricsOverride", session=True)

    def errors(self) -> list[str]:
        return [c for c in self.console if c.startswith(("error", "warning", "assert"))]

    def close(self) -> None:
        try:
            if self._process.poll() is None:
                try:
                    self.command("Browser.close", timeout=5)
                except BrowserError:
                    pass
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(10)
        finally:
            for fd in (self._to, self._from):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self._profile:
                shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__: Sequence[str] = ["DESKTOP", "PHONE", "Browser", "BrowserError", "find_chromium"]
