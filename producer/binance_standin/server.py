"""BinanceStandIn: a stand-in for Binance's spot market-data APIs, for tests and offline demos.

It is NOT Binance. Binance cannot be reached from where K2 is built and tested, so this server speaks
the documented protocol over recorded (or generated) trades, limits and failure modes included. Each
behaviour names its source in binance/binance-spot-api-docs (file § section):

WebSocket (one port, ``ws_url``):

* combined streams ``/stream?streams=btcusdt@trade/...`` wrap each event as
  ``{"stream": ..., "data": ...}``; raw streams ``/ws/btcusdt@trade`` send the bare event; ``/stream`` or
  ``/ws`` without streams subscribe later (web-socket-streams.md § General WSS information);
* live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` / ``GET_PROPERTY``
  with the documented answers and error messages (§ Live Subscribing/Unsubscribing to streams,
  § Error Messages); at most 1,024 streams per connection (§ WebSocket Limits);
* more than ``max_incoming_per_s`` incoming messages (text, binary, ping and pong frames) in any one
  second disconnects the connection (§ WebSocket Limits; the close code 1008 "Too many requests" is
  what client libraries report, the docs say only "disconnected");
* a request path longer than ``max_url_length`` is refused with 414 URI Too Long. Binance documents
  neither the limit nor the answer; client libraries measured about 8,000 characters;
* symbols may hold non-ASCII characters; stream names lowercase only ASCII letters and arrive
  percent-encoded in the URL (CHANGELOG.md § 2025-12-02 "Unicode values", "URL-encoded urls");
* server pings every 20 s, a pong is due within a minute (§ General WSS information);
* scripted trouble (``Script``): forced disconnects of every connection at once or of only the oldest
  few, repeated frames after a reconnect, ``serverShutdown`` events (§ Server Shutdown), raw bad frames,
  connections closed as soon as they open, connections that never get a frame, and refused handshakes
  after a disconnect;
* a market that changes while it plays (``Script.status_changes``): a symbol's exchangeInfo status
  changes at a tape position, a symbol not yet listed (status None: absent from exchangeInfo, -1121 for
  queries about it) is listed, or one is delisted. Only a TRADING symbol trades (enums.md § Symbol
  status: BREAK generates no market data; HALT, END_OF_DAY and CANCEL_ONLY match no orders): a tape's
  trades of a symbol while it is not TRADING never happen, on the stream or in REST's history.

REST (same port, ``rest_url``):

* ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` over the trades already broadcast (rest-api.md
  § Old trade lookup), optionally only those broadcast ``rest_lag_s`` ago; ``fromId`` naming an id that
  never existed starts at the next id that did (build such tapes with ``with_missing_ids``);
* ``GET /api/v3/aggTrades?symbol=&fromId=&startTime=&endTime=&limit=`` (§ Compressed/Aggregate trades
  list) over the same trades, each its own aggregate; times are when the stand-in broadcast a trade;
* ``GET /api/v3/exchangeInfo`` with ``symbol=``, ``symbols=[...]``, ``symbolStatus=`` (§ Exchange
  information), as the market stands at the current tape position, ``/api/v3/ping`` and
  ``/api/v3/time`` (§ Test connectivity, § Check server time);
* request weight per fixed, minute-aligned window with ``X-MBX-USED-WEIGHT-1M`` on every answer, 429 and
  then escalating 418 bans with ``Retry-After`` (§ LIMITS, § IP Limits; enums.md § Rate limiters;
  errors.md § -1003), and 403 from a web application firewall (§ HTTP Return Codes). A client is banned
  when it sends another request in the window in which it got a 429; one that waits ``Retry-After`` is not.

The trades play like a live market: one tape, advanced at ``rate`` frames per second from the first
connection on, broadcast to every connected client subscribed to the frame's stream. Frames broadcast
while a client is away are lost to it, as on Binance, which never replays.

Time: ``time_scale`` divides Binance's own fixed REST durations (the one-minute weight window, the
``Retry-After`` values and the ban lengths) so a test can live through a "minute" in a second.
Durations a caller passes (``rest_lag_s``, ``Script.refuse_after_disconnect_s``, ``ping_interval``) and
the one-second WebSocket message window are taken as given, in real seconds. ``Retry-After`` stays a whole
number of seconds (HTTP's delta-seconds, what clients parse), rounded up and at least 1, so a client that
honours it never returns early: with ``time_scale=60`` a 429 says ``Retry-After: 1`` and a first ban ``2``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import string
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event

STAND_IN_NAME = "k2-binance-stand-in"

# web-socket-streams.md § WebSocket Limits
MAX_STREAMS_PER_CONNECTION = 1024
# rest-api.md: § Test connectivity, § Check server time, § Exchange information, § Old trade lookup
ENDPOINT_WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,  # rest-api.md § Compressed/Aggregate trades list
}
AGG_TRADES_MAX_SPAN_MS = 3_600_000  # startTime and endTime at most an hour apart (same section)
WEIGHT_WINDOW_S = 60.0  # enums.md § Rate limiters: REQUEST_WEIGHT, interval MINUTE, intervalNum 1
# rest-api.md § IP Limits: bans "scale in duration for repeat offenders, from 2 minutes to 3 days".
FIRST_BAN_S = 120.0
LONGEST_BAN_S = 3 * 24 * 3600.0
# enums.md § Symbol status (status)
SYMBOL_STATUSES = ("TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY")
# rest-api.md § Exchange information: symbolStatus accepts only these
STATUS_FILTERS = ("TRADING", "HALT", "BREAK")
# web-socket-streams.md § Error Messages lists these as the accepted methods
WS_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
# Quote assets to split a symbol into base and quote for exchangeInfo; longest first.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USD1", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ascii_characters = re.compile(r"[\x00-\x7f]").findall
_LEGAL_ASCII_IN_SYMBOL = frozenset(string.ascii_uppercase + string.digits + "-_.")
_REQUEST_ID = re.compile(r"[A-Za-z0-9]{0,36}")


def stream_name(symbol: str) -> str:
    """The trade stream of ``symbol``: ASCII letters lowercased, every other character kept.

    web-socket-streams.md § General WSS information says stream symbols are lowercase; symbols may
    hold non-ASCII characters since CHANGELOG.md § 2025-12-02, and only their ASCII letters have a
    case to lower (Python's ``str.lower`` would also fold letters such as ``Ä``).
    """
    return f"{symbol.translate(_ASCII_LOWER)}@trade"


def ban_length_s(offence: int) -> float:
    """Length of the ``offence``-th ban (0-based): 2 minutes, doubling, at most 3 days.

    rest-api.md § IP Limits gives only the range; the doubling between its ends is this stand-in's choice.
    """
    return min(LONGEST_BAN_S, FIRST_BAN_S * 2 ** min(offence, 32))


def with_missing_ids(events: list[dict[str, Any]], symbol: str, ids: Iterable[int]) -> list[dict[str, Any]]:
    """The events without ``symbol``'s trades ``ids``: ids that never existed, as Binance's tapes have.

    A stream then jumps over them and ``historicalTrades?fromId=<missing id>`` answers from the next id
    that exists.
    """
    missing = set(ids)
    return [e for e in events if not (e["s"] == symbol and int(e["t"]) in missing)]


@dataclass
class Script:
    """Trouble to cause, keyed by tape position (0-based index of the frame just broadcast).

    ``close_on_open`` and ``silent_connections`` count down as connections use them; set them again at
    any time to affect the next connections.
    """

    disconnect_at: set[int] = field(default_factory=set)  # close every connection after this frame
    # After a forced disconnect, the next connection first gets the last N frames sent before it
    # (repeats); frames broadcast while no client was connected stay lost.
    overlap_on_reconnect: int = 0
    refuse_after_disconnect_s: float = 0.0  # refuse new connections this long after a forced disconnect
    shutdown_at: set[int] = field(default_factory=set)  # send serverShutdown after this frame
    bad_frames: dict[int, list[str]] = field(default_factory=dict)  # raw frames sent after this frame
    close_on_open: int = 0  # the next N connections are accepted, then dropped (no close frame) at once
    silent_connections: int = 0  # the next N connections are accepted and answer pings, but get no frame
    # From this tape position on, play at this many frames per second (a burst, then back): a market's
    # rate is never flat, and Binance's busiest minutes carry several times its average.
    rate_changes: dict[int, float] = field(default_factory=dict)
    # After this frame, these symbols take these exchangeInfo statuses (None: delisted, absent from
    # exchangeInfo). Read when the stand-in is made: the tape's trades of a symbol while it is not
    # TRADING are taken out of the market then.
    status_changes: dict[int, dict[str, str | None]] = field(default_factory=dict)
    # After this frame, close this many of the open connections, the oldest first (one front end of
    # several going down); the others keep streaming. refuse_after_disconnect_s applies here too.
    disconnect_some_at: dict[int, int] = field(default_factory=dict)


@dataclass
class TapeFrame:
    stream: str | None  # None: raw frame for every client
    text: str  # as a combined stream sends it
    symbol: str | None = None
    trade: dict[str, Any] | None = None
    raw_text: str | None = None  # as a raw (/ws) stream sends it; None: same as text
    void: bool = False  # a trade of a symbol that was not TRADING then: it never happens


@dataclass
class _Client:
    streams: dict[str, None]  # subscribed streams in subscription order (LIST_SUBSCRIPTIONS)
    combined: bool  # web-socket-streams.md § Setting Properties: true on /stream, false on /ws
    silent: bool = False


class LimitedConnection(ServerConnection):
    """A server connection that counts incoming messages as Binance does and drops a client over the limit.

    web-socket-streams.md § WebSocket Limits: a connection may send 5 messages per second, a message being
    a PING frame, a PONG frame or a JSON control message; beyond that it is disconnected. The window here
    is any rolling second. The close code (1008 "Too many requests") is what clients report seeing from
    Binance; the docs only say "disconnected".
    """

    incoming_limit = 5
    over_limit = False
    accepted_messages = 0  # data messages that arrived within the limit, in order
    _arrivals: deque[float] | None = None
    _closer: asyncio.Task[None] | None = None

    def process_event(self, event: Event) -> None:
        if self.request is not None and isinstance(event, Frame) and not self.over_limit:
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG):
                now = self.loop.time()
                if self._arrivals is None:
                    self._arrivals = deque()
                self._arrivals.append(now)
                while self._arrivals and now - self._arrivals[0] >= 1.0:
                    self._arrivals.popleft()
                if len(self._arrivals) > self.incoming_limit:
                    self.over_limit = True
                    self._closer = self.loop.create_task(self.close(1008, "Too many requests"))
                elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self.accepted_messages += 1
        super().process_event(event)


def load_frames(path: Path) -> list[dict[str, Any]]:
    """Trade events from a frames file (one combined-stream or raw trade frame per line)."""
    events = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        message = orjson.loads(line)
        data = message.get("data", message)
        if isinstance(data, dict) and data.get("e") == "trade":
            events.append(data)
    return events


def rebase(events: list[dict[str, Any]], end_ms: int, id_offset: int) -> list[dict[str, Any]]:
    """The same trades moved to end at ``end_ms`` with ids shifted, so a demo re-run adds new trades."""
    shift = end_ms - max(int(e["T"]) for e in events)
    return [dict(e, t=int(e["t"]) + id_offset, T=int(e["T"]) + shift, E=int(e["E"]) + shift) for e in events]


def _quote_qty(price: str, qty: str) -> str:
    try:
        return format((Decimal(price) * Decimal(qty)).normalize(), "f")
    except InvalidOperation:
        return "0"


def _assets(symbol: str) -> tuple[str, str]:
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return "UNKNOWN", "UNKNOWN"


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


class BinanceStandIn:
    """Stand-in Binance server (WebSocket + REST on one port). See the module docstring.

    Limits (keyword arguments): ``max_url_length`` (8000; longer handshakes get 414),
    ``max_incoming_per_s`` (5 messages per connection per second), ``rest_lag_s`` (0: historicalTrades
    sees a trade as soon as it is broadcast), ``weight_limit_per_min`` (6000), ``time_scale`` (1.0),
    ``waf_block_requests`` (REST request numbers answered 403), ``symbol_status`` (exchangeInfo status per
    symbol at the start, default TRADING; None: not listed yet, see ``Script.status_changes``).
    ``rest_requests_per_s`` (None) turns on the old stand-in's simple pacing.

    Counters for tests: ``connections`` (handshakes completed), ``connections_closed_on_open``,
    ``incoming_limit_disconnects``, ``rest_requests`` (every ``/api/`` request, numbered from 1 as
    ``waf_block_requests`` counts them), ``rest_429``, ``rest_418``, ``rest_403``, ``used_weight`` (this
    window), ``weight_used`` (all windows), ``peak_window_weight``, ``mass_disconnects`` (epoch
    seconds), ``banned_until`` (epoch seconds; 0.0
    when never banned), ``window_resets_at``, ``requests_by_endpoint`` (answered or refused, by path),
    ``control_requests`` (each SUBSCRIBE and UNSUBSCRIBE as (method, streams)), ``partial_disconnects``.
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
        script = script or Script()
        changed = [(symbol_status or {}).items(), *(c.items() for c in script.status_changes.values())]
        bad_status = {s: v for items in changed for s, v in items if v is not None and v not in SYMBOL_STATUSES}
        if bad_status:
            raise ValueError(f"symbol_status values must be one of {', '.join(SYMBOL_STATUSES)}: {bad_status}")
        self.host = host
        self.port = port
        self.rate = rate
        self.script = script
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.loop_tape = loop_tape
        self.max_url_length = max_url_length
        self.max_incoming_per_s = max_incoming_per_s
        self.rest_lag_s = rest_lag_s
        self.weight_limit_per_min = weight_limit_per_min
        self.time_scale = time_scale
        self.waf_block_requests = set(waf_block_requests or ())
        self.symbol_status: dict[str, str | None] = dict(symbol_status or {})
        # Each symbol's statuses in tape order: (position after which it applies, status); see status_at.
        self._status_log: dict[str, list[tuple[int, str | None]]] = {}
        for position in sorted(script.status_changes):
            for symbol, status in script.status_changes[position].items():
                self._status_log.setdefault(symbol, []).append((position, status))
        self._original = events
        self._counts = Counter(str(e["s"]) for e in events)
        named = [*self.symbol_status, *self._status_log]
        self.symbols = list(dict.fromkeys([*(str(e["s"]) for e in events), *named]))
        self._known = frozenset(self.symbols)
        self._cycle = 0
        self.tape: list[TapeFrame] = []
        self._positions: dict[str, list[int]] = {}  # tape positions of each symbol's trades
        for event in events:
            self._append(event)
        self.position = 0  # frames broadcast so far
        self._sent_at: list[float] = []  # time.monotonic() each frame was broadcast, by position
        self._sent_ms: list[int] = []  # and epoch milliseconds (aggTrades' startTime/endTime)
        self._clients: dict[ServerConnection, _Client] = {}
        self._started = asyncio.Event()
        self._repeat_on_reconnect: list[TapeFrame] = []
        self._refuse_until = 0.0
        # Legacy pacing (off unless rest_requests_per_s is given): 429 under 1/rate s apart, 418 after 5.
        self._rest_min_interval = 1.0 / rest_requests_per_s if rest_requests_per_s else None
        self._last_paced = 0.0
        self._consecutive_429 = 0
        # REQUEST_WEIGHT window
        self._window_index = -1
        self._window_weight = 0
        self._window_429 = -1  # the window in which a 429 was last answered
        self._bans = 0
        self.banned_until = 0.0
        self.rest_requests = 0
        self.weight_used = 0  # request weight of every answered request, all windows
        self.peak_window_weight = 0  # the most weight any one window took
        self.rest_429 = 0
        self.rest_418 = 0
        self.rest_403 = 0
        self.connections = 0
        self.connections_closed_on_open = 0
        self.incoming_limit_disconnects = 0
        self.mass_disconnects: list[float] = []  # epoch seconds of each scripted disconnect of everyone
        self.partial_disconnects = 0  # scripted disconnects of only some connections
        self.partial_disconnect_times: list[float] = []  # epoch seconds of each
        self.requests_by_endpoint: Counter[str] = Counter()
        self.control_requests: list[tuple[str, list[str]]] = []  # SUBSCRIBE/UNSUBSCRIBE as they came
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def _append(self, event: dict[str, Any]) -> None:
        symbol = str(event["s"])
        stream = stream_name(symbol)
        combined = orjson.dumps({"stream": stream, "data": event}).decode()
        void = self.status_at(symbol, len(self.tape)) != "TRADING"
        if not void:
            self._positions.setdefault(symbol, []).append(len(self.tape))
        self.tape.append(TapeFrame(stream, combined, symbol, event, orjson.dumps(event).decode(), void))

    # -- the market ------------------------------------------------------------------------------
    def status_at(self, symbol: str, position: int) -> str | None:
        """The exchangeInfo status of ``symbol`` once ``position`` frames were broadcast (the status its
        trade at tape index ``position`` would have): None when not listed then."""
        status = self.symbol_status.get(symbol, "TRADING") if symbol in self._known else None
        for changed_after, changed_to in self._status_log.get(symbol, []):
            if changed_after >= position:
                break
            status = changed_to
        return status

    def status(self, symbol: str) -> str | None:
        """The status exchangeInfo gives ``symbol`` now (None: not listed)."""
        return self.status_at(symbol, self.position)

    def trades_made(self) -> list[dict[str, Any]]:
        """Every trade of the tape that happens (its symbol was TRADING then), in tape order."""
        return [f.trade for f in self.tape if f.trade is not None and not f.void]

    def broadcast_times(self) -> list[tuple[str, int, float]]:
        """(symbol, trade id, epoch seconds) of every trade broadcast so far: when it happened on this
        market, whoever was connected (benchmarks measure trade-to-queryable latency from it)."""
        offset = time.time() - time.monotonic()
        return [
            (str(frame.trade["s"]), int(frame.trade["t"]), sent + offset)
            for frame, sent in zip(self.tape, self._sent_at, strict=False)
            if frame.trade is not None and not frame.void
        ]

    # -- URLs ------------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- HTTP answers ----------------------------------------------------------------------------
    def _json(self, status: HTTPStatus, body: Any, extra: dict[str, str] | None = None) -> Response:
        data = orjson.dumps(body)  # non-ASCII symbols go out as UTF-8 (rest-api.md § General API Information)
        headers = Headers(
            {
                "Content-Type": "application/json;charset=UTF-8",
                "Content-Length": str(len(data)),
                # One request per TCP connection (websockets' HTTP side); saying so lets clients close at once
                # instead of leaving the server waiting for them. (websockets adds the Server header.)
                "Connection": "close",
            }
        )
        for key, value in (extra or {}).items():
            headers[key] = value
        return Response(status.value, status.phrase, headers, data)

    @staticmethod
    def _html(status: HTTPStatus, text: str) -> Response:
        """An answer from in front of the API (CDN, firewall): HTML, none of the API's JSON or headers."""
        data = f"<html><head><title>{status.value} {status.phrase}</title></head><body><h1>{status.value} "
        data += f"{status.phrase}</h1><p>{text}</p></body></html>\n"
        body = data.encode()
        headers = Headers(
            {
                "Content-Type": "text/html",
                "Content-Length": str(len(body)),
                "Connection": "close",
            }
        )
        return Response(status.value, status.phrase, headers, body)

    # -- REST: weight, 429, 418, 403 ---------------------------------------------------------------
    @property
    def _window_s(self) -> float:
        return WEIGHT_WINDOW_S / self.time_scale

    @property
    def used_weight(self) -> int:
        """Weight used in the current window (what ``X-MBX-USED-WEIGHT-1M`` says)."""
        return self._window_weight if self._window_index == math.floor(time.time() / self._window_s) else 0

    @property
    def window_resets_at(self) -> float:
        """Epoch seconds at which the current weight window ends."""
        return (math.floor(time.time() / self._window_s) + 1) * self._window_s

    def _weight_headers(self) -> dict[str, str]:
        """rest-api.md § IP Limits: X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter) on every answer;
        CHANGELOG.md § 2019-08-15 keeps the legacy X-MBX-USED-WEIGHT, the same one-minute weight."""
        used = str(self.used_weight)
        return {"X-MBX-USED-WEIGHT-1M": used, "X-MBX-USED-WEIGHT": used}

    @staticmethod
    def _retry_after(seconds: float) -> str:
        """Whole seconds, rounded up and at least 1: RFC 9110 delta-seconds, never early."""
        return str(max(1, math.ceil(seconds - 1e-9)))

    def _banned(self, now: float) -> Response:
        self.rest_418 += 1
        return self._json(
            HTTPStatus.IM_A_TEAPOT,
            _error(
                -1003,
                f"Way too much request weight used; IP banned until {int(self.banned_until * 1000)}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
            ),
            {"Retry-After": self._retry_after(self.banned_until - now), **self._weight_headers()},
        )

    def _ban(self, now: float) -> Response:
        self.banned_until = now + ban_length_s(self._bans) / self.time_scale
        self._bans += 1
        return self._banned(now)

    def _charge(self, weight: int, now: float) -> Response | None:
        """Add a request's weight to the minute-aligned window; the 429 or 418 answer if it broke the rules.

        rest-api.md § LIMITS: 429 past the limit, with Retry-After = seconds to wait "to prevent a ban"
        (here: until the window resets), and a ban (418) for "failing to back off after receiving 429s":
        here, any request in the same window after its 429. Weight counts for every answered request.
        """
        index = math.floor(now / self._window_s)
        if index != self._window_index:
            self._window_index, self._window_weight = index, 0
        self._window_weight += weight
        self.weight_used += weight
        self.peak_window_weight = max(self.peak_window_weight, self._window_weight)
        if self._window_429 == index:
            return self._ban(now)
        if self._window_weight > self.weight_limit_per_min:
            self._window_429 = index
            self.rest_429 += 1
            return self._json(
                HTTPStatus.TOO_MANY_REQUESTS,
                _error(
                    -1003,
                    f"Too much request weight used; current limit is {self.weight_limit_per_min} request weight "
                    "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                ),
                {"Retry-After": self._retry_after((index + 1) * self._window_s - now), **self._weight_headers()},
            )
        return None

    def _paced(self) -> Response | None:
        """The old stand-in's per-request pacing, kept for callers that pass ``rest_requests_per_s``."""
        if self._rest_min_interval is None:
            return None
        now = time.monotonic()
        if self._last_paced and now - self._last_paced < self._rest_min_interval:
            self.rest_429 += 1
            self._consecutive_429 += 1
            if self._consecutive_429 > 5:
                self.rest_418 += 1
                return self._json(HTTPStatus.IM_A_TEAPOT, _error(-1003, "IP banned."), {"Retry-After": "2"})
            return self._json(HTTPStatus.TOO_MANY_REQUESTS, _error(-1003, "Too many requests."), {"Retry-After": "1"})
        self._consecutive_429 = 0
        self._last_paced = now
        return None

    def _rest(self, request: Request) -> Response:
        self.rest_requests += 1
        if self.rest_requests in self.waf_block_requests:
            # rest-api.md § HTTP Return Codes: 403 when a WAF rule is violated; the firewall answers, not the API.
            self.rest_403 += 1
            return self._html(HTTPStatus.FORBIDDEN, "Request blocked by the web application firewall.")
        now = time.time()
        if now < self.banned_until:  # rest-api.md § IP Limits: during a ban every request gets 418
            return self._banned(now)
        parts = urlsplit(request.path)
        self.requests_by_endpoint[parts.path] += 1
        weight = ENDPOINT_WEIGHTS.get(parts.path)
        if weight is None:
            return self._json(
                HTTPStatus.NOT_FOUND, _error(-1, f"{STAND_IN_NAME}: no such endpoint"), self._weight_headers()
            )
        refused = self._charge(weight, now)
        if refused is not None:
            return refused
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path == "/api/v3/historicalTrades":
            paced = self._paced()
            if paced is not None:
                return paced
            status, body = self._historical_trades(query)
        elif parts.path == "/api/v3/aggTrades":
            status, body = self._agg_trades(query)
        elif parts.path == "/api/v3/exchangeInfo":
            status, body = self._exchange_info(query)
        elif parts.path == "/api/v3/time":
            status, body = HTTPStatus.OK, {"serverTime": int(time.time() * 1000)}
        else:
            status, body = HTTPStatus.OK, {}
        return self._json(status, body, self._weight_headers())

    # -- REST: endpoints ---------------------------------------------------------------------------
    def _symbol_param(self, query: dict[str, list[str]], name: str) -> tuple[str | None, dict[str, Any] | None]:
        """The symbol parameter, or the error Binance gives for it (errors.md § -1100, -1102, -1105)."""
        values = query.get(name)
        if not values:
            return None, _error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        if values[0] == "":
            return None, _error(-1105, f"Parameter '{name}' was empty.")
        return self._check_symbol(values[0], name)

    @staticmethod
    def _check_symbol(symbol: str, name: str) -> tuple[str | None, dict[str, Any] | None]:
        # ASCII characters of a symbol are uppercase letters, digits and -_. ; other characters are
        # allowed since CHANGELOG.md § 2025-12-02. The range text is the one Binance sent before then.
        if any(c not in _LEGAL_ASCII_IN_SYMBOL for c in _ascii_characters(symbol)):
            return None, _error(
                -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[A-Z0-9-_.]{{1,20}}$'."
            )
        return symbol, None

    def _historical_trades(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        """rest-api.md § Old trade lookup: ``limit`` default 500, max 1000; ``fromId`` or the latest trades.

        Only trades already broadcast (and, with ``rest_lag_s``, broadcast that long ago) exist for REST:
        Binance serves this endpoint from its database, which trails the stream (rest-api.md § Data Sources).
        """
        symbol, error = self._symbol_param(query, "symbol")
        if error is not None or symbol is None:
            return HTTPStatus.BAD_REQUEST, error
        try:
            limit = max(1, min(int((query.get("limit") or ["500"])[0]), 1000))
            from_id = int(query["fromId"][0]) if query.get("fromId") else None
        except ValueError:
            return HTTPStatus.BAD_REQUEST, _error(-1100, "Illegal characters found in a parameter.")
        if self.status(symbol) is None:  # never listed, or delisted
            return HTTPStatus.BAD_REQUEST, _error(-1121, "Invalid symbol.")
        visible = self.position
        if self.rest_lag_s > 0:
            visible = bisect_right(self._sent_at, time.monotonic() - self.rest_lag_s)
        positions = self._positions.get(symbol, [])
        past = [self.tape[p].trade for p in positions[: bisect_right(positions, visible - 1)]]
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

    def _visible_positions(self, symbol: str) -> list[int]:
        """Tape positions of ``symbol``'s trades that REST can see now (see ``rest_lag_s``)."""
        visible = self.position
        if self.rest_lag_s > 0:
            visible = bisect_right(self._sent_at, time.monotonic() - self.rest_lag_s)
        positions = self._positions.get(symbol, [])
        return positions[: bisect_right(positions, visible - 1)]

    def _agg_trades(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        """rest-api.md § Compressed/Aggregate trades list: ``fromId``, ``startTime``/``endTime`` (at most an
        hour apart), ``limit`` (default 500, max 1000); neither: the most recent.

        Binance aggregates the fills of one taker order at one price; a tape has no orders, so each trade
        is its own aggregate (``a`` = ``f`` = ``l`` = its id). Times select by when the stand-in broadcast a
        trade, its analogue of Binance's trade time (a tape's own ``T`` is from whenever it was recorded).
        """
        symbol, error = self._symbol_param(query, "symbol")
        if error is not None or symbol is None:
            return HTTPStatus.BAD_REQUEST, error
        try:
            limit = max(1, min(int((query.get("limit") or ["500"])[0]), 1000))
            from_id, start, end = (
                int(query[k][0]) if query.get(k) else None for k in ("fromId", "startTime", "endTime")
            )
        except ValueError:
            return HTTPStatus.BAD_REQUEST, _error(-1100, "Illegal characters found in a parameter.")
        if start is not None and end is not None and end - start > AGG_TRADES_MAX_SPAN_MS:
            return HTTPStatus.BAD_REQUEST, _error(-1127, "More than 1 hours between startTime and endTime.")
        if self.status(symbol) is None:
            return HTTPStatus.BAD_REQUEST, _error(-1121, "Invalid symbol.")
        positions = self._visible_positions(symbol)
        if from_id is not None:
            chosen = [p for p in positions if int(self.tape[p].trade["t"]) >= from_id][:limit]  # type: ignore[index]
        elif start is not None or end is not None:
            low, high = start if start is not None else 0, end if end is not None else 2**63
            chosen = [p for p in positions if low <= self._sent_ms[p] <= high][:limit]
        else:
            chosen = positions[-limit:]
        trades = [t for t in (self.tape[p].trade for p in chosen) if t is not None]
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
            for t in trades
        ]

    def _exchange_info(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        """rest-api.md § Exchange information: all symbols, ``symbol=``, ``symbols=["A","B"]`` or ``symbolStatus=``.

        An unknown symbol is -1121 "Invalid symbol." (HTTP 400; the § Error Codes sample); symbolStatus with
        symbol(s) is the documented forbidden combination (-1128), an unknown symbolStatus -1122.
        """
        wanted: list[str] | None = None
        if "symbol" in query and "symbols" in query:
            return HTTPStatus.BAD_REQUEST, _error(-1128, "Combination of optional parameters invalid.")
        if "symbol" in query:
            symbol, error = self._symbol_param(query, "symbol")
            if error is not None or symbol is None:
                return HTTPStatus.BAD_REQUEST, error
            wanted = [symbol]
        elif "symbols" in query:
            try:
                listed = json.loads(query["symbols"][0])
            except ValueError:
                listed = None
            if not isinstance(listed, list) or not listed or not all(isinstance(s, str) for s in listed):
                return HTTPStatus.BAD_REQUEST, _error(-1100, "Illegal characters found in parameter 'symbols'.")
            for symbol in listed:
                _, error = self._check_symbol(symbol, "symbols")
                if error is not None:
                    return HTTPStatus.BAD_REQUEST, error
            wanted = list(dict.fromkeys(listed))
        status_filter = query["symbolStatus"][0] if "symbolStatus" in query else None
        if status_filter is not None:
            if wanted is not None:
                return HTTPStatus.BAD_REQUEST, _error(-1128, "Combination of optional parameters invalid.")
            if status_filter not in STATUS_FILTERS:
                return HTTPStatus.BAD_REQUEST, _error(-1122, "Invalid symbolStatus.")
        if wanted is not None and any(self.status(s) is None for s in wanted):
            return HTTPStatus.BAD_REQUEST, _error(-1121, "Invalid symbol.")
        symbols = []
        for symbol in wanted if wanted is not None else self.symbols:
            status = self.status(symbol)
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
                "limit": self.weight_limit_per_min,
            }
        ]
        return HTTPStatus.OK, {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": rate_limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }

    # -- handshake ---------------------------------------------------------------------------------
    @staticmethod
    def _subscription(path: str) -> tuple[bool, list[str]]:
        """(combined, streams) of a WebSocket request path; names percent-decoded as UTF-8, kept exact."""
        parts = urlsplit(path)
        if parts.path.startswith("/ws"):
            names = unquote(parts.path[len("/ws") :]).split("/")
            return False, [n for n in names if n]
        query = parse_qs(parts.query)
        names = "/".join(query.get("streams", [])).split("/")
        return True, [n for n in names if n]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if len(request.path) > self.max_url_length:
            # Binance documents no URL limit; clients found ~8,000 characters. Its answer is not documented
            # either: 414 URI Too Long, as websockets itself answers request lines past its own 8,192.
            return self._html(HTTPStatus.REQUEST_URI_TOO_LONG, f"The URL is longer than {self.max_url_length}.")
        if request.path.startswith("/api/"):
            return self._rest(request)
        if not request.path.startswith("/stream") and not request.path.startswith("/ws"):
            return self._json(HTTPStatus.NOT_FOUND, _error(-1, f"{STAND_IN_NAME}: unknown path"))
        if time.monotonic() < self._refuse_until:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, _error(-1, f"{STAND_IN_NAME}: outage"))
        if len(set(self._subscription(request.path)[1])) > MAX_STREAMS_PER_CONNECTION:
            # The limit is documented (web-socket-streams.md § WebSocket Limits), Binance's answer is not.
            return self._json(
                HTTPStatus.BAD_REQUEST,
                _error(-1, f"{STAND_IN_NAME}: more than {MAX_STREAMS_PER_CONNECTION} streams on one connection"),
            )
        if isinstance(connection, LimitedConnection):
            connection.incoming_limit = self.max_incoming_per_s
        return None  # go on with the WebSocket handshake

    # -- WebSocket: control messages ---------------------------------------------------------------
    @staticmethod
    def _request_id(message: dict[str, Any]) -> tuple[bool, Any]:
        """web-socket-streams.md § Live Subscribing: an id is a signed 64-bit integer, an alphanumeric
        string of at most 36 characters, or null."""
        if "id" not in message:
            return False, None
        value = message["id"]
        if value is None or (type(value) is int and -(2**63) <= value < 2**63):
            return True, value
        if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return True, value
        return False, None

    def _control(self, client: _Client, text: str) -> dict[str, Any]:
        """The answer to one control message (web-socket-streams.md § Live Subscribing/Unsubscribing,
        § Setting Properties, § Retrieving Properties, § Error Messages)."""
        try:
            message = json.loads(text)
        except json.JSONDecodeError as exc:
            return _error(3, f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}")
        if not isinstance(message, dict) or "method" not in message:
            return _error(2, f"Invalid request: missing field `method` at line 1 column {len(text)}")
        method = message["method"]
        if method not in WS_METHODS:
            shown = json.dumps(method)
            column = text.find(shown) + len(shown) if shown in text else len(text)
            expected = ", ".join(f"`{m}`" for m in WS_METHODS)
            return _error(
                2, f"Invalid request: unknown variant `{method}`, expected one of {expected} at line 1 column {column}"
            )
        valid, request_id = self._request_id(message)
        if not valid:
            return _error(2, "Invalid request: request ID must be an unsigned integer")
        params = message.get("params", [])
        if not isinstance(params, list):
            return _error(2, "Invalid request: params must be a list")
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                return _error(2, "Invalid request: too many parameters")
            return {"result": list(client.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            wanted = 2 if method == "SET_PROPERTY" else 1
            if len(params) > wanted:
                return _error(2, "Invalid request: too many parameters")
            if not params or not isinstance(params[0], str):
                return _error(2, "Invalid request: property name must be a string")
            if params[0] != "combined":
                return {"code": 0, "msg": "Unknown property", "id": request_id}
            if method == "GET_PROPERTY":
                return {"result": client.combined, "id": request_id}
            if len(params) < 2 or not isinstance(params[1], bool):
                return _error(1, "Invalid value type: expected Boolean")
            client.combined = params[1]
            return {"result": None, "id": request_id}
        if not all(isinstance(p, str) for p in params):
            return _error(2, "Invalid request: stream names must be strings")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            self.control_requests.append((method, list(params)))
        if method == "UNSUBSCRIBE":
            for name in params:
                client.streams.pop(name, None)
            return {"result": None, "id": request_id}
        added = [p for p in dict.fromkeys(params) if p not in client.streams]
        if len(client.streams) + len(added) > MAX_STREAMS_PER_CONNECTION:
            # The limit is documented (§ WebSocket Limits); the error is this stand-in's, in § Error Messages' shape.
            return {
                "code": 2,
                "msg": f"Invalid request: a connection can listen to at most {MAX_STREAMS_PER_CONNECTION} streams",
                "id": request_id,
            }
        client.streams.update(dict.fromkeys(added))
        return {"result": None, "id": request_id}

    # -- WebSocket: connections --------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        if self.script.close_on_open > 0:
            # Accepted, then dropped without a close frame (the handshake answer is flushed first), as a
            # busy front end does: clients see an abnormal closure (1006) before any message.
            self.script.close_on_open -= 1
            self.connections_closed_on_open += 1
            ws.transport.close()
            return
        combined, streams = self._subscription(ws.request.path if ws.request else "")
        client = _Client(dict.fromkeys(streams), combined)
        if self.script.silent_connections > 0:
            self.script.silent_connections -= 1
            client.silent = True
        else:
            repeats, self._repeat_on_reconnect = self._repeat_on_reconnect, []
            for frame in repeats:
                if frame.stream in client.streams and not frame.void:
                    await ws.send(self._text_for(client, frame))
        self._clients[ws] = client
        self._started.set()
        handled = 0
        try:
            async for message in ws:
                handled += 1
                if isinstance(ws, LimitedConnection) and handled > ws.accepted_messages:
                    continue  # arrived past the limit: the connection is closing
                text = message.decode(errors="replace") if isinstance(message, bytes) else message
                answer = self._control(client, text)
                if not client.silent:
                    await ws.send(orjson.dumps(answer).decode())
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(ws, None)
            if isinstance(ws, LimitedConnection) and ws.over_limit:
                self.incoming_limit_disconnects += 1

    @staticmethod
    def _text_for(client: _Client, frame: TapeFrame) -> str:
        return frame.text if client.combined or frame.raw_text is None else frame.raw_text

    async def _send(self, ws: ServerConnection, text: str) -> None:
        try:
            await ws.send(text)
        except Exception:  # a client that went away misses the frame, as on Binance
            self._clients.pop(ws, None)

    async def _broadcast(self, frame: TapeFrame) -> None:
        for ws, client in list(self._clients.items()):
            if not client.silent and (frame.stream is None or frame.stream in client.streams):
                await self._send(ws, self._text_for(client, frame))

    async def _server_shutdown(self) -> None:
        """web-socket-streams.md § Server Shutdown: bare on raw streams, wrapped as ``!serverShutdown``
        on combined ones."""
        event = {"e": "serverShutdown", "E": int(time.time() * 1000)}
        combined = orjson.dumps({"stream": "!serverShutdown", "data": event}).decode()
        raw = orjson.dumps(event).decode()
        for ws, client in list(self._clients.items()):
            if not client.silent:
                await self._send(ws, combined if client.combined else raw)

    async def _disconnect_everyone(self) -> None:
        """Close every connection at once (subscribed or silent), as when a Binance front end goes down."""
        closing = list(self._clients)
        self._clients.clear()
        await asyncio.gather(*(ws.close(1001, "stand-in: forced disconnect") for ws in closing), return_exceptions=True)

    async def _disconnect_oldest(self, count: int) -> None:
        """Close the ``count`` connections open longest; the others keep streaming."""
        closing = list(self._clients)[:count]
        for ws in closing:
            self._clients.pop(ws, None)
        await asyncio.gather(*(ws.close(1001, "stand-in: forced disconnect") for ws in closing), return_exceptions=True)

    async def _play(self) -> None:
        await self._started.wait()
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        while True:
            if self.position >= len(self.tape):
                if not self.loop_tape:
                    return
                self._advance_tape()
            frame = self.tape[self.position]
            index = self.position
            if index in self.script.rate_changes:
                rate = self.script.rate_changes[index]
                interval = 1.0 / rate if rate > 0 else 0.0
                next_at = time.monotonic()
            if not frame.void:
                await self._broadcast(frame)
            self._sent_at.append(time.monotonic())
            self._sent_ms.append(int(time.time() * 1000))
            self.position += 1
            for raw in self.script.bad_frames.get(index, []):
                await self._broadcast(TapeFrame(None, raw))
            if index in self.script.shutdown_at:
                await self._server_shutdown()
            if index in self.script.disconnect_at:
                overlap = self.script.overlap_on_reconnect
                self._repeat_on_reconnect = self.tape[max(0, index + 1 - overlap) : index + 1] if overlap else []
                self._refuse_until = time.monotonic() + self.script.refuse_after_disconnect_s
                self.mass_disconnects.append(time.time())
                await self._disconnect_everyone()
            if self.script.disconnect_some_at.get(index):
                self._refuse_until = time.monotonic() + self.script.refuse_after_disconnect_s
                self.partial_disconnects += 1
                self.partial_disconnect_times.append(time.time())
                await self._disconnect_oldest(self.script.disconnect_some_at[index])
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif index % 200 == 0:
                await asyncio.sleep(0)  # let clients and REST requests in

    def _advance_tape(self) -> None:
        """Endless demo mode: play the original trades again with later ids and current times."""
        self._cycle += 1
        shift = int(time.time() * 1000) - int(self._original[0]["T"])
        for event in self._original:
            again = dict(event, t=int(event["t"]) + self._cycle * self._counts[str(event["s"])])
            again["T"], again["E"] = int(event["T"]) + shift, int(event["E"]) + shift
            self._append(again)

    async def serve_forever(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,  # web-socket-streams.md § General WSS information: a minute
            server_header=STAND_IN_NAME,
            create_connection=LimitedConnection,
        ) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1] if server.sockets else self.port
            player = asyncio.create_task(self._play())
            self._ready.set()
            await self._stop.wait()
            player.cancel()

    # -- thread helpers for tests ------------------------------------------------------------------
    def start(self) -> BinanceStandIn:
        """Serve in a background thread; returns once the port is bound."""

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve_forever())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=STAND_IN_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Binance stand-in did not start")
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
