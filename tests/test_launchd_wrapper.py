"""
bin/pkgmirror-launchd, driven the way launchd drives it: run it, signal it, read its status.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pkgmirror.testing.processes import alive, wait_for

pytestmark = pytest.mark.skipif(
    not hasattr(os, "killpg"), reason="process groups and POSIX signals are needed"
)

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "bin" / "pkgmirror-launchd"
TIMEOUT = 20.0

# A stand-in server: notes every signal it gets, says where it runs, exits as told.
CHILD = r"""
import json, os, signal, subprocess, sys, time

record, code, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sigint_ignored_at_start = signal.getsignal(signal.SIGINT) is signal.SIG_IGN

def on_signal(signum, frame):
    with open(record, "a") as stream:
        stream.write(signal.Signals(signum).name + "\n")
    if mode == "reraise":
        # What twistd does after a stop on a signal: die of that very signal.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    if mode != "ignore":
        os._exit(code)

for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, on_signal)

ready = {
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "sid": os.getsid(0),
    "sigint_ignored_at_start": sigint_ignored_at_start,
}
if mode == "grandchild":
    ready["grandchild"] = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    ).pid
with open(record + ".ready.tmp", "w") as stream:
    json.dump(ready, stream)
os.rename(record + ".ready.tmp", record + ".ready")

if mode in ("exit", "grandchild"):
    sys.exit(code)
if mode == "suicide":
    os.kill(os.getpid(), signal.SIGKILL)
while True:
    time.sleep(0.1)
