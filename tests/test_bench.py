"""
The benchmark harness's pure parts (bench/): data set spec, wrk parsing, medians, ratios,
targets and the table. Nothing here starts a server or times anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench import dataset, report
from bench.dataset import Dataset, ProjectSpec, ensure_pep658_pages
from bench.load import parse_wrk, percentile

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:1234/root/local/+simple/x/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.26ms  404.35us   9.82ms   91.05%
    Req/Sec     6.40k   412.10     6.84k    85.00%
  Latency Distribution
     50%    1.18ms
     75%    1.31ms
     90%    1.52ms
     99%    3.05ms
  12745 requests in 2.00s, 150.31MB read
  Socket errors: connect 0, read 12, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:   6371.82
Transfer/sec:     75.14MB
"""


def test_dataset_spec_matches_the_issue() -> None:
    specs = dataset.projects()
    assert specs == dataset.projects(), "the spec must be deterministic"
    assert len(specs) >= 40
    assert len({s.name for s in specs}) == len(specs)
    sizes = [s.payload for s in specs]
    assert min(sizes) <= 10 * dataset.KB and max(sizes) == 25 * dataset.MB
    assert max(len(s.versions) for s in specs) >= 100
    assert any(s.kinds == ("sdist",) for s in specs)
    for spec in specs:
        assert len(set(spec.versions)) == len(spec.versions)
        assert len(list(spec.dists())) == len(spec.versions) * len(spec.kinds)
    assert dataset.requirements(specs) == [s.name for s in specs]
    names = list(dataset.huge_names(2000))
    assert len(set(names)) == 2000


def test_dist_filenames_match_the_builder() -> None:
    from pkgmirror.testing.dists import sdist_filename, wheel_filename

    dist = dataset.DistSpec("alpha-beacon", "1.2.0", "wheel", 1)
    assert dist.filename == wheel_filename("alpha-beacon", "1.2.0")
    sdist = dataset.DistSpec("alpha-beacon", "1.2.0", "sdist", 1)
    assert sdist.filename == sdist_filename("alpha-beacon", "1.2.0")


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests == 12745
    assert result.rps == 6371.82
    assert result.p50_ms == 1.18 and result.p99_ms == 3.05
    assert round(result.mb_per_s, 2) == 75.14
    # Read errors are connections the server closed after answering; the rest count.
    assert result.errors == 3
    assert parse_wrk(WRK_OUTPUT.replace("3.05ms", "250.00us")).p99_ms == 0.25


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([], 50) == 0.0


def test_summary_takes_medians_and_the_highest_peak() -> None:
    runs = {
        "pkgmirror": [
            {"html_rps": 100.0, "rss_peak_mb": 50.0, "uv_cold_s": None},
            {"html_rps": 300.0, "rss_peak_mb": 70.0, "uv_cold_s": 2.0},
            {"html_rps": 200.0, "rss_peak_mb": 60.0, "uv_cold_s": 4.0},
        ]
    }
    summary = report.summarise(runs)
    assert summary["pkgmirror"] == {"html_rps": 200.0, "rss_peak_mb": 70.0, "uv_cold_s": 3.0}


def test_targets_and_table() -> None:
    summary = {
        "pkgmirror": {
            "html_rps": 5000.0,
            "html_p99_ms": 3.0,
            "json_rps": 1000.0,
            "json_p99_ms": 30.0,
            "cold_pip_s": 1.2,
            "warm_pip_s": 1.0,
            "file_mb_s": 900.0,
            "start_s": 0.3,
            "rss_peak_mb": 151.0,
        },
        "devpi": {"html_rps": 250.0, "html_p50_ms": 20.0, "json_rps": 250.0, "json_p50_ms": 20.0},
        "static": {
            "cold_pip_s": 1.0,
            "warm_pip_s": 1.0,
            "file_mb_s": 1000.0,
            "pep658_pip_s": 1.0,
        },
    }
    goals = {t.name: t for t in report.targets(summary, {"pkgmirror": {"huge_peak_mb": 200.0}})}
    assert goals["HTML pages: req/s vs devpi >= 10x"].met is True
    assert goals["JSON pages: req/s vs devpi >= 10x"].met is False
    assert goals["HTML pages: p99 / devpi's p50 < 1"].met is True
    assert goals["JSON pages: p99 / devpi's p50 < 1"].met is False
    assert goals["cached file MB/s vs static >= 0.8x"].met is True
    assert goals["cold pip vs straight from the upstream <= 1.3x"].met is True
    assert goals["warm pip vs static <= 1.1x"].met is True
    assert goals["offline pip vs static <= 1.1x"].met is None
    assert goals["start to first answer < 1 s"].met is True
    assert goals["(reference) cold pip vs nginx with PEP 658 <= 1.3x"].met is True
    assert goals["(reference) warm pip vs nginx with PEP 658 <= 1.1x"].met is True
    assert goals["peak memory over the run < 150 MB"].met is False
    assert goals["peak memory with the 1M-name upstream < 300 MB"].met is True

    table = report.results_table(summary).splitlines()
    headers = [cell.strip() for cell in table[0].split("|")[1:-1]]
    assert headers == [
        "scenario",
        "pkgmirror",
        "devpi",
        "static",
        "pkgmirror/devpi",
        "pkgmirror/static",
    ]
    html_row = next(line for line in table if line.startswith("| project page HTML, req/s"))
    assert "20.00x" in html_row
    cold_row = next(line for line in table if line.startswith("| pip download, cold"))
    assert "1.20x" in cold_row
    assert len({len(line) for line in table}) == 1, "columns line up"
    assert "NOT met" in report.targets_table(list(goals.values()))


def test_ratio_and_format() -> None:
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.ratio(None, 2.0) is None
    assert report.ratio(1.0, 0.0) is None
    assert report.fmt(None) == "-"
    assert report.fmt(1234.4) == "1,234"
    assert report.fmt(0.256) == "0.26"
    assert report.fmt_ratio(None) == "-"


def test_pep658_pages_advertise_and_serve_each_wheels_metadata(tmp_path: Path) -> None:
    from pkgmirror.testing.dists import build_sdist, build_wheel

    spec = ProjectSpec("demo-pkg", ("1.0",), ("wheel", "sdist"), 0)
    files = tmp_path / "files"
    build_wheel(files, "demo-pkg", "1.0")
    build_sdist(files, "demo-pkg", "1.0")
    dataset = Dataset(tmp_path, [spec])
    part = ensure_pep658_pages(dataset)
    page = json.loads((tmp_path / part / "demo-pkg" / "index.json").read_text())
    wheel, sdist = page["files"]
    served = (files / (wheel["filename"] + ".metadata")).read_bytes()
    assert served.startswith(b"Metadata-Version:")
    digest = {"sha256": hashlib.sha256(served).hexdigest()}
    assert wheel["core-metadata"] == wheel["dist-info-metadata"] == digest
    assert "core-metadata" not in sdist
    html = (tmp_path / part / "demo-pkg" / "index.html").read_text()
    assert f'data-core-metadata="sha256={digest["sha256"]}"' in html
    assert "demo-pkg" in (tmp_path / part / "index.html").read_text()
