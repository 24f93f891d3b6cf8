"""REST request weight: a fixed, minute-aligned window, 429 past the limit, then escalating 418 bans.

rest-api.md § LIMITS, § IP Limits; enums.md § Rate limiters; errors.md § -1003. ``X-MBX-USED-WEIGHT-1M`` is
on every answer. A client is banned when it sends another request in the window in which it got a 429;
one that waits ``Retry-After`` is not.

Time: ``time_scale`` divides Binance's own fixed durations (the one-minute window, the ``Retry-After``
values and the ban lengths) so a test can live through a "minute" in a second. ``Retry-After`` stays a
whole number of seconds (HTTP's delta-seconds, what clients parse), rounded up and at least 1, so a client
that honours it never returns early: with ``time_scale=60`` a 429 says ``Retry-After: 1`` and a first ban ``2``.
"""

from __future__ import annotations

import math
import time
from http import HTTPStatus

from websockets.http11 import Response

from k2.producer.binance_standin.answers import error, json_answer
from k2.producer.binance_standin.counters import Counters

# rest-api.md: § Test connectivity, § Check server time, § Exchange information, § Old trade lookup
ENDPOINT_WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,  # rest-api.md § Compressed/Aggregate trades list
}
WEIGHT_WINDOW_S = 60.0  # enums.md § Rate limiters: REQUEST_WEIGHT, interval MINUTE, intervalNum 1
# rest-api.md § IP Limits: bans "scale in duration for repeat offenders, from 2 minutes to 3 days".
FIRST_BAN_S = 120.0
LONGEST_BAN_S = 3 * 24 * 3600.0


def ban_length_s(offence: int) -> float:
    """Length of the ``offence``-th ban (0-based): 2 minutes, doubling, at most 3 days.

    rest-api.md § IP Limits gives only the range; the doubling between its ends is this stand-in's choice.
    """
    return min(LONGEST_BAN_S, FIRST_BAN_S * 2 ** min(offence, 32))


def retry_after(seconds: float) -> str:
    """Whole seconds, rounded up and at least 1: RFC 9110 delta-seconds, never early."""
    return str(max(1, math.ceil(seconds - 1e-9)))


class RequestWeights:
    """The REQUEST_WEIGHT limiter: ``used_weight`` (this window), ``window_resets_at``, ``banned_until``
    (epoch seconds; 0.0 when never banned); answers and weight are counted in ``counters``.

    ``requests_per_s`` (None) turns on the old stand-in's simple pacing of historicalTrades (``paced``).
    """

    def __init__(
        self, limit_per_min: int, time_scale: float, counters: Counters, requests_per_s: float | None = None
    ) -> None:
        self.limit_per_min = limit_per_min
        self.time_scale = time_scale
        self.counters = counters
        self._window_index = -1
        self._window_weight = 0
        self._window_429 = -1  # the window in which a 429 was last answered
        self._bans = 0
        self.banned_until = 0.0
        # Legacy pacing (off unless requests_per_s is given): 429 under 1/rate s apart, 418 after 5.
        self._min_interval = 1.0 / requests_per_s if requests_per_s else None
        self._last_paced = 0.0
        self._consecutive_429 = 0

    @property
    def window_s(self) -> float:
        return WEIGHT_WINDOW_S / self.time_scale

    @property
    def used_weight(self) -> int:
        """Weight used in the current window (what ``X-MBX-USED-WEIGHT-1M`` says)."""
        return self._window_weight if self._window_index == math.floor(time.time() / self.window_s) else 0

    @property
    def window_resets_at(self) -> float:
        """Epoch seconds at which the current weight window ends."""
        return (math.floor(time.time() / self.window_s) + 1) * self.window_s

    def headers(self) -> dict[str, str]:
        """rest-api.md § IP Limits: X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter) on every answer;
        CHANGELOG.md § 2019-08-15 keeps the legacy X-MBX-USED-WEIGHT, the same one-minute weight."""
        used = str(self.used_weight)
        return {"X-MBX-USED-WEIGHT-1M": used, "X-MBX-USED-WEIGHT": used}

    def banned(self, now: float) -> Response:
        """The 418 every request gets during a ban (rest-api.md § IP Limits)."""
        self.counters.rest_418 += 1
        return json_answer(
            HTTPStatus.IM_A_TEAPOT,
            error(
                -1003,
                f"Way too much request weight used; IP banned until {int(self.banned_until * 1000)}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
            ),
            {"Retry-After": retry_after(self.banned_until - now), **self.headers()},
        )

    def _ban(self, now: float) -> Response:
        self.banned_until = now + ban_length_s(self._bans) / self.time_scale
        self._bans += 1
        return self.banned(now)

    def charge(self, weight: int, now: float) -> Response | None:
        """Add a request's weight to the minute-aligned window; the 429 or 418 answer if it broke the rules.

        rest-api.md § LIMITS: 429 past the limit, with Retry-After = seconds to wait "to prevent a ban"
        (here: until the window resets), and a ban (418) for "failing to back off after receiving 429s":
        here, any request in the same window after its 429. Weight counts for every answered request.
        """
        index = math.floor(now / self.window_s)
        if index != self._window_index:
            self._window_index, self._window_weight = index, 0
        self._window_weight += weight
        self.counters.weight_used += weight
        self.counters.peak_window_weight = max(self.counters.peak_window_weight, self._window_weight)
        if self._window_429 == index:
            return self._ban(now)
        if self._window_weight > self.limit_per_min:
            self._window_429 = index
            self.counters.rest_429 += 1
            return json_answer(
                HTTPStatus.TOO_MANY_REQUESTS,
                error(
                    -1003,
                    f"Too much request weight used; current limit is {self.limit_per_min} request weight "
                    "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                ),
                {"Retry-After": retry_after((index + 1) * self.window_s - now), **self.headers()},
            )
        return None

    def paced(self) -> Response | None:
        """The old stand-in's per-request pacing, kept for callers that pass ``rest_requests_per_s``."""
        if self._min_interval is None:
            return None
        now = time.monotonic()
        if self._last_paced and now - self._last_paced < self._min_interval:
            self.counters.rest_429 += 1
            self._consecutive_429 += 1
            if self._consecutive_429 > 5:
                self.counters.rest_418 += 1
                return json_answer(HTTPStatus.IM_A_TEAPOT, error(-1003, "IP banned."), {"Retry-After": "2"})
            return json_answer(HTTPStatus.TOO_MANY_REQUESTS, error(-1003, "Too many requests."), {"Retry-After": "1"})
        self._consecutive_429 = 0
        self._last_paced = now
        return None
