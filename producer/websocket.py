"""Binance combined-stream connections: split, reconnect with backoff, watch for silence, rotate without a gap.

Binance limits (web-socket-streams.md, "WebSocket Limits" and "General WSS information"): at most
1,024 streams per connection, 5 incoming messages per second per connection (pings, pongs and JSON
requests all count), 300 connection attempts per 5 minutes per IP, and a connection lives at most 24
hours (a ``serverShutdown`` event may come first). The server pings every 20 s and drops a client that
has not answered within a minute; ``websockets`` answers pings itself.

Streams are named in the URL, never subscribed by message: a reconnect then needs no replayed
requests, and the only incoming messages are pongs and one ping every 30 s, far below 5 per second.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection

from .exceptions import ProducerError
from .exchange import url_stream_name

log = logging.getLogger("k2.producer.ws")

MAX_STREAMS_PER_CONNECTION = 1024  # web-socket-streams.md, "WebSocket Limits"
# Binance documents no URL limit, but refuses longer handshakes: clients measured 8,004 characters
# (oliver-zehentleitner/unicorn-binance-websocket-api#17). Half of that leaves room for proxies and for
# a lower limit on another endpoint; it costs one more connection per ~250 ASCII symbols.
MAX_URL_LENGTH = 4000
ROTATE_AFTER_S = 23 * 3600 + 30 * 60  # well before Binance's 24 h cut-off
# A connection that delivers no frame for this long is closed and opened again (the sequencer backfills
# what was missed). Liquid pairs trade several times a second, but quiet symbols exist: two minutes is
# six of Binance's 20 s pings, a false alarm costs one reconnect (far below 300 attempts per 5 minutes)
# and no data, and a real one costs at most two minutes of freshness.
SILENCE_TIMEOUT_S = 120.0
# A connection that delivered no frame counts as a failed attempt: a server that accepts and closes at
# once (or stays silent) is retried with growing delays, never in a tight loop. One that delivered
# frames is reopened at once, since every second away is trades to backfill, unless it is the
# QUICK_RECONNECTS+1st in a row to live under HEALTHY_AFTER_S: a server dropping each connection
# after a burst is backed off too.
HEALTHY_AFTER_S = 5.0
QUICK_RECONNECTS = 3


class StreamRefused(ProducerError):
    """The server refused the handshake for good (an HTTP 4xx other than 418/429): retrying cannot help."""


def stream_urls(
    ws_url: str,
    symbols: list[str],
    per_connection: int = MAX_STREAMS_PER_CONNECTION,
    max_url_length: int = MAX_URL_LENGTH,
) -> list[str]:
    """Combined-stream URLs covering every symbol's trade stream once, each with at most ``per_connection``
    streams and at most ``max_url_length`` characters."""
    prefix = f"{ws_url.rstrip('/')}/stream?streams="
    urls: list[str] = []
    group: list[str] = []
    length = len(prefix)
    for symbol in symbols:
        stream = url_stream_name(symbol)
        if len(prefix) + len(stream) > max_url_length:
            raise ProducerError(f"the stream URL for {symbol} alone is longer than {max_url_length} characters")
        if group and (len(group) >= per_connection or length + 1 + len(stream) > max_url_length):
            urls.append(prefix + "/".join(group))
            group, length = [], len(prefix)
        length += len(stream) + (1 if group else 0)
        group.append(stream)
    if group:
        urls.append(prefix + "/".join(group))
    return urls


class AttemptLimiter:
    """Sliding-window cap on connection attempts shared by all connections (Binance: 300 / 5 min / IP)."""

    def __init__(self, max_attempts: int = 250, window_s: float = 300.0) -> None:
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._attempts: deque[float] = deque()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self._attempts and now - self._attempts[0] > self.window_s:
                self._attempts.popleft()
            if len(self._attempts) < self.max_attempts:
                self._attempts.append(now)
                return
            await asyncio.sleep(self.window_s - (now - self._attempts[0]) + 0.01)


@dataclass
class ConnectionStats:
    connects: int = 0
    reconnects: int = 0
    rotations: int = 0
    failed_attempts: int = 0
    silences: int = 0


@dataclass
class _Link:
    """One open connection and what it has delivered."""

    ws: ClientConnection
    opened: float = field(default_factory=time.monotonic)
    last_frame: float = field(default_factory=time.monotonic)
    frames: int = 0


FrameHandler = Callable[[str | bytes, str], bool]  # returns True on serverShutdown


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter in [ceiling/2, ceiling]: each delay is at least the one before."""
    ceiling = min(cap, base * 2 ** (failures - 1))
    return random.uniform(ceiling / 2, ceiling)


