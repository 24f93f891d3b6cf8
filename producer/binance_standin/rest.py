"""The REST API under ``/api/``: the firewall, bans and request weight first, then the endpoint.

Endpoints: historicalTrades and aggTrades (trade_lookups.py), exchangeInfo (exchange_info.py),
``/api/v3/ping`` and ``/api/v3/time`` (rest-api.md § Test connectivity, § Check server time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request, Response

from k2.producer.binance_standin.answers import STAND_IN_NAME, error, html_answer, json_answer
from k2.producer.binance_standin.counters import Counters
from k2.producer.binance_standin.exchange_info import exchange_info
from k2.producer.binance_standin.tape import Tape
from k2.producer.binance_standin.trade_lookups import agg_trades, historical_trades
from k2.producer.binance_standin.weights import ENDPOINT_WEIGHTS, RequestWeights


@dataclass
class RestApi:
    """Answers REST requests over ``tape``, charging ``weights`` and counting in ``counters``."""

    tape: Tape
    weights: RequestWeights
    counters: Counters
    waf_block_requests: set[int]  # request numbers (every /api/ request, from 1) the firewall answers 403
    rest_lag_s: float  # the trade history sees a trade only this long after its broadcast

    def answer(self, request: Request) -> Response:
        """The answer to one ``/api/`` request."""
        self.counters.rest_requests += 1
        if self.counters.rest_requests in self.waf_block_requests:
            # rest-api.md § HTTP Return Codes: 403 when a WAF rule is violated; the firewall answers, not the API.
            self.counters.rest_403 += 1
            return html_answer(HTTPStatus.FORBIDDEN, "Request blocked by the web application firewall.")
        now = time.time()
        if now < self.weights.banned_until:  # rest-api.md § IP Limits: during a ban every request gets 418
            return self.weights.banned(now)
        parts = urlsplit(request.path)
        self.counters.requests_by_endpoint[parts.path] += 1
        weight = ENDPOINT_WEIGHTS.get(parts.path)
        if weight is None:
            return json_answer(
                HTTPStatus.NOT_FOUND, error(-1, f"{STAND_IN_NAME}: no such endpoint"), self.weights.headers()
            )
        refused = self.weights.charge(weight, now)
        if refused is not None:
            return refused
        query = parse_qs(parts.query, keep_blank_values=True)
        status: HTTPStatus
        body: Any
        if parts.path == "/api/v3/historicalTrades":
            paced = self.weights.paced()
            if paced is not None:
                return paced
            status, body = historical_trades(query, self.tape, self.rest_lag_s)
        elif parts.path == "/api/v3/aggTrades":
            status, body = agg_trades(query, self.tape, self.rest_lag_s)
        elif parts.path == "/api/v3/exchangeInfo":
            status, body = exchange_info(query, self.tape, self.weights.limit_per_min)
        elif parts.path == "/api/v3/time":
            status, body = HTTPStatus.OK, {"serverTime": int(time.time() * 1000)}
        else:
            status, body = HTTPStatus.OK, {}
        return json_answer(status, body, self.weights.headers())
