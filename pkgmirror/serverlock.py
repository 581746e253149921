"""
One server per server directory: a second ``twistd pkgmirror`` on the same serverdir (systemd's
and a hand-started one, say) would share the SQLite file and the blobs while each trusts its
own in-memory caches. The running server holds an exclusive ``flock`` on a file in the serverdir;
the kernel drops it when the process ends, however it ends, so a crash never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os

from twisted.python.filepath import FilePath

LOCK_NAME = ".pkgmirror.lock"


class ServerDirInUse(Exception):
    """Another process holds the serverdir. One-line message."""


def _message(serverdir: FilePath[str], pid: int | None) -> str:
    who = f"pid {pid}" if pid else "another process"
    return f"{serverdir.path} is in use by another pkgmirror ({who})"


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _open(serverdir: FilePath[str]) -> int:
    return os.open(serverdir.child(LOCK_NAME).path, os.O_RDWR | os.O_CREAT, 0o644)


def check_free(serverdir: FilePath[str]) -> None:
    """Raises ServerDirInUse when a running server holds ``serverdir``; holds nothing itself."""
    fd = _open(serverdir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServerDirInUse(_message(serverdir, _pid_in(fd))) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def hold(serverdir: FilePath[str]) -> int:
    """
    Takes ``serverdir`` for this process, writing its pid into the lock file; returns the
    descriptor, which must stay open for as long as the server runs. Raises ServerDirInUse.
    """
    fd = _open(serverdir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _pid_in(fd)
        os.close(fd)
        raise ServerDirInUse(_message(serverdir, pid)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
