"""Backfill of missed trades from Binance's REST API (``GET /api/v3/historicalTrades``)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import requests

from .exceptions import BackfillError

PAGE_LIMIT = 1000  # Binance's maximum for historicalTrades
API_KEY_ENV = "BINANCE_API_KEY"


class RestClient:
    """Blocking client for the one endpoint the producer needs, honouring 429 and 418 answers.

    Binance answers 429 when the request weight limit is hit and 418 once an IP keeps going after
    429s (an automatic ban); both carry Retry-After in seconds. ``min_interval`` paces requests so the
    producer stays far below the limit (historicalTrades weighs 25 of 6,000 per minute).
    """

    def __init__(self, rest_url: str, min_interval: float = 0.5, timeout: float = 10.0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.min_interval = min_interval
        self.timeout = timeout
        self.session = requests.Session()
        api_key = os.environ.get(API_KEY_ENV)
        if api_key:  # optional; sent as a header, never logged
            self.session.headers["X-MBX-APIKEY"] = api_key
        self._next_allowed = 0.0
        self._lock = threading.Lock()  # several symbols' gaps may be fetched from worker threads at once
        self.requests_made = 0

    def _reserve_slot(self) -> float:
        """Claim the next request slot; returns how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_allowed)
            self._next_allowed = slot + self.min_interval
            self.requests_made += 1
            return slot - now

    def historical_trades(self, symbol: str, from_id: int, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        delay = self._reserve_slot()
        if delay:
            time.sleep(delay)
        url = f"{self.rest_url}/api/v3/historicalTrades"
        try:
            response = self.session.get(
                url, params={"symbol": symbol, "fromId": str(from_id), "limit": str(limit)}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise BackfillError(f"{url} unreachable: {type(exc).__name__}") from exc
        if response.status_code in (429, 418):
            retry_after = _retry_after(response)
            with self._lock:
                self._next_allowed = max(self._next_allowed, time.monotonic() + retry_after)
            what = "rate limit hit (429)" if response.status_code == 429 else "IP banned by Binance (418)"
            raise BackfillError(
                f"{what}; pausing backfill {retry_after:.0f}s", retry_after, banned=response.status_code == 418
            )
        if response.status_code != 200:
            raise BackfillError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise BackfillError(f"{url} answered with invalid JSON") from exc
        if not isinstance(data, list):
            raise BackfillError(f"{url} answered {str(data)[:200]}")
        return data

    def close(self) -> None:
        self.session.close()


def _retry_after(response: requests.Response) -> float:
    try:
        return max(1.0, float(response.headers.get("Retry-After", "60")))
    except ValueError:
        return 60.0
