"""`k2 query` is read-only: which statements DuckDB's parser lets through (no stack needed)."""

from __future__ import annotations

import pytest

from k2.query.engine import refuse_writes
from k2.query.exceptions import QueryError

READS = [
    "select 1",
    "from range(2)",
    "with a as (select 1) select * from a",
    "select 1; select 2",
    "show tables",
    "describe select 1",
    "pragma version",
    "explain select 1",
    "explain analyze select 1",
    "explain (format json) select 1",
    "explain (analyze, format json) select 1",
    "selec 1",  # does not parse: execution reports DuckDB's syntax error
]
WRITES = [
    "create table x as select 1",
    "select 1; create table x as select 1",
    "insert into t values (1)",
    "copy t to 'x.csv'",
    "explain analyze copy (select 1) to 'x.csv'",
    "EXPLAIN (ANALYZE, FORMAT JSON) copy (select 1) to 'x.csv'",
    "attach 'x.db'",
    "set threads = 1",
    "pragma threads = 1",
    "pragma enable_profiling",
    "use main",
    "checkpoint",
    "load httpfs",
    "begin",
    "export database 'x'",
    "drop view trades",
]


@pytest.mark.parametrize("sql", READS)
def test_reads_are_allowed(sql: str) -> None:
    refuse_writes(sql)


@pytest.mark.parametrize("sql", WRITES)
def test_writes_and_settings_are_refused(sql: str) -> None:
    with pytest.raises(QueryError, match="read-only"):
        refuse_writes(sql)
