"""REST's trade history over the trades already broadcast: historicalTrades and aggTrades.

Only trades already broadcast (and, with ``lag_s``, broadcast that long ago) exist for REST: Binance serves
these endpoints from its database, which trails the stream (rest-api.md § Data Sources). A ``fromId``
naming an id that never existed starts at the next id that did (build such tapes with ``with_missing_ids``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

from k2.producer.binance_standin.answers import error
from k2.producer.binance_standin.rest_params import Query, page_limit, symbol_param
from k2.producer.binance_standin.tape import Tape

AGG_TRADES_MAX_SPAN_MS = 3_600_000  # rest-api.md § Compressed/Aggregate trades list: at most an hour apart


def _quote_qty(price: str, qty: str) -> str:
    try:
        return format((Decimal(price) * Decimal(qty)).normalize(), "f")
    except InvalidOperation:
        return "0"


def historical_trades(query: Query, tape: Tape, lag_s: float) -> tuple[HTTPStatus, Any]:
    """rest-api.md § Old trade lookup: ``limit`` default 500, max 1000; ``fromId`` or the latest trades."""
    symbol, problem = symbol_param(query, "symbol")
    if problem is not None or symbol is None:
        return HTTPStatus.BAD_REQUEST, problem
    try:
        limit = page_limit(query)
        from_id = int(query["fromId"][0]) if query.get("fromId") else None
    except ValueError:
        return HTTPStatus.BAD_REQUEST, error(-1100, "Illegal characters found in a parameter.")
    if tape.status(symbol) is None:  # never listed, or delisted
        return HTTPStatus.BAD_REQUEST, error(-1121, "Invalid symbol.")
    past = [tape.frames[p].trade for p in tape.visible_positions(symbol, lag_s)]
    trades = [t for t in past if t is not None]
    if from_id is None:
        chosen = trades[-limit:]
    else:  # ids that never existed: the answer starts at the next id that did
        chosen = [t for t in trades if int(t["t"]) >= from_id][:limit]
    return HTTPStatus.OK, [
        {
            "id": t["t"],
            "price": t["p"],
            "qty": t["q"],
            "quoteQty": _quote_qty(str(t["p"]), str(t["q"])),
            "time": t["T"],
            "isBuyerMaker": t["m"],
            "isBestMatch": t.get("M", True),
        }
        for t in chosen
    ]


def agg_trades(query: Query, tape: Tape, lag_s: float) -> tuple[HTTPStatus, Any]:
    """rest-api.md § Compressed/Aggregate trades list: ``fromId``, ``startTime``/``endTime`` (at most an
    hour apart), ``limit`` (default 500, max 1000); neither: the most recent.

    Binance aggregates the fills of one taker order at one price; a tape has no orders, so each trade
    is its own aggregate (``a`` = ``f`` = ``l`` = its id). Times select by when the stand-in broadcast a
    trade, its analogue of Binance's trade time (a tape's own ``T`` is from whenever it was recorded).
    """
    symbol, problem = symbol_param(query, "symbol")
    if problem is not None or symbol is None:
        return HTTPStatus.BAD_REQUEST, problem
    try:
        limit = page_limit(query)
        from_id, start, end = (int(query[k][0]) if query.get(k) else None for k in ("fromId", "startTime", "endTime"))
    except ValueError:
        return HTTPStatus.BAD_REQUEST, error(-1100, "Illegal characters found in a parameter.")
    if start is not None and end is not None and end - start > AGG_TRADES_MAX_SPAN_MS:
        return HTTPStatus.BAD_REQUEST, error(-1127, "More than 1 hours between startTime and endTime.")
    if tape.status(symbol) is None:
        return HTTPStatus.BAD_REQUEST, error(-1121, "Invalid symbol.")
    visible = [(p, t) for p in tape.visible_positions(symbol, lag_s) if (t := tape.frames[p].trade) is not None]
    if from_id is not None:
        chosen = [t for _, t in visible if int(t["t"]) >= from_id][:limit]
    elif start is not None or end is not None:
        low, high = start if start is not None else 0, end if end is not None else 2**63
        chosen = [t for p, t in visible if low <= tape.sent_ms[p] <= high][:limit]
    else:
        chosen = [t for _, t in visible[-limit:]]
    return HTTPStatus.OK, [
        {
            "a": t["t"],
            "p": t["p"],
            "q": t["q"],
            "f": t["t"],
            "l": t["t"],
            "T": t["T"],
            "m": t["m"],
            "M": t.get("M", True),
        }
        for t in chosen
    ]
