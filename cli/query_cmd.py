"""``k2 query`` and ``k2 candles``: DuckDB over the Iceberg tables (query/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .output import FORMATS, emit
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


def _write(rows: list[dict[str, Any]], fmt: str, output: Path | None, columns: Any = None) -> None:
    if output is None:
        emit(rows, fmt, columns)
        return
    from .output import render

    output.write_text(render(rows, fmt, columns) + "\n")
    click.echo(f"Wrote {len(rows)} rows to {output}", err=True)


@click.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([*FORMATS, "parquet"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@click.option("--snapshot", "snapshot_id", type=int, help="Read the table that has this snapshot id at it.")
@click.option(
    "--as-of", "as_of", help="Read every table as its main branch was at this UTC time, e.g. 2026-11-27T12:00:00."
)
@click.pass_obj
def query(
    settings: Settings, sql: str, fmt: str, output: Path | None, snapshot_id: int | None, as_of: str | None
) -> None:
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
    table = Lake(settings.catalog_uri, snapshot_id=snapshot_id, as_of=as_of).query(sql)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            raise click.UsageError("--format parquet needs --output FILE")
        pq.write_table(table, output)
        click.echo(f"Wrote {table.num_rows} rows to {output}", err=True)
        return
    _write(table.to_pylist(), fmt, output, table.column_names)


@click.command()
@click.argument("symbol")
@click.option("--interval", type=click.Choice(["1m", "5m", "15m", "1h", "1d"]), default="1m", show_default=True)
@click.option("--since", default="1970-01-01T00:00:00Z", help="Start (UTC, inclusive).  [default: beginning]")
@click.option("--until", default="9999-12-31T00:00:00Z", help="End (UTC, exclusive).  [default: no end]")
@click.option("--table", "table", default="market_data.trades", show_default=True, help="Trades table to read.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@click.pass_obj
def candles(
    settings: Settings, symbol: str, interval: str, since: str, until: str, table: str, fmt: str, output: Path | None
) -> None:
    """OHLCV candles with VWAP, quote volume and trade count from the Iceberg trades, oldest first.

    Open and close are the first and last trade by trade_time then trade_id; arithmetic is exact
    decimal (VWAP rounded half-even to 8 places). The SQL is query/sql/candles.sql.

    \b
    Examples:
      k2 candles BTCUSDT --interval 1m
      k2 candles ETHUSDT --interval 1h --since 2026-11-27T00:00:00Z --format json
    """
    from k2.query.engine import Lake
    from k2.query.engine import candles as compute

    lake = Lake(settings.catalog_uri, trades=table)
    _write(compute(lake, symbol.upper(), interval, since, until), fmt, output, CANDLE_COLUMNS)


def _window(last: str | None, since: str | None, until: str | None) -> tuple[str, str]:
    from datetime import UTC, datetime, timedelta

    units = {"m": "minutes", "h": "hours", "d": "days"}
    if since:
        return since, until or "9999-12-31T00:00:00Z"
    text = last or "24h"
    try:
        delta = timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError):
        raise click.BadParameter(f"{text!r} is not a window like 30m, 24h or 7d", param_hint="--last") from None
    end = datetime.now(UTC)
    return (end - delta).isoformat(), (until or end.isoformat())


@click.command()
@click.argument("symbols", nargs=-1)
@click.option("--last", help="Window ending now: 30m, 24h, 7d.  [default: 24h]")
@click.option("--since", help="Window start (UTC, inclusive); overrides --last.")
@click.option("--until", help="Window end (UTC, exclusive).  [default: now]")
@click.option("--table", "table", default="market_data.trades", show_default=True, help="Trades table to read.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_obj
def volume(
    settings: Settings,
    symbols: tuple[str, ...],
    last: str | None,
    since: str | None,
    until: str | None,
    table: str,
    fmt: str,
) -> None:
    """Volume, quote volume, VWAP and trade count per symbol over a window (default: all symbols, 24h).

    \b
    Examples:
      k2 volume
      k2 volume BTCUSDT ETHUSDT --last 1h --format json
      k2 volume --since 2026-11-26T00:00:00Z --until 2026-11-27T00:00:00Z
    """
    from k2.query.engine import Lake
    from k2.query.engine import volume as compute

    start, end = _window(last, since, until)
    lake = Lake(settings.catalog_uri, trades=table)
    rows = compute(lake, [s.upper() for s in symbols], start, end)
    columns = ("symbol", "volume", "quote_volume", "vwap", "trade_count", "first_trade", "last_trade")
    emit(rows, fmt, columns)
