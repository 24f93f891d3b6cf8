"""``k2 query``, ``k2 candles`` and ``k2 volume``: DuckDB over the Iceberg tables (query/)."""

from __future__ import annotations

import click

from k2.query import BEGINNING, DEFAULT_TRADES, INTERVALS, NO_END

from .options import MOMENT, POSITIVE_DURATION, symbols_option
from .output import emit, emit_table, format_option
from .settings import Settings

CANDLE_COLUMNS = (
    "symbol",
    "interval_start",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "vwap",
    "trade_count",
)


@click.command()
@click.argument("sql")
@format_option(rows=True)
@click.option(
    "--snapshot", "snapshot_id", type=int, help="Read each table as of snapshot ID (ids: `k2 tables snapshots`)."
)
@click.option(
    "--as-of",
    "as_of",
    type=MOMENT,
    help="Read every table as its main branch was at this UTC time, e.g. 2026-11-27T12:00:00.",
)
@click.pass_obj
def query(settings: Settings, sql: str, fmt: str, snapshot_id: int | None, as_of: str | None) -> None:
    """Run read-only DuckDB SQL over the attached Iceberg REST catalog (trades, market_data.trades).

    Every statement reads each table's newest snapshot; --snapshot reads the table that has that
    snapshot, --as-of reads every table as its main branch was then (never a branch or a rolled-back
    snapshot). Decimals print exactly, timestamps as UTC ISO-8601. Statements that write are refused.

    \b
    Examples:
      k2 query "select symbol, count(*) from trades group by 1"
      k2 query "select * from market_data.trades order by trade_time desc limit 5" --format json
      k2 query "select count(*) from trades" --as-of 2026-11-27T12:00:00
      k2 query "select * from trades" --format parquet --output /tmp/trades.parquet
    """
    from k2.query.engine import Lake

    if snapshot_id is not None and as_of is not None:
        raise click.UsageError("--snapshot and --as-of do not go together: pick one")
    from k2.query.engine import parse_problem, refuse_writes

    # Before the catalog is reached: text that is not SQL, or a write, is refused with the catalog away.
    if not sql.strip():
        raise click.ClickException('no SQL given: k2 query "select count(*) from trades"')
    problem = parse_problem(sql)
    if problem:  # one line, as the read-only refusal below and DuckDB's own errors are
        raise click.ClickException(f"the SQL does not parse: {problem}")
    refuse_writes(sql)
    lake = Lake(settings.catalog_uri, snapshot_id=snapshot_id, as_of=as_of)
    if fmt == "parquet":
        emit_table(lake.query(sql), fmt)
        return
    columns, rows = lake.rows(sql)
    emit([dict(zip(columns, row, strict=True)) for row in rows], fmt, columns)


@click.command()
@symbols_option("Symbols to compute candles for.", required=True)
@click.option(
    "--interval",
    type=click.Choice(list(INTERVALS)),
    default="1m",
    show_default=True,
    help="Candle length.",
)
@click.option("--since", type=MOMENT, default=BEGINNING, help="Start (UTC, inclusive).  [default: beginning]")
@click.option("--until", type=MOMENT, default=NO_END, help="End (UTC, exclusive).  [default: no end]")
@click.option("--table", "table", default=DEFAULT_TRADES, show_default=True, help="Trades table to read.")
@format_option(rows=True)
@click.pass_obj
def candles(
    settings: Settings, symbols: list[str], interval: str, since: str, until: str, table: str, fmt: str
) -> None:
    """OHLCV candles with VWAP, quote volume and trade count from the Iceberg trades, oldest first.

    Open and close are the first and last trade by trade_time then trade_id; arithmetic is exact
    decimal (VWAP rounded half-even to 8 places). The SQL is query/sql/candles.sql.

    \b
    Examples:
      k2 candles --symbols BTCUSDT --interval 1m
      k2 candles --symbols ETHUSDT,BTCUSDT --interval 1h --since 2026-11-27T00:00:00Z --format json
      k2 candles --symbols BTCUSDT --format parquet --output btc-1m.parquet
    """
    from k2.query.engine import Lake
    from k2.query.market import candles as compute

    since, until = _ordered(since, until)
    lake = Lake(settings.catalog_uri, trades=table)
    emit([row for symbol in symbols for row in compute(lake, symbol, interval, since, until)], fmt, CANDLE_COLUMNS)


def _window(last: float, since: str | None, until: str | None) -> tuple[str, str]:
    from datetime import UTC, datetime, timedelta

    if since:
        return _ordered(since, until or NO_END)
    end = datetime.now(UTC)
    return _ordered((end - timedelta(seconds=last)).isoformat(), until or end.isoformat())


def _ordered(since: str, until: str) -> tuple[str, str]:
    """The window, refused before any query when it holds no instant (--until at or before its start)."""
    from datetime import datetime

    if datetime.fromisoformat(until.replace("Z", "+00:00")) <= datetime.fromisoformat(since.replace("Z", "+00:00")):
        raise click.UsageError(f"the window is empty: --until {until} is not after its start {since}")
    return since, until


@click.command()
@symbols_option("Symbols to report.  [default: every symbol in the table]")
@click.option(
    "--last", type=POSITIVE_DURATION, default="24h", show_default=True, help="Window ending now, e.g. 30m or 7d."
)
@click.option("--since", type=MOMENT, help="Window start (UTC, inclusive); overrides --last.")
@click.option("--until", type=MOMENT, help="Window end (UTC, exclusive).  [default: now]")
@click.option("--table", "table", default=DEFAULT_TRADES, show_default=True, help="Trades table to read.")
@format_option(rows=True)
@click.pass_obj
def volume(
    settings: Settings,
    symbols: list[str] | None,
    last: float,
    since: str | None,
    until: str | None,
    table: str,
    fmt: str,
) -> None:
    """Volume, quote volume, VWAP and trade count per symbol over a window (default: all symbols, 24h).

    \b
    Examples:
      k2 volume
      k2 volume --symbols BTCUSDT,ETHUSDT --last 1h --format json
      k2 volume --since 2026-11-26T00:00:00Z --until 2026-11-27T00:00:00Z
    """
    from k2.query.engine import Lake
    from k2.query.market import volume as compute

    start, end = _window(last, since, until)
    lake = Lake(settings.catalog_uri, trades=table)
    rows = compute(lake, symbols or [], start, end)
    columns = ("symbol", "volume", "quote_volume", "vwap", "trade_count", "first_trade", "last_trade")
    emit(rows, fmt, columns)
