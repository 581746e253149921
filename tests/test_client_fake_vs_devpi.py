"""
The fake server the client tests use must satisfy the real devpi-client too; otherwise those tests
would only prove that our client agrees with our own idea of devpi's API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pkgmirror.testing.fakedevpi import FakeDevpi

DEVPI = shutil.which("devpi") or str(Path(sys.executable).with_name("devpi"))
pytestmark = pytest.mark.skipif(not Path(DEVPI).exists(), reason="devpi-client not installed")


def test_devpi_client_works_against_the_fake(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "DEVPI_CLIENTDIR": str(tmp_path / "devpi"),
        "PIP_CONFIG_FILE": os.devnull,
    }
    wheel = tmp_path / "demo_pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo_pkg/__init__.py", "")
        archive.writestr(
            "demo_pkg-0.1.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 0.1\n",
        )
    with FakeDevpi(root_password="root") as fake:

        def devpi(*args: str) -> str:
            done = subprocess.run(
                [DEVPI, *args], env=env, capture_output=True, text=True, check=False, timeout=60
            )
            assert done.returncode == 0, f"devpi {args}: {done.stdout}{done.stderr}"
            return done.stdout

        devpi("use", "--always-set-cfg", "no", fake.url)
        devpi("login", "--password", "root", "root")
        devpi("index", "-c", "dev", "bases=", "title=Dev", "volatile=True")
        devpi("index", "dev", "mirror_whitelist+=foo")
        devpi("use", "root/dev")
        assert "root/dev" in devpi("index", "-l")
        devpi("user", "-c", "alice", "password=x", "email=a@example.test")
        assert "alice" in devpi("user", "-l")
        devpi("upload", str(wheel))
        assert "demo_pkg-0.1-py3-none-any.whl" in devpi("list", "demo-pkg")
        devpi("remove", "-y", "demo-pkg==0.1")
        devpi("index", "-y", "--delete", "root/dev")
    assert fake.users["root"]["indexes"] == {}
    assert ("PATCH", "/root/dev") in [(r.method, r.path) for r in fake.requests]
