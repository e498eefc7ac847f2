"""Index versions by the names people type: `current`, `previous` and unique prefixes, not only
the full `20261205T123456Z-1a2b3c4d` that `lakerag index list` prints."""

from __future__ import annotations

import json

import pytest
from lakerag.index.errors import IndexRejected
from lakerag.index.publish import resolve_version
from lakerag.store import open_store

VERSIONS = ["20261201T090000Z-aaaa1111", "20261203T090000Z-bbbb2222", "20261203T100000Z-cccc3333"]


@pytest.fixture
def store(tmp_path):
    store = open_store(f"file://{tmp_path / 'store'}")
    for version in VERSIONS:
        store.put(f"index/{version}/manifest.json", json.dumps({"version": version}).encode())
    store.put("index/20261204T000000Z-dddd4444/vectors.faiss", b"half-published: no manifest")
    store.put("index/CURRENT", VERSIONS[1].encode())
    return store


@pytest.mark.parametrize("name, expected", [
    ("20261203T090000Z-bbbb2222", VERSIONS[1]),  # a full name is itself
    ("current", VERSIONS[1]), ("CURRENT", VERSIONS[1]),
    ("previous", VERSIONS[0]),  # the version published before CURRENT, whatever is newer
    ("20261201", VERSIONS[0]), ("20261203T10", VERSIONS[2]),  # unique prefixes
    ("cccc3333", VERSIONS[2]),  # the fingerprint alone, as a prefix of the name's tail
])
def test_a_version_is_found_by_the_names_people_type(store, name, expected):
    assert resolve_version(store, name) == expected


def test_an_ambiguous_prefix_names_the_versions_it_matches(store):
    with pytest.raises(IndexRejected, match="matches 2 versions") as caught:
        resolve_version(store, "20261203")
    assert VERSIONS[1] in str(caught.value) and VERSIONS[2] in str(caught.value)


def test_an_unknown_or_unfinished_version_is_refused_with_the_published_ones(store):
    for name in ("20990101T000000Z-deadbeef", "20261204", "dddd4444"):  # the last two: no manifest
        with pytest.raises(IndexRejected, match="no published index version") as caught:
            resolve_version(store, name)
        assert "`lakerag index list`" in str(caught.value) and VERSIONS[0] in str(caught.value)


def test_previous_and_current_say_when_there_is_none(tmp_path, store):
    store.put("index/CURRENT", VERSIONS[0].encode())
    with pytest.raises(IndexRejected, match="no version published before CURRENT"):
        resolve_version(store, "previous")
    empty = open_store(f"file://{tmp_path / 'empty'}")
    for name in ("current", "previous"):
        with pytest.raises(IndexRejected, match="no index version published yet"):
            resolve_version(empty, name)
