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
from dataclasses import dataclass

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


@dataclass
class Load:
    """What one connection carries, as placing new streams needs it."""

    streams: int
    url_length: int | None  # of its opening URL; None when its streams no longer all fit in one


def load_of(ws_url: str, symbols: list[str], max_url_length: int = MAX_URL_LENGTH) -> Load:
    url, left_out = opening_url(ws_url, symbols, max_url_length)
    return Load(len(symbols), None if left_out else len(url))


def assign(
    ws_url: str,
    loads: list[Load],
    symbols: list[str],
    per_connection: int = MAX_STREAMS_PER_CONNECTION,
    max_url_length: int = MAX_URL_LENGTH,
) -> list[int]:
    """Which connection each new symbol goes to (an index into ``loads``; ``len(loads)`` and on: new ones).

    First choice, a connection with room (fewer than ``per_connection`` streams) whose URL can still name
    the stream, so a reconnect carries it at once; then any connection with room, where it is subscribed
    after each (re)connect; a new connection only when no connection has room.
    """
    loads = [Load(load.streams, load.url_length) for load in loads]
    prefix = len(url_prefix(ws_url))
    placed: list[int] = []
    for symbol in symbols:
        length = len(url_stream_name(symbol))
        with_room = [i for i, load in enumerate(loads) if load.streams < per_connection]
        named = [i for i in with_room if _longer_url(loads[i], length, max_url_length) is not None]
        index = named[0] if named else with_room[0] if with_room else len(loads)
        if index == len(loads):
            loads.append(Load(0, prefix))
        load = loads[index]
        load.url_length = _longer_url(load, length, max_url_length)
        load.streams += 1
        placed.append(index)
    return placed


def _longer_url(load: Load, stream_length: int, max_url_length: int) -> int | None:
    """The URL length of ``load`` with one more stream of ``stream_length`` named; None if it does not fit."""
    if load.url_length is None:
        return None
    longer = load.url_length + stream_length + (1 if load.streams else 0)
    return longer if longer <= max_url_length else None


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
