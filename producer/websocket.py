"""Binance combined-stream connections: split, reconnect with backoff, rotate without a gap.

Binance limits (spot, public streams): at most 1,024 streams per connection, 5 incoming control
messages per second (pings, pongs, JSON requests), 300 connection attempts per 5 minutes per IP, and
a connection lives at most 24 hours (a ``serverShutdown`` event may come first). The server pings
every 20 s and drops a client that has not answered within a minute; ``websockets`` answers pings
itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection

log = logging.getLogger("k2.producer.ws")

MAX_STREAMS_PER_CONNECTION = 1024
ROTATE_AFTER_S = 23 * 3600 + 30 * 60  # well before Binance's 24 h cut-off


def stream_urls(ws_url: str, symbols: list[str], per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[str]:
    """One combined-stream URL per group of at most ``per_connection`` trade streams."""
    base = ws_url.rstrip("/")
    streams = [f"{symbol.lower()}@trade" for symbol in symbols]
    return [
        f"{base}/stream?streams={'/'.join(streams[i : i + per_connection])}"
        for i in range(0, len(streams), per_connection)
    ]


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


FrameHandler = Callable[[str | bytes, str], bool]  # returns True on serverShutdown


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
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        self.url = url
        self.on_frame = on_frame
        self.stop = stop
        self.limiter = limiter
        self.stats = stats
        self.rotate_after = rotate_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._current: ClientConnection | None = None

    async def _open(self) -> ClientConnection | None:
        failures = 0
        while not self.stop.is_set():
            await self.limiter.acquire()
            try:
                # Our own pings every 30 s detect a dead link; answering the server's is automatic.
                ws = await websockets.connect(
                    self.url, ping_interval=30, ping_timeout=30, open_timeout=10, max_size=2**20
                )
                self.stats.connects += 1
                return ws
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                failures += 1
                self.stats.failed_attempts += 1
                cap = min(self.backoff_max, self.backoff_base * 2**failures)
                delay = random.uniform(cap / 2, cap)  # exponential backoff with jitter
                log.warning("connect to %s failed (%s); retrying in %.1fs", self.url.split("?")[0], exc, delay)
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    pass
        return None

    async def _read(self, ws: ClientConnection, rotate: asyncio.Event, first_frame: asyncio.Event) -> None:
        try:
            async for frame in ws:
                first_frame.set()
                if self.on_frame(frame, "ws"):
                    rotate.set()
        except websockets.ConnectionClosed:
            pass

    async def run(self) -> None:
        ws = await self._open()
        try:
            await self._serve(ws)
        finally:
            # A connection opened just as stop was set (by a reconnect or a rotation) is closed too.
            if self._current is not None:
                await self._current.close()

    async def _serve(self, ws: ClientConnection | None) -> None:
        self._current = ws
        while ws is not None and not self.stop.is_set():
            rotate = asyncio.Event()
            first = asyncio.Event()
            reader = asyncio.create_task(self._read(ws, rotate, first))
            stopper = asyncio.create_task(self.stop.wait())
            rotator = asyncio.create_task(rotate.wait())
            done, _ = await asyncio.wait(
                {reader, stopper, rotator}, timeout=self.rotate_after, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (stopper, rotator):
                task.cancel()
            if stopper in done or self.stop.is_set():
                await ws.close()
                await reader
                return
            if reader in done:  # dropped: reconnect; the sequencer backfills whatever was missed
                self.stats.reconnects += 1
                ws = self._current = await self._open()
                continue
            # Rotation (age or serverShutdown): open the new connection first, switch once it delivers,
            # then close the old one; the overlap's repeats are dropped by the sequencer.
            new_ws = await self._open()
            if new_ws is None:
                await ws.close()
                await reader
                return
            new_first = asyncio.Event()
            new_reader = asyncio.create_task(self._read(new_ws, asyncio.Event(), new_first))
            try:
                await asyncio.wait_for(new_first.wait(), 10)
            except TimeoutError:
                pass
            new_reader.cancel()
            try:
                await new_reader
            except asyncio.CancelledError:
                pass
            await ws.close()
            await reader
            self.stats.rotations += 1
            ws = self._current = new_ws
