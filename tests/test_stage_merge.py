"""
stage.merge_pages and the shadowing rule, as properties over generated resolution orders.

The reference for the mirror whitelist is devpi-server's own walk (devpi-http-api.md §9): the
stages' whitelists are combined in resolution order (union, or intersection, as the index asked
for says), and once the combination so far names the project (or ``*``) mirrors are allowed;
otherwise any stage that has the project hides every mirror's releases of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgmirror.model import IndexConfig, Link, ProjectPage, iso_time
from pkgmirror.stage import is_private, merge_pages, mirror_allowed, release_cutoff

PROJECT = "demo"
NOW = 1_700_000_000.0
FILENAMES = [f"demo-{v}.tar.gz" for v in ("1.0", "1.1", "2.0", "3.0")]
WHITELISTS = st.lists(st.sampled_from([PROJECT, "*", "other"]), unique=True, max_size=2)


@st.composite
def orders(draw: st.DrawFn) -> list[IndexConfig]:
    """The index asked for (a stage), more stages, then mirrors: as resolution_order gives."""
    inheritance = draw(st.sampled_from(["union", "intersection"]))
    stages = [
        IndexConfig(
            user="u",
            name=f"s{i}",
            mirror_whitelist=tuple(draw(WHITELISTS)),
            mirror_whitelist_inheritance=inheritance
            if i == 0
            else draw(st.sampled_from(["union", "intersection"])),
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    mirrors = [
        IndexConfig(user="root", name=f"m{i}", type="mirror")
        for i in range(draw(st.integers(0, 3)))
    ]
    return stages + mirrors


@st.composite
def pages_for(draw: st.DrawFn, order: Sequence[IndexConfig]) -> list[ProjectPage | None]:
    pages: list[ProjectPage | None] = []
    for config in order:
        if draw(st.booleans()):
            pages.append(None)
            continue
        names = draw(st.lists(st.sampled_from(FILENAMES), unique=True, max_size=3))
        links = [
            Link(
                filename=name,
                url=f"https://{config.name}.invalid/{name}",
                upload_time=draw(st.none() | st.floats(NOW - 10 * 86400, NOW).map(iso_time)),
                origin=config.key,
            )
            for name in names
        ]
        pages.append(ProjectPage(name=PROJECT, links=links))
    return pages


def devpi_allows_mirrors(order: Sequence[IndexConfig], pages: Sequence[ProjectPage | None]) -> bool:
    """devpi-server's walk over the resolution order, written out plainly."""
    union = order[0].mirror_whitelist_inheritance == "union"
    combined: set[str] | None = None
    whitelisted = private_hit = False
    for config, page in zip(order, pages, strict=True):
        if config.is_mirror:
            continue
        own = set(config.mirror_whitelist)
        combined = own if combined is None else (combined | own if union else combined & own)
        if combined & {"*", PROJECT}:
            whitelisted = True
        elif page is not None and page.links:
            private_hit = True
    return whitelisted or not private_hit


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_merge_properties(data: st.DataObject) -> None:
    order = data.draw(orders())
    pages = data.draw(pages_for(order))
    merged, hidden = merge_pages(PROJECT, order, pages, NOW)
    allow = devpi_allows_mirrors(order, pages)
    stages_with = [
        c.key for c, p in zip(order, pages, strict=True) if not c.is_mirror and p and p.links
    ]
    assert mirror_allowed(order, PROJECT, stages_with) == allow

    included = [
        page
        for config, page in zip(order, pages, strict=True)
        if page is not None and (allow or not config.is_mirror)
    ]
    # De-duplicated by file name, the first index in the order winning.
    filenames = [link.filename for link in merged.links]
    assert len(filenames) == len(set(filenames))
    first: dict[str, Link] = {}
    for page in included:
        for link in page.links:
            first.setdefault(link.filename, link)
    assert {link.filename: link for link in merged.links} == first
    # Every version any included index has is listed: versions are not de-duplicated.
    assert set(filenames) == {link.filename for page in included for link in page.links}
    # A blocked mirror with something to show is named for the people reading the page.
    blocked = {
        c.key
        for c, p in zip(order, pages, strict=True)
        if c.is_mirror and p is not None and p.links and not allow
    }
    assert {h.index for h in hidden} == blocked
    if not allow:
        assert all(not link.origin or link.origin.startswith("u/") for link in merged.links)


