"""
The rules of stage merging an uploader relies on: devpi's mirror_whitelist (shadowing),
private_prefixes and yanks set by a stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from pkgmirror.model import IndexConfig, Link, ProjectPage
from pkgmirror.stage import apply_yanks, is_private, merge_pages, mirror_allowed


def stage(
    name: str, whitelist: Sequence[str] = (), inheritance: str = "intersection"
) -> IndexConfig:
    return IndexConfig(
        user="root",
        name=name,
        mirror_whitelist=tuple(whitelist),
        mirror_whitelist_inheritance=inheritance,
    )


MIRROR = IndexConfig(user="root", name="pypi", type="mirror", mirror_url="http://127.0.0.1:1/")


def devpi_blocks(order: Sequence[IndexConfig], project: str, having: set[str]) -> bool:
    """devpi-server's walk (BaseStage.get_mergeable_stages), written out for comparison."""
    whitelisted = private_hit = False
    folded: set[str] | None = None
    for config in order:
        if config.is_mirror:
            return private_hit and not whitelisted
        own = set(config.mirror_whitelist)
        if folded is None:
            folded = own
        elif order[0].mirror_whitelist_inheritance == "union":
            folded = folded | own
        else:
            folded = folded & own
        if folded & {"*", project}:
            whitelisted = True
        elif config.key in having:
            private_hit = True
    return False


lists = st.lists(st.sampled_from(["anytree", "*", "other"]), max_size=2, unique=True)


@given(
    whitelists=st.lists(lists, min_size=1, max_size=4),
    having=st.lists(st.booleans(), min_size=4, max_size=4),
    inheritance=st.sampled_from(["union", "intersection"]),
)
def test_whitelist_rule_is_devpis(
    whitelists: list[list[str]], having: list[bool], inheritance: str
) -> None:
    order = [stage(f"s{i}", w, inheritance) for i, w in enumerate(whitelists)] + [MIRROR]
    with_project = [c.key for c, has in zip(order, having, strict=False) if has and not c.is_mirror]
    allowed = mirror_allowed(order, "anytree", with_project)
    assert allowed == (not devpi_blocks(order, "anytree", set(with_project)))


def page(name: str, *filenames: str) -> ProjectPage:
    return ProjectPage(name=name, links=[Link(filename=f, url=f"/f/{f}") for f in filenames])


def test_upload_shadows_mirror_until_whitelisted() -> None:
    own = page("anytree", "anytree-0.0.1-py3-none-any.whl")
    upstream = page("anytree", "anytree-2.13.0-py3-none-any.whl")
    local = stage("local")
    merged, hidden = merge_pages("anytree", [local, MIRROR], [own, upstream], 0)
    assert [link.filename for link in merged.links] == ["anytree-0.0.1-py3-none-any.whl"]
    assert "not in the mirror_whitelist" in hidden[0].reason and hidden[0].index == "root/pypi"

    local = stage("local", ["anytree"])
    merged, hidden = merge_pages("anytree", [local, MIRROR], [own, upstream], 0)
    assert len(merged.links) == 2 and hidden == []

    # A stage on top inherits the whitelist only with union.
    dev = stage("dev")
    merged, _ = merge_pages("anytree", [dev, local, MIRROR], [None, own, upstream], 0)
    assert len(merged.links) == 1
    dev = stage("dev", inheritance="union")
    merged, _ = merge_pages("anytree", [dev, local, MIRROR], [None, own, upstream], 0)
    assert len(merged.links) == 2


def test_private_prefixes() -> None:
    config = IndexConfig(user="root", name="local", private_prefixes=("acme", "corp.*"))
    assert is_private([config, MIRROR], "acme") == "acme"
    assert is_private([config, MIRROR], "acme-tools") == "acme"
    assert is_private([config, MIRROR], "corp-db") == "corp.*"
    assert is_private([config, MIRROR], "corp") is None
    assert is_private([config, MIRROR], "requests") is None
    # A stage on top is protected by its base's patterns.
    assert is_private([stage("dev"), config, MIRROR], "acme-x") == "acme"


def test_stage_yanks_mark_links_of_that_version() -> None:
    original = page(
        "demo",
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
        "demo-2.0.tar.gz",
    )
    original = ProjectPage(
        name="demo",
        links=[*original.links[:2], Link(filename="demo-2.0.tar.gz", url="/x", yanked="own")],
    )
    yanked = apply_yanks(original, [{"1.0": "broken", "2.0": "ours"}, {"1.0": "later stage"}])
    assert [link.yanked for link in yanked.links] == ["broken", "broken", "own"]
    assert apply_yanks(original, []) is original
