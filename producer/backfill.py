"""Backfill of missed trades from Binance's REST API (``GET /api/v3/historicalTrades``), within its limits.

Binance limits REST by request weight per IP: 6,000 per minute (``REQUEST_WEIGHT``, 1-minute windows),
and historicalTrades weighs 25, so at most 240 pages (240,000 trades) a minute. Every answer carries the
weight used so far in the current window (``X-MBX-USED-WEIGHT-1M``). Going past the limit gets 429 with
Retry-After; an IP that keeps going after a 429 is banned with 418 (2 minutes to 3 days), and a WAF
limit answers 403 (rest-api.md, "LIMITS"). So requests are spaced to fill at most ``budget_share`` of the
window, the server's own count is trusted when it is higher, and a 429, 418 or 403 pauses every
request, those already waiting included: each re-checks the pause after sleeping.
historicalTrades needs no API key (it is a MARKET_DATA endpoint since 2023-07-11, CHANGELOG).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

from .exceptions import BackfillError
from .stats import RestStats

PAGE_LIMIT = 1000  # Binance's maximum for historicalTrades
HISTORICAL_TRADES_WEIGHT = 25
AGG_TRADES_WEIGHT = 4  # rest-api.md § Compressed/Aggregate trades list
WEIGHT_PER_MINUTE = 6000
WAF_PAUSE_S = 60.0  # a 403 carries no Retry-After: wait a minute


class WeightBudget:
    """Paces requests so their weight stays within a share of Binance's per-minute budget."""

    def __init__(
        self,
        weight: int = HISTORICAL_TRADES_WEIGHT,
        per_minute: int = WEIGHT_PER_MINUTE,
        budget_share: float = 0.9,
        window_s: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.weight = weight
        self.window_s = window_s
        self.allowed = int(per_minute * budget_share)
        self.interval = window_s * weight / self.allowed
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._generation = 0  # bumped by interrupt(): requests waiting then give up
        self.pause_reason = ""

    def wait(self, deadline: float | None = None, weight: int | None = None) -> None:
        """Block until this request may go; raise BackfillError if that would be after ``deadline``, or
        when interrupt() is called meanwhile (the producer is stopping). ``weight``: of another endpoint
        (exchangeInfo, 20), which then takes its share of the budget too."""
        interval = self.interval if weight is None else self.window_s * weight / self.allowed
        generation = self._generation
        while True:
            with self._lock:
                if generation != self._generation:
                    raise BackfillError("interrupted: the producer is stopping")
                now = self._clock()
                slot = max(now, self._next_slot, self._paused_until)
                if deadline is not None and slot > deadline:
                    raise BackfillError(f"no request slot before the deadline ({self.pause_reason or 'paced'})")
                if slot <= now:
                    self._next_slot = now + interval
                    return
            time.sleep(min(slot - now, 1.0))  # then look again: a pause may have started meanwhile

    def observe(self, used_weight: int | None) -> None:
        """The server's count of weight used in this minute: wait for the next window when it is near."""
        if used_weight is None or used_weight + self.weight <= self.allowed:
            return
        with self._lock:
            now = self._clock()
            self._next_slot = max(self._next_slot, now + self.window_s - (time.time() % self.window_s))

    def interrupt(self) -> None:
        """Make every request waiting now give up (later ones wait as usual)."""
        with self._lock:
            self._generation += 1

    def pause(self, seconds: float, reason: str) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self.pause_reason = reason

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())


def backfill_order(
    gaps: list[tuple[str, int, int]], held: Mapping[str, int], last_asked: Mapping[str, float]
) -> list[tuple[str, int, int]]:
    """Open gaps in the order to ask REST: the most trades held behind a gap first, since each request
    (weight 25 of 6,000 a minute) then releases the most waiting live trades; ties go to the symbol asked
    least recently, so a mass disconnect of hundreds of like symbols is still served in turn."""
    return sorted(gaps, key=lambda gap: (-held.get(gap[0], 0), last_asked.get(gap[0], 0.0)))


class RestClient:
    """Blocking client for the one endpoint the producer needs; safe to call from several threads."""

    def __init__(self, rest_url: str, budget: WeightBudget | None = None, timeout: float = 10.0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.budget = budget or WeightBudget()
        self.timeout = timeout
        self.session = requests.Session()
        self.stats = RestStats()

    def historical_trades(
        self, symbol: str, from_id: int, limit: int = PAGE_LIMIT, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        params = {"symbol": symbol, "fromId": str(from_id), "limit": str(limit)}
        return self._get("/api/v3/historicalTrades", params, HISTORICAL_TRADES_WEIGHT, deadline)

    def first_id_since(self, symbol: str, since_ms: int) -> int:
        """The id of ``symbol``'s first trade at or after ``since_ms`` (Binance's clock); with none since,
        the id after its latest trade; 0 for a symbol that never traded.

        ``aggTrades?startTime=`` (rest-api.md § Compressed/Aggregate trades list, weight 4) finds trades
        by time, which historicalTrades cannot; an aggregate's ``f`` is the first trade id it holds.
        """
        params = {"symbol": symbol, "startTime": str(since_ms), "limit": "1"}
        first = self._get("/api/v3/aggTrades", params, AGG_TRADES_WEIGHT)
        try:
            if first:
                return int(first[0]["f"])
            latest = self._get("/api/v3/historicalTrades", {"symbol": symbol, "limit": "1"}, HISTORICAL_TRADES_WEIGHT)
            return int(latest[-1]["id"]) + 1 if latest else 0
        except (KeyError, TypeError, ValueError) as exc:
            raise BackfillError(f"no trade id in the answer about {symbol}'s trades since {since_ms}") from exc

    def _get(self, path: str, params: dict[str, str], weight: int, deadline: float | None = None) -> list[Any]:
        self.budget.wait(deadline, weight=None if weight == self.budget.weight else weight)
        url = f"{self.rest_url}{path}"
        self.stats.requests += 1
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            self.stats.errors += 1
            raise BackfillError(f"{url} unreachable: {type(exc).__name__}") from exc
        self.budget.observe(_int_header(response, "X-MBX-USED-WEIGHT-1M"))
        if response.status_code in (429, 418, 403):
            self.stats.errors += 1
            retry_after = _retry_after(response, WAF_PAUSE_S)
            what = {429: "rate limit hit (429)", 418: "IP banned by Binance (418)", 403: "WAF limit hit (403)"}[
                response.status_code
            ]
            self.budget.pause(retry_after, what)
            raise BackfillError(f"{what}; pausing backfill {retry_after:.0f}s")
        if response.status_code != 200:
            self.stats.errors += 1
            raise BackfillError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            self.stats.errors += 1
            raise BackfillError(f"{url} answered with invalid JSON") from exc
        if not isinstance(data, list):
            self.stats.errors += 1
            raise BackfillError(f"{url} answered {str(data)[:200]}")
        return data

    def close(self) -> None:
        self.session.close()


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _retry_after(response: requests.Response, default: float) -> float:
    try:
        return max(1.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return default
