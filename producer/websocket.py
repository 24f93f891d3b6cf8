"""Binance combined-stream connections: reconnect with backoff, watch for silence, rotate without a gap,
and add or drop streams while open.

Binance limits (web-socket-streams.md, "WebSocket Limits" and "General WSS information"): at most
1,024 streams per connection, 5 incoming messages per second per connection (pings, pongs and JSON
requests all count), 300 connection attempts per 5 minutes per IP, and a connection lives at most 24
hours (a ``serverShutdown`` event may come first). The server pings every 20 s and drops a client that
has not answered within a minute; ``websockets`` answers pings itself.

A connection's streams are a list that changes while it runs (``add``, ``remove``). Each (re)connect
names in its URL as many of them as fit (subscriptions.opening_url), so a reconnect needs no replayed
requests as long as the list fits; the rest, and every change while open, go as ``SUBSCRIBE`` /
``UNSUBSCRIBE`` (§ Live Subscribing/Unsubscribing to streams), one request at a time, paced by
subscriptions.ControlPacer, each waiting for its ``{"result": null, "id": N}`` answer. An error answer
(§ Error Messages) or none within ``answer_timeout`` is logged in one line and the request is made again
later.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from .defaults import SILENCE_TIMEOUT_S
from .exceptions import ProducerError
from .exchange import stream_name
from .stats import ConnectionStats
from .subscriptions import (
    CONTROL_BATCH,
    CONTROL_INTERVAL_S,
    MAX_STREAMS_PER_CONNECTION,
    MAX_URL_LENGTH,
    ControlPacer,
    opening_url,
    pack,
    url_prefix,
)

__all__ = ["MAX_STREAMS_PER_CONNECTION", "MAX_URL_LENGTH", "StreamConnection", "stream_urls"]

log = logging.getLogger("k2.producer.ws")

ROTATE_AFTER_S = 23 * 3600 + 30 * 60  # well before Binance's 24 h cut-off
# A connection that delivered no frame counts as a failed attempt: a server that accepts and closes at
# once (or stays silent) is retried with growing delays, never in a tight loop. One that delivered
# frames is reopened at once, since every second away is trades to backfill, unless it is the
# QUICK_RECONNECTS+1st in a row to live under HEALTHY_AFTER_S: a server dropping each connection
# after a burst is backed off too.
HEALTHY_AFTER_S = 5.0
QUICK_RECONNECTS = 3
# Binance answers a control message at once; none within this long means it was lost: ask again.
ANSWER_TIMEOUT_S = 10.0
CONTROL_RETRY_S = 5.0  # after an error answer or none, wait this long before asking again
SETTLE_TIMEOUT_S = 10.0  # a rotation waits this long for the new connection to carry every stream
_STREAM_PREFIX = '{"stream"'
_STREAM_PREFIX_BYTES = _STREAM_PREFIX.encode()


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
    return [
        opening_url(ws_url, group, max_url_length)[0] for group in pack(ws_url, symbols, per_connection, max_url_length)
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
class _Request:
    request_id: int
    method: str  # SUBSCRIBE or UNSUBSCRIBE
    symbols: list[str]
    sent_at: float


@dataclass
class _Link:
    """One open connection, the streams it carries and what it has delivered."""

    ws: ClientConnection
    streams: set[str]  # symbols named in its URL, plus those subscribed since, minus those unsubscribed
    pacer: ControlPacer
    opened: float = field(default_factory=time.monotonic)
    last_frame: float = field(default_factory=time.monotonic)
    frames: int = 0
    pending: _Request | None = None  # the control message awaiting its answer (one at a time)
    retry_at: float = 0.0  # no control message before this (after an error answer or none)


FrameHandler = Callable[[str | bytes, str], bool]  # returns True on serverShutdown


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter in [ceiling/2, ceiling]: each delay is at least the one before."""
    ceiling = min(cap, base * 2 ** (failures - 1))
    return random.uniform(ceiling / 2, ceiling)


