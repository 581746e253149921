"""
HTTP load: wrk when it is installed, else a small keep-alive load generator in threads (slower,
so its figures are only comparable within one run, which is all the benchmark compares).
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

_UNITS_TIME = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True)
class LoadResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    mb_per_s: float
    errors: int


def parse_wrk(text: str) -> LoadResult:
    """wrk's report (run with ``--latency``) as figures."""
    rps = float(_search(r"Requests/sec:\s+([\d.]+)", text))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", text)
    mb_per_s = (
        float(transfer.group(1)) * _UNITS_BYTES[transfer.group(2)] / 1024**2 if transfer else 0.0
    )
    requests = int(_search(r"(\d+) requests in", text))
    percentiles = {
        int(p): float(v) * _UNITS_TIME[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        # Read errors are how wrk counts servers that close after each response (devpi's
        # simple pages do): those requests were answered, so only the others count.
        errors += sum(int(socket_errors.group(i)) for i in (1, 3, 4))
    return LoadResult(
        requests, rps, percentiles.get(50, 0.0), percentiles.get(99, 0.0), mb_per_s, errors
    )


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"no {pattern!r} in wrk's output:\n{text}")
    return match.group(1)


def run_load(
    url: str, seconds: float, connections: int, headers: dict[str, str] | None = None
) -> LoadResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        return python_load(url, seconds, connections, headers)
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    return parse_wrk(out.stdout)


def python_load(
    url: str, seconds: float, connections: int, headers: dict[str, str] | None = None
) -> LoadResult:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    counts = {"bytes": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        mine: list[float] = []
        nbytes = errors = 0
        while time.perf_counter() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(
                    parts.hostname or "127.0.0.1", parts.port, timeout=30
                )
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
                nbytes += len(response.read())
                if response.status >= 400:
                    errors += 1
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            mine.append((time.perf_counter() - t0) * 1000)
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            counts["bytes"] += nbytes
            counts["errors"] += errors

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    took = time.perf_counter() - t0
    latencies.sort()
    return LoadResult(
        len(latencies),
        len(latencies) / took,
        percentile(latencies, 50),
        percentile(latencies, 99),
        counts["bytes"] / took / 1024**2,
        counts["errors"],
    )


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]
