"""
Big name lists as one string: NameList, NameSorter, parse_name_list and the list renderers
give what the plain list-based code gives.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pkgmirror.namelist import NameList, NameSorter
from pkgmirror.simple.negotiate import JSON_V1
from pkgmirror.simple.parse import parse_name_list, parse_project_list
from pkgmirror.simple.render import (
    iter_list_html,
    iter_list_json,
    render_list_html,
    render_list_json,
)
from pkgmirror.testing.strategies import hostile_text, project_names

# Names as upstreams write them: valid ones, odd text, and a few that share long prefixes (so
# the sorter's buckets and the splice search meet neighbours that differ late).
any_names = st.lists(
    st.one_of(project_names(), hostile_text(), st.sampled_from(["a", "aa", "a-b", "ab", "Ab"])),
    max_size=80,
)


def plain(names: list[str]) -> list[str]:
    """What the list-based code made of an upstream's names: sorted, unique, none empty."""
    return sorted({n for n in names if n and "\n" not in n})


@given(any_names)
def test_of_sorts_and_deduplicates(names: list[str]) -> None:
    listed = NameList.of(names)
    assert list(listed) == plain(names)
    assert len(listed) == len(plain(names))
    assert bool(listed) == bool(plain(names))


@given(any_names, st.integers(min_value=1, max_value=40))
def test_blocks_cover_every_name_once(names: list[str], chars: int) -> None:
    listed = NameList.of(names)
    assert [n for block in listed.blocks(chars) for n in block] == plain(names)


@given(any_names, any_names)
def test_merged_is_the_union(names: list[str], extra: list[str]) -> None:
    merged = NameList.of(names).merged(extra)
    assert list(merged) == plain(names + extra)
    assert merged == NameList.of(names + extra)


def test_merging_a_few_names_into_many_splices_them() -> None:
    many = NameList.of(f"project-{i}" for i in range(5000))
    merged = many.merged(["project-1", "zzz", "0", "project-10a", "project-10a"])
    assert list(merged) == sorted({*many, "zzz", "0", "project-10a"})
    assert many.merged([]) is many
    assert many.merged(["project-7"]) == many


@given(st.lists(any_names, max_size=5))
def test_sorter_takes_names_in_any_number_of_batches(batches: list[list[str]]) -> None:
    sorter = NameSorter()
    for batch in batches:
        sorter.extend(batch)
    everything = [n for batch in batches for n in batch]
    assert list(sorter.result()) == plain(everything)
    assert list(sorter.result()) == []  # empty afterwards


def test_sorter_past_its_batch_size() -> None:
    names = [f"{chr(97 + i % 26)}{i * 7919 % 100_003}" for i in range(100_000)]
    assert list(NameList.of(names + names[:500])) == plain(names)


@given(any_names)
def test_parse_name_list_matches_parse_project_list(names: list[str]) -> None:
    for body, content_type in (
        (render_list_html(names), "text/html"),
        (render_list_json(names), JSON_V1),
    ):
        expected = plain(list(parse_project_list(body, content_type).names))
        assert list(parse_name_list(body, content_type)) == expected


def test_parse_name_list_json_reads_only_projects() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.1", "owner": {"name": "not-a-project"}},
            "projects": [{"name": "b"}, {"name": "a", "_last-serial": 3}, "c", {"name": 5}],
        }
    ).encode()
    assert list(parse_name_list(body, JSON_V1)) == ["a", "b", "c"]
    body = json.dumps({"projects": [{"name": "x\ny"}, {"name": "z"}, {"name": ""}]}).encode()
    assert list(parse_name_list(body, JSON_V1)) == ["z"]


@given(any_names)
def test_pieces_are_the_rendered_page(names: list[str]) -> None:
    listed = NameList.of(names)
    assert b"".join(iter_list_html(listed)) == render_list_html(plain(names))
    assert b"".join(iter_list_json(listed)) == render_list_json(plain(names))


# Queries: fragments of the names themselves as well as arbitrary text.
fragments = st.one_of(st.sampled_from(["a", "ab", "a-", "-b", "b", "A"]), hostile_text())


@given(any_names, fragments, st.integers(min_value=1, max_value=100))
def test_searches_find_what_a_scan_of_the_list_finds(
    names: list[str], query: str, limit: int
) -> None:
    listed = NameList.of(names)
    every = plain(names)
    assert listed.starting_with(query, limit) == [n for n in every if n.startswith(query)][:limit]
    wanted = [n for n in every if query in n] if query and "\n" not in query else []
    assert listed.containing(query, limit) == wanted[:limit]
    for name in every:
        assert name in listed
    assert (query in listed) == (query in every)
