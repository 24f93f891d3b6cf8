"""Which connection carries which stream, and how fast control messages may go: decisions, no network.

Binance's limits (web-socket-streams.md § WebSocket Limits): at most 1,024 streams per connection, and
5 incoming messages per second per connection, where a PING frame, a PONG frame and a JSON control
message (``SUBSCRIBE``, ``UNSUBSCRIBE``) all count; a connection over the limit is disconnected and an
IP disconnected repeatedly may be banned. Streams are named in a connection's URL when it opens
(§ General WSS information: ``/stream?streams=a@trade/b@trade``) and added or dropped later with
``SUBSCRIBE`` / ``UNSUBSCRIBE`` (§ Live Subscribing/Unsubscribing to streams).

Binance documents no URL limit but refuses handshakes past about 8,000 characters (see MAX_URL_LENGTH),
so a connection's streams are named in its URL only as far as they fit; the rest are subscribed once it
is open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .exceptions import ProducerError
from .exchange import url_stream_name

MAX_STREAMS_PER_CONNECTION = 1024  # web-socket-streams.md, "WebSocket Limits"
# Binance documents no URL limit, but refuses longer handshakes: clients measured 8,004 characters
# (oliver-zehentleitner/unicorn-binance-websocket-api#17). Half of that leaves room for proxies and for
# a lower limit on another endpoint; it costs one more connection per ~250 ASCII symbols.
MAX_URL_LENGTH = 4000
# One control message a second per connection. Besides it a connection sends Binance at most our own
# keepalive ping (every 30 s) and the pong to each of Binance's pings (every 20 s): at most 3 of the 5
# messages a second Binance allows, with room for two control messages that network jitter bunches up.
CONTROL_INTERVAL_S = 1.0
# Streams named in one SUBSCRIBE/UNSUBSCRIBE. Binance caps neither the params list nor (documented) the
# message size; 200 stream names are about 3 KB, so a connection's 1,024 streams take 6 messages.
CONTROL_BATCH = 200


def url_prefix(ws_url: str) -> str:
    """The combined-stream URL before its first stream name."""
    return f"{ws_url.rstrip('/')}/stream?streams="


def pack(
    ws_url: str,
    symbols: list[str],
    per_connection: int = MAX_STREAMS_PER_CONNECTION,
    max_url_length: int = MAX_URL_LENGTH,
) -> list[list[str]]:
    """The symbols in order, in groups whose streams fit one connection's URL: each group at most
    ``per_connection`` streams and a URL of at most ``max_url_length`` characters."""
    prefix = url_prefix(ws_url)
    groups: list[list[str]] = []
    group: list[str] = []
    length = len(prefix)
    for symbol in symbols:
        stream = url_stream_name(symbol)
        if len(prefix) + len(stream) > max_url_length:
            raise ProducerError(f"the stream URL for {symbol} alone is longer than {max_url_length} characters")
        if group and (len(group) >= per_connection or length + 1 + len(stream) > max_url_length):
            groups.append(group)
            group, length = [], len(prefix)
        length += len(stream) + (1 if group else 0)
        group.append(symbol)
    if group:
        groups.append(group)
    return groups


def opening_url(ws_url: str, symbols: list[str], max_url_length: int = MAX_URL_LENGTH) -> tuple[str, list[str]]:
    """The URL that opens a connection for ``symbols`` (as many of the first as fit in ``max_url_length``)
    and the symbols left out of it, to be subscribed once the connection is open."""
    fits = pack(ws_url, symbols, per_connection=len(symbols) or 1, max_url_length=max_url_length)
    named = fits[0] if fits else []
    url = url_prefix(ws_url) + "/".join(url_stream_name(s) for s in named)
    return url, symbols[len(named) :]


def assign(loads: list[int], count: int, per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[int]:
    """Where each of ``count`` new streams goes, given how many streams each connection carries now.

    Each goes to the first connection with room (fewer than ``per_connection`` streams); a new connection
    (index ``len(loads)`` and on) is opened only when no connection has room. URL length is no constraint
    here: streams past what a connection's URL can name are subscribed after it opens (``opening_url``).
    """
    loads = list(loads)
    placed: list[int] = []
    index = 0
    for _ in range(count):
        while index < len(loads) and loads[index] >= per_connection:
            index += 1
        if index == len(loads):
            loads.append(0)
        loads[index] += 1
        placed.append(index)
    return placed


class ControlPacer:
    """Spaces one connection's control messages at least ``interval`` seconds apart (see CONTROL_INTERVAL_S),
    measured from when each was actually sent: a message delayed (a busy event loop) never lets the next
    one follow it closely."""

    def __init__(self, interval: float = CONTROL_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = 0.0

    def delay(self) -> float:
        """Seconds until the next control message may go."""
        return max(0.0, self._next - self._clock())

    def sent(self) -> None:
        """A control message went now."""
        self._next = self._clock() + self.interval

    async def wait(self) -> None:
        """Wait until the next control message may go."""
        while (delay := self.delay()) > 0:
            await asyncio.sleep(delay)
