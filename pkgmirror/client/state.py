"""
What the command line remembers between runs: the server, the index, the login token.

Stored as JSON in ``$PKGMIRROR_CLIENTDIR/current.json`` (default ``~/.pkgmirror/client``), mode
0600 because it holds a login token.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

STATE_VERSION = 1
STATE_FILENAME = "current.json"


def default_clientdir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get("PKGMIRROR_CLIENTDIR")
    if configured:
        return Path(configured).expanduser()
    return Path("~/.pkgmirror/client").expanduser()


@attrs.frozen
class Login:
    user: str
    token: str
    # POSIX seconds after which the server no longer accepts the token (None: unknown).
    expires: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@attrs.frozen
class ClientState:
    """
    ``url`` is the server's root URL, always ending in ``/``. ``index`` is ``USER/INDEX`` or None.
    ``simpleindex`` and ``features`` are what the server's ``+api`` said last time. ``venv`` is
    the directory whose pip/uv config ``pkgmirror use --venv`` wrote.
    """

    url: str | None = None
    index: str | None = None
    simpleindex: str | None = None
    features: tuple[str, ...] = ()
    login: Login | None = None
    venv: str | None = None

    def logged_in_user(self, now: float | None = None) -> str | None:
        if self.login is None:
            return None
        if self.login.expired(time.time() if now is None else now):
            return None
        return self.login.user

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "url": self.url,
            "index": self.index,
            "simpleindex": self.simpleindex,
            "features": list(self.features),
            "login": None if self.login is None else attrs.asdict(self.login),
            "venv": self.venv,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientState:
        login = data.get("login")
        return cls(
            url=_str_or_none(data.get("url")),
            index=_str_or_none(data.get("index")),
            simpleindex=_str_or_none(data.get("simpleindex")),
            features=tuple(str(f) for f in data.get("features") or ()),
            login=(
                Login(
                    user=str(login["user"]),
                    token=str(login["token"]),
                    expires=None if login.get("expires") is None else float(login["expires"]),
                )
                if isinstance(login, Mapping) and "user" in login and "token" in login
                else None
            ),
            venv=_str_or_none(data.get("venv")),
        )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


@attrs.define
class StateFile:
    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILENAME

    def load(self) -> ClientState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ClientState()
        try:
            data = json.loads(text)
        except ValueError:
            # A damaged state file should not lock the user out; `use URL` writes a new one.
            return ClientState()
        if not isinstance(data, dict):
            return ClientState()
        return ClientState.from_json(data)

    def save(self, state: ClientState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written to a 0600 temporary file and renamed, so the token is never readable by others,
        # not even for a moment, and a crash never leaves half a file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".current-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state.to_json(), handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
