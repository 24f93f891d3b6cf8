"""The symbols to stream, kept in line with ``GET /api/v3/exchangeInfo``: what changed, and why.

Binance has no push channel for symbol status (rest-api.md § Exchange information is the only source):
the producer reads exchangeInfo again every ``--symbols-refresh``. A symbol is streamed while its status
is TRADING (enums.md § Symbol status: TRADING, END_OF_DAY, HALT, BREAK, CANCEL_ONLY; BREAK generates no
market data) and, with ``--symbols ALL --quote``, while its ``quoteAsset`` is one of those asked for.

Each change carries a reason from a small fixed set, the labels of ``k2_symbol_changes_total``:
added because it was ``listed`` (absent from the previous exchangeInfo) or its status became ``TRADING``
again; removed because of its new status (``BREAK``, ``HALT``, ``END_OF_DAY``, ``CANCEL_ONLY``, or
``other`` for a status Binance may add) or because it left exchangeInfo (``delisted``).

One unfiltered request a refresh: ``symbolStatus=`` accepts only TRADING, HALT and BREAK, so it cannot
tell END_OF_DAY or CANCEL_ONLY from a delisting; the whole list costs the same weight (20).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests

from .exceptions import ProducerError
from .exchange import TRADING

log = logging.getLogger("k2.producer")

ALL = "ALL"  # `--symbols ALL`: every TRADING symbol (filtered by --quote)
EXCHANGE_INFO_WEIGHT = 20  # rest-api.md § Exchange information
ADDED, REMOVED = "added", "removed"
LISTED, DELISTED, OTHER = "listed", "delisted", "other"
STATUSES = (TRADING, "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY")  # enums.md § Symbol status
REASONS = {ADDED: (LISTED, TRADING), REMOVED: (*STATUSES[1:], DELISTED, OTHER)}


@dataclass(frozen=True)
class Listing:
    """One symbol as exchangeInfo lists it."""

    status: str
    quote: str


@dataclass(frozen=True)
class Market:
    """One exchangeInfo answer: every symbol, and Binance's clock when it answered (``serverTime``, ms)."""

    listings: dict[str, Listing]
    server_time_ms: int | None = None


@dataclass(frozen=True)
class SymbolChange:
    symbol: str
    change: str  # ADDED or REMOVED
    reason: str  # one of REASONS[change]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.reason})"


class ExchangeInfoError(ProducerError):
    """exchangeInfo could not be read; ``retry_after`` is set when Binance said how long to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def fetch_market(rest_url: str, timeout: float = 30.0, session: Any = None) -> Market:
    """Every symbol of ``GET /api/v3/exchangeInfo`` with its status and quote asset, and ``serverTime``."""
    url = f"{rest_url.rstrip('/')}/api/v3/exchangeInfo"
    getter = session or requests
    try:
        response = getter.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise ExchangeInfoError(f"{url} unreachable ({type(exc).__name__}); check --rest-url") from exc
    if response.status_code in (418, 429, 403):
        # rest-api.md § LIMITS: 429 past the weight limit, 418 a ban, 403 a WAF block; wait as told.
        retry = response.headers.get("Retry-After")
        seconds = float(retry) if retry and retry.replace(".", "", 1).isdigit() else 60.0
        raise ExchangeInfoError(f"{url} answered HTTP {response.status_code}; waiting {seconds:.0f}s", seconds)
    try:
        body = response.json()
    except ValueError:
        body = None
    listed = body.get("symbols") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(listed, list):
        raise ExchangeInfoError(f"{url} answered HTTP {response.status_code}: {response.text[:200]!r}")
    listings: dict[str, Listing] = {}
    for item in listed:
        if isinstance(item, dict) and isinstance(item.get("symbol"), str):
            listings[item["symbol"]] = Listing(str(item.get("status")), str(item.get("quoteAsset")))
    if not listings:
        # An empty market is an outage or a broken answer, never a reason to unsubscribe everything.
        raise ExchangeInfoError(f"{url} listed no symbols")
    server_time = body.get("serverTime") if isinstance(body, dict) else None
    return Market(listings, server_time if type(server_time) is int else None)


def removal_reason(listing: Listing | None) -> str:
    if listing is None:
        return DELISTED
    return listing.status if listing.status in STATUSES[1:] else OTHER


class SymbolUniverse:
    """The symbols streamed now, the exchangeInfo they were chosen from, and every change with its reason.

    ``explicit`` is the ``--symbols`` list (None for ALL): then only those symbols are ever streamed, each
    while it is TRADING. ``quotes`` keeps only symbols quoted in those assets (ALL only).
    """

    def __init__(self, explicit: list[str] | None = None, quotes: Iterable[str] = ()) -> None:
        self.explicit = list(explicit) if explicit is not None else None
        self.quotes = frozenset(quotes)
        self.listings: dict[str, Listing] = {}
        # Binance's clock at the exchangeInfo the list was last brought in line with: a symbol added at
        # the next refresh was not TRADING then, so all its trades since are at or after this moment.
        self.server_time_ms: int | None = None
        self.subscribed: dict[str, None] = {}  # in subscription order
        self.changes: list[SymbolChange] = []
        self.counts: Counter[tuple[str, str]] = Counter()

    def wanted(self, listings: dict[str, Listing]) -> list[str]:
        """The symbols to stream given an exchangeInfo: TRADING ones, of the list or of the quotes."""
        if self.explicit is not None:
            return [s for s in self.explicit if (listing := listings.get(s)) and listing.status == TRADING]
        return [
            symbol
            for symbol, listing in listings.items()
            if listing.status == TRADING and (not self.quotes or listing.quote in self.quotes)
        ]

    def start(self, market: Market, symbols: list[str] | None = None) -> list[str]:
        """The first exchangeInfo (or, for a checked ``--symbols`` list, ``symbols``): what to stream."""
        self.listings = dict(market.listings)
        self.server_time_ms = market.server_time_ms
        self.subscribed = dict.fromkeys(symbols if symbols is not None else self.wanted(market.listings))
        return list(self.subscribed)

    def plan(self, listings: dict[str, Listing]) -> list[SymbolChange]:
        """What a newer exchangeInfo changes: additions in exchangeInfo's order, then removals."""
        wanted = self.wanted(listings)
        wanted_set = set(wanted)
        changes = [
            SymbolChange(symbol, ADDED, LISTED if symbol not in self.listings else TRADING)
            for symbol in wanted
            if symbol not in self.subscribed
        ]
        changes += [
            SymbolChange(symbol, REMOVED, removal_reason(listings.get(symbol)))
            for symbol in self.subscribed
            if symbol not in wanted_set
        ]
        return changes

    def apply(self, market: Market, changes: list[SymbolChange]) -> None:
        """Take a newer exchangeInfo and the changes planned from it."""
        self.listings = dict(market.listings)
        self.server_time_ms = market.server_time_ms
        for item in changes:
            if item.change == ADDED:
                self.subscribed[item.symbol] = None
            else:
                self.subscribed.pop(item.symbol, None)
            self.changes.append(item)
            self.counts[(item.change, item.reason)] += 1

    def named(self, change: str) -> list[str]:
        """Every change of one kind so far, as ``SYMBOL (reason)``."""
        return [str(item) for item in self.changes if item.change == change]