class StreamConnection:
    """Keeps one combined stream flowing into ``on_frame`` until ``stop`` is set."""

    def __init__(
        self,
        url: str,
        on_frame: FrameHandler,
        stop: asyncio.Event,
        limiter: AttemptLimiter,
        stats: ConnectionStats,
        rotate_after: float = ROTATE_AFTER_S,
        silence_timeout: float = SILENCE_TIMEOUT_S,
        healthy_after: float = HEALTHY_AFTER_S,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        self.url = url
        self.on_frame = on_frame
        self.stop = stop
        self.limiter = limiter
        self.stats = stats
        self.rotate_after = rotate_after
        self.silence_timeout = silence_timeout
        self.healthy_after = healthy_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.failures = 0  # consecutive failed handshakes and connections that delivered no frame
        self.short_lived = 0  # consecutive connections that delivered but lived under healthy_after
        self._current: ClientConnection | None = None
        self._name = url.split("?")[0]
        self._streams = url.count("@")

    @property
    def connected(self) -> bool:
        """An open connection is serving this stream list (read by the metrics collector)."""
        return self._current is not None and self._current.close_code is None

    @property
    def streams(self) -> int:
        return self._streams

    # -- opening -------------------------------------------------------------------------------------
    async def _fail(self, why: str, at_least: float = 0.0) -> None:
        """Count a failed attempt and wait out its backoff."""
        self.failures += 1
        self.stats.failed_attempts += 1
        await self._pause(self.failures, why, f"failure {self.failures} in a row", at_least)

    async def _pause(self, count: int, why: str, streak: str, at_least: float = 0.0) -> None:
        """Wait the backoff of the ``count``-th trouble in a row (or until ``stop``), saying so."""
        delay = max(at_least, backoff_delay(count, self.backoff_base, self.backoff_max))
        log.warning("%s; reconnecting to %s in %.1fs (%s)", why, self._name, delay, streak)
        try:
            await asyncio.wait_for(self.stop.wait(), delay)
        except TimeoutError:
            pass

    async def _open(self) -> _Link | None:
        while not self.stop.is_set():
            await self.limiter.acquire()
            try:
                # Our own pings every 30 s detect a dead link; answering the server's is automatic.
                ws = await websockets.connect(
                    self.url, ping_interval=30, ping_timeout=30, open_timeout=10, max_size=2**20
                )
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (418, 429):
                    self.stop.set()  # every connection stops: the producer exits with this error
                    raise StreamRefused(
                        f"{self._name} refused the stream handshake with HTTP {status} "
                        f"({len(self.url)}-character URL, {self._streams} streams); retrying cannot help: "
                        "check --ws-url and --symbols"
                    ) from exc
                # 429 (too many requests), 418 (IP ban) and 5xx: temporary; honour Retry-After if sent.
                await self._fail(f"handshake refused with HTTP {status}", _retry_after(exc))
                continue
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                await self._fail(f"connect failed ({exc})")
                continue
            self.stats.connects += 1
            return _Link(ws)
        return None

    # -- reading -------------------------------------------------------------------------------------
    async def _read(self, link: _Link, rotate: asyncio.Event, first_frame: asyncio.Event) -> None:
        try:
            async for frame in link.ws:
                link.frames += 1
                link.last_frame = time.monotonic()
                first_frame.set()
                if self.on_frame(frame, "ws"):
                    rotate.set()
        except websockets.ConnectionClosed:
            pass

    async def _silence(self, link: _Link) -> None:
        """Returns once ``link`` has delivered no frame for ``silence_timeout`` seconds."""
        while True:
            quiet = time.monotonic() - link.last_frame
            if quiet >= self.silence_timeout:
                return
            await asyncio.sleep(self.silence_timeout - quiet)

    async def _after_drop(self, link: _Link, why: str) -> None:
        """Judge a connection that ended (see QUICK_RECONNECTS) and wait before the next one if it failed."""
        lived = time.monotonic() - link.opened
        if not link.frames:
            await self._fail(f"{why} after {lived:.1f}s without a frame")
            return
        self.failures = 0
        self.short_lived = self.short_lived + 1 if lived < self.healthy_after else 0
        if self.short_lived > QUICK_RECONNECTS:
            streak = f"{self.short_lived} short connections in a row"
            await self._pause(self.short_lived - QUICK_RECONNECTS, f"{why} after {lived:.1f}s", streak)
            return
        log.warning("%s after %.1fs and %d frames; reconnecting to %s", why, lived, link.frames, self._name)

    async def run(self) -> None:
        link = await self._open()
        try:
            await self._serve(link)
        finally:
            # A connection opened just as stop was set (by a reconnect or a rotation) is closed too.
            if self._current is not None:
                await self._current.close()

    async def _serve(self, link: _Link | None) -> None:
        self._current = link.ws if link else None
        while link is not None and not self.stop.is_set():
            rotate = asyncio.Event()
            reader = asyncio.create_task(self._read(link, rotate, asyncio.Event()))
            stopper = asyncio.create_task(self.stop.wait())
            rotator = asyncio.create_task(rotate.wait())
            watchdog = asyncio.create_task(self._silence(link))
            done, _ = await asyncio.wait(
                {reader, stopper, rotator, watchdog}, timeout=self.rotate_after, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (stopper, rotator, watchdog):
                task.cancel()
            if stopper in done or self.stop.is_set():
                await link.ws.close()
                await reader
                return
            failure = reader.exception() if reader in done else None
            if failure is not None:
                raise failure  # on_frame failed (e.g. Kafka refused a record): not a network problem
            if reader in done or watchdog in done:
                # Dropped, or open but silent: reconnect; the sequencer backfills whatever was missed.
                if reader in done:
                    why = f"connection closed ({link.ws.close_code or 'no close frame'})"
                else:
                    self.stats.silences += 1
                    why = f"no frame for {self.silence_timeout:g}s (--silence-timeout): closed"
                    await link.ws.close()
                    await reader
                self.stats.reconnects += 1
                await self._after_drop(link, why)
                link = await self._open()
                self._current = link.ws if link else None
                continue
            # Rotation (age or serverShutdown): open the new connection first, switch once it delivers,
            # then close the old one; the overlap's repeats are dropped by the sequencer.
            new_link = await self._open()
            if new_link is None:
                await link.ws.close()
                await reader
                return
            new_first = asyncio.Event()
            new_reader = asyncio.create_task(self._read(new_link, asyncio.Event(), new_first))
            try:
                await asyncio.wait_for(new_first.wait(), 10)
            except TimeoutError:
                pass
            new_reader.cancel()
            try:
                await new_reader
            except asyncio.CancelledError:
                pass
            await link.ws.close()
            await reader
            self.stats.rotations += 1
            link = new_link
            self._current = link.ws


def _retry_after(exc: websockets.InvalidStatus) -> float:
    try:
        return float(exc.response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0
