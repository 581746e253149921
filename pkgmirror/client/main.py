"""
``pkgmirror``: the command line for a pkgmirror (or devpi) server, with devpi-client's verbs.

Exit codes: 0 ok; 1 the server refused (its message is shown) or could not be reached;
2 usage: a bad command line, a malformed ``key=value``, or missing local set-up (no server, no
index, not logged in). With exit code 2 no request has been sent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from pkgmirror import __version__
from pkgmirror.client import commands
from pkgmirror.client.context import EXIT_USAGE, CommandError, Context
from pkgmirror.client.http import HttpClient
from pkgmirror.client.state import StateFile, default_clientdir

Command = Callable[[Context], int]


def _common() -> argparse.ArgumentParser:
    # Accepted before and after the subcommand; SUPPRESS keeps a subcommand's default from
    # overwriting a --json given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the server's JSON result instead of text for people",
    )
    common.add_argument(
        "--clientdir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where the client state lives (default $PKGMIRROR_CLIENTDIR or ~/.pkgmirror/client)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="pkgmirror",
        description="Manage a pkgmirror (devpi-compatible) package index server.",
        epilog="exit codes: 0 ok, 1 refused by the server, 2 usage error (nothing sent)",
    )
    parser.add_argument("--version", action="version", version=f"pkgmirror {__version__}")
    parser.add_argument(
        "--json", action="store_true", default=False, help="JSON output for scripts"
    )
    parser.add_argument(
        "--clientdir",
        default=None,
        metavar="DIR",
        help="client state directory (default $PKGMIRROR_CLIENTDIR or ~/.pkgmirror/client)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("init", commands.cmd_init, "create a server directory (runs locally, no server needed)")
    p.add_argument("--serverdir", default="~/.pkgmirror/server", metavar="DIR")
    p.add_argument("--root-passwd", default=None, metavar="PW", help="password of user root")
    p.add_argument("--storage", default="sqlite", help="storage backend (default sqlite)")
    p.add_argument("--role", default="standalone", help="server role (default standalone)")
    p.add_argument("--no-root-pypi", action="store_true", help="do not create the root/pypi mirror")
    p.add_argument(
        "--pypi-url",
        default=None,
        metavar="URL",
        help="upstream simple index of root/pypi (default $PKGMIRROR_PYPI_URL)",
    )

    p = add(
        "gc",
        commands.cmd_gc,
        "remove stored files nothing references (runs locally, with the server stopped)",
    )
    p.add_argument("--serverdir", default="~/.pkgmirror/server", metavar="DIR")
    p.add_argument("--dry-run", action="store_true", help="report what would go, remove nothing")

    p = add("use", commands.cmd_use, "choose the server and index; show login state and URLs")
    p.add_argument("url", nargs="?", metavar="URL[/USER/INDEX]", help="or USER/INDEX on the server")
    p.add_argument(
        "--set-cfg",
        action="store_true",
        help="point your user pip.conf and uv.toml at the index",
    )
    p.add_argument(
        "--unset-cfg", action="store_true", help="remove what --set-cfg wrote to pip.conf/uv.toml"
    )
    p.add_argument(
        "--venv",
        metavar="DIR",
        help="point DIR/pip.conf and DIR/uv.toml at the index; '-' removes that again",
    )

    p = add("login", commands.cmd_login, "log in to the current server")
    p.add_argument("user")
    p.add_argument("--password", default=None, help="(asked for when not given)")

    add("logout", commands.cmd_logout, "forget the login token")

    p = add("passwd", commands.cmd_passwd, "change a password (default: your own)")
    p.add_argument("user", nargs="?")
    p.add_argument("--password", default=None, help="the new password (asked for when not given)")

    p = add("user", commands.cmd_user, "show, create, modify, list or delete users")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-c", "--create", action="store_true", help="NAME password=.. email=..")
    group.add_argument("-m", "--modify", action="store_true", help="NAME key=value..")
    group.add_argument("-l", "--list", action="store_true", help="all users")
    group.add_argument("--delete", action="store_true", help="NAME")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("name", nargs="?")
    p.add_argument("keyvalues", nargs="*", metavar="key=value")

    p = add("index", commands.cmd_index, "show, create, modify, list or delete indexes")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-c", "--create", action="store_true", help="NAME key=value..")
    group.add_argument("-l", "--list", action="store_true", help="indexes of USER (default: you)")
    group.add_argument("--delete", action="store_true", help="NAME")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "args",
        nargs="*",
        metavar="[NAME] key=value|key+=value|key-=value",
        help="NAME is INDEX (yours) or USER/INDEX; default the current index",
    )

    p = add("list", commands.cmd_list, "projects of the index, or versions and files of one")
    p.add_argument("spec", nargs="?", metavar="PROJECT[==VERSION]")
    p.add_argument("--index", metavar="USER/INDEX", help="default: the current index")

    p = add("remove", commands.cmd_remove, "remove a project or one version from the index")
    p.add_argument("spec", metavar="NAME[==VERSION]")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--index", metavar="USER/INDEX", help="default: the current index")

    p = add("upload", commands.cmd_upload, "upload wheels and sdists (default: build the cwd)")
    p.add_argument("files", nargs="*", metavar="FILE", help="files, or directories holding them")
    p.add_argument("--index", metavar="USER/INDEX", help="default: the current index")
    p.add_argument("--dry-run", action="store_true", help="check the files, send nothing")
    p.add_argument("--sdist", action="store_true", help="(building) only the sdist")
    p.add_argument("--wheel", action="store_true", help="(building) only the wheel")
    p.add_argument(
        "--no-isolation",
        action="store_true",
        help="(building) use the installed build backend instead of an isolated environment",
    )

    p = add("getjson", commands.cmd_getjson, "print the JSON the server answers for PATH")
    p.add_argument("path", metavar="PATH", help="a path on the server (/root/pypi) or a URL")

    p = add("refresh", commands.cmd_refresh, "make mirrors of the index refetch a project")
    p.add_argument("project")
    p.add_argument("--index", metavar="USER/INDEX", help="default: the current index")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        # argparse exits 2 on usage errors and 0 for --help/--version; return, don't exit, so
        # main() can be called from tests and other code.
        return int(exit.code) if isinstance(exit.code, int) else EXIT_USAGE
    state_file = StateFile(
        Path(args.clientdir).expanduser() if args.clientdir else default_clientdir()
    )
    ctx = Context(
        args=args,
        state_file=state_file,
        state=state_file.load(),
        http=HttpClient(),
        out=out,
        err=err,
        stdin=sys.stdin if stdin is None else stdin,
    )
    try:
        return int(args.func(ctx))
    except CommandError as error:
        err.write(f"pkgmirror {args.command}: {error.message}\n")
        return error.exit_code
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
