"""The maintainer's planners over generated table states: what they may rewrite, expire and delete.

These functions decide which of a user's files are rewritten and deleted, so their invariants are
checked over many generated states (hypothesis), in milliseconds and without services; the crash and
race tests on the real stack are in tests/integration/test_maintain*.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.transforms import BucketTransform, DayTransform
from pyiceberg.types import StringType, TimestamptzType

from k2.connect.maintenance import (
    COMPACT,
    LiveFile,
    Policy,
    SnapshotRecord,
    SpecField,
    plan_expiry,
    plan_orphans,
    plan_rewrites,
)
from k2.connect.storage import StoredFile, file_key, keys

TODAY = date(2026, 12, 7)
TODAY_DAYS = (TODAY - date(1970, 1, 1)).days
FIELDS = [
    SpecField("trade_day", "trade_time", TimestamptzType(), DayTransform()),
    SpecField("symbol_bucket", "symbol", StringType(), BucketTransform(16)),
]
POLICY = Policy(max_small_files_per_partition=12, target_file_size=64 * 1024 * 1024, tier_fanout=4)

live_file_lists = st.lists(
    st.tuples(
        st.integers(TODAY_DAYS - 3, TODAY_DAYS),  # three finished days and today
        st.integers(0, 3),  # bucket
        st.one_of(st.integers(1, 300_000), st.integers(64 * 1024 * 1024, 80 * 1024 * 1024)),  # small or full size
    ),
    max_size=120,
)


def as_files(generated: list[tuple[int, int, int]]) -> list[LiveFile]:
    return [
        LiveFile(f"s3://b/t/data/{n}.parquet", size, 0, (day, bucket))
        for n, (day, bucket, size) in enumerate(generated)
    ]


@given(live_file_lists)
def test_each_file_is_in_at_most_one_rewrite_and_every_rewrite_stays_in_its_partition(
    generated: list[tuple[int, int, int]],
) -> None:
    files = as_files(generated)
    by_path = {f.path: f for f in files}
    rewrites = plan_rewrites("t", FIELDS, 0, files, TODAY, POLICY)
    chosen = Counter(path for r in rewrites for path in r.paths)
    assert all(count == 1 for count in chosen.values())
    for planned in rewrites:
        assert len(planned.paths) >= 2, "rewriting one file alone changes nothing"
        assert {by_path[p].partition for p in planned.paths} == {planned.partition}
        assert planned.size_bytes == sum(by_path[p].size for p in planned.paths)
        finished = planned.partition[0] < TODAY_DAYS
        assert (planned.kind == COMPACT) == finished
        if not finished:
            assert all(by_path[p].size < POLICY.target_file_size for p in planned.paths), "a full file is never merged"


@given(live_file_lists)
def test_finished_partitions_are_compacted_whole_and_live_ones_end_under_their_bound(
    generated: list[tuple[int, int, int]],
) -> None:
    files = as_files(generated)
    rewrites = plan_rewrites("t", FIELDS, 0, files, TODAY, POLICY)
    by_partition: dict[tuple[int, int], list[LiveFile]] = {}
    for live_file in files:
        by_partition.setdefault(live_file.partition, []).append(live_file)
    for partition, group in by_partition.items():
        mine = [r for r in rewrites if r.partition == partition]
        if partition[0] < TODAY_DAYS:
            assert [r.paths for r in mine] == ([frozenset(f.path for f in group)] if len(group) > 1 else [])
            continue
        # Each merge of small files writes one file (their sum stays under the target here or not: count
        # it as one more small file either way): what the partition holds after the cycle.
        merged = {p for r in mine for p in r.paths}
        small_left = [f for f in group if f.path not in merged and f.size < POLICY.target_file_size]
        assert len(small_left) + len(mine) <= POLICY.max_small_files_per_partition


snapshot_lists = st.lists(st.integers(0, 10_000), min_size=1, max_size=60, unique=True)


@given(snapshot_lists, st.integers(0, 10_000), st.integers(1, 40), st.data())
def test_expiry_never_touches_a_branch_or_tag_head_and_keeps_the_newest(
    times: list[int], cutoff_ms: int, max_snapshots: int, data: st.DataObject
) -> None:
    snapshots = [SnapshotRecord(1000 + i, t, i) for i, t in enumerate(times)]
    protected = set(data.draw(st.lists(st.sampled_from([s.snapshot_id for s in snapshots]), max_size=4)))
    cutoff = datetime.fromtimestamp(cutoff_ms / 1000, UTC)
    expired = set(plan_expiry(snapshots, protected, cutoff, max_snapshots))
    assert not expired & protected
    newest = sorted(snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number), reverse=True)
    for rank, snapshot in enumerate(newest):
        old = snapshot.timestamp_ms < cutoff_ms or rank >= max_snapshots
        assert (snapshot.snapshot_id in expired) == (old and snapshot.snapshot_id not in protected)


stored_lists = st.lists(
    st.tuples(st.sampled_from(["data/a", "data/b", "metadata/m", "metadata/.m", "data/c d"]), st.integers(0, 99)),
    max_size=40,
    unique=True,
)


@given(stored_lists, st.data(), st.sampled_from(["file:", "s3://bucket"]))
@settings(max_examples=200)
def test_an_orphan_is_never_referenced_nor_newer_than_the_cutoff(
    generated: list[tuple[str, int]], data: st.DataObject, root: str
) -> None:
    stored = [
        StoredFile(f"{root}/wh/t/{stem}{n}{'.crc' if stem.endswith('/.m') else ''}", n, float(n))
        for stem, n in generated
    ]
    referenced = {f.location for f in data.draw(st.lists(st.sampled_from(stored), max_size=10))} if stored else set()
    # Metadata names a file as it likes: file:///x, file:/x, /x; s3a:// for s3://; percent-encoded or not.
    spelled = {
        location.replace("file:", "file://", 1).replace(" ", "%20").replace("s3://", "s3a://")
        for location in referenced
    }
    cutoff = datetime.fromtimestamp(50, UTC)
    orphans = plan_orphans(stored, keys(spelled), cutoff)
    kept_keys = {file_key(location) for location in referenced}
    for orphan in orphans:
        assert orphan.mtime < 50
        assert orphan.key not in kept_keys
        if orphan.key.rsplit("/", 1)[-1].startswith(".") and orphan.key.endswith(".crc"):
            companion = orphan.key.rsplit("/", 1)[0] + "/" + orphan.key.rsplit("/", 1)[-1][1:-4]
            assert companion not in kept_keys, "a checksum goes with the file it checks"
    unreferenced_old = [f for f in stored if f.mtime < 50 and f.key not in kept_keys and not f.key.endswith(".crc")]
    assert set(unreferenced_old) <= set(orphans), "every old unreferenced data or metadata file is found"


def test_file_keys_name_one_file_however_the_metadata_spells_it() -> None:
    assert file_key("file:/wh/t/a.parquet") == file_key("file:///wh/t/a.parquet") == file_key("/wh/t/a.parquet")
    assert file_key("s3a://bucket/t/a.parquet") == file_key("s3://bucket/t/a.parquet") == "s3://bucket/t/a.parquet"
    assert file_key("s3://bucket/t/a.parquet") != file_key("s3://other/t/a.parquet")
    assert "/wh/t/x y.parquet" in keys({"file:/wh/t/x%20y.parquet"})


def test_a_table_without_a_time_field_is_compacted_whenever_a_partition_has_several_files() -> None:
    fields = [SpecField("symbol_bucket", "symbol", StringType(), BucketTransform(4))]
    files = [LiveFile(f"/t/{n}", 10, 0, (n % 2,)) for n in range(5)]
    rewrites = plan_rewrites("t", fields, 0, files, TODAY, POLICY)
    assert sorted((r.kind, r.label, len(r.paths)) for r in rewrites) == [
        (COMPACT, "symbol_bucket=0", 3),
        (COMPACT, "symbol_bucket=1", 2),
    ]


def test_labels_show_days_and_buckets_as_people_read_them() -> None:
    files = [LiveFile(f"/t/{n}", 10, 0, (TODAY_DAYS - 1, 5)) for n in range(2)]
    (planned,) = plan_rewrites("t", FIELDS, 0, files, TODAY, POLICY)
    assert planned.label == f"trade_day={TODAY - timedelta(days=1)}/symbol_bucket=5"
