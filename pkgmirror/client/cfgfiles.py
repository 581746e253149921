"""
pip's ``pip.conf`` and uv's ``uv.toml``, pointed at an index by ``pkgmirror use``.

What we write sits between two marker comments, so it can be found and removed again
(``pkgmirror use --venv -`` / ``--unset-cfg``) without touching anything else. A setting of the
user's that would clash with ours (pip refuses a file with a key twice; uv would keep using the
other default index) is commented out with a prefix and restored when our lines go.

Where the files are (checked against uv 0.13 with ``uv pip install --show-settings``):

* pip reads ``<venv>/pip.conf`` (its "site" config, ``sys.prefix``) for a pip running in that
  venv, and the user file ``$XDG_CONFIG_HOME/pip/pip.conf`` (``~/.config/pip/pip.conf``; the
  legacy ``~/.pip/pip.conf`` when that exists), or ``$PIP_CONFIG_FILE``.
* uv reads ``uv.toml`` only from the current directory and its parents (the project),
  ``$XDG_CONFIG_HOME/uv/uv.toml`` (user), ``/etc/uv/uv.toml``, or ``$UV_CONFIG_FILE``. It never
  reads a config file from the venv it installs into: a ``<venv>/uv.toml`` only counts when uv
  runs inside that directory, otherwise it needs ``UV_CONFIG_FILE=<venv>/uv.toml`` (we say so).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

BEGIN = "# >>> pkgmirror use >>>"
END = "# <<< pkgmirror use <<<"
DISABLED = "# pkgmirror use disabled: "

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_TOML_TABLE = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*(?P<key>[A-Za-z0-9_-]+)\s*=\s*(?P<value>.*)$")


@attrs.frozen
class ConfigTarget:
    """One file ``pkgmirror use`` writes, and the note to print about it (if any)."""

    kind: str  # "pip" or "uv"
    path: Path
    note: str | None = None


def pip_targets(
    venv: Path | None, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> ConfigTarget:
    env = os.environ if environ is None else environ
    if venv is not None:
        return ConfigTarget("pip", venv / "pip.conf")
    configured = env.get("PIP_CONFIG_FILE")
    if configured and configured != os.devnull:
        return ConfigTarget("pip", Path(configured).expanduser())
    home = Path.home() if home is None else home
    legacy = home / ".pip" / "pip.conf"
    if legacy.exists():
        return ConfigTarget("pip", legacy)
    return ConfigTarget("pip", _config_home(env, home) / "pip" / "pip.conf")


def uv_target(
    venv: Path | None, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> ConfigTarget:
    env = os.environ if environ is None else environ
    if venv is not None:
        path = venv / "uv.toml"
        return ConfigTarget(
            "uv",
            path,
            note=(
                f"uv reads {path} only when run inside {venv}; elsewhere use "
                f"UV_CONFIG_FILE={path} (or --set-cfg for your user config)"
            ),
        )
    configured = env.get("UV_CONFIG_FILE")
    if configured:
        return ConfigTarget("uv", Path(configured).expanduser())
    home = Path.home() if home is None else home
    return ConfigTarget("uv", _config_home(env, home) / "uv" / "uv.toml")


def _config_home(env: Mapping[str, str], home: Path) -> Path:
    configured = env.get("XDG_CONFIG_HOME")
    return Path(configured) if configured else home / ".config"


# -- the marked blocks -------------------------------------------------------------------------


def strip_managed(text: str) -> str:
    """``text`` without our blocks, with the user's lines we disabled enabled again."""
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if stripped == BEGIN:
            inside = True
            continue
        if stripped == END:
            inside = False
            continue
        if inside:
            continue
        if line.startswith(DISABLED):
            line = line[len(DISABLED) :]
        out.append(line)
    return "".join(out)


def managed_lines(text: str) -> list[str]:
    """The lines inside our blocks: what ``pkgmirror use`` shows it wrote."""
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        if line == BEGIN:
            inside = True
        elif line == END:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def _block(lines: Iterable[str]) -> list[str]:
    return [BEGIN + "\n", *(line + "\n" for line in lines), END + "\n"]


def _ensure_newline(lines: list[str]) -> None:
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"


# -- pip.conf (INI) ----------------------------------------------------------------------------


