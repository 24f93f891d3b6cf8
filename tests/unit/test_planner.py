"""The scan planner's pure parts: Iceberg's time partition ranges, branch guards, merging, path reading."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from k2.query import planner
from k2.query.planner import PartitionField, _guard, _hive_options, _merged, _spans, _time_range, mentions

DAY = PartitionField("trade_day", "trade_time", "timestamptz", "day")
SYMBOL = PartitionField("symbol", "symbol", "string", "identity")
COLUMNS = ["symbol", "trade_time", "price"]


@pytest.mark.parametrize(
    ("transform", "value", "start", "end"),
    [
        ("day", date(2026, 11, 5), datetime(2026, 11, 5), datetime(2026, 11, 6)),
        ("day", 20397, datetime(2025, 11, 5), datetime(2025, 11, 6)),  # days since 1970-01-01
        ("hour", 24, datetime(1970, 1, 2, 0), datetime(1970, 1, 2, 1)),
        ("hour", -1, datetime(1969, 12, 31, 23), datetime(1970, 1, 1, 0)),
        ("month", 11, datetime(1970, 12, 1), datetime(1971, 1, 1)),
        ("month", 682, datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("year", 56, datetime(2026, 1, 1), datetime(2027, 1, 1)),
    ],
)
def test_time_partitions_cover_icebergs_ranges(transform: str, value: object, start: datetime, end: datetime) -> None:
    assert _time_range(transform, value) == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


def test_a_guard_says_what_the_partition_guarantees() -> None:
    spans = _spans([DAY, SYMBOL], (date(2026, 11, 5), "O'NEIL"))
    assert _guard([DAY, SYMBOL], spans) == (
        "\"trade_time\" >= CAST('2026-11-05 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AND "
        "\"trade_time\" < CAST('2026-11-06 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AND \"symbol\" = 'O''NEIL'"
    )
    # a null partition value or a transform that is not a range bounds nothing
    bucket = PartitionField("id_bucket", "trade_id", "long", "bucket[16]")
    assert _guard([SYMBOL, bucket], _spans([SYMBOL, bucket], (None, 3))) == ""


def test_a_guard_is_true_for_every_row_of_its_partition_and_false_outside() -> None:
    guard = _guard([DAY], _spans([DAY], (date(2026, 11, 5),)))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    probe = "SELECT {guard} FROM (SELECT CAST(? AS TIMESTAMPTZ) AS trade_time)"
    for moment, inside in [
        ("2026-11-05 00:00:00+00", True),
        ("2026-11-05 23:59:59.999999+00", True),
        ("2026-11-06 00:00:00+00", False),
        ("2026-11-04 23:59:59.999999+00", False),
        ("2026-11-05 01:00:00+02", False),  # 23:00 UTC the day before
    ]:
        assert con.execute(probe.format(guard=guard), [moment]).fetchone() == (inside,), moment


def test_partitions_beyond_the_limit_merge_into_runs_with_outer_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner, "MAX_BRANCHES", 2)
    groups = {
        (date(2026, 11, day), symbol): [f"{symbol}-{day}.parquet"] for day in (1, 2, 3) for symbol in ("BTC", "ETH")
    }
    branches = _merged([DAY, SYMBOL], groups)
    assert [files for _, files in branches] == [
        ["BTC-1.parquet", "BTC-2.parquet", "BTC-3.parquet"],
        ["ETH-1.parquet", "ETH-2.parquet", "ETH-3.parquet"],
    ]
    spans, _ = branches[0]
    assert spans["symbol"] == ("BTC", "BTC", False)
    assert spans["trade_time"] == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC), True)


def test_identity_values_come_from_paths_only_when_the_paths_spell_them_exactly() -> None:
    plain = {"/w/t/data/trade_day=2026-11-05/symbol=ETHUSDT/a.parquet": (date(2026, 11, 5), "ETHUSDT")}
    assert "hive_partitioning = true" in _hive_options(plain, [DAY, SYMBOL], COLUMNS)
    escaped = {"/w/t/data/trade_day=2026-11-05/symbol=ETH+USDT/a.parquet": (date(2026, 11, 5), "ETH USDT")}
    assert "hive_partitioning = false" in _hive_options(escaped, [DAY, SYMBOL], COLUMNS)
    null_word = {"/w/t/data/trade_day=2026-11-05/symbol=NULL/a.parquet": (date(2026, 11, 5), "NULL")}
    assert "hive_partitioning = false" in _hive_options(null_word, [DAY, SYMBOL], COLUMNS)  # DuckDB reads it as NULL
    stray = {"/w/x=1/t/data/trade_day=2026-11-05/symbol=ETHUSDT/a.parquet": (date(2026, 11, 5), "ETHUSDT")}
    assert "hive_partitioning = false" in _hive_options(stray, [DAY, SYMBOL], COLUMNS)
    other_layout = {"/w/t/data/a.parquet": (date(2026, 11, 5), "ETHUSDT")}
    assert "hive_partitioning = false" in _hive_options(other_layout, [DAY, SYMBOL], COLUMNS)


def test_mentions_matches_whole_words_only() -> None:
    assert mentions("select max(TRADE_TIME) from trades", "trade_time")
    assert mentions('select * from "trades" where x', "trades")
    assert not mentions("select trade_times from t", "trade_time")
    assert not mentions("select * from market_data.trades_1m", "trades")


def test_a_path_key_that_is_also_a_column_by_case_is_not_read_from_paths() -> None:
    """DuckDB matches names case-insensitively: hive key 'day' would replace a string column 'Day'."""
    day = PartitionField("day", "trade_time", "timestamptz", "day")
    files = {"/w/t/data/day=2026-11-05/a.parquet": (date(2026, 11, 5),)}
    assert "hive_partitioning = false" in _hive_options(files, [day], ["Day", "trade_time"])
    assert "hive_partitioning = true" in _hive_options(files, [day], ["weekday", "trade_time"])


def test_a_string_with_a_nul_byte_gets_no_guard() -> None:
    assert _spans([SYMBOL], ("A\x00B",)) == {"symbol": None}
