"""The producer's Prometheus metrics, served by prometheus-client (`k2 produce --metrics-port`, 9091).

The pipeline already counts everything its summary reports; a custom collector reads those counters
(every stat in stats.STATS that is ``exported``) when Prometheus scrapes, so the hot path pays nothing
for counters. The two histograms are kept as bucket counts (stats.Buckets) and handed over as a
HistogramMetricFamily. ``Page`` reads such a page back by the same declarations (`k2 status`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import ProducerError
from .stats import COUNTER, HISTOGRAMS, STATS, Histogram, ProducerStats, Stat

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

log = logging.getLogger("k2.producer")


def _collector(stats: ProducerStats) -> Collector:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector

    class ProducerCollector(Collector):
        def collect(self) -> Iterator[Any]:
            for stat in STATS:
                if stat.exported:
                    kind = CounterMetricFamily if stat.kind == COUNTER else GaugeMetricFamily
                    family = kind(stat.family, stat.doc, labels=list(stat.labels))
                    for labels, value in stat.values(stats):
                        family.add_metric(list(labels), value)
                    yield family
            for histogram in HISTOGRAMS:
                buckets = histogram.read(stats)
                yield HistogramMetricFamily(
                    histogram.family, histogram.doc, buckets=buckets.cumulative(), sum_value=buckets.sum
                )

    return ProducerCollector()


class Page:
    """A producer's metrics page read back (`k2 status`): the values of each declared stat."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self._samples: dict[str, list[float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self._samples.setdefault(sample.name, []).append(sample.value)

    def values(self, stat: Stat) -> list[float]:
        """One value per label values (one for a stat without labels; none when the page lacks it)."""
        return self._samples.get(stat.sample, [])

    def total(self, stat: Stat) -> float:
        return sum(self.values(stat))

    def mean(self, histogram: Histogram) -> float | None:
        """The mean of the sampled observations; None before the first."""
        count = sum(self._samples.get(f"{histogram.family}_count", []))
        return sum(self._samples.get(f"{histogram.family}_sum", [])) / count if count else None


class MetricsServer:
    """prometheus-client's HTTP server for one pipeline's stats, on loopback by default; 0 turns it off."""

    def __init__(self, stats: ProducerStats, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        if port == 0:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_collector(stats))
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