"""


def wrapper_command(*arguments: str) -> list[str]:
    return [sys.executable, str(WRAPPER), *arguments]


def ignore_sigint_before_exec() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Child:
    """The wrapper running CHILD, and what CHILD reports."""

    def __init__(
        self,
        tmp_path: Path,
        code: int,
        mode: str,
        env: Mapping[str, str] | None = None,
        own_group: bool = False,
        ignore_sigint: bool = False,
    ) -> None:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        self.record = tmp_path / "signals"
        self.wrapper = subprocess.Popen(
            wrapper_command("--", sys.executable, str(script), str(self.record), str(code), mode),
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
            process_group=0 if own_group else None,
            preexec_fn=ignore_sigint_before_exec if ignore_sigint else None,
        )
        ready = Path(f"{self.record}.ready")
        wait_for(
            lambda: ready.exists() or self.wrapper.poll() is not None,
            "the child to start",
            timeout=TIMEOUT,
        )
        self.ready: dict[str, Any] = json.loads(ready.read_text()) if ready.exists() else {}

    def signals(self) -> list[str]:
        return self.record.read_text().split() if self.record.exists() else []

    def status(self) -> int:
        return self.wrapper.wait(timeout=TIMEOUT)

    def stderr(self) -> str:
        self.status()
        assert self.wrapper.stderr is not None
        return self.wrapper.stderr.read()

    def stop(self) -> None:
        if self.wrapper.poll() is None:
            self.wrapper.kill()
            self.wrapper.wait()
        for key in ("pid", "grandchild"):
            if key in self.ready and alive(self.ready[key]):
                os.kill(self.ready[key], signal.SIGKILL)
        if self.wrapper.stderr is not None:
            self.wrapper.stderr.close()


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(
        code: int = 0,
        mode: str = "wait",
        env: Mapping[str, str] | None = None,
        own_group: bool = False,
        ignore_sigint: bool = False,
    ) -> Child:
        started.append(Child(tmp_path, code, mode, env, own_group, ignore_sigint))
        return started[-1]

    yield start
    for each in started:
        each.stop()


@pytest.mark.parametrize("received", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signals_reach_the_server_as_sigint(
    child: Callable[..., Child], received: signal.Signals
) -> None:
    running = child(code=5)
    running.wrapper.send_signal(received)
    assert running.status() == 5
    assert running.signals() == ["SIGINT"]
    assert not alive(running.ready["pid"])


def test_server_runs_in_its_own_session_and_process_group(child: Callable[..., Child]) -> None:
    running = child()
    pid = running.ready["pid"]
    assert running.ready["pgid"] == pid
    assert running.ready["sid"] == pid
    assert running.ready["pgid"] != os.getpgid(0)
    assert running.ready["pgid"] != os.getpgid(running.wrapper.pid)


def test_ctrl_c_to_the_wrappers_group_stops_the_server(
    child: Callable[..., Child],
) -> None:
    # What a terminal's Ctrl-C does: one signal to the whole foreground group. The wrapper
    # gets a group of its own here so that the test process is not hit too.
    running = child(code=4, own_group=True)
    wrapper_group = os.getpgid(running.wrapper.pid)
    assert wrapper_group != os.getpgid(0)
    os.killpg(wrapper_group, signal.SIGINT)
    assert running.status() == 4
    assert running.signals() == ["SIGINT"]


def test_server_gets_sigint_even_when_the_wrapper_was_started_ignoring_it(
    child: Callable[..., Child],
) -> None:
    # Shells start background jobs with SIGINT ignored; twistd would then keep ignoring the
    # very signal the wrapper forwards.
    running = child(code=6, ignore_sigint=True)
    assert running.ready["sigint_ignored_at_start"] is False
    running.wrapper.send_signal(signal.SIGINT)
    assert running.status() == 6
    assert running.signals() == ["SIGINT"]


@pytest.mark.parametrize("code", [0, 3, 77])
def test_exit_code_of_the_server_is_the_wrappers(child: Callable[..., Child], code: int) -> None:
    assert child(code=code, mode="exit").status() == code


def test_server_killed_by_a_signal_gives_128_plus_the_signal(child: Callable[..., Child]) -> None:
    assert child(mode="suicide").status() == 128 + signal.SIGKILL


def test_server_dying_of_the_forwarded_sigint_is_a_successful_stop(
    child: Callable[..., Child],
) -> None:
    # launchd restarts a job that exits unsuccessfully (KeepAlive/SuccessfulExit false): a
    # stop it asked for must not look like a crash.
    running = child(mode="reraise")
    running.wrapper.send_signal(signal.SIGTERM)
    assert running.status() == 0
    assert running.signals() == ["SIGINT"]


def test_server_dying_of_sigint_nobody_asked_for_is_a_failure(
    child: Callable[..., Child],
) -> None:
    running = child(mode="reraise")
    os.kill(running.ready["pid"], signal.SIGINT)
    assert running.status() == 128 + signal.SIGINT


def test_server_killed_from_outside_gives_128_plus_the_signal(
    child: Callable[..., Child],
) -> None:
    running = child()
    os.kill(running.ready["pid"], signal.SIGSEGV)
    assert running.status() == 128 + signal.SIGSEGV
    assert running.signals() == []


def test_server_that_ignores_the_stop_request_is_killed_after_the_grace_period(
    child: Callable[..., Child],
) -> None:
    grace = 1.0
    running = child(mode="ignore", env={"PKGMIRROR_LAUNCHD_KILL_AFTER": str(grace)})
    asked = time.monotonic()
    running.wrapper.send_signal(signal.SIGTERM)
    wait_for(lambda: running.signals() != [], "the stop request to arrive", timeout=TIMEOUT)
    # A second request within the grace period is not forwarded again.
    running.wrapper.send_signal(signal.SIGTERM)
    assert running.status() == 128 + signal.SIGKILL
    assert time.monotonic() - asked >= grace
    assert running.signals() == ["SIGINT"]
    assert not alive(running.ready["pid"])
    assert "SIGKILL" in running.stderr()


def test_zero_grace_kills_at_once(child: Callable[..., Child]) -> None:
    running = child(mode="ignore", env={"PKGMIRROR_LAUNCHD_KILL_AFTER": "0"})
    running.wrapper.send_signal(signal.SIGTERM)
    assert running.status() == 128 + signal.SIGKILL


def test_unusable_grace_period_is_reported_and_the_default_used(
    child: Callable[..., Child],
) -> None:
    running = child(code=0, env={"PKGMIRROR_LAUNCHD_KILL_AFTER": "soon"})
    running.wrapper.send_signal(signal.SIGTERM)
    assert running.status() == 0
    assert "PKGMIRROR_LAUNCHD_KILL_AFTER" in running.stderr()


def test_what_the_server_leaves_in_its_group_is_killed(child: Callable[..., Child]) -> None:
    running = child(code=0, mode="grandchild")
    assert running.status() == 0
    wait_for(
        lambda: not alive(running.ready["grandchild"]),
        "the leftover process to die",
        timeout=TIMEOUT,
    )


def test_missing_command_exits_127(tmp_path: Path) -> None:
    result = subprocess.run(
        wrapper_command("--", str(tmp_path / "no-such-server")),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 127
    assert "no-such-server" in result.stderr


# --- the default command line -----------------------------------------------------------


@pytest.fixture
def fake_twistd(tmp_path: Path) -> Callable[[Sequence[str]], list[str]]:
    """Runs the wrapper (through its #! line) with a twistd on PATH that reports its argv."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    twistd = bindir / "twistd"
    twistd.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['FAKE_TWISTD_ARGV'], 'w') as stream:\n"
        "    json.dump(sys.argv[1:], stream)\n"
    )
    twistd.chmod(0o755)
    out = tmp_path / "argv.json"

    def run(arguments: Sequence[str]) -> list[str]:
        env = {
            **os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_TWISTD_ARGV": str(out),
        }
        result = subprocess.run([str(WRAPPER), *arguments], env=env, timeout=TIMEOUT)
        assert result.returncode == 0
        argv: list[str] = json.loads(out.read_text())
        out.unlink()
        return argv

    return run


