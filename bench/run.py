"""
pkgmirror against devpi-server and a static server (nginx), in one run, on the same files.

    python bench/run.py [--quick] [--repeat 3] [--out bench/results/DATE.json]

Builds (or reuses) a data set under bench/.data, installs devpi-server into bench/.venv-devpi,
nginx and wrk with apt-get when missing, then for each repeat and each server: start it on a
fresh copy of a prepared server directory, and measure pip (cold, warm, 8 in parallel, upstream
stopped), uv with a cold cache, page and file load with wrk, start time and memory. The scale
scenarios (a 2,000-version page, a 1,000,000-name upstream) run once at the end. It prints
a table and writes JSON. Everything listens on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The checkout this file is in, not whichever pkgmirror the environment has installed.
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.dataset import (  # noqa: E402
    GIANT,
    Dataset,
    ensure_dataset,
    ensure_pep658_pages,
    requirements,
)
from bench.load import LoadResult, run_load  # noqa: E402
from bench.servers import (  # noqa: E402
    BenchError,
    Devpi,
    Nginx,
    Pkgmirror,
    Process,
    copy_serverdir,
    ensure_devpi_venv,
    ensure_tools,
    http,
)
from pkgmirror.testing.processes import clean_client_env  # noqa: E402

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PAGE_PROJECT_INDEX = 32  # a project with 45 versions (90 links): a typical busy page
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, dataset: Dataset, work: Path) -> None:
        self.args = args
        self.dataset = dataset
        self.work = work
        self.seconds = args.seconds
        self.requirements = work / "requirements.txt"
        self.requirements.write_text("\n".join(requirements(dataset.specs)) + "\n")
        self.expected_files = len(dataset.specs)
        self.upstream = Nginx(work, dataset.root, "upstream")
        self.static = Nginx(work, dataset.root, "static")
        self.templates: dict[str, Path] = {}
        self.devpi_venv = BENCH / ".venv-devpi"
        self.page_project = dataset.specs[PAGE_PROJECT_INDEX].name
        small = [s for s in dataset.specs if "wheel" in s.kinds and 20_000 < s.payload < 40_000]
        self.small_project = small[0].name
        self.big_project = max(dataset.specs, key=lambda s: s.payload).name

    # ------------------------------------------------------------ servers
    def prepare(self) -> None:
        self.pep658_pages = ensure_pep658_pages(self.dataset)
        self.upstream.start()
        self.static.start()
        if "pkgmirror" in self.args.servers:
            self.templates["pkgmirror"] = Pkgmirror.make_template(
                self.work, self.upstream.index_url
            )
        if "devpi" in self.args.servers:
            self.templates["devpi"] = Devpi.make_template(
                self.work, self.devpi_venv, self.upstream.index_url
            )

    def fresh(self, kind: str, label: str) -> Process:
        serverdir = copy_serverdir(self.templates[kind], self.work / f"{kind}-{label}")
        if kind == "pkgmirror":
            return Pkgmirror(self.work, serverdir)
        return Devpi(self.work, serverdir, self.devpi_venv)

    def close(self) -> None:
        self.upstream.stop()
        self.static.stop()

    # ------------------------------------------------------------ clients
    def client_env(self, name: str) -> dict[str, str]:
        home = self.work / "homes" / name
        shutil.rmtree(home, ignore_errors=True)
        return clean_client_env(home)

    def pip_command(self, index_url: str, dest: Path) -> list[str]:
        return [
            sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps",
            "--no-build-isolation", "--progress-bar", "off", "-q", "-d", str(dest),
            "-i", index_url, "-r", str(self.requirements),
        ]  # fmt: skip

    def pip_download(self, index_url: str, label: str) -> float:
        dest = self.work / "downloads" / label
        shutil.rmtree(dest, ignore_errors=True)
        t0 = time.perf_counter()
        out = subprocess.run(
            self.pip_command(index_url, dest),
            env=self.client_env(label),
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.perf_counter() - t0
        self._check_download(out, dest, label)
        return took

    def _check_download(
        self, out: subprocess.CompletedProcess[str], dest: Path, label: str
    ) -> None:
        got = len(list(dest.iterdir())) if dest.exists() else 0
        if out.returncode != 0 or got != self.expected_files:
            raise BenchError(
                f"{label}: pip exited {out.returncode} with {got}/{self.expected_files} files:"
                f"\n{out.stderr[-3000:]}"
            )
        shutil.rmtree(dest, ignore_errors=True)

    def parallel_pip(self, index_url: str, label: str, n: int = 8) -> float:
        dests = [self.work / "downloads" / f"{label}-{i}" for i in range(n)]
        for dest in dests:
            shutil.rmtree(dest, ignore_errors=True)
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                self.pip_command(index_url, dest),
                env=self.client_env(f"{label}-{i}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, dest in enumerate(dests)
        ]
        results = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=900)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        took = time.perf_counter() - t0
        for i, (out, dest) in enumerate(zip(results, dests, strict=True)):
            self._check_download(out, dest, f"{label}-{i}")
        return took

    def uv_install(self, index_url: str, label: str) -> float | None:
        uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
        if uv is None:
            return None
        target = self.work / "uv" / label
        cache = self.work / "uv" / f"{label}-cache"
        for path in (target, cache):
            shutil.rmtree(path, ignore_errors=True)
        t0 = time.perf_counter()
        out = subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--quiet",
                "--python",
                sys.executable,
                "--target",
                str(target),
                "--cache-dir",
                str(cache),
                "--index-url",
                index_url,
                "-r",
                str(self.requirements),
            ],
            env=self.client_env(label),
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.perf_counter() - t0
        if out.returncode != 0:
            raise BenchError(f"{label}: uv exited {out.returncode}:\n{out.stderr[-3000:]}")
        for path in (target, cache):
            shutil.rmtree(path, ignore_errors=True)
        return took

    def file_url(self, index_url: str, project: str) -> str:
        """The URL the server's page gives for the project's newest wheel."""
        page_url = index_url + project + "/"
        status, body = http("GET", page_url, headers={"Accept": JSON_V1}, timeout=60)
        if status != 200:
            raise BenchError(f"GET {page_url}: {status}")
        files = [f for f in json.loads(body)["files"] if f["filename"].endswith(".whl")]
        newest = max(files, key=lambda f: [int(x) for x in f["filename"].split("-")[1].split(".")])
        return urljoin(page_url, newest["url"].split("#")[0])

    def load(self, url: str, connections: int, headers: dict[str, str] | None = None) -> LoadResult:
        result = run_load(url, self.seconds, connections, headers)
        if result.errors:
            log(f"  {result.errors} errors under load on {url}")
        return result

    # ------------------------------------------------------------ one repeat on one server
    def scenarios(self, kind: str, rep: int) -> dict[str, float | None]:
        label = f"{kind}-{rep}"
        if kind == "static":
            server: Process = self.static
            server.stop()
        else:
            server = self.fresh(kind, str(rep))
        m: dict[str, float | None] = {}
        index_url: str = server.index_url  # type: ignore[attr-defined]
        try:
            m["start_s"] = server.start()
            m["cold_pip_s"] = self.pip_download(index_url, f"{label}-cold")
            m["warm_pip_s"] = self.pip_download(index_url, f"{label}-warm")
            if kind == "static":
                # The reference: the same files with PEP 658 metadata, as pip meets them on the
                # public index and on pkgmirror (one more request per wheel).
                pep658_url = f"{self.static.base_url}/{self.pep658_pages}/"
                m["pep658_pip_s"] = self.pip_download(pep658_url, f"{label}-658")
            page = index_url + self.page_project + "/"
            html = self.load(page, self.args.connections, {"Accept": "text/html"})
            js = self.load(page, self.args.connections, {"Accept": JSON_V1})
            m.update(
                html_rps=html.rps, html_p50_ms=html.p50_ms, html_p99_ms=html.p99_ms,
                json_rps=js.rps, json_p50_ms=js.p50_ms, json_p99_ms=js.p99_ms,
            )  # fmt: skip
            m["file_mb_s"] = self.load(self.file_url(index_url, self.big_project), 4).mb_per_s
            small_url = self.file_url(index_url, self.small_project)
            m["small_file_rps"] = self.load(small_url, self.args.connections).rps
            m["parallel_pip_s"] = self.parallel_pip(index_url, f"{label}-par")
            m["uv_cold_s"] = self.uv_install(index_url, f"{label}-uv")
            self.upstream.stop()
            try:
                m["offline_pip_s"] = self.pip_download(index_url, f"{label}-offline")
            finally:
                self.upstream.start()
            time.sleep(1)
            mem = server.memory()
            if kind != "static":
                m["rss_steady_mb"] = mem.get("VmRSS")
                m["rss_peak_mb"] = mem.get("VmHWM")
        finally:
            if kind != "static":
                server.stop()
        return m

    # ------------------------------------------------------------ scale
    def scale(self, kind: str, huge: bool) -> dict[str, float | None]:
        m: dict[str, float | None] = {}
        if kind == "static":
            server: Process = self.static
            index_url = self.static.index_url
            list_url = self.static.base_url + "/huge/simple/"
        else:
            server = self.fresh(kind, "scale")
            server.start()
            index_url = server.index_url  # type: ignore[attr-defined]
            list_url = server.base_url + "/root/hugestage/+simple/"
        try:
            page = index_url + GIANT + "/"
            t0 = time.perf_counter()
            status, _ = http("GET", page, headers={"Accept": "text/html"}, timeout=300)
            m["giant_cold_s"] = time.perf_counter() - t0 if status == 200 else None
            html = self.load(page, self.args.connections, {"Accept": "text/html"})
            js = self.load(page, self.args.connections, {"Accept": JSON_V1})
            m.update(
                giant_html_rps=html.rps, giant_html_p50_ms=html.p50_ms,
                giant_json_rps=js.rps, giant_json_p50_ms=js.p50_ms,
            )  # fmt: skip
            if huge:
                if kind != "static":
                    huge_upstream = self.upstream.base_url + "/huge/simple/"
                    server.create_mirror("huge", huge_upstream)  # type: ignore[attr-defined]
                    server.create_stage("hugestage", ["root/huge"])  # type: ignore[attr-defined]
                m.update(self._huge_list(list_url))
                mem = server.memory()
                m["huge_rss_mb"] = mem.get("VmRSS")
                m["huge_peak_mb"] = mem.get("VmHWM")
        finally:
            if kind != "static":
                server.stop()
        return m

    def _huge_list(self, url: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        t0 = time.perf_counter()
        try:
            status, body = http("GET", url, headers={"Accept": "text/html"}, timeout=600)
        except OSError as e:
            log(f"  {url}: {e}")
            return {"huge_list_cold_s": None}
        out["huge_list_cold_s"] = time.perf_counter() - t0 if status == 200 else None
        out["huge_names_served"] = body.count(b"<a ")
        for fmt, accept in (("html", "text/html"), ("json", JSON_V1)):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                status, body = http("GET", url, headers={"Accept": accept}, timeout=600)
                if status == 200:
                    times.append(time.perf_counter() - t0)
            out[f"huge_list_{fmt}_s"] = report.median(times)
        return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repeat, short loads, 1M list for pkgmirror only (~3 min)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="repeats per server (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results file (default bench/results/DATE.json)"
    )
    parser.add_argument(
        "--servers", default="pkgmirror,devpi,static", help="comma-separated subset"
    )
    parser.add_argument("--seconds", type=float, default=None, help="duration of each load test")
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent connections under load"
    )
    parser.add_argument(
        "--no-scale", action="store_true", help="skip the 2,000-version and 1M-name scenarios"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep bench/.work (server dirs and logs)"
    )
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(report.SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.seconds is None:
        args.seconds = 2 if args.quick else 5
    if args.out is None:
        stamp = time.strftime("%Y-%m-%d-%H%M%S")
        args.out = BENCH / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A stopped run still stops the servers it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    tools = ensure_tools(log)
    dataset = ensure_dataset(BENCH / ".data", log)
    if "devpi" in args.servers:
        ensure_devpi_venv(BENCH / ".venv-devpi", log)
    work = BENCH / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench = Bench(args, dataset, work)
    runs: dict[str, list[dict[str, float | None]]] = {s: [] for s in args.servers}
    scale: dict[str, dict[str, float | None]] = {}
    try:
        log("starting the upstream and static nginx, preparing server directories")
        bench.prepare()
        for rep in range(args.repeat):
            for kind in args.servers:
                log(f"repeat {rep + 1}/{args.repeat}: {kind}")
                runs[kind].append(bench.scenarios(kind, rep))
                log(f"  {_brief(runs[kind][-1])}")
        if not args.no_scale:
            for kind in args.servers:
                huge = not (args.quick and kind == "devpi")
                log(f"scale: {kind}{'' if huge else ' (2,000-version page only)'}")
                scale[kind] = bench.scale(kind, huge)
                log(f"  {_brief(scale[kind])}")
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = report.summarise(runs)
    goals = report.targets(summary, scale)
    text = render(command, summary, scale, goals)
    print()
    print(text)
    results = {
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "tools": tools,
            "devpi": _devpi_version(bench.devpi_venv) if "devpi" in args.servers else None,
        },
        "settings": {
            "repeat": args.repeat,
            "seconds": args.seconds,
            "connections": args.connections,
            "projects": len(dataset.specs),
            "page_project": bench.page_project,
            "big_project": bench.big_project,
        },
        "runs": runs,
        "summary": summary,
        "scale": scale,
        "targets": [t.as_json() for t in goals],
        "table": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def render(
    command: str,
    summary: dict[str, dict[str, Any]],
    scale: dict[str, dict[str, float | None]],
    goals: list[report.Target],
) -> str:
    parts = [f"$ {command}", "", report.results_table(summary)]
    if scale:
        parts += ["", report.results_table(scale, report.SCALE_METRICS)]
    parts += ["", report.targets_table(goals)]
    return "\n".join(parts)


def _brief(m: dict[str, float | None]) -> str:
    return ", ".join(f"{k}={report.fmt(v)}" for k, v in m.items())


def _devpi_version(venv: Path) -> str | None:
    out = subprocess.run(
        [str(venv / "bin" / "devpi-server"), "--version"], capture_output=True, text=True
    )
    return out.stdout.strip() or None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
