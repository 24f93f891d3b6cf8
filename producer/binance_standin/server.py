"""BinanceStandIn: the server that wires the stand-in's parts, WebSocket and REST on one port.

Routing of a request: a path longer than ``max_url_length`` is refused with 414 URI Too Long (Binance
documents neither the limit nor the answer; client libraries measured about 8,000 characters), ``/api/``
goes to the REST API (rest.py), ``/stream`` and ``/ws`` to the WebSocket clients (ws_clients.py), anything
else is 404. Server pings go out every 20 s and a pong is due within a minute (web-socket-streams.md
§ General WSS information).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from k2.producer.binance_standin.answers import STAND_IN_NAME, error, html_answer, json_answer
from k2.producer.binance_standin.clock import play
from k2.producer.binance_standin.counters import Counters
from k2.producer.binance_standin.listings import Listings
from k2.producer.binance_standin.rest import RestApi
from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.tape import Tape, TapeFrame
from k2.producer.binance_standin.weights import RequestWeights
from k2.producer.binance_standin.ws_clients import Clients
from k2.producer.binance_standin.ws_connection import LimitedConnection


class BinanceStandIn(Counters):
    """Stand-in Binance server (WebSocket + REST on one port). See the package docstring.

    Limits (keyword arguments): ``max_url_length`` (8000; longer handshakes get 414),
    ``max_incoming_per_s`` (5 messages per connection per second), ``rest_lag_s`` (0: historicalTrades
    sees a trade as soon as it is broadcast), ``weight_limit_per_min`` (6000), ``time_scale`` (1.0),
    ``waf_block_requests`` (REST request numbers answered 403), ``symbol_status`` (exchangeInfo status per
    symbol at the start, default TRADING; None: not listed yet, see ``Script.status_changes``).
    ``rest_requests_per_s`` (None) turns on the old stand-in's simple pacing.

    For tests: the counters of ``Counters`` (counters.py), ``used_weight`` (this window),
    ``window_resets_at`` and ``banned_until`` (epoch seconds; 0.0 when never banned), ``position`` and ``tape``.
    """

    def __init__(
        self,
        events: list[dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 1000.0,
        script: Script | None = None,
        rest_requests_per_s: float | None = None,
        ping_interval: float = 20.0,
        ping_timeout: float = 60.0,
        loop_tape: bool = False,
        *,
        max_url_length: int = 8000,
        max_incoming_per_s: int = 5,
        rest_lag_s: float = 0.0,
        weight_limit_per_min: int = 6000,
        time_scale: float = 1.0,
        waf_block_requests: set[int] | None = None,
        symbol_status: Mapping[str, str | None] | None = None,
    ) -> None:
        if not events:
            raise ValueError("the stand-in needs at least one trade to play")
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, not {time_scale}")
        super().__init__()
        self.script = script or Script()
        self.listings = Listings((str(e["s"]) for e in events), symbol_status, self.script.status_changes)
        self.host = host
        self.port = port
        self.rate = rate
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.loop_tape = loop_tape
        self.max_url_length = max_url_length
        self._tape = Tape(events, self.listings)
        self.weights = RequestWeights(weight_limit_per_min, time_scale, self, rest_requests_per_s)
        self.rest = RestApi(self._tape, self.weights, self, set(waf_block_requests or ()), rest_lag_s)
        self.clients = Clients(self.script, max_incoming_per_s, self)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    # -- the market ------------------------------------------------------------------------------
    @property
    def tape(self) -> list[TapeFrame]:
        """Every frame in play order (a looping tape grows as it plays again)."""
        return self._tape.frames

    @property
    def position(self) -> int:
        """Frames broadcast so far."""
        return self._tape.position

    def status_at(self, symbol: str, position: int) -> str | None:
        """The exchangeInfo status of ``symbol`` once ``position`` frames were broadcast (None: not listed)."""
        return self.listings.status_at(symbol, position)

    def status(self, symbol: str) -> str | None:
        """The status exchangeInfo gives ``symbol`` now (None: not listed)."""
        return self._tape.status(symbol)

    def trades_made(self) -> list[dict[str, Any]]:
        """Every trade of the tape that happens (its symbol was TRADING then), in tape order."""
        return self._tape.trades_made()

    def broadcast_times(self) -> list[tuple[str, int, float]]:
        """(symbol, trade id, epoch seconds) of every trade broadcast so far: when it happened on this
        market, whoever was connected (benchmarks measure trade-to-queryable latency from it)."""
        return self._tape.broadcast_times()

    # -- URLs ------------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- REST weight, kept by weights.py -----------------------------------------------------------
    @property
    def used_weight(self) -> int:
        """Weight used in the current window (what ``X-MBX-USED-WEIGHT-1M`` says)."""
        return self.weights.used_weight

    @property
    def window_resets_at(self) -> float:
        """Epoch seconds at which the current weight window ends."""
        return self.weights.window_resets_at

    @property
    def banned_until(self) -> float:
        """Epoch seconds at which the current ban ends (0.0: never banned)."""
        return self.weights.banned_until

    @banned_until.setter
    def banned_until(self, epoch_s: float) -> None:
        """A test bans the client outright: every REST request gets 418 until then."""
        self.weights.banned_until = epoch_s

    # -- serving ---------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if len(request.path) > self.max_url_length:
            # Binance documents no URL limit; clients found ~8,000 characters. Its answer is not documented
            # either: 414 URI Too Long, as websockets itself answers request lines past its own 8,192.
            return html_answer(HTTPStatus.REQUEST_URI_TOO_LONG, f"The URL is longer than {self.max_url_length}.")
        if request.path.startswith("/api/"):
            return self.rest.answer(request)
        if not request.path.startswith("/stream") and not request.path.startswith("/ws"):
            return json_answer(HTTPStatus.NOT_FOUND, error(-1, f"{STAND_IN_NAME}: unknown path"))
        return self.clients.admit(connection, request)  # None: go on with the WebSocket handshake

    async def serve_forever(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self.clients.handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,  # web-socket-streams.md § General WSS information: a minute
            server_header=STAND_IN_NAME,
            create_connection=LimitedConnection,
        ) as server:
            self.port = server.sockets[0].getsockname()[1] if server.sockets else self.port
            player = asyncio.create_task(play(self._tape, self.clients, self.script, self.rate, self.loop_tape))
            self._ready.set()
            await self._stop.wait()
            player.cancel()

    # -- thread helpers for tests ------------------------------------------------------------------
    def start(self) -> BinanceStandIn:
        """Serve in a background thread; returns once the port is bound."""

        failed: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.serve_forever())
            except Exception as exc:  # e.g. the port is taken: the caller hears why, not a timeout
                failed.append(exc)
                self._ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name=STAND_IN_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Binance stand-in did not start")
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> BinanceStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