def _ini_key(line: str) -> str | None:
    if not line.strip() or line[0] in " \t#;[":
        return None
    for separator in ("=", ":"):
        if separator in line:
            # pip (configparser) lower-cases keys and treats "_" and "-" alike.
            return line.split(separator, 1)[0].strip().lower().replace("_", "-")
    return None


def _set_ini_section(lines: list[str], section: str, values: Mapping[str, str]) -> list[str]:
    start = None
    for i, line in enumerate(lines):
        match = _SECTION.match(line)
        if match and match["name"].strip() == section:
            start = i
            break
    if start is None:
        _ensure_newline(lines)
        return lines + _block([f"[{section}]", *(f"{k} = {v}" for k, v in values.items())])
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if _SECTION.match(lines[i]):
            end = i
            break
    body = lines[start + 1 : end]
    disabling = False
    for i, line in enumerate(body):
        key = _ini_key(line)
        if key is not None:
            disabling = key in values
        elif not (line.strip() and line[0] in " \t"):
            disabling = False  # only continuation lines belong to the key before them
        if disabling:
            body[i] = DISABLED + line
    _ensure_newline(body)
    block = _block(f"{k} = {v}" for k, v in values.items())
    return [*lines[: start + 1], *block, *body, *lines[end:]]


def set_pip_config(text: str, index_url: str, search_url: str | None = None) -> str:
    """
    pip.conf ``text`` with ``[global] index-url`` (and ``trusted-host`` for a plain-http
    index) and ``[search] index`` pointing at our index. Idempotent.
    """
    lines = strip_managed(text).splitlines(keepends=True)
    global_values = {"index-url": index_url}
    parsed = urllib.parse.urlsplit(index_url)
    if parsed.scheme == "http" and parsed.hostname:
        # pip ignores plain-http indexes on hosts it does not trust (loopback excepted).
        global_values["trusted-host"] = parsed.hostname
    lines = _set_ini_section(lines, "global", global_values)
    if search_url:
        lines = _set_ini_section(lines, "search", {"index": search_url})
    return "".join(lines)


# -- uv.toml -----------------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def set_uv_config(text: str, index_url: str) -> str:
    """
    uv.toml ``text`` with our index as uv's default index (``[[index]] ... default = true``).

    Our block goes at the end: a TOML table runs to the next header, so anywhere else it would
    swallow the user's top-level keys that follow. The user's deprecated top-level
    ``index-url`` and any other default ``[[index]]`` table are disabled while ours is there.
    """
    lines = strip_managed(text).splitlines(keepends=True)
    tables: list[tuple[int, int, str]] = []  # (start, end, name); name "" = top level
    start, name = 0, ""
    for i, line in enumerate(lines):
        match = _TOML_TABLE.match(line)
        if match:
            tables.append((start, i, name))
            start, name = i, match["name"]
    tables.append((start, len(lines), name))
    disable: set[int] = set()
    for start, end, name in tables:
        keys = {}
        for i in range(start, end):
            match = _TOML_KEY.match(lines[i])
            if match:
                keys[match["key"]] = (i, match["value"].split("#", 1)[0].strip())
        if name == "" and "index-url" in keys:
            disable.add(keys["index-url"][0])
        if name == "index" and keys.get("default", (0, ""))[1] == "true":
            disable.update(range(start, end))
    out = [DISABLED + line if i in disable else line for i, line in enumerate(lines)]
    _ensure_newline(out)
    return "".join(
        out + _block(["[[index]]", f"url = {_toml_string(index_url)}", "default = true"])
    )


# -- files -------------------------------------------------------------------------------------


def write_config(target: ConfigTarget, index_url: str, search_url: str | None) -> list[str]:
    """Write our lines into ``target``; return them."""
    old = target.path.read_text(encoding="utf-8") if target.path.exists() else ""
    if target.kind == "pip":
        new = set_pip_config(old, index_url, search_url)
    else:
        new = set_uv_config(old, index_url)
    target.path.parent.mkdir(parents=True, exist_ok=True)
    target.path.write_text(new, encoding="utf-8")
    return managed_lines(new)


def clear_config(target: ConfigTarget) -> list[str]:
    """Remove our lines from ``target`` (and the file, if nothing else is left); return them."""
    if not target.path.exists():
        return []
    old = target.path.read_text(encoding="utf-8")
    removed = managed_lines(old)
    if not removed and DISABLED not in old:
        return []
    new = strip_managed(old)
    if new.strip():
        target.path.write_text(new, encoding="utf-8")
    else:
        target.path.unlink()
    return removed