def _is_stream_frame(frame: str | bytes) -> bool:
    """A combined-stream event (the hot path: one prefix test); anything else may be a control answer."""
    if isinstance(frame, str):
        return frame.startswith(_STREAM_PREFIX)
    return frame.startswith(_STREAM_PREFIX_BYTES)


class StreamConnection:
    """Keeps one combined stream of a changing list of symbols flowing into ``on_frame`` until ``stop``."""

    def __init__(
        self,
        ws_url: str,
        symbols: list[str],
        on_frame: FrameHandler,
        stop: asyncio.Event,
        limiter: AttemptLimiter,
        stats: ConnectionStats,
        rotate_after: float = ROTATE_AFTER_S,
        silence_timeout: float = SILENCE_TIMEOUT_S,
        healthy_after: float = HEALTHY_AFTER_S,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        max_url_length: int = MAX_URL_LENGTH,
        control_interval: float = CONTROL_INTERVAL_S,
        control_batch: int = CONTROL_BATCH,
        answer_timeout: float = ANSWER_TIMEOUT_S,
        control_retry: float = CONTROL_RETRY_S,
        ping_interval: float = 30.0,
    ) -> None:
        self.ws_url = ws_url
        self.on_frame = on_frame
        self.stop = stop
        self.limiter = limiter
        self.stats = stats
        self.rotate_after = rotate_after
        self.silence_timeout = silence_timeout
        self.healthy_after = healthy_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_url_length = max_url_length
        self.control_interval = control_interval
        self.control_batch = control_batch
        self.answer_timeout = answer_timeout
        self.control_retry = control_retry
        self.ping_interval = ping_interval
        self.failures = 0  # consecutive failed handshakes and connections that delivered no frame
        self.short_lived = 0  # consecutive connections that delivered but lived under healthy_after
        self.wanted: dict[str, None] = dict.fromkeys(symbols)  # the symbols to carry, in order
        self._current: ClientConnection | None = None
        self._link: _Link | None = None
        self._name = url_prefix(ws_url).split("?")[0]
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()  # wakes the control task: the list changed or an answer came
        self._has_streams = asyncio.Event()  # set while the list is not empty
        self._emptied = asyncio.Event()  # set while it is: the connection closes and waits
        (self._has_streams if self.wanted else self._emptied).set()

    @property
    def connected(self) -> bool:
        """An open connection is serving this stream list (read by the metrics collector)."""
        return self._current is not None and self._current.close_code is None

    @property
    def streams(self) -> int:
        return len(self.wanted)

    @property
    def url(self) -> str:
        """The URL the next (re)connect opens."""
        return opening_url(self.ws_url, list(self.wanted), self.max_url_length)[0]

    @property
    def carried(self) -> set[str]:
        """The symbols the open connection carries now (empty while closed)."""
        return set(self._link.streams) if self._link is not None and self.connected else set()

    # -- the list ------------------------------------------------------------------------------------
    def add(self, symbols: list[str]) -> None:
        """Carry these symbols too: named in the next URL, subscribed now if open."""
        for symbol in symbols:
            self.wanted[symbol] = None
        if self.wanted:
            self._emptied.clear()
            self._has_streams.set()
        self._changed.set()

    def remove(self, symbols: list[str]) -> None:
        """Stop carrying these symbols: unsubscribed now if open; with none left, the connection closes."""
        for symbol in symbols:
            self.wanted.pop(symbol, None)
        if not self.wanted:
            self._has_streams.clear()
            self._emptied.set()
        self._changed.set()

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
        while not self.stop.is_set() and self.wanted:
            await self.limiter.acquire()
            # The URL names what fits; the rest are subscribed once the connection is open (see _control).
            url, subscribe_later = opening_url(self.ws_url, list(self.wanted), self.max_url_length)
            named = list(self.wanted)[: len(self.wanted) - len(subscribe_later)]
            try:
                # Our own pings (every 30 s) detect a dead link; answering the server's is automatic.
                ws = await websockets.connect(
                    url, ping_interval=self.ping_interval, ping_timeout=30, open_timeout=10, max_size=2**20
                )
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (418, 429):
                    self.stop.set()  # every connection stops: the producer exits with this error
                    raise StreamRefused(
                        f"{self._name} refused the stream handshake with HTTP {status} "
                        f"({len(url)}-character URL, {len(named)} streams); retrying cannot help: "
                        "check --ws-url and --symbols"
                    ) from exc
                # 429 (too many requests), 418 (IP ban) and 5xx: temporary; honour Retry-After if sent.
                await self._fail(f"handshake refused with HTTP {status}", _retry_after(exc))
                continue
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                await self._fail(f"connect failed ({exc})")
                continue
            self.stats.connects += 1
            return _Link(ws, set(named), ControlPacer(self.control_interval))
        return None

    # -- control messages ----------------------------------------------------------------------------
    def _next_request(self, link: _Link) -> _Request | None:
        """The control message that brings ``link`` closer to the list: unsubscribes first (they only
        lighten the connection), then subscriptions, at most ``control_batch`` streams each."""
        dropped = [s for s in link.streams if s not in self.wanted]
        if dropped:
            return _Request(next(self._ids), "UNSUBSCRIBE", dropped[: self.control_batch], 0.0)
        missing = [s for s in self.wanted if s not in link.streams]
        if missing:
            return _Request(next(self._ids), "SUBSCRIBE", missing[: self.control_batch], 0.0)
        return None

    async def _wake(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    async def _control(self, link: _Link) -> None:
        """Send what the list needs over ``link``, one request at a time, paced; returns if the link closes."""
        while True:
            self._changed.clear()
            now = time.monotonic()
            if link.pending is not None:
                overdue = link.pending.sent_at + self.answer_timeout - now
                if overdue > 0:
                    await self._wake(overdue)
                    continue
                self._refused(link, f"no answer within {self.answer_timeout:g}s")
                continue
            if link.retry_at > now:
                await self._wake(link.retry_at - now)
                continue
            if self._next_request(link) is None:
                await self._wake(None)
                continue
            await link.pacer.wait()
            request = self._next_request(link)  # the list may have changed while waiting for the slot
            if request is None:
                continue
            request.sent_at = time.monotonic()
            link.pending = request
            if request.method == "SUBSCRIBE":
                self.stats.subscribe_requests += 1
            else:
                self.stats.unsubscribe_requests += 1
            message = {"method": request.method, "params": [stream_name(s) for s in request.symbols]}
            link.pacer.sent()
            try:
                await link.ws.send(orjson.dumps({**message, "id": request.request_id}).decode())
            except websockets.ConnectionClosed:
                return  # the reader sees the close too and reconnects

    def _refused(self, link: _Link, why: str) -> None:
        request = link.pending
        assert request is not None
        self.stats.control_errors += 1
        log.warning(
            "%s of %d streams on %s failed (%s); asking again in %gs",
            request.method,
            len(request.symbols),
            self._name,
            why,
            self.control_retry,
        )
        link.pending = None
        link.retry_at = time.monotonic() + self.control_retry

    def _answered(self, link: _Link, frame: str | bytes) -> bool:
        """Take a frame that answers a control message (web-socket-streams.md § Live Subscribing: success
        is ``{"result": null, "id": N}``; § Error Messages: ``{"code": .., "msg": ..}``, with the id when
        the request had a readable one). False for any other frame."""
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict) or "stream" in message or "e" in message:
            return False
        request = link.pending
        if "result" in message and "id" in message:
            if request is not None and message["id"] == request.request_id:
                if request.method == "SUBSCRIBE":
                    link.streams.update(request.symbols)
                else:
                    link.streams.difference_update(request.symbols)
                link.pending = None
                self._changed.set()
            return True  # a late answer to a request already given up: asked again anyway
        if "code" in message and "msg" in message:
            if request is not None and message.get("id", request.request_id) == request.request_id:
                self._refused(link, f"code {message['code']}: {str(message['msg'])[:200]}")
                self._changed.set()
            else:
                log.warning("%s sent an error for no request of ours: %s", self._name, str(message)[:200])
            return True
        return False

    # -- reading -------------------------------------------------------------------------------------
    async def _read(
        self,
        link: _Link,
        rotate: asyncio.Event,
        first_frame: asyncio.Event,
        hold: list[str | bytes] | None = None,
    ) -> None:
        """Hand ``link``'s frames to ``on_frame`` (or keep them in ``hold``, see the rotation in _serve)."""
        try:
            async for frame in link.ws:
                link.frames += 1
                link.last_frame = time.monotonic()
                first_frame.set()
                if not _is_stream_frame(frame) and self._answered(link, frame):
                    continue
                if hold is not None:
                    hold.append(frame)
                elif self.on_frame(frame, "ws"):
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

    async def _settled(self, link: _Link, first_frame: asyncio.Event) -> None:
        """Returns once ``link`` delivered a frame and carries every stream of the list."""
        await first_frame.wait()
        while set(self.wanted) - link.streams:
            await asyncio.sleep(0.05)

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

    async def _wait_for_streams(self) -> None:
        waiters = [asyncio.create_task(self.stop.wait()), asyncio.create_task(self._has_streams.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self.wanted:
                    await self._wait_for_streams()  # every stream removed: closed until one is added
                    continue
                await self._serve(await self._open())
        finally:
            # A connection opened just as stop was set (by a reconnect or a rotation) is closed too.
            if self._current is not None:
                await self._current.close()

    def _use(self, link: _Link | None) -> None:
        self._link = link
        self._current = link.ws if link else None

    async def _serve(self, link: _Link | None) -> None:
        self._use(link)
        while link is not None and not self.stop.is_set():
            rotate = asyncio.Event()
            reader = asyncio.create_task(self._read(link, rotate, asyncio.Event()))
            control = asyncio.create_task(self._control(link))
            stopper = asyncio.create_task(self.stop.wait())
            rotator = asyncio.create_task(rotate.wait())
            watchdog = asyncio.create_task(self._silence(link))
            idler = asyncio.create_task(self._emptied.wait())
            done, _ = await asyncio.wait(
                {reader, control, stopper, rotator, watchdog, idler},
                timeout=self.rotate_after,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in (control, stopper, rotator, watchdog, idler):
                task.cancel()
            control_error = control.exception() if control in done and not control.cancelled() else None
            if control_error is not None:
                raise control_error  # a bug in the control task, not a network problem
            if stopper in done or self.stop.is_set() or idler in done:
                await link.ws.close()
                await reader
                self._use(None)
                return
            if control in done and reader not in done:
                await reader  # the connection closed under a control message: the reader ends with it
                done.add(reader)
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
                self._use(link)
                continue
            # Rotation (age or serverShutdown): open the new connection first, switch once it delivers and
            # carries every stream, then close the old one; the overlap's repeats are dropped by the sequencer.
            new_link = await self._open()
            if new_link is None:
                await link.ws.close()
                await reader
                self._use(None)
                return
            # The new connection's frames wait until the old one is closed and read to its end: handed over
            # first, they would come before older frames of the old one and open a gap that is not one.
            new_first = asyncio.Event()
            held: list[str | bytes] = []
            new_reader = asyncio.create_task(self._read(new_link, asyncio.Event(), new_first, held))
            new_control = asyncio.create_task(self._control(new_link))
            try:
                await asyncio.wait_for(self._settled(new_link, new_first), SETTLE_TIMEOUT_S)
            except TimeoutError:
                pass
            for task in (new_reader, new_control):
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            await link.ws.close()
            await reader
            self.stats.rotations += 1
            for frame in held:
                self.on_frame(frame, "ws")  # a serverShutdown among them: the new connection is only starting
            link = new_link
            self._use(link)


def _retry_after(exc: websockets.InvalidStatus) -> float:
    try:
        return float(exc.response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0
