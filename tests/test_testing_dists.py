"""The test distributions are real: pip installs them offline, and their RECORDs hold."""

from __future__ import annotations

import base64
import email.parser
import hashlib
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from pkgmirror.testing.dists import (
    build_sdist,
    build_wheel,
    module_name,
    sdist_filename,
    sha256_file,
    wheel_filename,
)
from pkgmirror.testing.processes import clean_client_env


def pip_install(
    tmp_path: Path, find_links: Path, *requirements: str, no_binary: str | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    target = tmp_path / "target"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(find_links),
        "--target",
        str(target),
        *requirements,
    ]
    if no_binary:
        command += ["--no-binary", no_binary]
    result = subprocess.run(
        command, env=clean_client_env(tmp_path / "home"), capture_output=True, text=True
    )
    return result, target


def import_version(target: Path, module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__version__)"],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def metadata_of(raw: bytes) -> email.message.Message:
    return email.parser.BytesParser().parsebytes(raw)


def test_wheel_has_metadata_and_a_correct_record(tmp_path: Path) -> None:
    path = build_wheel(
        tmp_path,
        "Fancy.Name_here",
        "1.2.post3",
        requires_python=">=3.8",
        requires_dist=["dep-a>=1", 'dep-b; python_version < "4"'],
        summary="A summary",
        description="Line one.\nLine two.\n",
    )
    assert path.name == wheel_filename("Fancy.Name_here", "1.2.post3")
    assert path.name == "fancy_name_here-1.2.post3-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        dist_info = "fancy_name_here-1.2.post3.dist-info"
        meta = metadata_of(zf.read(f"{dist_info}/METADATA"))
        assert meta["Metadata-Version"] == "2.1"
        assert meta["Name"] == "Fancy.Name_here"
        assert meta["Version"] == "1.2.post3"
        assert meta["Summary"] == "A summary"
        assert meta["Requires-Python"] == ">=3.8"
        assert meta.get_all("Requires-Dist") == ["dep-a>=1", 'dep-b; python_version < "4"']
        assert meta.get_payload() == "Line one.\nLine two.\n"
        wheel = metadata_of(zf.read(f"{dist_info}/WHEEL"))
        assert wheel["Tag"] == "py3-none-any"
        assert wheel["Root-Is-Purelib"] == "true"

        rows = [line.split(",") for line in zf.read(f"{dist_info}/RECORD").decode().splitlines()]
        recorded = {row[0] for row in rows}
        assert recorded == set(names)
        for arcname, hash_value, size in rows:
            if arcname == f"{dist_info}/RECORD":
                assert (hash_value, size) == ("", "")
                continue
            data = zf.read(arcname)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hash_value == "sha256=" + digest.decode()
            assert int(size) == len(data)
    assert f"{module_name('Fancy.Name_here')}/__init__.py" in names


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    first = sha256_file(build_wheel(tmp_path / "a", "same", "1.0", payload_size=10_000))
    second = sha256_file(build_wheel(tmp_path / "b", "same", "1.0", payload_size=10_000))
    other = sha256_file(build_wheel(tmp_path / "c", "same", "1.1", payload_size=10_000))
    assert first == second != other


def test_payload_is_incompressible_and_streamed(tmp_path: Path) -> None:
    size = 8 * 1024 * 1024
    tracemalloc.start()
    try:
        wheel = build_wheel(tmp_path, "big-one", "1.0", payload_size=size)
        sdist = build_sdist(tmp_path, "big-one", "1.0", payload_size=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Chunks of about 1 MiB are fine; the whole payload in memory is not.
    assert peak < size // 2
    assert wheel.stat().st_size > size
    assert sdist.stat().st_size > size
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("big_one/payload.bin")
        assert info.file_size == size
        assert info.compress_size >= size


def test_sdist_layout(tmp_path: Path) -> None:
    path = build_sdist(tmp_path, "My.Project", "2.0", requires_python=">=3.9", summary="s")
    assert path.name == sdist_filename("My.Project", "2.0") == "my_project-2.0.tar.gz"
    with tarfile.open(path) as tf:
        names = tf.getnames()
        assert all(n == "my_project-2.0" or n.startswith("my_project-2.0/") for n in names)
        pkg_info_file = tf.extractfile("my_project-2.0/PKG-INFO")
        assert pkg_info_file is not None
        pkg_info = metadata_of(pkg_info_file.read())
        pyproject_file = tf.extractfile("my_project-2.0/pyproject.toml")
        assert pyproject_file is not None
        pyproject = pyproject_file.read().decode()
    assert (pkg_info["Name"], pkg_info["Version"]) == ("My.Project", "2.0")
    assert pkg_info["Requires-Python"] == ">=3.9"
    assert 'build-backend = "inline_backend"' in pyproject
    assert "requires = []" in pyproject


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_pip_installs_offline_and_module_imports(tmp_path: Path, kind: str) -> None:
    dists = tmp_path / "dists"
    build = build_wheel if kind == "wheel" else build_sdist
    build(dists, "Demo.Pkg", "0.3.1", requires_dist=["demo-dep>=1"], payload_size=3000)
    # Requires-Dist must make pip fetch the dependency.
    build(dists, "demo_dep", "1.5")
    result, target = pip_install(
        tmp_path, dists, "demo-pkg==0.3.1", no_binary=":all:" if kind == "sdist" else None
    )
    assert result.returncode == 0, result.stderr
    assert import_version(target, "demo_pkg") == "0.3.1"
    assert import_version(target, "demo_dep") == "1.5"
    assert (target / "demo_pkg" / "payload.bin").stat().st_size == 3000
    if kind == "sdist":
        assert "Building wheel for demo-pkg" in result.stdout
        # Built from the sdist, the payload is the same bytes a direct wheel carries.
        wheel = build_wheel(tmp_path / "direct", "Demo.Pkg", "0.3.1", payload_size=3000)
        with zipfile.ZipFile(wheel) as zf:
            expected = zf.read("demo_pkg/payload.bin")
        assert (target / "demo_pkg" / "payload.bin").read_bytes() == expected


def test_pip_honours_requires_python(tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    build_wheel(dists, "oldonly", "1.0", requires_python="<3")
    result, _ = pip_install(tmp_path, dists, "oldonly")
    assert result.returncode != 0
    assert "requires a different Python" in result.stderr
