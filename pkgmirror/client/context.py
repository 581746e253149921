"""
What every subcommand works with: the parsed arguments, the remembered state, the HTTP client,
the output streams; and the error type that carries an exit code.
"""

from __future__ import annotations

import argparse
import getpass
import http
import json
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TextIO

import attrs

from pkgmirror.client.http import HttpClient, Reply, TransportError
from pkgmirror.client.state import ClientState, StateFile

EXIT_OK = 0
EXIT_REFUSED = 1  # the server refused (its message is shown), or could not be reached
EXIT_USAGE = 2  # the command line (or what it needs locally) is wrong; nothing was sent


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def usage_error(message: str) -> CommandError:
    return CommandError(message, EXIT_USAGE)


@attrs.define
class Context:
    args: argparse.Namespace
    state_file: StateFile
    state: ClientState
    http: HttpClient
    out: TextIO
    err: TextIO
    stdin: TextIO
    now: Callable[[], float] = time.time
    read_password: Callable[[str], str] = attrs.field(
        default=attrs.Factory(lambda: lambda prompt: getpass.getpass(prompt))
    )

    @property
    def json_output(self) -> bool:
        return bool(getattr(self.args, "json", False))

    # -- state ---------------------------------------------------------------------------------

    def save(self, state: ClientState) -> None:
        self.state = state
        self.state_file.save(state)

    @property
    def server_url(self) -> str:
        if not self.state.url:
            raise usage_error("no server: run 'pkgmirror use URL' first")
        return self.state.url

    def url(self, path: str) -> str:
        """An absolute URL for a server path such as ``root/dev`` (or an absolute URL as is)."""
        if "://" in path:
            return path
        return urllib.parse.urljoin(self.server_url, path.lstrip("/"))

    @property
    def auth(self) -> tuple[str, str] | None:
        login = self.state.login
        if login is None or login.expired(self.now()):
            return None
        return (login.user, login.token)

    @property
    def user(self) -> str | None:
        return self.state.logged_in_user(self.now())

    def require_user(self) -> str:
        user = self.user
        if user is None:
            if self.state.login is not None:
                raise usage_error(
                    f"the login of {self.state.login.user!r} has expired: "
                    f"run 'pkgmirror login {self.state.login.user}'"
                )
            raise usage_error("not logged in: run 'pkgmirror login USER'")
        return user

    def index_name(self, given: str | None = None) -> str:
        """``USER/INDEX`` from ``given`` (``INDEX`` means the logged-in user's) or the current."""
        if given:
            given = given.strip("/")
            if "/" in given:
                user, _, name = given.partition("/")
                if not user or not name or "/" in name:
                    raise usage_error(f"not an index name: {given!r} (use USER/INDEX)")
                return given
            return f"{self.require_user()}/{given}"
        if not self.state.index:
            raise usage_error("no current index: run 'pkgmirror use URL/USER/INDEX' or --index")
        return self.state.index

    # -- requests ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        expect: Collection[int] = (200, 201),
        send_auth: bool = True,
        hint: bool = True,
        **kwargs: Any,
    ) -> Reply:
        """
        One request to the server; a reply outside ``expect`` becomes a :class:`CommandError`
        with the server's message (exit 1), and with ``hint`` a word on logging in after a
        401/403.
        """
        auth = self.auth if send_auth else None
        try:
            reply = self.http.request(method, self.url(path), auth=auth, **kwargs)
        except TransportError as error:
            raise CommandError(str(error)) from error
        if reply.status not in expect:
            text = self.refusal(reply, sent_auth=auth is not None, hint=hint)
            if reply.status == 401 and auth is not None and reply.headers.get("Location"):
                # devpi's (and pkgmirror's) way of saying the token is no longer good: forget
                # it, so that later commands do not send it again.
                self.save(attrs.evolve(self.state, login=None))
            raise CommandError(text)
        return reply

    def refusal(self, reply: Reply, *, sent_auth: bool, hint: bool = True) -> str:
        try:
            reason = http.HTTPStatus(reply.status).phrase
        except ValueError:
            reason = ""
        text = f"{reply.status} {reason}: {reply.message}".replace(" :", ":")
        if not hint:
            return text
        if reply.status == 401 and sent_auth:
            user = self.state.login.user if self.state.login else "USER"
            text += f"\n(the server refused your login token: run 'pkgmirror login {user}')"
        elif reply.status in (401, 403) and not sent_auth:
            if self.state.login is not None:
                text += f"\n(your login has expired: run 'pkgmirror login {self.state.login.user}')"
            else:
                text += "\n(not logged in: run 'pkgmirror login USER')"
        return text

    # -- interaction ---------------------------------------------------------------------------

    def confirm(self, question: str) -> None:
        """Return if the user agrees (or gave ``-y``); raise otherwise."""
        if getattr(self.args, "yes", False):
            return
        if not self.stdin.isatty():
            raise usage_error(f"{question} -- not asking without a terminal: pass -y to confirm")
        self.err.write(f"{question} [y/N] ")
        self.err.flush()
        if self.stdin.readline().strip().lower() not in ("y", "yes"):
            raise CommandError("cancelled, nothing changed", EXIT_REFUSED)

    def password(self, given: str | None, prompt: str, *, confirm: bool = False) -> str:
        if given is not None:
            return given
        if not self.stdin.isatty():
            raise usage_error("no password given: pass --password (not on a terminal)")
        first = self.read_password(prompt)
        if confirm and self.read_password("repeat password: ") != first:
            raise usage_error("the passwords differ")
        return first

    # -- output --------------------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def lines(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.line(text)

    def emit_json(self, value: Any) -> None:
        self.out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")

    def warn(self, text: str) -> None:
        self.err.write(text + "\n")


def table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Rows as aligned columns (the last column is not padded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(max(map(len, rows)))]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + list(row[-1:])
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def show_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
