"""The producer's main loop: frames in (WebSocket or replay file), trades and dead letters out to Kafka."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backfill import PAGE_LIMIT, RestClient
from .exceptions import BackfillError, BadFrame, ProducerError
from .frames import CONTROL, SHUTDOWN, parse_frame, trade_from_rest
from .kafka_sink import KafkaSink, check_topics_exist, schema_id_for
from .sequencer import Sequencer
from .websocket import AttemptLimiter, ConnectionStats, StreamConnection, stream_urls

log = logging.getLogger("k2.producer")

BINANCE_WS_URL = "wss://stream.binance.com:9443"
BINANCE_REST_URL = "https://api.binance.com"


@dataclass
class ProduceOptions:
    bootstrap_servers: str
    registry_url: str
    topic: str
    dlq_topic: str
    symbols: list[str] = field(default_factory=list)
    ws_url: str = BINANCE_WS_URL
    rest_url: str | None = BINANCE_REST_URL
    replay: Path | None = None
    max_messages: int | None = None
    duration: float | None = None
    gap_timeout: float = 30.0
    backfill_interval: float = 0.5
    rotate_after: float | None = None
    flush_timeout: float = 60.0
    producer_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    mode: str
    trades_sent: int
    trades_acknowledged: int
    delivery_failures: int
    unacknowledged: int
    duplicates_dropped: int
    gaps_detected: int
    gaps_backfilled: int
    trades_backfilled: int
    gaps_unrecovered: int
    trades_unrecovered: int
    dead_lettered: int
    dead_letters_acknowledged: int
    frames_in: int
    reconnects: int
    rotations: int
    backfill_requests: int
    elapsed_s: float
    trades_per_s: float
    lost_ranges: list[str]

    @property
    def lossless(self) -> bool:
        """Nothing the producer accepted was lost on the way to Kafka."""
        return self.delivery_failures == 0 and self.unacknowledged == 0


class Pipeline:
    """Frame -> trade -> sequencer -> Kafka, synchronous and shared by replay and live modes."""

    def __init__(self, options: ProduceOptions, on_status: Callable[[str], None] | None = None) -> None:
        self.options = options
        check_topics_exist(options.bootstrap_servers, [options.topic, options.dlq_topic])
        schema_id = schema_id_for(options.registry_url, options.topic)
        self.sink = KafkaSink(
            options.bootstrap_servers, options.topic, options.dlq_topic, schema_id, **options.producer_overrides
        )
        self.rest = RestClient(options.rest_url, options.backfill_interval) if options.rest_url else None
        self.sequencer = Sequencer(self._emit, self._want_backfill, self._lost, options.gap_timeout)
        self.frames_in = 0
        self.dead_lettered = 0
        self.emitted = 0
        self.backfill_wanted: dict[str, tuple[int, int]] = {}
        self.connection_stats = ConnectionStats()
        self.started = time.monotonic()
        self.stop_requested = threading.Event()
        self._on_status = on_status

    # -- hot path ----------------------------------------------------------------------------
    def _emit(self, trade: Any) -> None:
        self.sink.send(trade)
        self.emitted += 1
        limit = self.options.max_messages
        if limit is not None and self.emitted >= limit:
            self.stop_requested.set()

    def on_frame(self, raw: str | bytes, source: str) -> bool:
        """Handle one frame; True when it was Binance's serverShutdown warning."""
        self.frames_in += 1
        if self.stop_requested.is_set():
            return False  # stopping: nothing new is accepted (it would be neither sent nor counted)
        try:
            item = parse_frame(raw, source)
        except BadFrame as exc:
            self.sink.dead_letter(raw, exc.reason, exc.symbol, source)
            self.dead_lettered += 1
            return False
        if item is CONTROL:
            return False
        if item is SHUTDOWN:
            return True
        self.sequencer.accept(item)  # type: ignore[arg-type]
        return False

    # -- gaps ---------------------------------------------------------------------------------
    def _want_backfill(self, symbol: str, first: int, last: int) -> None:
        self.backfill_wanted[symbol] = (first, last)

    def _lost(self, symbol: str, first: int, last: int) -> None:
        count = last - first + 1
        log.error(
            "UNRECOVERED GAP: %s trade ids %d..%d (%d trades) could not be backfilled", symbol, first, last, count
        )

    def fetch_backfill(self, symbol: str) -> list[Any]:
        """One REST page for a symbol's open gap. Blocking, and touches no shared state: safe in a thread."""
        gap = self.sequencer.gap(symbol)
        if gap is None or self.rest is None:
            return []
        first, last = gap
        try:
            return self.rest.historical_trades(symbol, first, min(PAGE_LIMIT, last - first + 1))
        except BackfillError as exc:
            log.warning("backfill of %s from id %d failed: %s", symbol, first, exc)
            return []

    def apply_backfill(self, symbol: str, items: list[Any]) -> None:
        """Feed fetched trades through the sequencer (on the thread that owns it)."""
        for item in items:
            try:
                trade = trade_from_rest(symbol, item)
            except BadFrame as exc:
                log.warning("backfill of %s returned an invalid trade (%s); skipped", symbol, exc.reason)
                continue
            self.sequencer.accept(trade, from_backfill=True)

    def backfill_once(self, symbol: str) -> None:
        self.backfill_wanted.pop(symbol, None)
        self.apply_backfill(symbol, self.fetch_backfill(symbol))

    # -- reporting ------------------------------------------------------------------------------
    def status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        seq = self.sequencer.stats
        return (
            f"{self.emitted / elapsed:,.0f} trades/s | sent {self.emitted:,} | acked "
            f"{self.sink.stats.trades_acknowledged:,} | duplicates {seq.duplicates_dropped:,} | gaps backfilled "
            f"{seq.gaps_backfilled:,} | unrecovered {seq.gaps_unrecovered:,} | dead-lettered {self.dead_lettered:,}"
        )

    def finish(self, mode: str) -> Summary:
        """Release held trades, flush Kafka, and count what was acknowledged."""
        for symbol in list(self.backfill_wanted):
            self.backfill_once(symbol)  # one last try at open gaps before giving up on them
        self.sequencer.release_all()
        unacked = self.sink.flush(self.options.flush_timeout)
        if self.rest:
            self.rest.close()
        elapsed = time.monotonic() - self.started
        seq = self.sequencer.stats
        delivery = self.sink.stats
        return Summary(
            mode=mode,
            trades_sent=delivery.trades_sent,
            trades_acknowledged=delivery.trades_acknowledged,
            delivery_failures=delivery.trade_failures + delivery.dead_letter_failures,
            unacknowledged=unacked,
            duplicates_dropped=seq.duplicates_dropped,
            gaps_detected=seq.gaps_detected,
            gaps_backfilled=seq.gaps_backfilled,
            trades_backfilled=seq.trades_backfilled,
            gaps_unrecovered=seq.gaps_unrecovered,
            trades_unrecovered=seq.trades_unrecovered,
            dead_lettered=delivery.dead_letters_sent,
            dead_letters_acknowledged=delivery.dead_letters_acknowledged,
            frames_in=self.frames_in,
            reconnects=self.connection_stats.reconnects,
            rotations=self.connection_stats.rotations,
            backfill_requests=self.rest.requests_made if self.rest else 0,
            elapsed_s=round(elapsed, 3),
            trades_per_s=round(delivery.trades_acknowledged / elapsed, 1) if elapsed > 0 else 0.0,
            lost_ranges=[f"{s}:{a}-{b}" for s, a, b in seq.lost_ranges],
        )


