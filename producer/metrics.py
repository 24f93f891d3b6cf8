"""The producer's Prometheus metrics, served by prometheus-client (`k2 produce --metrics-port`, 9091).

The pipeline already counts everything its summary reports; a custom collector reads those counters
when Prometheus scrapes, so the hot path pays nothing for counters. The two histograms are kept as
bucket counts by bisect (0.10 us an observation here, against 0.79 us for prometheus_client's
Histogram.observe, measured with timeit) and handed to the collector as a HistogramMetricFamily.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import ProducerError
from .universe import REASONS

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from .app import Pipeline

log = logging.getLogger("k2.producer")

METRICS_PORT = 9091  # the seed's port for the Binance stream's metrics
SCALE = 10**8  # trades carry decimals as unscaled integers (schemas/trade.avsc: decimal(28,8))
# Seconds. Delivery: librdkafka's produce() to acknowledgement (linger 20 ms, acks=all). Event lag: the
# producer's ingest time minus the exchange's trade time (network, reconnects, backfill).
# The two histograms observe one trade in HISTOGRAM_SAMPLE (a power of two): observing every trade cost
# about 3% of the producer's throughput (benchmarks/producer_throughput.py). Quantiles and means are those
# of the sample; a histogram's _count is the number of sampled trades.
HISTOGRAM_SAMPLE = 8
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
EVENT_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class Buckets:
    """A histogram's counts per bucket and sum, observed in about 0.1 us (see the module docstring)."""

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


