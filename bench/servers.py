"""
The servers the benchmark compares, each a subprocess on 127.0.0.1 with the same shape:
``start()`` returns seconds from spawn to the first answered request, ``index_url`` is what
pip is pointed at, ``memory()`` reads /proc, ``stop()`` ends it.

* ``Nginx``: a static server on the data tree (also the upstream the mirrors use).
* ``Pkgmirror``: ``twistd -n pkgmirror``; root/pypi mirrors the upstream, root/local is a stage
  over it.
* ``Devpi``: devpi-server from PyPI in its own venv, set up the same way.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pkgmirror.testing.processes import free_port

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


class BenchError(Exception):
    pass


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    data = None
    all_headers = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


class Process:
    """A server subprocess; subclasses say how to start it and what 'answered' means."""

    name = "?"
    process: subprocess.Popen[bytes] | None = None

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.logfile = workdir / f"{self.name}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PKGMIRROR_"))}

    def ready_path(self) -> str:
        return "/"

    def start(self, timeout: float = 120) -> float:
        """Spawn, wait for a 200 on ready_path(); returns the seconds that took."""
        t0 = time.perf_counter()
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=str(self.workdir),
                start_new_session=True,
            )
        deadline = t0 + timeout
        url = self.base_url + self.ready_path()
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited {self.process.returncode}: {self.tail()}")
            try:
                status, _ = http("GET", url, timeout=2)
                if status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() > deadline:
                self.stop()
                raise BenchError(f"{self.name} did not answer within {timeout}s: {self.tail()}")
            time.sleep(0.005)

    def tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def memory(self) -> dict[str, float]:
        return memory(self.pid) if self.process is not None else {}

    def stop(self, timeout: float = 20) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)


class Nginx(Process):
    name = "nginx"

    def __init__(self, workdir: Path, root: Path, label: str, port: int | None = None) -> None:
        self.name = f"nginx-{label}"
        workdir = workdir / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        if port is not None:
            self.port = port
        self.root = root.resolve()

    @property
    def index_url(self) -> str:
        return self.base_url + "/simple/"

    def ready_path(self) -> str:
        return "/simple/"

    def command(self) -> list[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = self.workdir / "nginx.conf"
        temp = self.workdir / "tmp"
        temp.mkdir(exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""
        conf.write_text(
            NGINX_CONF.format(
                user=user,
                work=self.workdir,
                temp=temp,
                port=self.port,
                root=self.root,
            )
        )
        return [binary, "-p", str(self.workdir), "-c", str(conf)]

    def stop(self, timeout: float = 20) -> None:
        # SIGTERM is nginx's fast shutdown; workers leave with the master.
        super().stop(timeout)


# One worker: the servers it is compared with use one CPU core for Python code too.
NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{
        text/html html;
        application/vnd.pypi.simple.v1+json json;
    }}
    default_type application/octet-stream;
    map $http_accept $simple_index {{
        "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
        default index.html;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            index $simple_index index.html;
        }}
    }}
}}
"""


class Pkgmirror(Process):
    name = "pkgmirror"

    def __init__(self, workdir: Path, serverdir: Path) -> None:
        super().__init__(workdir)
        self.serverdir = serverdir

    @property
    def index_url(self) -> str:
        return self.base_url + "/root/local/+simple/"

    def ready_path(self) -> str:
        return "/+api"

    def env(self) -> dict[str, str]:
        env = super().env()
        # The checkout the harness runs from, not whatever pkgmirror the venv has installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env

    def command(self) -> list[str]:
        twistd = Path(sys.executable).with_name("twistd")
        return [
            str(twistd) if twistd.exists() else "twistd",
            "-n",
            "--pidfile=",
            "pkgmirror",
            "--serverdir",
            str(self.serverdir),
            "--port",
            str(self.port),
        ]

    def auth_headers(self) -> dict[str, str]:
        token = base64.b64encode(b"root:root").decode()
        return {"Authorization": f"Basic {token}"}

    @classmethod
    def make_template(cls, workdir: Path, upstream_url: str) -> Path:
        """A server directory with root/pypi (mirror of the upstream) and root/local over it."""
        from pkgmirror.serverinit import init_serverdir

        serverdir = workdir / "template-pkgmirror"
        if serverdir.exists():
            shutil.rmtree(serverdir)
        init_serverdir(str(serverdir), "root", "sqlite", "standalone", False, upstream_url)
        server = cls(workdir, serverdir)
        server.start()
        try:
            server.create_stage("local", ["root/pypi"])
        finally:
            server.stop()
        return serverdir

    def create_mirror(self, name: str, url: str) -> None:
        body = {"type": "mirror", "mirror_url": url, "volatile": "False"}
        self._put(f"/root/{name}", body)

    def create_stage(self, name: str, bases: list[str]) -> None:
        self._put(f"/root/{name}", {"bases": ",".join(bases)})

    def _put(self, path: str, body: dict[str, Any]) -> None:
        status, reply = http("PUT", self.base_url + path, body, self.auth_headers())
        if status not in (200, 201):
            raise BenchError(f"pkgmirror PUT {path}: {status} {reply[:300]!r}")


