"""
How fast the HTML pages and project search answer, on a real ``twistd pkgmirror``.

    python bench/pages_bench.py [--projects 10000] [--mirror-names 100000] [--requests 50]

A stage index root/local with PROJECTS projects (two versions each) over a mirror root/pypi
whose upstream lists MIRROR_NAMES names (written into storage, so no upstream runs). Each page
is asked for once cold (the first request builds caches), then REQUESTS times over one
keep-alive connection; it prints median and 95th percentile milliseconds and writes JSON.
The goal: every page under 50 ms for an index with 10,000 projects. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pkgmirror.model import ReleaseFile, iso_time  # noqa: E402
from pkgmirror.namelist import NameList  # noqa: E402
from pkgmirror.storage.sqlite import SQLiteStorage  # noqa: E402
from pkgmirror.storage.threads import run_synchronously  # noqa: E402
from pkgmirror.testing.server import ServerProcess  # noqa: E402

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def seed(serverdir: Path, projects: int, mirror_names: int) -> None:
    from pkgmirror.config import make_index_config

    results: list[Any] = []
    SQLiteStorage.open(str(serverdir / "pkgmirror.sqlite"), runner=run_synchronously).addBoth(
        results.append
    )
    storage = results.pop()
    config = make_index_config("root", "local", {"bases": "root/pypi", "title": "Bench"})
    storage.put_index(config).addBoth(results.append)
    now = time.time()
    for i in range(projects):
        for j, version in enumerate(("1.0", "1.1")):
            sha = f"{i:032x}{j:032x}"
            storage.add_release_file(
                ReleaseFile(
                    index="root/local",
                    project=f"proj-{i:05d}",
                    version=version,
                    filename=f"proj_{i:05d}-{version}-py3-none-any.whl",
                    sha256=sha,
                    size=1000 + i,
                    upload_time=iso_time(now - i),
                    metadata={
                        "summary": f"Project {i}",
                        "description": f"# proj-{i}\n\nSome *markdown*.\n",
                        "description_content_type": "text/markdown",
                    },
                ),
                False,
            ).addBoth(results.append)
    names = NameList.of(f"upstream-name-{i:07d}" for i in range(mirror_names))
    storage.put_mirror_names("root/pypi", names, None, now + 365 * 86400).addBoth(results.append)
    failures = [r for r in results if hasattr(r, "getErrorMessage")]
    if failures:
        raise SystemExit(f"seeding failed: {failures[0].getErrorMessage()}")
    storage.close()


def measure(port: int, path: str, count: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def once() -> float:
        started = time.perf_counter()
        connection.request("GET", path, headers={"Accept": BROWSER})
        response = connection.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {body[:200]!r}")
        return took

    cold = once()
    times = sorted(once() for _ in range(count))
    connection.close()
    return {
        "cold_ms": round(cold, 2),
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--mirror-names", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pages.json")
    args = parser.parse_args()
    from pkgmirror.serverinit import init_serverdir

    with tempfile.TemporaryDirectory(prefix="pkgmirror-pages-bench-") as tmp:
        serverdir = Path(tmp) / "server"
        init_serverdir(str(serverdir), "rootpw", "sqlite", "standalone", False, None)
        started = time.monotonic()
        seed(serverdir, args.projects, args.mirror_names)
        print(f"seeded in {time.monotonic() - started:.1f} s", flush=True)
        middle = f"proj-{args.projects // 2:05d}"
        paths = [
            "/",
            "/root",
            "/root/local",
            f"/root/local?page={max(1, args.projects // 500)}",
            f"/root/local/{middle}",
            f"/root/local/{middle}/1.1",
            f"/root/local/+search?q={middle[:-1]}",  # prefix
            "/root/local/+search?q=0099",  # substring, over stage and mirror names
            "/root/local/+search?q=nothing-has-this",  # a full scan
            "/+search?q=name-00500",
            "/+status",
        ]
        results: dict[str, Any] = {}
        with ServerProcess.start(serverdir, timeout=120) as server:
            for path in paths:
                results[path] = measure(server.port, path, args.requests)
                r = results[path]
                print(
                    f"{path:45} cold {r['cold_ms']:8.1f}  median {r['median_ms']:6.1f}  "
                    f"p95 {r['p95_ms']:6.1f} ms",
                    flush=True,
                )
        worst = max(r["p95_ms"] for r in results.values())
        print(f"slowest p95: {worst:.1f} ms (goal: under 50 ms)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "projects": args.projects,
                    "mirror_names": args.mirror_names,
                    "requests": args.requests,
                    "pages": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