def _collector(pipeline: Pipeline) -> Collector:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector

    def counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=list(labels or {}))
        family.add_metric(list((labels or {}).values()), value)
        return family

    def per_label(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=[label])
        for key, value in sorted(values.items()):
            family.add_metric([key], value)
        return family

    def histogram(name: str, doc: str, buckets: Buckets) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, doc, buckets=buckets.cumulative(), sum_value=buckets.sum)

    class ProducerCollector(Collector):
        def collect(self) -> Iterator[Any]:
            seq, sink = pipeline.sequencer.stats, pipeline.sink
            delivery, conns = sink.stats, pipeline.connection_stats
            up = GaugeMetricFamily(
                "k2_connection_up", "1 while the WebSocket connection is open.", labels=["connection"]
            )
            # A gauge of its own, not a label of k2_connection_up: streams subscribed live change the
            # count, and a label that changes starts a new series each time.
            streams = GaugeMetricFamily(
                "k2_connection_streams", "Streams the WebSocket connection carries.", labels=["connection"]
            )
            for index, connection in enumerate(pipeline.connections):
                up.add_metric([str(index)], 1.0 if connection.connected else 0.0)
                streams.add_metric([str(index)], float(connection.streams))
            yield up
            yield streams
            symbols = dict(pipeline.symbols)  # the hot path may add a symbol while this runs
            trades = {symbol: stats.trades for symbol, stats in symbols.items()}
            frames = dict(trades)
            for symbol, bad in pipeline.bad_frames_by_symbol.items():
                frames[symbol] = frames.get(symbol, 0) + bad
            yield per_label("k2_frames_received", "Frames received, per symbol.", "symbol", frames)
            yield per_label("k2_trades_received", "Trades received live, per symbol.", "symbol", trades)
            price = GaugeMetricFamily("k2_last_price", "Price of the last trade sent, per symbol.", labels=["symbol"])
            volume = CounterMetricFamily("k2_volume", "Quantity traded (base asset), per symbol.", labels=["symbol"])
            for symbol, stats in sorted(symbols.items()):
                if stats.last_price:  # a symbol whose trades all wait behind a gap has sent none yet
                    price.add_metric([symbol], stats.last_price / SCALE)
                    volume.add_metric([symbol], stats.volume_units / SCALE)
            yield price
            yield volume
            yield counter("k2_trades_sent", "Trades handed to Kafka.", delivery.trades_sent)
            yield counter("k2_trades_acknowledged", "Trades Kafka acknowledged.", delivery.trades_acknowledged)
            yield counter(
                "k2_duplicates_dropped", "Repeated trades dropped (reconnect overlaps).", seq.duplicates_dropped
            )
            yield counter(
                "k2_redundant_copies_dropped",
                "Copies of trades from the redundant connection sets (--redundancy), dropped by trade id.",
                seq.redundant_copies_dropped,
            )
            yield counter("k2_gaps_detected", "Gaps in a symbol's trade ids.", seq.gaps_detected)
            yield counter(
                "k2_gaps_filled_live",
                "Gaps another connection set's trades closed before REST was needed.",
                seq.gaps_filled_live,
            )
            yield counter("k2_gaps_backfilled", "Gaps closed by REST backfill.", seq.gaps_backfilled)
            yield counter("k2_gap_trades_backfilled", "Trades recovered by REST backfill.", seq.trades_backfilled)
            yield counter("k2_gap_trades_absent", "Trade ids REST showed never existed.", seq.trades_absent)
            yield counter("k2_gaps_unrecovered", "Gaps given up after --gap-timeout.", seq.gaps_unrecovered)
            yield counter("k2_gap_trades_unrecovered", "Trades lost in unrecovered gaps.", seq.trades_unrecovered)
            yield per_label(
                "k2_dead_lettered",
                "Frames sent to the dead-letter topic, per kind of defect.",
                "reason",
                pipeline.dead_by_reason,
            )
            failures = delivery.trade_failures + delivery.dead_letter_failures
            yield counter("k2_delivery_failures", "Records Kafka did not take (after retries).", failures)
            yield counter("k2_reconnects", "WebSocket reconnects after a drop or a silence.", conns.reconnects)
            yield counter("k2_rotations", "Planned WebSocket rotations (age, serverShutdown).", conns.rotations)
            control = CounterMetricFamily(
                "k2_stream_control_requests", "SUBSCRIBE/UNSUBSCRIBE messages sent.", labels=["method"]
            )
            control.add_metric(["SUBSCRIBE"], conns.subscribe_requests)
            control.add_metric(["UNSUBSCRIBE"], conns.unsubscribe_requests)
            yield control
            yield counter(
                "k2_stream_control_errors",
                "Control messages answered with an error or not at all (asked again later).",
                conns.control_errors,
            )
            universe = pipeline.universe
            yield GaugeMetricFamily(
                "k2_symbols_subscribed",
                "Symbols streamed now (TRADING in exchangeInfo; --symbols ALL: every one, or those of --quote).",
                value=len(universe.subscribed) if universe else len(pipeline.options.symbols),
            )
            changes = CounterMetricFamily(
                "k2_symbol_changes",
                "Symbols subscribed or unsubscribed while running, by why (exchangeInfo status, listed, delisted).",
                labels=["change", "reason"],
            )
            counts = dict(universe.counts) if universe else {}
            for change, reasons in REASONS.items():
                for reason in reasons:
                    changes.add_metric([change, reason], counts.get((change, reason), 0))
            yield changes
            rest = pipeline.rest
            yield counter(
                "k2_backfill_requests",
                "REST requests for trades (historicalTrades pages; aggTrades to find where an added symbol starts).",
                rest.requests_made if rest else 0,
            )
            yield counter(
                "k2_rest_errors", "REST requests that failed (429, 418, 5xx, network).", rest.errors if rest else 0
            )
            yield GaugeMetricFamily(
                "k2_trades_held", "Trades waiting behind a gap.", value=pipeline.sequencer.held_count()
            )
            yield histogram(
                "k2_delivery_latency_seconds",
                f"produce() to Kafka acknowledgement, one trade in {HISTOGRAM_SAMPLE}.",
                sink.delivery_latency,
            )
            yield histogram(
                "k2_event_lag_seconds",
                f"Ingest time minus trade time, one trade in {HISTOGRAM_SAMPLE}.",
                sink.event_lag,
            )

    return ProducerCollector()


class MetricsServer:
    """prometheus-client's HTTP server for one pipeline, on loopback by default; 0 turns it off."""

    def __init__(self, pipeline: Pipeline, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        if port == 0:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_collector(pipeline))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ProducerError(
                f"metrics port {host}:{port} is not free ({exc.strerror}): another producer may be serving there; "
                "pass --metrics-port with another port, or 0 for no metrics"
            ) from exc
        log.info("metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        """Stop serving without waiting: the server's loop notices shutdown only at its next 0.5 s poll,
        which a blocking shutdown() would add to every run (and to its measured throughput)."""
        if self._server is not None:
            server, self._server = self._server, None

            def stop() -> None:
                server.shutdown()
                server.server_close()

            threading.Thread(target=stop, name="k2-metrics-stop", daemon=True).start()
