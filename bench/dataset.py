"""
The benchmark's data: which projects, versions and file sizes (a pure spec), and the static
tree built from it, which nginx serves as the upstream and as the static server alike::

    ROOT/files/<filename>                  every wheel and sdist
    ROOT/simple/index.html|index.json      the project list
    ROOT/simple/<project>/index.html|json  a project page (PEP 503 HTML, PEP 691 JSON 1.0)
    ROOT/huge/simple/index.html|json       a list of HUGE_NAMES names (no project pages)

Links are relative (``../../files/F#sha256=...``), so the same tree works on any port.
``giant-project`` has GIANT_VERSIONS versions whose files do not exist: only its page is read.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KB = 1024
MB = 1024 * 1024
GIANT = "giant-project"
GIANT_VERSIONS = 2000
HUGE_NAMES = 1_000_000
# Bump when the tree's layout changes, so an old tree is rebuilt rather than reused.
LAYOUT = 3


@dataclass(frozen=True)
class DistSpec:
    project: str
    version: str
    kind: str  # "wheel" or "sdist"
    payload: int  # incompressible bytes inside the archive

    @property
    def filename(self) -> str:
        stem = f"{self.project.replace('-', '_')}-{self.version}"
        return f"{stem}-py3-none-any.whl" if self.kind == "wheel" else f"{stem}.tar.gz"


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    versions: tuple[str, ...]
    kinds: tuple[str, ...]  # which archives each version has
    payload: int

    def dists(self) -> Iterator[DistSpec]:
        for version in self.versions:
            for kind in self.kinds:
                yield DistSpec(self.name, version, kind, self.payload)


_WORDS = (
    "alpha", "beacon", "cobalt", "delta", "ember", "falcon", "garnet", "harbor", "indigo",
    "juniper", "kestrel", "lumen", "magnet", "nimbus", "onyx", "pylon", "quartz", "raven",
    "saffron", "tundra", "umber", "vortex", "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip


def _versions(rng: random.Random, count: int) -> tuple[str, ...]:
    """``count`` increasing versions, a mix of minor and patch releases."""
    major, minor, patch = rng.randint(0, 3), 0, 0
    out = []
    for _ in range(count):
        out.append(f"{major}.{minor}.{patch}")
        step = rng.random()
        if step < 0.6:
            patch += 1
        elif step < 0.95:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
    return tuple(out)


def projects() -> list[ProjectSpec]:
    """
    51 projects: 30 small ones (1-5 versions, 5-60 KB), 6 with 30-120 versions, 8 medium
    (0.2-3 MB), 3 big (8, 15 and 25 MB wheels) and 4 that only ship sdists. Deterministic.
    """
    rng = random.Random(8)
    specs: list[ProjectSpec] = []
    names = iter(f"{a}-{b}" for a in _WORDS for b in _WORDS if a != b)
    both = ("wheel", "sdist")
    for _ in range(30):
        specs.append(
            ProjectSpec(
                next(names), _versions(rng, rng.randint(1, 5)), both, rng.randint(5, 60) * KB
            )
        )
    for count in (30, 45, 60, 80, 100, 120):
        specs.append(ProjectSpec(next(names), _versions(rng, count), both, rng.randint(2, 10) * KB))
    for _ in range(8):
        specs.append(
            ProjectSpec(
                next(names), _versions(rng, rng.randint(2, 4)), both, rng.randint(200, 3000) * KB
            )
        )
    for size in (8, 15, 25):
        specs.append(ProjectSpec(next(names), _versions(rng, 2), ("wheel",), size * MB))
    for _ in range(4):
        specs.append(
            ProjectSpec(next(names), _versions(rng, rng.randint(1, 3)), ("sdist",), 4 * KB)
        )
    return specs


def requirements(specs: list[ProjectSpec]) -> list[str]:
    """What the pip scenarios ask for: every project, unpinned (pip picks the newest)."""
    return [spec.name for spec in specs]


def spec_digest(specs: list[ProjectSpec]) -> str:
    text = repr((LAYOUT, GIANT_VERSIONS, HUGE_NAMES, specs))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def total_bytes_downloaded(specs: list[ProjectSpec]) -> int:
    """Roughly what one pip download of the set moves (payloads of the newest versions)."""
    return sum(spec.payload for spec in specs)


def huge_names(count: int) -> Iterator[str]:
    """``count`` distinct, plausible project names, in a stable order."""
    rng = random.Random(1_000_000)
    for i in range(count):
        a, b = rng.choice(_WORDS), rng.choice(_WORDS)
        yield f"{a}-{b}-{i:x}"


# ------------------------------------------------------------------ building the tree


@dataclass(frozen=True)
class Dataset:
    root: Path
    specs: list[ProjectSpec]

    @property
    def files(self) -> Path:
        return self.root / "files"

    def biggest_file(self) -> Path:
        return max(self.files.iterdir(), key=lambda p: p.stat().st_size)


def ensure_dataset(base: Path, log: object = print) -> Dataset:
    """The tree for the current spec under ``base``: reused when complete, else (re)built."""
    specs = projects()
    root = base / f"data-{spec_digest(specs)}"
    marker = root / "complete"
    if marker.exists():
        return Dataset(root, specs)
    if root.exists():
        shutil.rmtree(root)
    assert callable(log)
    log(f"building the data set in {root} (once; later runs reuse it)")
    from pkgmirror.testing.dists import build_sdist, build_wheel

    files = root / "files"
    pages: dict[str, list[dict[str, object]]] = {}
    for spec in specs:
        entries = pages.setdefault(spec.name, [])
        for dist in spec.dists():
            build = build_wheel if dist.kind == "wheel" else build_sdist
            path = build(
                files,
                dist.project,
                dist.version,
                summary=f"{dist.project} benchmark dist",
                payload_size=dist.payload,
            )
            assert path.name == dist.filename, (path.name, dist.filename)
            entries.append(
                {
                    "filename": path.name,
                    "sha256": _sha256(path),
                    "requires-python": ">=3.8",
                }
            )
    giant = pages.setdefault(GIANT, [])
    for i in range(GIANT_VERSIONS):
        version = f"{i // 100}.{i % 100}.0"
        for suffix in ("-py3-none-any.whl", ".tar.gz"):
            filename = f"giant_project-{version}{suffix}"
            giant.append(
                {"filename": filename, "sha256": hashlib.sha256(filename.encode()).hexdigest()}
            )
    simple = root / "simple"
    for name, entries in pages.items():
        _write_project_page(simple / name, name, entries)
    _write_list(simple, sorted(pages))
    _write_list(root / "huge" / "simple", huge_names(HUGE_NAMES))
    marker.write_text("ok\n")
    return Dataset(root, specs)


PEP658_PAGES = "simple-658"


def ensure_pep658_pages(dataset: Dataset) -> str:
    """
    The same projects as ``simple/``, with every wheel's core metadata advertised and served
    next to it (``<wheel>.metadata``), as the public index does: the reference for what a
    PEP 658 index costs pip. Added to an existing data set on first use. Returns the path part
    of the index URL.
    """
    from pkgmirror.metadata import extract_core_metadata

    root = dataset.root / PEP658_PAGES
    if (root / "complete").exists():
        return PEP658_PAGES
    names = []
    for spec in dataset.specs:
        entries: list[dict[str, object]] = []
        for dist in spec.dists():
            path = dataset.files / dist.filename
            entry: dict[str, object] = {
                "filename": dist.filename,
                "sha256": _sha256(path),
                "requires-python": ">=3.8",
            }
            if dist.kind == "wheel":
                data = extract_core_metadata(str(path), dist.filename)
                assert data is not None, dist.filename
                (dataset.files / f"{dist.filename}.metadata").write_bytes(data)
                entry["core-metadata"] = hashlib.sha256(data).hexdigest()
            entries.append(entry)
        _write_project_page(root / spec.name, spec.name, entries)
        names.append(spec.name)
    _write_list(root, sorted(names))
    (root / "complete").write_text("ok\n")
    return PEP658_PAGES


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MB):
            digest.update(block)
    return digest.hexdigest()


def _write_project_page(directory: Path, name: str, entries: list[dict[str, object]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    files = []
    for entry in entries:
        filename = str(entry["filename"])
        url = f"../../files/{filename}"
        requires = entry.get("requires-python")
        attr = f' data-requires-python="{html.escape(str(requires))}"' if requires else ""
        metadata = entry.get("core-metadata")
        if metadata:
            attr += (
                f' data-dist-info-metadata="sha256={metadata}"'
                f' data-core-metadata="sha256={metadata}"'
            )
        lines.append(f'<a href="{url}#sha256={entry["sha256"]}"{attr}>{filename}</a><br/>')
        item: dict[str, object] = {
            "filename": filename,
            "url": url,
            "hashes": {"sha256": entry["sha256"]},
        }
        if requires:
            item["requires-python"] = requires
        if metadata:
            item["core-metadata"] = item["dist-info-metadata"] = {"sha256": metadata}
        files.append(item)
    body = (
        "<!DOCTYPE html>\n<html><head><title>Links for {0}</title></head><body>"
        "<h1>Links for {0}</h1>\n{1}\n</body></html>\n"
    ).format(name, "\n".join(lines))
    (directory / "index.html").write_text(body)
    document = {"meta": {"api-version": "1.0"}, "name": name, "files": files}
    (directory / "index.json").write_text(json.dumps(document))


def _write_list(directory: Path, names: Iterator[str] | list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp_html = directory / "index.html.tmp"
    tmp_json = directory / "index.json.tmp"
    with open(tmp_html, "w") as h, open(tmp_json, "w") as j:
        h.write("<!DOCTYPE html>\n<html><head><title>Simple index</title></head><body>\n")
        j.write('{"meta": {"api-version": "1.0"}, "projects": [')
        first = True
        for name in names:
            h.write(f'<a href="{name}/">{name}</a>\n')
            j.write(("" if first else ", ") + json.dumps({"name": name}))
            first = False
        h.write("</body></html>\n")
        j.write("]}\n")
    os.replace(tmp_html, directory / "index.html")
    os.replace(tmp_json, directory / "index.json")