def _install_signals(on_stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.warning("received %s: flushing what is in flight, then exiting", signal.Signals(signum).name)
        on_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_replay(options: ProduceOptions, status: Callable[[str], None] | None = None) -> Summary:
    """Replay recorded frames (one raw frame per line) through the pipeline as fast as Kafka takes them."""
    assert options.replay is not None
    pipeline = Pipeline(options)
    if threading.current_thread() is threading.main_thread():
        _install_signals(pipeline.stop_requested.set)
    deadline = time.monotonic() + options.duration if options.duration else None
    next_tick = time.monotonic() + 1.0
    try:
        handle = options.replay.open("rb")
    except OSError as exc:
        raise ProducerError(f"cannot read replay file {options.replay}: {exc.strerror}") from exc
    with handle:
        for line in handle:
            if pipeline.stop_requested.is_set():
                break
            line = line.strip()
            if line:
                pipeline.on_frame(line, "replay")
            if pipeline.backfill_wanted:
                for symbol in list(pipeline.backfill_wanted):
                    pipeline.backfill_once(symbol)
            if pipeline.frames_in & 0x3FF == 0:
                now = time.monotonic()
                if now >= next_tick:
                    pipeline.sequencer.tick()
                    if status:
                        status(pipeline.status_line())
                    next_tick = now + 1.0
                if deadline and now >= deadline:
                    break
    return pipeline.finish("replay")


def run_live(options: ProduceOptions, status: Callable[[str], None] | None = None) -> Summary:
    """Stream the symbols from a Binance-compatible WebSocket until a stop condition or signal."""
    if not options.symbols:
        raise ProducerError("no symbols to stream: pass --symbols BTCUSDT,ETHUSDT (or use --replay FILE)")
    pipeline = Pipeline(options)
    asyncio.run(_live(pipeline, options, status))
    return pipeline.finish("live")


async def _live(pipeline: Pipeline, options: ProduceOptions, status: Callable[[str], None] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pipeline.stop_requested.set)
    limiter = AttemptLimiter()
    extra = {"rotate_after": options.rotate_after} if options.rotate_after else {}
    connections = [
        StreamConnection(url, pipeline.on_frame, stop, limiter, pipeline.connection_stats, **extra)
        for url in stream_urls(options.ws_url, options.symbols)
    ]
    tasks = [asyncio.create_task(c.run()) for c in connections]
    deadline = time.monotonic() + options.duration if options.duration else None
    backfilling: dict[str, asyncio.Task[list[Any]]] = {}
    last_status = 0.0
    try:
        while not pipeline.stop_requested.is_set():
            await asyncio.sleep(0.05)
            pipeline.sink.poll(0)
            pipeline.sequencer.tick()
            for symbol, task in list(backfilling.items()):
                if task.done():
                    del backfilling[symbol]
                    if not task.cancelled() and task.exception() is None:
                        pipeline.apply_backfill(symbol, task.result())
            for symbol in list(pipeline.backfill_wanted):
                if symbol not in backfilling:
                    pipeline.backfill_wanted.pop(symbol)
                    # requests blocks: fetch in a worker thread, apply here, so only this thread
                    # touches the sequencer and its per-symbol state.
                    backfilling[symbol] = asyncio.create_task(asyncio.to_thread(pipeline.fetch_backfill, symbol))
            now = time.monotonic()
            if status and now - last_status >= 1.0:
                status(pipeline.status_line())
                last_status = now
            if deadline and now >= deadline:
                break
            if all(t.done() for t in tasks):
                for t in tasks:
                    if t.exception():
                        raise ProducerError(f"stream connection failed: {t.exception()}")
                break
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for symbol, task in backfilling.items():
            fetched = (await asyncio.gather(task, return_exceptions=True))[0]
            if isinstance(fetched, list):
                pipeline.apply_backfill(symbol, fetched)
        if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
