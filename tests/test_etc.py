"""
The service files in etc/: they parse as their tools parse them, and they run the server the
way a supervisor needs it run (foreground, no pid file, restarted only after a failure).
"""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Sequence
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parent.parent
ETC = ROOT / "etc"
PLIST = ETC / "launchd" / "org.pkgmirror.server.plist"
UNIT = ETC / "systemd" / "pkgmirror.service"
ENV_FILE = ETC / "pkgmirror.example.env"
PIXI = ETC / "pixi.toml"
README = ETC / "README.md"

# The server's default --shutdown-timeout in seconds: every supervisor must wait longer.
SERVER_SHUTDOWN_TIMEOUT = 10


def wrapper_command_line() -> Callable[[Sequence[str]], list[str]]:
    """The launchd wrapper's own rule for the command it runs."""
    loader = SourceFileLoader("pkgmirror_launchd", str(ROOT / "bin" / "pkgmirror-launchd"))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return cast(Callable[[Sequence[str]], list[str]], module.command_line)


def assert_foreground_twistd_without_pidfile(argv: Sequence[str]) -> None:
    assert Path(argv[0]).name == "twistd", argv
    assert "pkgmirror" in argv, argv
    twistd_options = argv[1 : list(argv).index("pkgmirror")]
    # A daemonising twistd exits at once: supervisors would see a crash and restart it.
    assert "-n" in twistd_options or "--nodaemon" in twistd_options, argv
    assert "--pidfile=" in twistd_options, argv


# --- launchd ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plist() -> dict[str, Any]:
    with PLIST.open("rb") as stream:
        loaded: dict[str, Any] = plistlib.load(stream)  # strict XML, as plutil -lint
    return loaded


def test_plist_label_matches_its_file_name(plist: dict[str, Any]) -> None:
    assert plist["Label"] == "org.pkgmirror.server"
    assert PLIST.name == plist["Label"] + ".plist"


def test_plist_runs_the_server_through_the_wrapper(plist: dict[str, Any]) -> None:
    arguments = plist["ProgramArguments"]
    assert all(isinstance(each, str) for each in arguments)
    assert arguments[0].startswith("/")  # launchd does not search PATH
    assert arguments[0].endswith("/pkgmirror-launchd")
    command = wrapper_command_line()(arguments[1:])
    assert command[0].startswith("/")
    assert_foreground_twistd_without_pidfile(command)
    assert command[command.index("--serverdir") + 1].startswith("/")


def test_plist_restarts_only_after_a_failure(plist: dict[str, Any]) -> None:
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["RunAtLoad"] is True


def test_plist_lets_the_wrapper_stop_the_server_before_launchd_kills_the_wrapper(
    plist: dict[str, Any],
) -> None:
    kill_after = float(plist["EnvironmentVariables"]["PKGMIRROR_LAUNCHD_KILL_AFTER"])
    assert SERVER_SHUTDOWN_TIMEOUT < kill_after < plist["ExitTimeOut"]


def test_plist_logs_to_files(plist: dict[str, Any]) -> None:
    assert plist["StandardOutPath"].startswith("/")
    assert plist["StandardErrorPath"].startswith("/")


def test_plist_marks_every_path_to_edit() -> None:
    lines = [line.strip() for line in PLIST.read_text().splitlines() if line.strip()]
    placeholders = [i for i, line in enumerate(lines) if "/Users/YOU" in line]
    assert placeholders
    for i in placeholders:
        if lines[i].startswith("<string>"):
            assert "EDIT" in lines[i - 1], f"unmarked path to edit: {lines[i]}"


# --- systemd ----------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}}; keys may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def service(unit: dict[str, dict[str, list[str]]], key: str) -> str:
    return unit["Service"][key][-1]


