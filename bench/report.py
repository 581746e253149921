"""
Pure parts of the benchmark's report: medians over repeats, ratios, the targets of issue 8,
and the table. No I/O; ``tests/test_bench.py`` checks them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SERVERS = ("pkgmirror", "devpi", "static")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


METRICS = (
    Metric("cold_pip_s", "pip download, cold", "s", False),
    Metric("warm_pip_s", "pip download, warm", "s", False),
    Metric("offline_pip_s", "pip download, upstream stopped", "s", False),
    Metric("pep658_pip_s", "pip download, PEP 658 pages", "s", False),
    Metric("parallel_pip_s", "8 parallel pip downloads, warm", "s", False),
    Metric("uv_cold_s", "uv install, cold uv cache", "s", False),
    Metric("html_rps", "project page HTML, req/s", "/s", True),
    Metric("html_p50_ms", "project page HTML, p50", "ms", False),
    Metric("html_p99_ms", "project page HTML, p99", "ms", False),
    Metric("json_rps", "project page JSON, req/s", "/s", True),
    Metric("json_p50_ms", "project page JSON, p50", "ms", False),
    Metric("json_p99_ms", "project page JSON, p99", "ms", False),
    Metric("file_mb_s", "cached 25 MB file, MB/s", "MB/s", True),
    Metric("small_file_rps", "cached small file, req/s", "/s", True),
    Metric("start_s", "start to first answer", "s", False),
    Metric("rss_steady_mb", "memory, steady (VmRSS)", "MB", False),
    Metric("rss_peak_mb", "memory, peak (VmHWM)", "MB", False),
)

SCALE_METRICS = (
    Metric("giant_cold_s", "2,000-version page, first fetch", "s", False),
    Metric("giant_html_rps", "2,000-version page HTML, req/s", "/s", True),
    Metric("giant_html_p50_ms", "2,000-version page HTML, p50", "ms", False),
    Metric("giant_json_rps", "2,000-version page JSON, req/s", "/s", True),
    Metric("giant_json_p50_ms", "2,000-version page JSON, p50", "ms", False),
    Metric("huge_list_cold_s", "1M-name stage list, first", "s", False),
    Metric("huge_list_html_s", "1M-name stage list HTML, again", "s", False),
    Metric("huge_list_json_s", "1M-name stage list JSON, again", "s", False),
    Metric("huge_names_served", "names in the list served", "", True),
    Metric("huge_rss_mb", "memory after the 1M list (VmRSS)", "MB", False),
    Metric("huge_peak_mb", "memory peak with the 1M list (VmHWM)", "MB", False),
)


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(
    runs: Mapping[str, Sequence[Mapping[str, float | None]]],
) -> dict[str, dict[str, Any]]:
    """Per server, the median of each metric over its repeats (peak memory: the maximum)."""
    out: dict[str, dict[str, Any]] = {}
    for server, repeats in runs.items():
        keys = {k for r in repeats for k in r}
        row: dict[str, Any] = {}
        for key in sorted(keys):
            values = [r.get(key) for r in repeats]
            if key == "rss_peak_mb":
                present = [v for v in values if v is not None]
                row[key] = max(present) if present else None
            else:
                row[key] = median(values)
        out[server] = row
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    limit: float
    at_most: bool  # value must be <= limit (else >=; strictly < for "below")
    strict: bool = False

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        if self.at_most:
            return self.value < self.limit if self.strict else self.value <= self.limit
        return self.value > self.limit if self.strict else self.value >= self.limit

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "at_most": self.at_most,
            "met": self.met,
        }


def targets(
    summary: Mapping[str, Mapping[str, Any]], scale: Mapping[str, Mapping[str, Any]]
) -> list[Target]:
    """Issue 8's targets, evaluated on medians."""
    pm = summary.get("pkgmirror", {})
    dv = summary.get("devpi", {})
    st = summary.get("static", {})
    out = [
        Target(
            "HTML pages: req/s vs devpi >= 10x",
            ratio(pm.get("html_rps"), dv.get("html_rps")),
            10,
            False,
        ),
        Target(
            "JSON pages: req/s vs devpi >= 10x",
            ratio(pm.get("json_rps"), dv.get("json_rps")),
            10,
            False,
        ),
        Target(
            "HTML pages: p99 / devpi's p50 < 1",
            ratio(pm.get("html_p99_ms"), dv.get("html_p50_ms")),
            1,
            True,
            strict=True,
        ),
        Target(
            "JSON pages: p99 / devpi's p50 < 1",
            ratio(pm.get("json_p99_ms"), dv.get("json_p50_ms")),
            1,
            True,
            strict=True,
        ),
        Target(
            "cached file MB/s vs static >= 0.8x",
            ratio(pm.get("file_mb_s"), st.get("file_mb_s")),
            0.8,
            False,
        ),
        Target(
            "cold pip vs straight from the upstream <= 1.3x",
            ratio(pm.get("cold_pip_s"), st.get("cold_pip_s")),
            1.3,
            True,
        ),
        Target(
            "warm pip vs static <= 1.1x",
            ratio(pm.get("warm_pip_s"), st.get("warm_pip_s")),
            1.1,
            True,
        ),
        Target(
            "offline pip vs static <= 1.1x",
            ratio(pm.get("offline_pip_s"), st.get("offline_pip_s")),
            1.1,
            True,
        ),
        # Not issue 8's: pip against nginx serving the same files with PEP 658 metadata (as the
        # public index does), so pip makes the same requests as it does to pkgmirror.
        Target(
            "(reference) cold pip vs nginx with PEP 658 <= 1.3x",
            ratio(pm.get("cold_pip_s"), st.get("pep658_pip_s")),
            1.3,
            True,
        ),
        Target(
            "(reference) warm pip vs nginx with PEP 658 <= 1.1x",
            ratio(pm.get("warm_pip_s"), st.get("pep658_pip_s")),
            1.1,
            True,
        ),
        Target("start to first answer < 1 s", pm.get("start_s"), 1.0, True, strict=True),
        Target("steady memory < 80 MB", pm.get("rss_steady_mb"), 80, True, strict=True),
        Target("peak memory over the run < 150 MB", pm.get("rss_peak_mb"), 150, True, strict=True),
    ]
    huge_peak = scale.get("pkgmirror", {}).get("huge_peak_mb")
    out.append(
        Target("peak memory with the 1M-name upstream < 300 MB", huge_peak, 300, True, strict=True)
    )
    return out


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not unit:
        return f"{value:,}"
    v = float(value)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def results_table(
    summary: Mapping[str, Mapping[str, Any]], metrics: Sequence[Metric] = METRICS
) -> str:
    """Medians per server, and pkgmirror's ratio to devpi and to the static server."""
    servers = [s for s in SERVERS if s in summary]
    headers = ["scenario", *servers]
    if "devpi" in summary:
        headers.append("pkgmirror/devpi")
    if "static" in summary:
        headers.append("pkgmirror/static")
    rows = []
    for metric in metrics:
        if not any(summary[s].get(metric.key) is not None for s in servers):
            continue
        unit = f" ({metric.unit})" if metric.unit and metric.unit not in metric.label else ""
        row = [metric.label + unit]
        row += [fmt(summary[s].get(metric.key), metric.unit) for s in servers]
        pm = summary.get("pkgmirror", {}).get(metric.key)
        if "devpi" in summary:
            row.append(fmt_ratio(ratio(pm, summary["devpi"].get(metric.key))))
        if "static" in summary:
            row.append(fmt_ratio(ratio(pm, summary["static"].get(metric.key))))
        rows.append(row)
    return markdown_table(headers, rows)


def targets_table(items: Sequence[Target]) -> str:
    rows = [
        [
            t.name,
            fmt(t.value),
            ("< " if t.strict else "<= ") + fmt(t.limit) if t.at_most else ">= " + fmt(t.limit),
            "-" if t.met is None else ("met" if t.met else "NOT met"),
        ]
        for t in items
    ]
    return markdown_table(["target", "value", "wanted", "status"], rows)