def test_wrapper_is_executable() -> None:
    assert os.access(WRAPPER, os.X_OK)
    assert WRAPPER.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize("arguments", [[], ["--"]])
def test_no_arguments_run_the_server_in_the_foreground(
    fake_twistd: Callable[[Sequence[str]], list[str]], arguments: list[str]
) -> None:
    argv = fake_twistd(arguments)
    assert argv[-1] == "pkgmirror"
    assert "-n" in argv[: argv.index("pkgmirror")]
    # No pid file: the working directory under launchd is not the wrapper's to write in.
    assert "--pidfile=" in argv[: argv.index("pkgmirror")]


def test_server_options_are_passed_after_the_plugin_name(
    fake_twistd: Callable[[Sequence[str]], list[str]],
) -> None:
    options = ["--serverdir", "/srv/pkgmirror", "--port", "4000", "--offline-mode"]
    assert fake_twistd(options) == [*fake_twistd([]), *options]


def test_an_explicit_command_is_run_as_given(
    fake_twistd: Callable[[Sequence[str]], list[str]],
) -> None:
    assert fake_twistd(["twistd", "web", "--path", "."]) == ["web", "--path", "."]
    assert fake_twistd(["--", "twistd", "-n", "pkgmirror"]) == ["-n", "pkgmirror"]


# --- around a real twistd ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def twistd_path() -> str:
    beside = Path(sys.executable).with_name("twistd")
    found = str(beside) if beside.exists() else shutil.which("twistd")
    if found is None:
        pytest.skip("twistd is not installed")
    return found


def default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and twistd keeps an ignored SIGINT
    # ignored: the reference run must not depend on how the tests were started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_with(command: list[str], cwd: Path, port: int, signum: int) -> tuple[int, str]:
    """Start command, wait until port listens, send signum, return (status, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        wait_for(
            lambda: listening(port) or process.poll() is not None,
            "the server to listen",
            timeout=TIMEOUT,
        )
        assert process.poll() is None, process.communicate()[0]
        process.send_signal(signum)
        output = process.communicate(timeout=TIMEOUT)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert not listening(port)
    return process.returncode, output


def plugin_command(plugin: str, tmp_path: Path, port: int) -> list[str]:
    if plugin == "web":
        return ["web", "--listen", f"tcp:port={port}:interface=127.0.0.1", "--path", str(tmp_path)]
    if not (ROOT / "twisted" / "plugins" / "pkgmirror_plugin.py").exists():
        pytest.skip("the pkgmirror twistd plugin is not in this tree yet")
    serverdir = tmp_path / "server"
    return ["pkgmirror", "--serverdir", str(serverdir), "--host", "127.0.0.1", "--port", str(port)]


@pytest.mark.e2e
@pytest.mark.parametrize("plugin", ["web", "pkgmirror"])
def test_real_twistd_stops_gracefully_and_the_stop_is_a_success(
    tmp_path: Path, plugin: str
) -> None:
    twistd = twistd_path()

    port = free_port()
    direct = [twistd, "-n", "--pidfile=", *plugin_command(plugin, tmp_path, port)]
    expected, _ = stop_with(direct, tmp_path, port, signal.SIGINT)
    # twistd web dies of the signal after its orderly stop; pkgmirror exits 0.
    assert expected == (0 if plugin == "pkgmirror" else -signal.SIGINT)

    port = free_port()
    command = wrapper_command(
        "--", twistd, "-n", "--pidfile=", *plugin_command(plugin, tmp_path, port)
    )
    status, output = stop_with(command, tmp_path, port, signal.SIGTERM)

    assert status == 0
    assert "SIGTERM received" in output
    assert "Server Shut Down" in output  # twistd's own last words: a graceful stop
    if plugin == "pkgmirror":
        assert "SIGINT received: stopping" in output
        assert "pkgmirror stopped" in output
    assert not (tmp_path / "twistd.pid").exists()


@pytest.mark.e2e
def test_wrapper_passes_on_a_failed_server_start(tmp_path: Path) -> None:
    # A server directory that is not one: twistd refuses to start, and launchd must see it.
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "foreign").write_text("not ours")
    port = free_port()
    result = subprocess.run(
        wrapper_command(
            "--", twistd_path(), "-n", "--pidfile=", *plugin_command("pkgmirror", tmp_path, port)
        ),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode != 0
    assert "not a pkgmirror server directory" in result.stdout + result.stderr
