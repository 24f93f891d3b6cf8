"""Binance symbols: how they are written, what their streams are called, and whether they trade.

Since 2025-12-02 (binance-spot-api-docs CHANGELOG.md, "General Changes") ``symbol`` and ``symbols``
accept Unicode values encoded in UTF-8 (the testnet lists ``这是测试币456``), and the market streams
accept percent-encoded URLs (same entry, "WebSocket Streams"). Stream names are the symbol in lower
case (web-socket-streams.md, "General WSS information"); only ASCII letters have a case Binance
changes, so only they are lowered here and upper-cased when a symbol is read.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests

from .exceptions import ProducerError

TRADING = "TRADING"  # enums.md, "Symbol status": TRADING, END_OF_DAY, HALT, BREAK, CANCEL_ONLY
BAD_SYMBOL = -1121  # errors.md, "-1121 BAD_SYMBOL: Invalid symbol."
# One exchangeInfo request asks about at most this many characters of percent-encoded ``symbols``:
# well under the URL lengths servers accept (see websocket.MAX_URL_LENGTH).
SYMBOLS_PARAM_BUDGET = 2000

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_symbol(text: str) -> str:
    """A symbol as Binance writes it: ASCII letters upper-cased, every other character kept as is.

    ``str.upper`` would also change non-ASCII letters (``ß`` becomes ``SS``), naming another symbol.
    """
    return text.strip().translate(_ASCII_UPPER)


def is_symbol(text: str) -> bool:
    """Letters and digits of any script, and ``-_.`` (the ASCII Binance allows, ``^[A-Z0-9-_.]{1,20}$`` in
    errors.md's -1100 text): nothing that could split a stream list, a URL or ``--symbols``."""
    return bool(text) and all(c.isalnum() or c in "-_." for c in text)


def stream_name(symbol: str) -> str:
    """The trade stream of a symbol, ``<symbol>@trade`` with only ASCII letters lowered."""
    return f"{symbol.translate(_ASCII_LOWER)}@trade"


def url_stream_name(symbol: str) -> str:
    """The stream name as it goes into a URL: UTF-8 percent-encoded, ``@`` kept as Binance writes it."""
    return quote(stream_name(symbol), safe="@")


def check_symbols(rest_url: str, symbols: list[str], timeout: float = 10.0) -> dict[str, str]:
    """Raise ProducerError naming every symbol that is unknown or not TRADING; return each symbol's status.

    ``GET /api/v3/exchangeInfo?symbols=[...]`` (rest-api.md, "Exchange information", weight 20) answers
    -1121 for the whole request when any symbol in it does not exist, without saying which: such a
    request is split in halves until the unknown ones are alone.
    """
    session = requests.Session()
    statuses: dict[str, str] = {}
    try:
        for group in _groups(symbols):
            _ask(session, rest_url.rstrip("/"), group, statuses, timeout)
    finally:
        session.close()
    bad = [f"{symbol} ({statuses.get(symbol, 'unknown')})" for symbol in symbols if statuses.get(symbol) != TRADING]
    if bad:
        raise ProducerError(
            f"{'this symbol does' if len(bad) == 1 else 'these symbols do'} not trade on {rest_url}: "
            f"{', '.join(bad)}; only {TRADING} symbols have trades to stream: fix or drop them in --symbols"
        )
    return statuses


def _groups(symbols: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    used = 0
    for symbol in symbols:
        cost = len(quote(json.dumps(symbol, ensure_ascii=False))) + 3  # quoted, plus an encoded comma
        if groups[-1] and used + cost > SYMBOLS_PARAM_BUDGET:
            groups.append([])
            used = 0
        groups[-1].append(symbol)
        used += cost
    return [g for g in groups if g]


def _ask(session: requests.Session, base: str, group: list[str], statuses: dict[str, str], timeout: float) -> None:
    url = f"{base}/api/v3/exchangeInfo"
    params = {"symbols": json.dumps(group, ensure_ascii=False, separators=(",", ":"))}
    try:
        response = session.get(url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise ProducerError(
            f"cannot check --symbols: {url} unreachable ({type(exc).__name__}); check --rest-url"
        ) from exc
    body = _json(response)
    if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("symbols"), list):
        for item in body["symbols"]:
            if isinstance(item, dict) and isinstance(item.get("symbol"), str):
                statuses[item["symbol"]] = str(item.get("status"))
        return
    if isinstance(body, dict) and body.get("code") == BAD_SYMBOL:
        if len(group) > 1:
            middle = len(group) // 2
            _ask(session, base, group[:middle], statuses, timeout)
            _ask(session, base, group[middle:], statuses, timeout)
        return  # a single symbol answered -1121: it does not exist (no status recorded)
    if response.status_code in (418, 429):
        retry = response.headers.get("Retry-After", "?")
        raise ProducerError(
            f"cannot check --symbols: {url} answered HTTP {response.status_code} (request weight limit or ban); "
            f"start again after {retry}s"
        )
    raise ProducerError(
        f"cannot check --symbols: {url} answered HTTP {response.status_code}: {response.text[:200]!r}; check --rest-url"
    )


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
