from __future__ import annotations

import configparser
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgmirror.client import cfgfiles

INDEX = "http://127.0.0.1:3141/root/dev/+simple/"
SEARCH = "http://127.0.0.1:3141/root/dev/"


def read_pip(text: str) -> configparser.RawConfigParser:
    # pip reads its files with RawConfigParser, which refuses a key given twice in a section.
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_pip_config_from_nothing() -> None:
    text = cfgfiles.set_pip_config("", INDEX, SEARCH)
    parser = read_pip(text)
    assert parser.get("global", "index-url") == INDEX
    assert parser.get("global", "trusted-host") == "127.0.0.1"
    assert parser.get("search", "index") == SEARCH
    assert cfgfiles.strip_managed(text) == ""


def test_https_index_needs_no_trusted_host() -> None:
    parser = read_pip(cfgfiles.set_pip_config("", "https://pkgs.example.test/root/dev/+simple/"))
    assert not parser.has_option("global", "trusted-host")


USER_PIP_CONF = """\
[global]
timeout = 30
index_url = http://other.example.test/simple/
trusted-host = other.example.test
    more.example.test

[install]
no-cache-dir = true
"""


def test_pip_config_keeps_the_users_settings_and_restores_replaced_ones() -> None:
    text = cfgfiles.set_pip_config(USER_PIP_CONF, INDEX, SEARCH)
    parser = read_pip(text)
    assert parser.get("global", "index-url") == INDEX
    assert parser.get("global", "timeout") == "30"
    assert parser.get("install", "no-cache-dir") == "true"
    assert cfgfiles.managed_lines(text) == [
        f"index-url = {INDEX}",
        "trusted-host = 127.0.0.1",
        "[search]",
        f"index = {SEARCH}",
    ]
    assert cfgfiles.strip_managed(text) == USER_PIP_CONF


def test_setting_twice_is_the_same_as_once() -> None:
    once = cfgfiles.set_pip_config(USER_PIP_CONF, INDEX, SEARCH)
    assert cfgfiles.set_pip_config(once, INDEX, SEARCH) == once
    other = "http://127.0.0.1:4000/alice/x/+simple/"
    moved = cfgfiles.set_pip_config(once, other, None)
    assert read_pip(moved).get("global", "index-url") == other
    assert cfgfiles.strip_managed(moved) == USER_PIP_CONF


ini_lines = st.sampled_from(
    [
        "[global]",
        "[search]",
        "[install]",
        "timeout = 5",
        "index-url = http://x.test/simple/",
        "index = http://x.test/",
        "trusted-host = x.test",
        "# a comment",
        "",
    ]
)


@given(st.lists(ini_lines, max_size=12))
def test_removing_our_lines_gives_back_exactly_the_users_file(lines: list[str]) -> None:
    original = "\n".join(lines) + ("\n" if lines else "")
    text = cfgfiles.set_pip_config(original, INDEX, SEARCH)
    assert cfgfiles.strip_managed(text) == original


USER_UV_TOML = """\
index-url = "http://other.example.test/simple/"
native-tls = true

[[index]]
name = "internal"
url = "http://internal.example.test/simple/"
default = true

[[index]]
name = "extra"
url = "http://extra.example.test/simple/"
"""


def test_uv_config_makes_ours_the_only_default_index() -> None:
    text = cfgfiles.set_uv_config(USER_UV_TOML, INDEX)
    data = tomllib.loads(text)
    assert "index-url" not in data
    assert data["native-tls"] is True
    defaults = [index["url"] for index in data["index"] if index.get("default")]
    assert defaults == [INDEX]
    assert [index["url"] for index in data["index"]] == [
        "http://extra.example.test/simple/",
        INDEX,
    ]
    assert cfgfiles.strip_managed(text) == USER_UV_TOML
    assert cfgfiles.set_uv_config(text, INDEX) == text


def test_write_and_clear_files(tmp_path: Path) -> None:
    target = cfgfiles.pip_targets(tmp_path / "venv")
    written = cfgfiles.write_config(target, INDEX, SEARCH)
    assert target.path == tmp_path / "venv" / "pip.conf"
    assert f"index-url = {INDEX}" in written
    assert cfgfiles.clear_config(target) == written
    assert not target.path.exists(), "a file holding only our lines goes away with them"
    assert cfgfiles.clear_config(target) == []


def test_user_config_locations(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert cfgfiles.pip_targets(None, env, tmp_path).path == tmp_path / "xdg/pip/pip.conf"
    assert cfgfiles.uv_target(None, env, tmp_path).path == tmp_path / "xdg/uv/uv.toml"
    assert cfgfiles.pip_targets(None, {}, tmp_path).path == tmp_path / ".config/pip/pip.conf"
    (tmp_path / ".pip").mkdir()
    (tmp_path / ".pip/pip.conf").write_text("")
    assert cfgfiles.pip_targets(None, {}, tmp_path).path == tmp_path / ".pip/pip.conf"
    env = {"PIP_CONFIG_FILE": "/dev/null", "UV_CONFIG_FILE": str(tmp_path / "u.toml")}
    assert cfgfiles.pip_targets(None, env, tmp_path).path == tmp_path / ".pip/pip.conf"
    assert cfgfiles.uv_target(None, env, tmp_path).path == tmp_path / "u.toml"


@pytest.mark.skipif(
    shutil.which("uv") is None and not Path("/work/venv/bin/uv").exists(), reason="no uv"
)
def test_uv_itself_reads_the_index_we_wrote(tmp_path: Path) -> None:
    uv = shutil.which("uv") or "/work/venv/bin/uv"
    target = cfgfiles.uv_target(tmp_path)
    cfgfiles.write_config(target, INDEX, None)
    # --show-settings prints the resolved settings and exits before any network access.
    done = subprocess.run(
        [uv, "pip", "install", "--config-file", str(target.path), "--show-settings", "demo"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
        cwd=tmp_path,
    )
    assert "root/dev/+simple" in done.stdout
