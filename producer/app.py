"""The producer's main loop: frames in (WebSocket or replay file), trades and dead letters out to Kafka."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from .backfill import PAGE_LIMIT, RestClient, WeightBudget, backfill_order
from .connections import ConnectionSets
from .defaults import (
    BINANCE_REST_URL,
    BINANCE_WS_URL,
    GAP_TIMEOUT_S,
    RESUME_BUDGET,
    SILENCE_TIMEOUT_S,
    SYMBOLS_REFRESH_S,
)
from .exceptions import BackfillError, BadFrame, ProducerError
from .exchange import TRADING, check_symbols
from .frames import CONTROL, SHUTDOWN, parse_frame, trade_from_rest
from .kafka_sink import KafkaSink, check_topics_exist, schema_id_for
from .metrics import MetricsServer
from .resume import last_trade_ids
from .sequencer import Sequencer
from .stats import STATS, ProducerStats, RestStats
from .subscriptions import pack
from .universe import (
    ADDED,
    EXCHANGE_INFO_WEIGHT,
    REMOVED,
    ExchangeInfoError,
    Listing,
    Market,
    SymbolChange,
    SymbolUniverse,
    fetch_market,
)
from .websocket import (
    MAX_URL_LENGTH,
    ROTATE_AFTER_S,
    AttemptLimiter,
    StreamConnection,
)

log = logging.getLogger("k2.producer")

# With redundant connection sets, a gap this young is left to the other set, which normally closes it at
# once (its copy of the missing trades is already on the way); REST is asked only if it is still open.
REDUNDANT_GAP_GRACE_S = 2.0


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
    gap_timeout: float = GAP_TIMEOUT_S
    rotate_after: float | None = None
    flush_timeout: float = 60.0
    # At shutdown, open gaps get this long for a last backfill (never a whole ban), then Kafka is flushed.
    final_backfill_timeout: float = 5.0
    max_backfills_in_flight: int = 4
    rest_weight_window_s: float = 60.0  # Binance's REQUEST_WEIGHT window (tests shorten it with the stand-in)
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    # Live mode: continue each symbol after its last trade in the topic (trades made while no producer
    # ran are backfilled). Off here, on in `k2 produce` unless --from-latest: a stand-in demo is a new
    # market each time, whose trade ids have nothing to do with what the topic holds.
    resume: bool = False
    resume_budget: int = RESUME_BUDGET  # records read back per partition to find each symbol's last trade
    silence_timeout: float = SILENCE_TIMEOUT_S
    max_url_length: int = MAX_URL_LENGTH
    metrics_port: int = 0  # Prometheus metrics on <metrics_host>:<port> while running; 0: none (`k2 produce`: 9091)
    metrics_host: str = "127.0.0.1"
    # `--symbols ALL`: every TRADING symbol of exchangeInfo (``symbols`` is then ignored), with a quoteAsset
    # in ``quotes`` when given.
    all_symbols: bool = False
    quotes: list[str] = field(default_factory=list)
    symbols_refresh: float = SYMBOLS_REFRESH_S  # read exchangeInfo again this often (0: never)
    redundancy: int = 1  # independent connection sets carrying every stream
    redundant_gap_grace: float = REDUNDANT_GAP_GRACE_S


@dataclass
class Summary:
    """What a run did, printed when it ends. The counts are the stats.STATS marked ``summary`` (their docs
    say what each counts); the fields fix the order users see them in."""

    mode: str
    trades_sent: int
    trades_acknowledged: int
    delivery_failures: int
    unacknowledged: int
    duplicates_dropped: int
    gaps_detected: int
    gaps_backfilled: int
    trades_backfilled: int
    trades_absent: int
    gaps_unrecovered: int
    trades_unrecovered: int
    dead_lettered: int
    dead_letters_acknowledged: int
    frames_in: int
    reconnects: int
    rotations: int
    backfill_requests: int
    backfill_errors: int
    elapsed_s: float
    trades_per_s: float
    lost_ranges: list[str]
    resumed_symbols: int = 0  # symbols continued after their last trade in the topic (live, without --from-latest)
    redundant_copies_dropped: int = 0
    gaps_filled_live: int = 0
    symbols_subscribed: int = 0
    symbols_added: list[str] = field(default_factory=list)  # "NEWUSDT (listed)": subscribed while running
    symbols_removed: list[str] = field(default_factory=list)  # "OLDUSDT (BREAK)": unsubscribed while running

    @property
    def lossless(self) -> bool:
        """Nothing the producer accepted was lost on the way to Kafka."""
        return self.delivery_failures == 0 and self.unacknowledged == 0


class Pipeline:
    """Frame -> trade -> sequencer -> Kafka, synchronous and shared by replay and live modes."""

    def __init__(
        self,
        options: ProduceOptions,
        on_status: Callable[[str], None] | None = None,
        universe: SymbolUniverse | None = None,  # live: the symbols streamed and their changes
    ) -> None:
        self.options = options
        check_topics_exist(options.bootstrap_servers, [options.topic, options.dlq_topic])
        schema_id = schema_id_for(options.registry_url, options.topic)
        self.sink = KafkaSink(
            options.bootstrap_servers,
            options.topic,
            options.dlq_topic,
            schema_id,
            block_when_full=options.replay is not None,  # live: never block the loop that answers pings
            metered=options.metrics_port != 0,
            **options.producer_overrides,
        )
        budget = WeightBudget(window_s=options.rest_weight_window_s)
        self.rest = RestClient(options.rest_url, budget) if options.rest_url else None
        self.sequencer = Sequencer(self._emit, self._lost, options.gap_timeout)
        self.universe = universe
        self.stats = ProducerStats(
            delivery=self.sink.stats,
            sequencer=self.sequencer.stats,
            rest=self.rest.stats if self.rest else RestStats(),
            universe=universe,
            held=self.sequencer.held_count,
        )
        self.counts = self.stats.pipeline  # what the frame loop counts, one attribute away on the hot path
        self.symbols = self.counts.symbols
        # Per-symbol numbers cost the hot path: kept only while metrics are served.
        self.metered = options.metrics_port != 0
        self.emitted = 0
        # Redundant connection sets: the highest trade id each set delivered per symbol, to tell another
        # set's copy of a trade from a reconnect's repeat.
        self.redundancy = options.redundancy
        self._feed_last: list[dict[str, int]] = [{} for _ in range(options.redundancy)]
        self.started = time.monotonic()
        self.stop_requested = threading.Event()
        self._on_status = on_status
        self.metrics = MetricsServer(self.stats, options.metrics_port, options.metrics_host)

    # -- hot path ----------------------------------------------------------------------------
    def _emit(self, trade: Any) -> None:
        self.sink.send(trade)
        self.emitted += 1
        if self.metered:
            stats = self.symbols[trade.symbol]
            stats.last_price = trade.price
            stats.volume_units += trade.quantity
        limit = self.options.max_messages
        if limit is not None and self.emitted >= limit:
            self.stop_requested.set()

    def on_frame(self, raw: str | bytes, source: str, feed: int = 0) -> bool:
        """Handle one frame (from connection set ``feed``); True when it was Binance's serverShutdown warning."""
        self.counts.frames_in += 1
        if self.stop_requested.is_set():
            return False  # stopping: nothing new is accepted (it would be neither sent nor counted)
        try:
            item = parse_frame(raw, source)
        except BadFrame as exc:
            self.sink.dead_letter(raw, exc.reason, exc.symbol, source)
            # By kind always (a few fixed words: the summary's dead_lettered is their sum); by symbol, which
            # a stream of bad frames could make many, only while metrics are served.
            counts = self.counts
            counts.dead_by_reason[exc.kind] = counts.dead_by_reason.get(exc.kind, 0) + 1
            if self.metered:
                symbol = exc.symbol or ""
                counts.bad_frames_by_symbol[symbol] = counts.bad_frames_by_symbol.get(symbol, 0) + 1
            return False
        if item is CONTROL:
            return False
        if item is SHUTDOWN:
            return True
        if self.metered:
            self.symbols[item.symbol].trades += 1  # type: ignore[union-attr]
        if self.redundancy > 1:
            last = self._feed_last[feed]
            symbol, trade_id = item.symbol, item.trade_id  # type: ignore[union-attr]
            first_on_feed = trade_id > last.get(symbol, -1)
            if first_on_feed:
                last[symbol] = trade_id
            self.sequencer.accept(item, first_on_feed=first_on_feed)  # type: ignore[arg-type]
        else:
            self.sequencer.accept(item)  # type: ignore[arg-type]
        return False

    # -- gaps ---------------------------------------------------------------------------------
    def _lost(self, symbol: str, first: int, last: int) -> None:
        count = last - first + 1
        log.error(
            "UNRECOVERED GAP: %s trade ids %d..%d (%d trades) could not be backfilled", symbol, first, last, count
        )

    def fetch_page(
        self, symbol: str, first: int, last: int, deadline: float | None = None
    ) -> list[dict[str, Any]] | None:
        """One REST page for a gap, or None when no answer came. Blocking, and touches only the REST
        client: worker threads run it while the event loop owns the sequencer."""
        if self.rest is None:
            return None
        try:
            return self.rest.historical_trades(symbol, first, min(PAGE_LIMIT, last - first + 1), deadline)
        except BackfillError as exc:
            log.warning("backfill of %s from id %d failed: %s", symbol, first, exc)
            return None

    def apply_page(self, symbol: str, first: int, items: list[dict[str, Any]] | None) -> None:
        """Feed a fetched page through the sequencer (on the thread that owns it)."""
        if items is None:
            return  # no answer (error, pause): neither progress nor a stall
        trades = []
        for item in items:
            try:
                trades.append(trade_from_rest(symbol, item))
            except BadFrame as exc:
                log.warning("backfill of %s returned an invalid trade (%s); skipped", symbol, exc.reason)
        self.sequencer.apply_page(symbol, first, trades)

    def backfill_now(self, deadline: float | None = None) -> None:
        """Fetch and apply one page for every open gap, one after another (replay mode and shutdown)."""
        for symbol, first, last in self.sequencer.gaps():
            self.apply_page(symbol, first, self.fetch_page(symbol, first, last, deadline))

    # -- reporting ------------------------------------------------------------------------------
    def status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        seq = self.sequencer.stats
        symbols = f"{len(self.universe.subscribed):,} symbols | " if self.universe else ""
        return (
            f"{symbols}{self.emitted / elapsed:,.0f} trades/s | sent {self.emitted:,} | acked "
            f"{self.sink.stats.trades_acknowledged:,} | duplicates {seq.duplicates_dropped:,} | held behind gaps "
            f"{self.sequencer.held_count():,} | gaps backfilled {seq.gaps_backfilled:,} | unrecovered "
            f"{seq.gaps_unrecovered:,} | dead-lettered {self.sink.stats.dead_letters_sent:,}"
        )

    def finish(self, mode: str) -> Summary:
        """One bounded last try at open gaps, release held trades, flush Kafka, count what was acknowledged."""
        deadline = time.monotonic() + self.options.final_backfill_timeout
        while self.sequencer.gaps() and self.rest is not None and time.monotonic() < deadline:
            self.backfill_now(deadline)
        self.sequencer.release_all()
        self.sink.flush(self.options.flush_timeout)
        self.metrics.close()
        if self.rest:
            self.rest.close()
        return summarize(self.stats, mode, time.monotonic() - self.started)


