"""What the producer counts, declared once: the run summary (app.Summary), the Prometheus collector
(metrics.py) and `k2 status` (which reads the metrics page back) all go through STATS.

The parts that count keep their numbers in the dataclasses below and bump plain attributes on the hot
path (the Kafka sink, the sequencer, every WebSocket connection, the REST client, the pipeline's frame
loop): nothing is registered or copied per trade. Each Stat names one number, documents it, says whether
it is a counter or a gauge, and reads it from a ProducerStats, which holds those dataclasses and the live
state the gauges show. A stat's Prometheus family is ``k2_<name>`` (counters are exposed with
``_total``) unless ``metric`` says otherwise; ``summary`` makes it a key of the run summary and
``status`` a field of `k2 status`, keyed by its family without the ``k2_``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from .model import UNIT
from .universe import REASONS, SymbolUniverse

# Seconds. Delivery: librdkafka's produce() to acknowledgement (linger 20 ms, acks=all). Event lag: the
# producer's ingest time minus the exchange's trade time (network, reconnects, backfill).
# The two histograms observe one trade in HISTOGRAM_SAMPLE (a power of two): observing every trade cost
# about 3% of the producer's throughput (benchmarks/producer_throughput.py). Quantiles and means are those
# of the sample; a histogram's _count is the number of sampled trades.
HISTOGRAM_SAMPLE = 8
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
EVENT_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class Buckets:
    """A histogram's counts per bucket and sum, observed by bisect: 0.10 us an observation here, against
    0.79 us for prometheus_client's Histogram.observe (measured with timeit)."""

    __slots__ = ("bounds", "counts", "labels", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.labels = (*map(str, self.bounds), "+Inf")
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        total, out = 0, []
        for label, count in zip(self.labels, self.counts, strict=True):
            total += count
            out.append((label, float(total)))
        return out


@dataclass
class DeliveryStats:
    """What the Kafka sink (kafka_sink.KafkaSink) handed to librdkafka and what came back."""

    trades_sent: int = 0
    trades_acknowledged: int = 0
    trade_failures: int = 0
    dead_letters_sent: int = 0
    dead_letters_acknowledged: int = 0
    dead_letter_failures: int = 0
    unacknowledged: int = 0  # set by the final flush
    # Observed only while metrics are served (KafkaSink(metered=True)), one trade in HISTOGRAM_SAMPLE.
    delivery_latency: Buckets = field(default_factory=lambda: Buckets(DELIVERY_BUCKETS))
    event_lag: Buckets = field(default_factory=lambda: Buckets(EVENT_LAG_BUCKETS))


@dataclass
class SequencerStats:
    """What the sequencer (sequencer.py, whose docstring tells duplicates from redundant copies) decided."""

    duplicates_dropped: int = 0  # repeats from reconnect overlaps (a feed delivering an id again)
    redundant_copies_dropped: int = 0  # a redundant connection set's copy of a trade already taken
    gaps_detected: int = 0
    gaps_backfilled: int = 0
    gaps_filled_live: int = 0  # closed by live trades (another connection set) before any REST page
    trades_backfilled: int = 0
    trades_absent: int = 0  # ids REST showed never existed
    gaps_unrecovered: int = 0
    trades_unrecovered: int = 0
    lost_ranges: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class ConnectionStats:
    """What the WebSocket connections (websocket.StreamConnection) did; one instance shared by all."""

    connects: int = 0
    reconnects: int = 0
    rotations: int = 0
    failed_attempts: int = 0
    silences: int = 0
    subscribe_requests: int = 0  # SUBSCRIBE messages sent
    unsubscribe_requests: int = 0  # UNSUBSCRIBE messages sent
    control_errors: int = 0  # control messages answered with an error, or not answered in time


@dataclass
class RestStats:
    """What the REST client (backfill.RestClient) asked."""

    requests: int = 0
    errors: int = 0


class SymbolStats:
    """One symbol's numbers (kept only while metrics are served: they cost the hot path)."""

    __slots__ = ("last_price", "trades", "volume_units")

    def __init__(self) -> None:
        self.trades = 0  # trades received live (frames per symbol = these + bad frames)
        self.last_price = 0  # of the last trade sent (unscaled, * 10**8)
        self.volume_units = 0  # quantities sent (unscaled, * 10**8)


@dataclass
class PipelineStats:
    """What the pipeline's frame loop (app.Pipeline) counts."""

    frames_in: int = 0
    dead_by_reason: dict[str, int] = field(default_factory=dict)  # BadFrame.kind -> frames dead-lettered
    bad_frames_by_symbol: dict[str, int] = field(default_factory=dict)
    # One record per symbol, made on first use (a live frame, or a trade REST brought first).
    symbols: defaultdict[str, SymbolStats] = field(default_factory=lambda: defaultdict(SymbolStats))


class Link(Protocol):
    """A WebSocket connection as the gauges see it (websocket.StreamConnection)."""

    @property
    def connected(self) -> bool: ...

    @property
    def streams(self) -> int: ...


def _nothing_held() -> int:
    return 0


@dataclass
class ProducerStats:
    """Everything STATS read: the counting parts' dataclasses, and the live state behind the gauges."""

    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    sequencer: SequencerStats = field(default_factory=SequencerStats)
    connections: ConnectionStats = field(default_factory=ConnectionStats)
    rest: RestStats = field(default_factory=RestStats)
    pipeline: PipelineStats = field(default_factory=PipelineStats)
    links: Sequence[Link] = ()  # the WebSocket connections now (connections opened later included)
    universe: SymbolUniverse | None = None  # live: the symbols streamed and their changes
    held: Callable[[], int] = _nothing_held  # trades waiting behind gaps now (Sequencer.held_count)


Kind = Literal["counter", "gauge"]
COUNTER: Final = "counter"
GAUGE: Final = "gauge"
Labelled = Mapping[tuple[str, ...], float]  # label values -> value


@dataclass(frozen=True)
class Stat:
    """One number the producer reports, and where it is read from."""

    name: str  # the run summary's key (a field of app.Summary) when ``summary``
    doc: str  # the metric's HELP
    kind: Kind
    read: Callable[[ProducerStats], float | Labelled]
    labels: tuple[str, ...] = ()  # a labelled stat reads a value per label values; its total is their sum
    metric: str = ""  # the Prometheus family, when not k2_<name>
    exported: bool = True  # served on /metrics
    summary: bool = False
    status: bool = False

    @property
    def family(self) -> str:
        return self.metric or f"k2_{self.name}"

    @property
    def sample(self) -> str:
        """The name its samples carry on a metrics page."""
        return f"{self.family}_total" if self.kind == COUNTER else self.family

    def values(self, stats: ProducerStats) -> list[tuple[tuple[str, ...], float]]:
        value = self.read(stats)
        return list(value.items()) if isinstance(value, Mapping) else [((), value)]

    def total(self, stats: ProducerStats) -> float:
        return sum(value for _, value in self.values(stats))


@dataclass(frozen=True)
class Histogram:
    """A latency the producer observes (one trade in HISTOGRAM_SAMPLE), served as k2_<name>."""

    name: str
    doc: str
    read: Callable[[ProducerStats], Buckets]

    @property
    def family(self) -> str:
        return f"k2_{self.name}"


def _per_connection(value: Callable[[Link], float]) -> Callable[[ProducerStats], Labelled]:
    return lambda stats: {(str(index),): value(link) for index, link in enumerate(stats.links)}


def _frames_received(stats: ProducerStats) -> Labelled:
    frames = {symbol: float(s.trades) for symbol, s in dict(stats.pipeline.symbols).items()}
    for symbol, bad in dict(stats.pipeline.bad_frames_by_symbol).items():
        frames[symbol] = frames.get(symbol, 0) + bad
    return {(symbol,): count for symbol, count in sorted(frames.items())}


def _per_symbol(value: Callable[[SymbolStats], float], sent_only: bool = False) -> Callable[[ProducerStats], Labelled]:
    """Per symbol, in symbol order; ``sent_only``: only symbols with a trade sent (a symbol whose trades all
    wait behind a gap has none yet)."""

    def read(stats: ProducerStats) -> Labelled:
        symbols = sorted(dict(stats.pipeline.symbols).items())  # the hot path may add a symbol meanwhile
        return {(symbol,): value(s) for symbol, s in symbols if s.last_price or not sent_only}

    return read


def _symbol_changes(stats: ProducerStats) -> Labelled:
    counts = dict(stats.universe.counts) if stats.universe else {}
    return {
        (change, reason): counts.get((change, reason), 0) for change, reasons in REASONS.items() for reason in reasons
    }


# In the order of the metrics page; the run summary orders its keys as app.Summary declares them.
STATS = (
    Stat("connection_up", "1 while the WebSocket connection is open.", GAUGE,
         _per_connection(lambda link: 1.0 if link.connected else 0.0), labels=("connection",)),
    # A gauge of its own, not a label of k2_connection_up: streams subscribed live change the count, and a
    # label that changes starts a new series each time.
    Stat("connection_streams", "Streams the WebSocket connection carries.", GAUGE,
         _per_connection(lambda link: float(link.streams)), labels=("connection",)),
    Stat("frames_received", "Frames received, per symbol.", COUNTER, _frames_received, labels=("symbol",)),
    Stat("trades_received", "Trades received live, per symbol.", COUNTER,
         _per_symbol(lambda s: s.trades), labels=("symbol",)),
    Stat("last_price", "Price of the last trade sent, per symbol.", GAUGE,
         _per_symbol(lambda s: s.last_price / UNIT, sent_only=True), labels=("symbol",)),
    Stat("volume", "Quantity traded (base asset), per symbol.", COUNTER,
         _per_symbol(lambda s: s.volume_units / UNIT, sent_only=True), labels=("symbol",)),
    Stat("trades_sent", "Trades handed to Kafka.", COUNTER, lambda s: s.delivery.trades_sent, summary=True),
    Stat("trades_acknowledged", "Trades Kafka acknowledged.", COUNTER, lambda s: s.delivery.trades_acknowledged,
         summary=True, status=True),
    Stat("duplicates_dropped", "Repeated trades dropped (reconnect overlaps).", COUNTER,
         lambda s: s.sequencer.duplicates_dropped, summary=True),
    Stat("redundant_copies_dropped",
         "Copies of trades from the redundant connection sets (--redundancy), dropped by trade id.", COUNTER,
         lambda s: s.sequencer.redundant_copies_dropped, summary=True),
    Stat("gaps_detected", "Gaps in a symbol's trade ids.", COUNTER, lambda s: s.sequencer.gaps_detected,
         summary=True),
    Stat("gaps_filled_live", "Gaps another connection set's trades closed before REST was needed.", COUNTER,
         lambda s: s.sequencer.gaps_filled_live, summary=True),
    Stat("gaps_backfilled", "Gaps closed by REST backfill.", COUNTER, lambda s: s.sequencer.gaps_backfilled,
         summary=True),
    Stat("trades_backfilled", "Trades recovered by REST backfill.", COUNTER,
         lambda s: s.sequencer.trades_backfilled, metric="k2_gap_trades_backfilled", summary=True),
    Stat("trades_absent", "Trade ids REST showed never existed.", COUNTER, lambda s: s.sequencer.trades_absent,
         metric="k2_gap_trades_absent", summary=True),
    Stat("gaps_unrecovered", "Gaps given up after --gap-timeout.", COUNTER, lambda s: s.sequencer.gaps_unrecovered,
         summary=True),
    Stat("trades_unrecovered", "Trades lost in unrecovered gaps.", COUNTER,
         lambda s: s.sequencer.trades_unrecovered, metric="k2_gap_trades_unrecovered", summary=True, status=True),
    Stat("dead_lettered", "Frames sent to the dead-letter topic, per kind of defect.", COUNTER,
         lambda s: {(reason,): count for reason, count in sorted(dict(s.pipeline.dead_by_reason).items())},
         labels=("reason",), summary=True, status=True),
    Stat("delivery_failures", "Records Kafka did not take (after retries).", COUNTER,
         lambda s: s.delivery.trade_failures + s.delivery.dead_letter_failures, summary=True),
    Stat("reconnects", "WebSocket reconnects after a drop or a silence.", COUNTER,
         lambda s: s.connections.reconnects, summary=True),
    Stat("rotations", "Planned WebSocket rotations (age, serverShutdown).", COUNTER,
         lambda s: s.connections.rotations, summary=True),
    Stat("stream_control_requests", "SUBSCRIBE/UNSUBSCRIBE messages sent.", COUNTER,
         lambda s: {("SUBSCRIBE",): s.connections.subscribe_requests,
                    ("UNSUBSCRIBE",): s.connections.unsubscribe_requests}, labels=("method",)),
    Stat("stream_control_errors", "Control messages answered with an error or not at all (asked again later).",
         COUNTER, lambda s: s.connections.control_errors),
    Stat("symbols_subscribed",
         "Symbols streamed now (TRADING in exchangeInfo; --symbols ALL: every one, or those of --quote).", GAUGE,
         lambda s: len(s.universe.subscribed) if s.universe else 0, summary=True),
    Stat("symbol_changes",
         "Symbols subscribed or unsubscribed while running, by why (exchangeInfo status, listed, delisted).",
         COUNTER, _symbol_changes, labels=("change", "reason")),
    Stat("backfill_requests",
         "REST requests for trades (historicalTrades pages; aggTrades to find where an added symbol starts).",
         COUNTER, lambda s: s.rest.requests, summary=True),
    Stat("backfill_errors", "REST requests that failed (429, 418, 5xx, network).", COUNTER, lambda s: s.rest.errors,
         metric="k2_rest_errors", summary=True),
    Stat("trades_held", "Trades waiting behind a gap.", GAUGE, lambda s: s.held()),
    # In the run summary only.
    Stat("unacknowledged", "Records Kafka had not acknowledged when the producer stopped.", GAUGE,
         lambda s: s.delivery.unacknowledged, exported=False, summary=True),
    Stat("dead_letters_acknowledged", "Dead letters Kafka acknowledged.", COUNTER,
         lambda s: s.delivery.dead_letters_acknowledged, exported=False, summary=True),
    Stat("frames_in", "Frames read (trades, bad frames, control answers).", COUNTER,
         lambda s: s.pipeline.frames_in, exported=False, summary=True),
)  # fmt: skip
STAT = {stat.name: stat for stat in STATS}

DELIVERY_LATENCY = Histogram(
    "delivery_latency_seconds",
    f"produce() to Kafka acknowledgement, one trade in {HISTOGRAM_SAMPLE}.",
    lambda s: s.delivery.delivery_latency,
)
EVENT_LAG = Histogram(
    "event_lag_seconds",
    f"Ingest time minus trade time, one trade in {HISTOGRAM_SAMPLE}.",
    lambda s: s.delivery.event_lag,
)
HISTOGRAMS = (DELIVERY_LATENCY, EVENT_LAG)
