"""GET /api/v3/exchangeInfo as the market stands at the current tape position (listings.py).

rest-api.md § Exchange information: all symbols, ``symbol=``, ``symbols=["A","B"]`` or ``symbolStatus=``.
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

from k2.producer.binance_standin.answers import error
from k2.producer.binance_standin.rest_params import Query, check_symbol, symbol_param
from k2.producer.binance_standin.tape import Tape

# rest-api.md § Exchange information: symbolStatus accepts only these
STATUS_FILTERS = ("TRADING", "HALT", "BREAK")
# Quote assets to split a symbol into base and quote; longest first.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USD1", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")


def _assets(symbol: str) -> tuple[str, str]:
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return "UNKNOWN", "UNKNOWN"


def _wanted(query: Query) -> tuple[list[str] | None, dict[str, Any] | None]:
    """The symbols ``symbol=`` or ``symbols=`` name (None: every symbol), or the error for them."""
    if "symbol" in query and "symbols" in query:
        return None, error(-1128, "Combination of optional parameters invalid.")
    if "symbol" in query:
        symbol, problem = symbol_param(query, "symbol")
        if problem is not None or symbol is None:
            return None, problem
        return [symbol], None
    if "symbols" not in query:
        return None, None
    try:
        listed = json.loads(query["symbols"][0])
    except ValueError:
        listed = None
    if not isinstance(listed, list) or not listed or not all(isinstance(s, str) for s in listed):
        return None, error(-1100, "Illegal characters found in parameter 'symbols'.")
    for symbol in listed:
        _, problem = check_symbol(symbol, "symbols")
        if problem is not None:
            return None, problem
    return list(dict.fromkeys(listed)), None


def exchange_info(query: Query, tape: Tape, weight_limit_per_min: int) -> tuple[HTTPStatus, Any]:
    """The answer to exchangeInfo with ``query``.

    An unknown symbol is -1121 "Invalid symbol." (HTTP 400; the § Error Codes sample); symbolStatus with
    symbol(s) is the documented forbidden combination (-1128), an unknown symbolStatus -1122.
    """
    wanted, problem = _wanted(query)
    if problem is not None:
        return HTTPStatus.BAD_REQUEST, problem
    status_filter = query["symbolStatus"][0] if "symbolStatus" in query else None
    if status_filter is not None:
        if wanted is not None:
            return HTTPStatus.BAD_REQUEST, error(-1128, "Combination of optional parameters invalid.")
        if status_filter not in STATUS_FILTERS:
            return HTTPStatus.BAD_REQUEST, error(-1122, "Invalid symbolStatus.")
    if wanted is not None and any(tape.status(s) is None for s in wanted):
        return HTTPStatus.BAD_REQUEST, error(-1121, "Invalid symbol.")
    symbols = []
    for symbol in wanted if wanted is not None else tape.listings.symbols:
        status = tape.status(symbol)
        if status is None or (status_filter is not None and status != status_filter):
            continue
        base, quote = _assets(symbol)
        symbols.append(
            {
                "symbol": symbol,
                "status": status,
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [],
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
        )
    rate_limits = [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": weight_limit_per_min,
        }
    ]
    return HTTPStatus.OK, {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": rate_limits,
        "exchangeFilters": [],
        "symbols": symbols,
    }
