"""Candles and volume over the trades table: the SQL of sql/, exact decimals, VWAP rounded half-even."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

from . import INTERVALS
from .engine import Lake
from .exceptions import QueryError

SQL_DIR = Path(__file__).resolve().parent / "sql"
EIGHT_PLACES = Decimal("0.00000001")


def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def vwap(quote_volume: Decimal, volume: Decimal) -> Decimal:
    """quote_volume / volume in exact decimal arithmetic, rounded half-even to 8 places."""
    if not volume:
        return Decimal(0)
    with localcontext() as context:
        context.prec = 80  # wide enough that the division itself never rounds before the quantize
        return (Decimal(quote_volume) / Decimal(volume)).quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN)


def candles(lake: Lake, symbol: str, interval: str, since: str, until: str) -> list[dict[str, Any]]:
    """OHLCV candles with VWAP, quote volume and trade count (see sql/candles.sql)."""
    if interval not in INTERVALS:
        raise QueryError(f"unknown interval {interval!r}; use one of {', '.join(INTERVALS)}")
    table = lake.query(
        read_sql("candles"), {"symbol": symbol, "bucket": INTERVALS[interval], "since": since, "until": until}
    )
    return [dict(row, vwap=vwap(row["quote_volume"], row["volume"])) for row in table.to_pylist()]


def volume(lake: Lake, symbols: list[str], since: str, until: str) -> list[dict[str, Any]]:
    """Volume, quote volume, VWAP and trade count per symbol (see sql/volume.sql)."""
    table = lake.query(read_sql("volume"), {"symbols": symbols, "since": since, "until": until})
    return [dict(row, vwap=vwap(row["quote_volume"], row["volume"])) for row in table.to_pylist()]