def summarize(stats: ProducerStats, mode: str, elapsed: float) -> Summary:
    """The run's summary: every stat marked ``summary``, and what the run changed."""
    counts: dict[str, Any] = {stat.name: int(stat.total(stats)) for stat in STATS if stat.summary}
    universe = stats.universe
    return Summary(
        mode=mode,
        **counts,
        elapsed_s=round(elapsed, 3),
        trades_per_s=round(stats.delivery.trades_acknowledged / elapsed, 1) if elapsed > 0 else 0.0,
        lost_ranges=[f"{s}:{a}-{b}" for s, a, b in stats.sequencer.lost_ranges],
        symbols_added=universe.named(ADDED) if universe else [],
        symbols_removed=universe.named(REMOVED) if universe else [],
    )


def _install_signals(on_stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.warning("received %s: flushing what is in flight, then exiting", signal.Signals(signum).name)
        on_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def preflight(options: ProduceOptions) -> dict[str, Any]:
    """What a run would need, checked without sending anything (``k2 produce --dry-run``): the topics
    exist, the schema is registered or would be, the symbols trade (live), the replay's frames parse."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from k2.schemas.contract import load_topics
    from k2.schemas.registry import register

    # What can be checked without Kafka first (the replay file, the symbols against exchangeInfo): a
    # mistake there is found in a moment, not after waiting for a broker that may not be up yet.
    report: dict[str, Any] = {"topic": options.topic, "dlq_topic": options.dlq_topic}
    source: dict[str, Any] = {}
    if options.replay is not None:
        trades = bad = 0
        try:
            with options.replay.open("rb") as handle:
                for line in filter(None, (raw.strip() for raw in handle)):
                    try:
                        trades += parse_frame(line, "replay") not in (CONTROL, SHUTDOWN)
                    except BadFrame:
                        bad += 1
        except OSError as exc:
            raise ProducerError(f"cannot read replay file {options.replay}: {exc.strerror}") from exc
        if trades == 0:
            lines = f"{bad} line{'s' if bad != 1 else ''}"
            what = f"none of its {lines} is a Binance trade frame" if bad else "it is empty"
            raise ProducerError(f"replay file {options.replay} holds no trades to replay: {what}")
        source = {"replay_trades": trades, "replay_dead_letters": bad}
    else:
        universe, symbols = starting_symbols(options)
        source["symbols"] = "ALL" if options.all_symbols else ",".join(symbols)
        if options.all_symbols:
            source["quotes"] = ",".join(options.quotes) or "any"
            source["symbols_to_stream"] = len(symbols)
        groups = pack(options.ws_url, symbols, max_url_length=options.max_url_length) if symbols else []
        source["connections"] = len(groups) * options.redundancy
    check_topics_exist(options.bootstrap_servers, [options.topic, options.dlq_topic])
    spec = replace(load_topics()["trades"], name=options.topic)
    with SchemaRegistryClient({"url": options.registry_url}) as client:
        schema = register(client, options.registry_url, spec, dry_run=True)
    report |= {"subject": schema.subject, "schema": schema.action, **source}
    return report


def starting_symbols(options: ProduceOptions) -> tuple[SymbolUniverse, list[str]]:
    """The symbols to stream first: ``--symbols`` checked against exchangeInfo (unknown or not TRADING:
    refused), or with ALL every TRADING symbol exchangeInfo lists (quoted in ``--quote`` if given)."""
    if not options.all_symbols:
        universe = SymbolUniverse(options.symbols)
        statuses = check_symbols(options.rest_url, options.symbols) if options.rest_url else {}
        listings = {s: Listing(statuses.get(s, TRADING), "") for s in options.symbols}
        return universe, universe.start(Market(listings), options.symbols)
    if not options.rest_url:
        raise ProducerError("--symbols ALL reads the symbols from /api/v3/exchangeInfo: give --rest-url")
    universe = SymbolUniverse(None, options.quotes)
    market = fetch_market(options.rest_url)
    symbols = universe.start(market)
    if not symbols:
        quoted = f" quoted in {','.join(options.quotes)}" if options.quotes else ""
        raise ProducerError(
            f"no TRADING symbol{quoted} among the {len(market.listings)} that {options.rest_url} lists: check --quote"
        )
    return universe, symbols


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
            frames_in = pipeline.counts.frames_in
            if frames_in & 0xFF == 0 and pipeline.rest is not None:
                pipeline.backfill_now()
            if frames_in & 0x3FF == 0:
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
    if not options.symbols and not options.all_symbols:
        raise ProducerError("no symbols to stream: pass --symbols BTCUSDT,ETHUSDT (or use --replay FILE)")
    universe, symbols = starting_symbols(options)  # unknown or not TRADING: refused before anything starts
    if options.all_symbols:
        log.info(
            "streaming %d TRADING symbols%s of the %d exchangeInfo lists",
            len(symbols),
            f" quoted in {','.join(options.quotes)}" if options.quotes else "",
            len(universe.listings),
        )
    pipeline = Pipeline(options, universe=universe)
    last_ids: dict[str, int] = {}
    if options.resume:
        last_ids = last_trade_ids(options.bootstrap_servers, options.topic, symbols, options.resume_budget)
        pipeline.sequencer.resume_from(last_ids)
    try:
        asyncio.run(_live(pipeline, options, status))
    except BaseException:
        pipeline.finish("live")  # what was accepted is flushed before the error is reported
        raise
    summary = pipeline.finish("live")
    summary.resumed_symbols = len(last_ids)
    return summary


@dataclass
class _Refresh:
    """A newer exchangeInfo, what it changes, and where each symbol added for the first time starts."""

    market: Market
    changes: list[SymbolChange]
    start_after: dict[str, int]  # symbol -> the id after which its trades are to be sent


def _read_refresh(pipeline: Pipeline, options: ProduceOptions, known: set[str]) -> _Refresh:
    """Read exchangeInfo again and plan the changes (a worker thread: REST and Kafka block).

    The request takes its weight (20) from the same budget as the backfill, so no refresh period can push
    the producer past Binance's limit; a 429/418/403 pauses the backfill too (rest-api.md § LIMITS).

    A symbol added that this run has not streamed (a listing, or one back to TRADING) continues after its
    last trade in the topic, as at start (unless --from-latest); failing that, it starts at its first
    trade since the previous exchangeInfo, when it was not TRADING: so a listing's trades made before
    it was subscribed are backfilled, and a symbol listed again never re-sends its older history.
    """
    universe = pipeline.universe
    assert universe is not None and options.rest_url is not None
    if pipeline.rest is not None:
        pipeline.rest.budget.wait(weight=EXCHANGE_INFO_WEIGHT)
    try:
        market = fetch_market(options.rest_url, timeout=10.0)
    except ExchangeInfoError as exc:
        if exc.retry_after and pipeline.rest is not None:
            pipeline.rest.budget.pause(exc.retry_after, str(exc))
        raise
    changes = universe.plan(market.listings)
    new = [c.symbol for c in changes if c.change == ADDED and c.symbol not in known]
    start_after: dict[str, int] = {}
    if options.resume and new:
        start_after = last_trade_ids(options.bootstrap_servers, options.topic, new, options.resume_budget)
    since = universe.server_time_ms
    for symbol in new:
        if symbol in start_after or since is None or pipeline.rest is None:
            continue
        try:
            start_after[symbol] = pipeline.rest.first_id_since(symbol, since) - 1
        except BackfillError as exc:
            log.warning(
                "%s starts at its first live trade: its first trade since it was added is unknown (%s)", symbol, exc
            )
    return _Refresh(market, changes, start_after)


def _apply_refresh(pipeline: Pipeline, fleet: ConnectionSets, refresh: _Refresh) -> list[StreamConnection]:
    """Subscribe and unsubscribe what a refresh changed (on the event loop, which owns the sequencer);
    returns the connections opened for new symbols, to be run."""
    universe = pipeline.universe
    assert universe is not None
    universe.apply(refresh.market, refresh.changes)
    added = [c.symbol for c in refresh.changes if c.change == ADDED]
    removed = [c.symbol for c in refresh.changes if c.change == REMOVED]
    # The first live trade of an added symbol opens a gap from where it starts: what it traded before
    # its subscription is backfilled. A symbol removed (BREAK: no market data, enums.md § Symbol status)
    # keeps its sequencer state: trades held behind its gap are still backfilled or released.
    pipeline.sequencer.resume_from(refresh.start_after)
    if refresh.changes:
        shown = ", ".join(str(c) for c in refresh.changes[:10])
        more = f" and {len(refresh.changes) - 10} more" if len(refresh.changes) > 10 else ""
        log.info("exchangeInfo: %d added, %d removed: %s%s", len(added), len(removed), shown, more)
    fleet.remove(removed)
    return fleet.add(added)


async def _live(pipeline: Pipeline, options: ProduceOptions, status: Callable[[str], None] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pipeline.stop_requested.set)
    limiter = AttemptLimiter()

    def make(feed: int, symbols: list[str]) -> StreamConnection:
        handler = pipeline.on_frame if options.redundancy == 1 else partial(pipeline.on_frame, feed=feed)
        return StreamConnection(
            options.ws_url,
            symbols,
            handler,
            stop,
            limiter,
            pipeline.stats.connections,
            silence_timeout=options.silence_timeout,
            max_url_length=options.max_url_length,
            rotate_after=options.rotate_after or ROTATE_AFTER_S,
        )

    universe = pipeline.universe
    symbols = list(universe.subscribed) if universe is not None else options.symbols
    fleet = ConnectionSets(options.ws_url, symbols, options.redundancy, make, max_url_length=options.max_url_length)
    pipeline.stats.links = fleet.connections  # the same list: connections opened later show in the metrics
    tasks = [asyncio.create_task(c.run()) for c in fleet.connections]
    deadline = time.monotonic() + options.duration if options.duration else None
    backfilling: dict[str, tuple[int, asyncio.Task[list[Any] | None]]] = {}
    last_asked: dict[str, float] = {}
    last_status = 0.0
    refresh_every = options.symbols_refresh if options.rest_url and universe is not None else 0.0
    next_refresh = time.monotonic() + refresh_every if refresh_every > 0 else None
    refreshing: asyncio.Task[_Refresh] | None = None
    try:
        while not pipeline.stop_requested.is_set():
            await asyncio.sleep(0.05)
            pipeline.sink.poll(0)
            for symbol, (first, task) in list(backfilling.items()):
                if task.done():
                    del backfilling[symbol]
                    if not task.cancelled() and task.exception() is None:
                        pipeline.apply_page(symbol, first, task.result())
            pipeline.sequencer.tick()
            # The REST client paces every request by Binance's weight budget; a few pages in flight keep
            # it busy. The gaps with the most trades held behind them go first (see backfill_order).
            sequencer = pipeline.sequencer
            gaps = sequencer.gaps()
            if options.redundancy > 1:
                gaps = [gap for gap in gaps if sequencer.gap_age(gap[0]) >= options.redundant_gap_grace]
            held = {symbol: sequencer.held(symbol) for symbol, _, _ in gaps}
            for symbol, first, last in backfill_order(gaps, held, last_asked):
                if len(backfilling) >= options.max_backfills_in_flight:
                    break
                if symbol not in backfilling:
                    last_asked[symbol] = time.monotonic()
                    fetch = asyncio.to_thread(pipeline.fetch_page, symbol, first, last)
                    backfilling[symbol] = (first, asyncio.create_task(fetch))
            now = time.monotonic()
            if refreshing is None and next_refresh is not None and now >= next_refresh:
                known = set(pipeline.sequencer.states)
                refreshing = asyncio.create_task(asyncio.to_thread(_read_refresh, pipeline, options, known))
            elif refreshing is not None and refreshing.done():
                try:
                    refresh = refreshing.result()
                except (ProducerError, BackfillError) as exc:
                    log.warning("symbols not refreshed: %s; trying again in %gs", exc, refresh_every)
                else:
                    tasks += [asyncio.create_task(c.run()) for c in _apply_refresh(pipeline, fleet, refresh)]
                refreshing = None
                next_refresh = now + refresh_every
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
        if pipeline.rest is not None:
            pipeline.rest.budget.interrupt()  # a fetch waiting out a ban must not hold up the shutdown
        await asyncio.gather(*tasks, return_exceptions=True)
        if refreshing is not None:
            await asyncio.gather(refreshing, return_exceptions=True)
        for symbol, (first, task) in backfilling.items():
            fetched = (await asyncio.gather(task, return_exceptions=True))[0]
            if isinstance(fetched, list):
                pipeline.apply_page(symbol, first, fetched)
        if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