class Devpi(Process):
    name = "devpi"

    def __init__(self, workdir: Path, serverdir: Path, venv: Path) -> None:
        super().__init__(workdir)
        self.serverdir = serverdir
        self.venv = venv
        self._token: str | None = None

    @property
    def index_url(self) -> str:
        return self.base_url + "/root/local/+simple/"

    def ready_path(self) -> str:
        return "/+api"

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin" / "devpi-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--serverdir",
            str(self.serverdir),
            "--secretfile",
            str(self.serverdir.parent / (self.serverdir.name + ".secret")),
        ]

    @classmethod
    def make_template(cls, workdir: Path, venv: Path, upstream_url: str) -> Path:
        serverdir = workdir / "template-devpi"
        if serverdir.exists():
            shutil.rmtree(serverdir)
        secret = serverdir.parent / (serverdir.name + ".secret")
        secret.write_text(base64.b64encode(os.urandom(32)).decode())
        secret.chmod(0o600)
        # No root/pypi at init: devpi would fetch the public index's name list on first start.
        subprocess.run(
            [
                str(venv / "bin" / "devpi-init"),
                "--serverdir",
                str(serverdir),
                "--no-root-pypi",
                "--root-passwd",
                "root",
                "--storage",
                "sqlite",
            ],
            check=True,
            capture_output=True,
        )
        server = cls(workdir, serverdir, venv)
        server.start()
        try:
            server.create_mirror("pypi", upstream_url)
            server.create_stage("local", ["root/pypi"])
        finally:
            server.stop()
        return serverdir

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            status, reply = http(
                "POST", self.base_url + "/+login", {"user": "root", "password": "root"}
            )
            if status != 200:
                raise BenchError(f"devpi login: {status} {reply[:300]!r}")
            self._token = json.loads(reply)["result"]["password"]
        value = base64.b64encode(f"root:{self._token}".encode()).decode()
        return {"X-Devpi-Auth": value}

    def create_mirror(self, name: str, url: str) -> None:
        body = {"type": "mirror", "mirror_url": url, "volatile": False}
        self._put(f"/root/{name}", body)

    def create_stage(self, name: str, bases: list[str]) -> None:
        self._put(f"/root/{name}", {"bases": bases, "volatile": True})

    def _put(self, path: str, body: dict[str, Any]) -> None:
        status, reply = http("PUT", self.base_url + path, body, self._auth())
        if status not in (200, 201):
            raise BenchError(f"devpi PUT {path}: {status} {reply[:300]!r}")


def copy_serverdir(template: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest, symlinks=True)
    secret = template.parent / (template.name + ".secret")
    if secret.exists():
        shutil.copy2(secret, dest.parent / (dest.name + ".secret"))
    return dest


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_devpi_venv(venv: Path, log: Any = print) -> Path:
    """devpi-server and devpi-client from the package index, in their own venv (made once)."""
    if (venv / "bin" / "devpi-server").exists():
        return venv
    log(f"installing devpi-server into {venv} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "devpi-server",
            "devpi-client",
        ],
        check=True,
    )
    return venv


def ensure_tools(log: Any = print) -> dict[str, str | None]:
    """nginx (required) and wrk (optional: a Python load generator stands in)."""
    found = {tool: shutil.which(tool) or _sbin(tool) for tool in ("nginx", "wrk")}
    missing = [tool for tool, path in found.items() if path is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, env=env)
        found = {tool: shutil.which(tool) or _sbin(tool) for tool in ("nginx", "wrk")}
    if found["nginx"] is None:
        raise BenchError("nginx is needed (apt-get install nginx)")
    return found


def _sbin(tool: str) -> str | None:
    path = Path("/usr/sbin") / tool
    return str(path) if path.exists() else None
