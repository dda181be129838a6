import dagster as dg
import pytest

from dam_pipeline.keys import ROOT_PARTITION, decode_prefix, encode_prefix, vector_id

AWKWARD_PREFIXES = [
    "holidays",
    "2024/july",
    "with space",
    "café ☕ 東京",
    "space ✨",
    "zero\u200bwidth",
    "100% real",
    "a,b",
    "..",
    ".hidden",
    "dots...in...middle",
    "~root",
    "back\\slash",
    "tab\there",
]


@pytest.mark.parametrize("prefix", AWKWARD_PREFIXES)
def test_prefix_round_trips_and_is_a_safe_file_name(prefix: str) -> None:
    key = encode_prefix(prefix)
    assert decode_prefix(key) == prefix
    assert "/" not in key and "\\" not in key and "," not in key
    assert "..." not in key and not key.startswith(".")
    assert key != ROOT_PARTITION


@pytest.mark.parametrize(
    ("prefix", "key"),
    [("space ✨", "space ✨"), ("café ☕ 東京", "café ☕ 東京"), ("100% real", "100%25 real")],
)
def test_partition_keys_stay_readable_where_dagster_allows(prefix: str, key: str) -> None:
    assert encode_prefix(prefix) == key


def test_top_level_has_its_own_partition() -> None:
    assert encode_prefix("") == ROOT_PARTITION
    assert decode_prefix(ROOT_PARTITION) == ""


def test_dagster_accepts_every_encoded_key(instance: dg.DagsterInstance) -> None:
    keys = [encode_prefix(p) for p in AWKWARD_PREFIXES]
    instance.add_dynamic_partitions("image_prefixes", keys)
    assert set(instance.get_dynamic_partitions("image_prefixes")) == set(keys)


def test_vector_ids_are_deterministic_and_distinct() -> None:
    first = vector_id("s3://bucket", "a/cat.jpg")
    assert first == vector_id("s3://bucket", "a/cat.jpg")
    assert first != vector_id("s3://bucket", "b/cat.jpg")
    assert first != vector_id("s3://other", "a/cat.jpg")