def test_a_stage_upload_hides_the_mirror_until_whitelisted() -> None:
    local = IndexConfig(user="root", name="local", bases=("root/pypi",))
    pypi = IndexConfig(user="root", name="pypi", type="mirror")
    upload = ProjectPage(name="anytree", links=[Link("anytree-0.0.1.tar.gz", "local/x")])
    upstream = ProjectPage(name="anytree", links=[Link("anytree-2.13.0.tar.gz", "pypi/x")])
    merged, hidden = merge_pages("anytree", [local, pypi], [upload, upstream], NOW)
    assert [link.filename for link in merged.links] == ["anytree-0.0.1.tar.gz"]
    assert [h.index for h in hidden] == ["root/pypi"]
    assert "mirror_whitelist" in hidden[0].reason
    listed = attrs.evolve(local, mirror_whitelist=("anytree",))
    merged, hidden = merge_pages("anytree", [listed, pypi], [upload, upstream], NOW)
    assert {link.filename for link in merged.links} == {
        "anytree-0.0.1.tar.gz",
        "anytree-2.13.0.tar.gz",
    }
    assert hidden == []


def test_whitelist_inheritance_union_and_intersection() -> None:
    # dev inherits from local, which has its own "demo" upload and whitelists it.
    def order(inheritance: str, dev_list: tuple[str, ...] = ()) -> list[IndexConfig]:
        dev = IndexConfig(
            user="u",
            name="dev",
            bases=("root/local",),
            mirror_whitelist=dev_list,
            mirror_whitelist_inheritance=inheritance,
        )
        local = IndexConfig(user="root", name="local", mirror_whitelist=("demo",))
        return [dev, local, IndexConfig(user="root", name="pypi", type="mirror")]

    assert mirror_allowed(order("union"), "demo", ["root/local"])
    assert not mirror_allowed(order("intersection"), "demo", ["root/local"])
    assert mirror_allowed(order("intersection", ("demo",)), "demo", ["root/local"])
    assert mirror_allowed(order("intersection", ("*",)), "demo", ["u/dev", "root/local"])
    # devpi: the index asked for whitelisting it is enough, whatever its bases say.
    unlisted = [
        attrs.evolve(c, mirror_whitelist=()) if c.name == "local" else c
        for c in order("intersection", ("demo",))
    ]
    assert mirror_allowed(unlisted, "demo", ["root/local"])


@given(st.floats(0, 30 * 86400), st.lists(st.floats(NOW - 60 * 86400, NOW), max_size=6))
def test_min_release_age_cutoff(age: float, uploads: list[float]) -> None:
    config = IndexConfig(user="u", name="dev", min_release_age=str(int(age)))
    links = [
        Link(f"demo-{i}.0.tar.gz", f"x/{i}", upload_time=iso_time(t)) for i, t in enumerate(uploads)
    ]
    undated = Link("demo-old.tar.gz", "x/old")
    page = ProjectPage(name=PROJECT, links=[*links, undated])
    merged, hidden = merge_pages(PROJECT, [config], [page], NOW)
    cutoff = release_cutoff(config, PROJECT, NOW)
    assert cutoff == NOW - int(age)
    kept = {link.filename for link in merged.links}
    for link, uploaded in zip(links, uploads, strict=True):
        # iso_time keeps microseconds: only a hair's breadth around the cutoff may go either way.
        if uploaded < cutoff - 1e-3:
            assert link.filename in kept
        elif uploaded > cutoff + 1e-3:
            assert link.filename not in kept
    assert undated.filename in kept, "files without an upload time are never held back"
    young = len(links) + 1 - len(kept)
    assert bool(hidden) == bool(young)
    exempt = attrs.evolve(config, min_release_age_exempt=(PROJECT,))
    assert release_cutoff(exempt, PROJECT, NOW) is None
    everything, _ = merge_pages(PROJECT, [exempt], [page], NOW)
    assert len(everything.links) == len(links) + 1


@given(
    st.sampled_from(["corp-", "corp", "Corp_", "corp*", "internal-*-lib"]),
    st.sampled_from(["corp-tools", "corp", "corpus", "internal-x-lib", "public", "Corp.Tools"]),
)
def test_private_prefixes(pattern: str, project: str) -> None:
    from pkgmirror.names import normalize

    name = normalize(project)
    order = [IndexConfig(user="u", name="dev", private_prefixes=(pattern,))]
    hit = is_private(order, name)
    assert hit in (None, pattern)
    if "*" not in pattern:
        assert (hit is not None) == name.startswith(normalize(pattern))
    assert is_private([IndexConfig(user="u", name="dev")], name) is None
