"""
The subcommands. Each takes the :class:`Context` and returns an exit code or raises
:class:`CommandError`. Arguments are checked completely before the first request is sent.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from pkgmirror.client import cfgfiles
from pkgmirror.client.context import (
    EXIT_OK,
    EXIT_REFUSED,
    CommandError,
    Context,
    show_value,
    table,
    usage_error,
)
from pkgmirror.client.http import Reply, TransportError
from pkgmirror.client.keyvalues import (
    KeyValueError,
    apply_locally,
    as_object,
    as_patch_list,
    parse_keyvalues,
)
from pkgmirror.client.state import Login
from pkgmirror.client.upload import (
    UploadError,
    build_upload_form,
    encode_multipart,
    find_dist_files,
)
from pkgmirror.names import is_valid_project_name, normalize, version_sort_key

KEYVALUE_FEATURE = "server-keyvalue-parsing"


def _keyvalues(texts: list[str], *, allow_list_ops: bool) -> Any:
    try:
        return parse_keyvalues(texts, allow_list_ops=allow_list_ops)
    except KeyValueError as error:
        raise usage_error(str(error)) from error


def _project(name: str) -> str:
    if not is_valid_project_name(name):
        raise usage_error(f"not a project name: {name!r}")
    return normalize(name)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# -- init --------------------------------------------------------------------------------------


def _serverinit() -> Any:
    """pkgmirror.serverinit, imported only by the commands that run locally on a serverdir."""
    # Imported here so that the client commands never load the server's modules.
    try:
        return importlib.import_module("pkgmirror.serverinit")
    except ImportError as error:
        raise CommandError(f"the server part of pkgmirror is not installed: {error}") from error


def cmd_init(ctx: Context) -> int:
    serverinit = _serverinit()
    args = ctx.args
    serverdir = os.path.expanduser(args.serverdir)
    try:
        serverinit.init_serverdir(
            serverdir,
            args.root_passwd,
            args.storage,
            args.role,
            args.no_root_pypi,
            args.pypi_url or os.environ.get("PKGMIRROR_PYPI_URL") or None,
        )
    except serverinit.InitError as error:
        raise CommandError(str(error)) from error
    if ctx.json_output:
        ctx.emit_json({"serverdir": serverdir})
    else:
        ctx.line(f"initialized server directory {serverdir}")
    return EXIT_OK


# -- gc ----------------------------------------------------------------------------------------


def cmd_gc(ctx: Context) -> int:
    serverinit = _serverinit()
    args = ctx.args
    serverdir = os.path.expanduser(args.serverdir)
    try:
        report = serverinit.gc_serverdir(serverdir, args.dry_run)
    except serverinit.InitError as error:
        raise CommandError(str(error)) from error
    if ctx.json_output:
        ctx.emit_json(
            {
                "serverdir": serverdir,
                "dry_run": args.dry_run,
                "blobs": report.blobs,
                "unreferenced": list(report.unreferenced),
                "unreferenced_bytes": report.unreferenced_bytes,
                "stale_spools": report.stale_spools,
            }
        )
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    ctx.line(
        f"{report.blobs} stored files; {verb} {len(report.unreferenced)} that nothing"
        f" references ({report.unreferenced_bytes:,} bytes)"
    )
    if not args.dry_run:
        ctx.line(f"removed {report.stale_spools} partial writes left by an earlier stop")
    return EXIT_OK


# -- use ---------------------------------------------------------------------------------------


def _use_base(ctx: Context, given: str) -> str:
    """The URL (ending in ``/``) whose ``+api`` ``use`` asks, for the argument of ``use``."""
    if "://" not in given:
        if not ctx.state.url:
            raise usage_error(f"no server yet: give a full URL, not {given!r}")
        given = urllib.parse.urljoin(ctx.state.url, given.strip("/"))
    parts = urllib.parse.urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise usage_error(f"not an http(s) URL: {given!r}")
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1] == "+simple":
        segments.pop()  # people paste the simple URL pip uses
    path = "/" + "".join(f"{s}/" for s in segments)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _root_and_index(base: str, api: Mapping[str, Any]) -> tuple[str, str | None]:
    """
    The server's root URL and the ``USER/INDEX`` that ``base`` names (None for the root).

    The root's path comes from the ``login`` URL the server announces, so a server mounted
    under a path prefix works; scheme and host stay as the user gave them, as the server may
    not know the name it is reached by.
    """
    parts = urllib.parse.urlsplit(base)
    login = api.get("login")
    login_path = urllib.parse.urlsplit(login).path if isinstance(login, str) else ""
    if login_path.endswith("/+login") and parts.path.startswith(login_path[: -len("+login")]):
        root_path = login_path[: -len("+login")]
    else:
        segments = [s for s in parts.path.split("/") if s]
        root_path = "/" + "".join(f"{s}/" for s in segments[:-2]) if "index" in api else parts.path
    root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, root_path, "", ""))
    rest = [s for s in parts.path[len(root_path) :].split("/") if s]
    if not rest:
        return root, None
    if len(rest) != 2:
        raise usage_error(f"give URL or URL/USER/INDEX, not {base!r}")
    return root, "/".join(rest)


def _api(ctx: Context, base: str, *, auth: tuple[str, str] | None) -> dict[str, Any]:
    try:
        reply = ctx.http.request("GET", base + "+api", auth=auth)
        if reply.status in (401, 403) and auth is not None:
            # A server that refuses a stale token outright still tells us its layout without it;
            # authstatus then says "noauth" and the stale login is dropped below.
            auth = None
            reply = ctx.http.request("GET", base + "+api")
    except TransportError as error:
        raise CommandError(str(error)) from error
    if reply.status != 200:
        raise CommandError(ctx.refusal(reply, sent_auth=auth is not None))
    result = reply.result
    if not isinstance(result, dict):
        raise CommandError(f"{base}+api did not answer with devpi's apiconfig JSON")
    return result


def cmd_use(ctx: Context) -> int:
    args = ctx.args
    if args.set_cfg and args.unset_cfg:
        raise usage_error("--set-cfg and --unset-cfg exclude each other")
    venv: Path | None = None
    if args.venv not in (None, "-"):
        venv = Path(args.venv).expanduser().resolve()
        if not venv.is_dir():
            raise usage_error(f"--venv {args.venv}: no such directory")
    state = ctx.state
    if args.url:
        base = _use_base(ctx, args.url)
    else:
        if not state.url:
            raise usage_error("no server: run 'pkgmirror use URL'")
        base = state.url + (f"{state.index}/" if state.index else "")
    # The token goes only to the server it was made for.
    same_server = state.url is not None and base.startswith(state.url)
    auth = ctx.auth if same_server else None
    api = _api(ctx, base, auth=auth)
    root, index = _root_and_index(base, api)
    login = state.login if state.url == root else None
    authstatus = api.get("authstatus") or []
    login_note = ""
    if login is not None and auth is not None and (not authstatus or authstatus[0] != "ok"):
        login_note = " (the server no longer accepts the token: run 'pkgmirror login')"
        login = None
    elif login is not None and login.expired(ctx.now()):
        login_note = " (the login has expired: run 'pkgmirror login')"
        login = None
    # Built from the URL the user reaches the server at rather than taken from +api: behind a
    # proxy the server may know itself by another name.
    simpleindex = urllib.parse.urljoin(root, f"{index}/+simple/") if index else None
    features = api.get("features") or ()
    state = attrs.evolve(
        state,
        url=root,
        index=index,
        simpleindex=simpleindex,
        features=tuple(str(f) for f in features),
        login=login,
    )

    written: dict[str, list[str]] = {}
    notes: list[str] = []
    needs_index = venv is not None or args.set_cfg
    if needs_index and not (state.index and state.simpleindex):
        raise usage_error("no current index: use URL/USER/INDEX to set pip/uv config")
    if args.venv == "-" or (venv is not None and state.venv and Path(state.venv) != venv):
        if state.venv:
            for target in (
                cfgfiles.pip_targets(Path(state.venv)),
                cfgfiles.uv_target(Path(state.venv)),
            ):
                removed = cfgfiles.clear_config(target)
                written[str(target.path)] = []
                if removed:
                    notes.append(f"removed from {target.path}: {len(removed)} lines")
        state = attrs.evolve(state, venv=None)
    if venv is not None:
        assert state.simpleindex is not None
        search_url = urllib.parse.urljoin(root, f"{state.index}/")
        for target in (cfgfiles.pip_targets(venv), cfgfiles.uv_target(venv)):
            written[str(target.path)] = cfgfiles.write_config(target, state.simpleindex, search_url)
            if target.note:
                notes.append(target.note)
        state = attrs.evolve(state, venv=str(venv))
    if args.set_cfg or args.unset_cfg:
        for target in (cfgfiles.pip_targets(None), cfgfiles.uv_target(None)):
            if args.set_cfg:
                assert state.simpleindex is not None
                search_url = urllib.parse.urljoin(root, f"{state.index}/")
                written[str(target.path)] = cfgfiles.write_config(
                    target, state.simpleindex, search_url
                )
            else:
                removed = cfgfiles.clear_config(target)
                written[str(target.path)] = []
                if removed:
                    notes.append(f"removed from {target.path}: {len(removed)} lines")
    ctx.save(state)

    user = state.login.user if state.login else None
    if ctx.json_output:
        ctx.emit_json(
            {
                "url": state.url,
                "index": state.index,
                "simpleindex": state.simpleindex,
                "user": user,
                "features": list(state.features),
                "venv": state.venv,
                "config": written,
            }
        )
        return EXIT_OK
    rows = [["server:", root]]
    rows.append(["index:", state.index or "(none: use URL/USER/INDEX)"])
    if state.simpleindex:
        rows.append(["simple URL:", state.simpleindex])
    if state.login is not None:
        expires = state.login.expires
        valid = "" if expires is None else f", {_duration(expires - ctx.now())} left"
        rows.append(["login:", f"logged in as {state.login.user}{valid}"])
    else:
        rows.append(["login:", "not logged in" + login_note])
    if state.venv:
        rows.append(["venv:", state.venv])
    ctx.lines(table(rows))
    for path, lines in written.items():
        if lines:
            ctx.line(f"wrote {path}:")
            ctx.lines("    " + line for line in lines)
    ctx.lines(notes)
    return EXIT_OK


# -- login, logout, passwd ---------------------------------------------------------------------


def cmd_login(ctx: Context) -> int:
    args = ctx.args
    root = ctx.server_url
    password = ctx.password(args.password, f"password for {args.user} at {root}: ")
    reply = ctx.request(
        "POST",
        "+login",
        json_body={"user": args.user, "password": password},
        expect=(200,),
        send_auth=False,
        hint=False,
    )
    result = reply.result
    if not isinstance(result, dict) or not isinstance(result.get("password"), str):
        raise CommandError("the server's login reply carries no token")
    expiration = result.get("expiration")
    lifetime = float(expiration) if isinstance(expiration, int | float) else None
    expires = None if lifetime is None else ctx.now() + lifetime
    ctx.save(attrs.evolve(ctx.state, login=Login(args.user, result["password"], expires)))
    if ctx.json_output:
        ctx.emit_json({"user": args.user, "expiration": expiration})
    else:
        valid = "" if lifetime is None else f", valid for {_duration(lifetime)}"
        ctx.line(f"logged in as {args.user} at {root}{valid}")
    return EXIT_OK


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m"


def cmd_logout(ctx: Context) -> int:
    # Like devpi: the token is forgotten locally; the server keeps no session to end.
    login = ctx.state.login
    ctx.save(attrs.evolve(ctx.state, login=None))
    if ctx.json_output:
        ctx.emit_json({"user": login.user if login else None})
    elif login is None:
        ctx.line("not logged in")
    else:
        ctx.line(f"logged out {login.user}")
    return EXIT_OK


def cmd_passwd(ctx: Context) -> int:
    args = ctx.args
    current = ctx.require_user()
    user = args.user or current
    password = ctx.password(args.password, f"new password for {user}: ", confirm=True)
    reply = ctx.request("PATCH", _quote(user), json_body={"password": password})
    return _done(ctx, reply, f"password of {user} changed")


def _done(ctx: Context, reply: Reply, text: str) -> int:
    if ctx.json_output:
        data = reply.json()
        ctx.emit_json(reply.result if isinstance(data, dict) and "result" in data else data)
    else:
        ctx.line(text)
    return EXIT_OK


# -- user --------------------------------------------------------------------------------------


def cmd_user(ctx: Context) -> int:
    args = ctx.args
    if args.list:
        if args.name or args.keyvalues:
            raise usage_error("user -l takes no further arguments")
        reply = ctx.request("GET", "", expect=(200,))
        users = reply.result if isinstance(reply.result, dict) else {}
        if ctx.json_output:
            ctx.emit_json(users)
            return EXIT_OK
        rows = []
        for name in sorted(users):
            config = users[name] if isinstance(users[name], dict) else {}
            indexes = config.get("indexes") or {}
            rows.append([name, str(config.get("email") or ""), ", ".join(sorted(indexes))])
        ctx.lines(table(rows))
        return EXIT_OK
    if (args.create or args.modify or args.delete) and not args.name:
        raise usage_error("give the user NAME")
    if args.create:
        values = as_object(_keyvalues(args.keyvalues, allow_list_ops=False))
        if "password" not in values:
            values["password"] = ctx.password(
                None, f"password for new user {args.name}: ", confirm=True
            )
        reply = ctx.request("PUT", _quote(args.name), json_body=values, expect=(200, 201))
        return _done(ctx, reply, f"user {args.name} created")
    if args.modify:
        if not args.keyvalues:
            raise usage_error("user -m NAME needs key=value arguments")
        values = as_object(_keyvalues(args.keyvalues, allow_list_ops=False))
        reply = ctx.request("PATCH", _quote(args.name), json_body=values)
        return _done(ctx, reply, f"user {args.name} modified: {', '.join(sorted(values))}")
    if args.keyvalues:
        raise usage_error("key=value arguments need -c or -m")
    if args.delete:
        ctx.confirm(f"delete user {args.name} with all its indexes and files?")
        reply = ctx.request("DELETE", _quote(args.name))
        return _done(ctx, reply, f"user {args.name} deleted")
    name = args.name or ctx.require_user()
    reply = ctx.request("GET", _quote(name), expect=(200,))
    config = reply.result if isinstance(reply.result, dict) else {}
    if ctx.json_output:
        ctx.emit_json(config)
        return EXIT_OK
    rows = [
        [f"{key}:", show_value(value)] for key, value in sorted(config.items()) if key != "indexes"
    ]
    rows.append(["indexes:", ", ".join(sorted(config.get("indexes") or {}))])
    ctx.lines(table(rows))
    return EXIT_OK


# -- index -------------------------------------------------------------------------------------


def _index_args(ctx: Context) -> tuple[str | None, list[str]]:
    rest = list(ctx.args.args)
    # Index names never contain "=", so the first argument is a name exactly when it has none.
    name = rest.pop(0) if rest and "=" not in rest[0] else None
    return name, rest


def _show_index(ctx: Context, index: str, config: Mapping[str, Any]) -> None:
    if ctx.json_output:
        ctx.emit_json(dict(config))
        return
    ctx.line(f"{index}:")
    rows = [
        [f"{key}:", show_value(value)]
        for key, value in sorted(config.items())
        if key not in ("projects",)
    ]
    ctx.lines(table(rows, indent="  "))


def _index_config(ctx: Context, index: str) -> dict[str, Any]:
    reply = ctx.request("GET", f"{index}?no_projects=", expect=(200,))
    result = reply.result
    return dict(result) if isinstance(result, dict) else {}


def cmd_index(ctx: Context) -> int:
    args = ctx.args
    if sum(bool(x) for x in (args.create, args.delete, args.list)) > 1:
        raise usage_error("-c, --delete and -l exclude each other")
    if args.list:
        if len(args.args) > 1 or any("=" in a for a in args.args):
            raise usage_error("index -l takes at most a USER")
        user = args.args[0] if args.args else ctx.require_user()
        reply = ctx.request("GET", _quote(user), expect=(200,))
        indexes = reply.result.get("indexes", {}) if isinstance(reply.result, dict) else {}
        if ctx.json_output:
            ctx.emit_json(indexes)
            return EXIT_OK
        rows = []
        for name in sorted(indexes):
            config = indexes[name] if isinstance(indexes[name], dict) else {}
            rows.append(
                [
                    f"{user}/{name}",
                    str(config.get("type", "stage")),
                    f"volatile={show_value(config.get('volatile'))}",
                    f"bases={show_value(config.get('bases', []))}",
                ]
            )
        ctx.lines(table(rows))
        if not rows:
            ctx.warn(f"{user} has no indexes")
        return EXIT_OK
    name, texts = _index_args(ctx)
    if args.create:
        if name is None:
            raise usage_error("index -c needs the index NAME")
        keyvalues = _keyvalues(texts, allow_list_ops=False)
        index = ctx.index_name(name)
        reply = ctx.request("PUT", index, json_body=as_object(keyvalues))
        config = reply.result if isinstance(reply.result, dict) else _index_config(ctx, index)
        if not ctx.json_output:
            ctx.line(f"index {index} created")
        _show_index(ctx, index, config)
        return EXIT_OK
    if args.delete:
        if name is None or texts:
            raise usage_error("index --delete takes exactly the index NAME")
        index = ctx.index_name(name)
        ctx.confirm(f"delete index {index} with all its files?")
        reply = ctx.request("DELETE", index)
        return _done(ctx, reply, f"index {index} deleted")
    keyvalues = _keyvalues(texts, allow_list_ops=True)
    index = ctx.index_name(name)
    if not keyvalues:
        _show_index(ctx, index, _index_config(ctx, index))
        return EXIT_OK
    if KEYVALUE_FEATURE in ctx.state.features or not ctx.state.features:
        body: Any = as_patch_list(keyvalues)
    else:
        # Older devpi servers take the whole changed config rather than the operations.
        current = _index_config(ctx, index)
        current.pop("projects", None)
        body = apply_locally(current, keyvalues)
    reply = ctx.request("PATCH", index, json_body=body)
    config = reply.result if isinstance(reply.result, dict) else _index_config(ctx, index)
    if not ctx.json_output:
        ctx.line(f"index {index} modified")
    _show_index(ctx, index, config)
    return EXIT_OK


# -- list, remove, refresh, getjson ------------------------------------------------------------

_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z0-9._-]+)\s*(?:==\s*(?P<version>[^\s=<>!~,;]+))?\s*\Z")


def _parse_spec(spec: str) -> tuple[str, str | None]:
    match = _SPEC.match(spec)
    if match is None:
        raise usage_error(f"not NAME or NAME==VERSION: {spec!r}")
    return _project(match["name"]), match["version"]


def _links(version_data: Mapping[str, Any]) -> list[str]:
    links = version_data.get("+links") or []
    return [
        str(link["href"])
        for link in links
        if isinstance(link, dict)
        and link.get("rel", "releasefile") == "releasefile"
        and "href" in link
    ]


def cmd_list(ctx: Context) -> int:
    args = ctx.args
    index = ctx.index_name(args.index)
    if not args.spec:
        reply = ctx.request("GET", index, expect=(200,))
        result = reply.result if isinstance(reply.result, dict) else {}
        projects = sorted(str(p) for p in result.get("projects") or ())
        if ctx.json_output:
            ctx.emit_json(projects)
        elif projects:
            ctx.lines(projects)
        else:
            ctx.warn(f"no projects on {index}")
        return EXIT_OK
    project, only_version = _parse_spec(args.spec)
    reply = ctx.request("GET", f"{index}/{_quote(project)}", expect=(200,))
    versions = reply.result if isinstance(reply.result, dict) else {}
    if only_version is not None:
        if only_version not in versions:
            raise CommandError(f"{project} {only_version} not found on {index}")
        versions = {only_version: versions[only_version]}
    if ctx.json_output:
        ctx.emit_json(versions)
        return EXIT_OK
    for version in sorted(versions, key=version_sort_key, reverse=True):
        data = versions[version] if isinstance(versions[version], dict) else {}
        links = _links(data)
        ctx.line(f"{project} {version}" + ("" if links else "  (no files)"))
        ctx.lines(f"  {href}" for href in links)
    return EXIT_OK


def cmd_remove(ctx: Context) -> int:
    args = ctx.args
    project, version = _parse_spec(args.spec)
    index = ctx.index_name(args.index)
    # As devpi-client does: look first (this index only), so the question names what goes.
    reply = ctx.request("GET", f"{index}/{_quote(project)}/?ignore_bases=", expect=(200,))
    versions = reply.result if isinstance(reply.result, dict) else {}
    if version is not None and version not in versions:
        raise CommandError(f"{project} {version} not found on {index}")
    doomed = [version] if version is not None else sorted(versions, key=version_sort_key)
    if not ctx.json_output:
        ctx.line(f"about to remove from {index}:")
        for v in doomed:
            data = versions.get(v) if isinstance(versions.get(v), dict) else {}
            files = _links(data or {})
            ctx.line(f"  {project} {v}  ({len(files)} files)")
    ctx.confirm(f"remove {project}{' ' + version if version else ''} from {index}?")
    path = f"{index}/{_quote(project)}" + (f"/{_quote(version)}" if version else "")
    reply = ctx.request("DELETE", path)
    return _done(ctx, reply, reply.message if reply.json() else f"removed {project}")


def cmd_refresh(ctx: Context) -> int:
    args = ctx.args
    project = _project(args.project)
    index = ctx.index_name(args.index)
    # devpi-client posts without auth and with Accept */*; the answer is a 302 to the page.
    ctx.request(
        "POST",
        f"{index}/+simple/{_quote(project)}/refresh",
        accept="*/*",
        send_auth=False,
        follow_redirects=False,
        expect=(200, 204, 302, 303),
    )
    if ctx.json_output:
        ctx.emit_json({"index": index, "project": project, "refreshed": True})
    else:
        ctx.line(f"refreshed {project} on {index}")
    return EXIT_OK


def cmd_getjson(ctx: Context) -> int:
    path = ctx.args.path
    reply = ctx.request("GET", path, expect=range(0, 1000))
    ctx.out.write(reply.body.decode("utf-8", "replace"))
    if not reply.body.endswith(b"\n"):
        ctx.line()
    if not reply.ok:
        ctx.warn(ctx.refusal(reply, sent_auth=ctx.auth is not None))
        return EXIT_REFUSED
    return EXIT_OK


# -- upload ------------------------------------------------------------------------------------


def _build_here(ctx: Context, outdir: Path) -> list[Path]:
    project_dir = Path.cwd()
    if not (project_dir / "pyproject.toml").exists() and not (project_dir / "setup.py").exists():
        raise usage_error("no FILES given and no pyproject.toml or setup.py here to build")
    if importlib.util.find_spec("build") is None:
        raise usage_error(
            "no FILES given and the 'build' package is not installed: "
            "build the project yourself and pass the files"
        )
    ctx.warn(f"building {project_dir} with 'python -m build'")
    options = [
        flag
        for flag, wanted in (
            ("--no-isolation", ctx.args.no_isolation),
            ("--sdist", ctx.args.sdist),
            ("--wheel", ctx.args.wheel),
        )
        if wanted
    ]
    done = subprocess.run(
        [sys.executable, "-m", "build", *options, "--outdir", str(outdir), str(project_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise CommandError(f"python -m build failed:\n{done.stdout[-4000:]}")
    return sorted(outdir.iterdir())


def cmd_upload(ctx: Context) -> int:
    args = ctx.args
    index = ctx.index_name(args.index)
    with tempfile.TemporaryDirectory(prefix="pkgmirror-build-") as tmp:
        if args.files:
            paths = find_dist_files(Path(f) for f in args.files)
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise usage_error(f"no such file: {', '.join(missing)}")
        else:
            paths = _build_here(ctx, Path(tmp))
        if not paths:
            raise usage_error("nothing to upload")
        # Every file is checked before the first one is sent.
        try:
            forms = [build_upload_form(path) for path in paths]
        except UploadError as error:
            raise usage_error(str(error)) from error
        uploaded = []
        for form in forms:
            if args.dry_run:
                ctx.line(f"would upload {form.filename} to {index}")
                continue
            body, content_type = encode_multipart(form)
            try:
                reply = ctx.request(
                    "POST",
                    f"{index}/",
                    body=body,
                    content_type=content_type,
                    accept="*/*",
                    follow_redirects=False,
                    expect=(200, 201),
                )
            except CommandError as error:
                raise CommandError(f"{form.filename}: {error.message}") from error
            uploaded.append({"filename": form.filename, "index": index, "status": reply.status})
            if not ctx.json_output:
                ctx.line(f"uploaded {form.filename} to {index}")
    if ctx.json_output:
        ctx.emit_json(uploaded)
    return EXIT_OK
