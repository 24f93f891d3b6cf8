"""Comparing ksqlDB's final candles with the candles computed from Iceberg, for a closed time range.

ksqlDB's candles are live and approximate in two documented ways (open/close by offset, trades later
than the grace period dropped); Iceberg holds every trade and `k2 candles` computes exactly. For a range
whose windows are closed, both must agree: this lists every difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from .client import KsqlClient, pull

EXACT_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count")
# ksqlDB's vwap is a DOUBLE: both exact sums converted to DOUBLE, then divided (three roundings of
# 2^-53, under 4e-16 relative). It is compared with Iceberg's exact quote_volume / volume.
VWAP_RELATIVE_TOLERANCE = Decimal("1e-15")


def _epoch_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)


def ksql_candles(client: KsqlClient, interval: str, since: str, until: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Final candles from ksqlDB's candles_<interval> table (a pull query over the window range)."""
    window = f"WINDOWSTART >= {_epoch_ms(since)} AND WINDOWSTART < {_epoch_ms(until)}"
    candles = {}
    for item in pull(client, f"SELECT * FROM candles_{interval} WHERE {window};"):
        start = item["interval_start"] if "interval_start" in item else item["windowstart"]
        candles[(str(item["symbol"]), int(start))] = item
    return candles


def _exact_vwap(candle: dict[str, Any]) -> Decimal | None:
    with localcontext(prec=80):
        return Decimal(candle["quote_volume"]) / Decimal(candle["volume"]) if candle["volume"] else None


def _differs(field: str, theirs: Any, ours: Any, candle: dict[str, Any]) -> str | None:
    """Why ksqlDB's value of a field disagrees with Iceberg's, or None when it agrees."""
    if theirs is None:
        return "NULL in ksqlDB"
    value = Decimal(theirs) if isinstance(theirs, (int, Decimal)) else Decimal(str(theirs))
    if field != "vwap":
        return None if value == Decimal(ours) else "differs"
    exact = _exact_vwap(candle)
    if exact is None:
        return None
    with localcontext(prec=80):
        error = abs(value - exact) / exact
    return None if error <= VWAP_RELATIVE_TOLERANCE else f"differs by {error:.1e} of the exact VWAP"


def compare(ksql: dict[tuple[str, int], dict[str, Any]], iceberg: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every difference, one row per (symbol, interval_start, field); an empty list means agreement.

    Prices, volumes and counts must be equal; vwap within VWAP_RELATIVE_TOLERANCE of the exact one. A NULL
    from ksqlDB (an expression that failed there) is reported, never a crash.
    """
    exact = {(str(c["symbol"]), int(c["interval_start"].timestamp() * 1000)): c for c in iceberg}
    mismatches = []
    for key in sorted(set(exact) | set(ksql)):
        symbol, start = key
        when = datetime.fromtimestamp(start / 1000, UTC).isoformat().replace("+00:00", "Z")
        if key not in ksql or key not in exact:
            where = "ksqlDB" if key not in ksql else "Iceberg"
            mismatches.append({"symbol": symbol, "interval_start": when, "field": "candle", "ksqldb": "", "iceberg": "",
                               "note": f"missing in {where}"})  # fmt: skip
            continue
        for field in (*EXACT_FIELDS, "vwap"):
            theirs = ksql[key].get(field)
            ours = _exact_vwap(exact[key]) if field == "vwap" else exact[key][field]
            note = _differs(field, theirs, ours, exact[key])
            if note:
                mismatches.append({"symbol": symbol, "interval_start": when, "field": field,
                                   "ksqldb": "" if theirs is None else str(theirs), "iceberg": str(ours),
                                   "note": note})  # fmt: skip
    return mismatches