def unit_defaults(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    defaults = {}
    for assignment in unit["Service"]["Environment"]:
        name, _, value = assignment.partition("=")
        defaults[name] = value
    return defaults


def test_unit_runs_twistd_in_the_foreground(unit: dict[str, dict[str, list[str]]]) -> None:
    assert service(unit, "Type") == "simple"
    argv = shlex.split(service(unit, "ExecStart"))
    assert argv[0].startswith("/")
    assert_foreground_twistd_without_pidfile(argv)


def test_unit_restarts_only_after_a_failure(unit: dict[str, dict[str, list[str]]]) -> None:
    assert service(unit, "Restart") == "on-failure"


def test_unit_waits_for_the_server_to_stop(unit: dict[str, dict[str, list[str]]]) -> None:
    timeout = service(unit, "TimeoutStopSec")
    assert timeout.endswith("s")
    assert float(timeout[:-1]) > SERVER_SHUTDOWN_TIMEOUT


def test_unit_runs_unprivileged_and_confined(unit: dict[str, dict[str, list[str]]]) -> None:
    assert service(unit, "User") not in ("", "root")
    assert service(unit, "NoNewPrivileges") == "yes"
    assert service(unit, "ProtectSystem") == "strict"
    assert service(unit, "PrivateTmp") == "yes"
    assert service(unit, "ProtectHome") in ("yes", "read-only", "tmpfs")
    assert service(unit, "CapabilityBoundingSet") == ""


def test_unit_may_write_to_the_server_directory(unit: dict[str, dict[str, list[str]]]) -> None:
    serverdir = unit_defaults(unit)["PKGMIRROR_SERVERDIR"]
    writable = " ".join(unit["Service"]["ReadWritePaths"]).split()
    assert any(serverdir == path or serverdir.startswith(path + "/") for path in writable)


def test_every_variable_the_unit_uses_has_a_default(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", service(unit, "ExecStart")))
    assert used
    assert used <= set(unit_defaults(unit))


def test_example_environment_file_sets_only_what_the_unit_reads(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    assert any(path.endswith("pkgmirror.env") for path in unit["Service"]["EnvironmentFile"])
    names = []
    for line in ENV_FILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # systemd's EnvironmentFile= syntax, kept to the part every reader agrees on.
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S*(?: \S+)*)", line)
        assert match, f"not a plain VARIABLE=value line: {line!r}"
        names.append(match[1])
    assert names
    assert set(names) <= set(unit_defaults(unit))


def test_first_start_upstream_variable_is_the_one_the_server_reads(
    unit: dict[str, dict[str, list[str]]], plist: dict[str, Any]
) -> None:
    from pkgmirror.serverinit import PYPI_URL_ENV

    settings = [
        line.partition("=")[0]
        for line in ENV_FILE.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert PYPI_URL_ENV in settings
    assert PYPI_URL_ENV in unit_defaults(unit)
    # In the plist it is a commented-out example: launchd has no empty-means-unset.
    assert PYPI_URL_ENV not in plist["EnvironmentVariables"]
    assert f"<key>{PYPI_URL_ENV}</key>" in PLIST.read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at a twistd that does.
    twistd = shutil.which("twistd") or "/bin/true"
    argv0 = shlex.split(service(parse_unit(UNIT.read_text()), "ExecStart"))[0]
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(argv0, twistd))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    about_unit = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if UNIT.name in line or str(copy) in line
    ]
    assert result.returncode == 0, result.stderr
    assert about_unit == []


# --- pixi -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pixi() -> dict[str, Any]:
    with PIXI.open("rb") as stream:
        return tomllib.load(stream)


def test_pixi_manifest_installs_pkgmirror(pixi: dict[str, Any]) -> None:
    workspace = pixi["workspace"]
    assert workspace["name"]
    assert workspace["channels"]
    assert workspace["platforms"]
    assert "python" in pixi["dependencies"]
    assert "pkgmirror" in pixi["pypi-dependencies"]


def test_pixi_tasks_run_the_server(pixi: dict[str, Any]) -> None:
    tasks = pixi["tasks"]
    for task in tasks.values():
        assert task["description"]
    assert_foreground_twistd_without_pidfile(shlex.split(tasks["serve"]["cmd"]))
    launchd = shlex.split(tasks["serve-launchd"]["cmd"])
    assert launchd[0] == "pkgmirror-launchd"
    assert_foreground_twistd_without_pidfile(wrapper_command_line()(launchd[1:]))


# --- README -----------------------------------------------------------------------------


def test_readme_explains_every_file_in_etc() -> None:
    text = README.read_text()
    for path in ETC.rglob("*"):
        if path.is_file() and path != README:
            assert path.name in text, f"{path.relative_to(ROOT)} is not explained"
