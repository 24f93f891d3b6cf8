"""One model of what the producer counts (k2.producer.stats): the run summary, the metrics page and
`k2 status` read the same declarations, so a number is the same wherever a user reads it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from k2.cli.status_cmd import _producer
from k2.producer.app import Summary, summarize
from k2.producer.metrics import Page, _collector
from k2.producer.stats import EVENT_LAG, STAT, STATS, ProducerStats, RestStats
from k2.producer.universe import ADDED, SymbolUniverse

# The summary's keys in the order users see them (README; `k2 produce --format json`).
SUMMARY_KEYS = (
    "mode", "trades_sent", "trades_acknowledged", "delivery_failures", "unacknowledged", "duplicates_dropped",
    "gaps_detected", "gaps_backfilled", "trades_backfilled", "trades_absent", "gaps_unrecovered",
    "trades_unrecovered", "dead_lettered", "dead_letters_acknowledged", "frames_in", "reconnects", "rotations",
    "backfill_requests", "backfill_errors", "elapsed_s", "trades_per_s", "lost_ranges", "resumed_symbols",
    "redundant_copies_dropped", "gaps_filled_live", "symbols_subscribed", "symbols_added", "symbols_removed",
)  # fmt: skip
NOT_COUNTS = {"mode", "elapsed_s", "trades_per_s", "lost_ranges", "resumed_symbols", "symbols_added", "symbols_removed"}

# Every family on the page, its type and its label names (README's list; dashboards and alerts query them).
FAMILIES = {
    "k2_connection_up": ("gauge", ("connection",)),
    "k2_connection_streams": ("gauge", ("connection",)),
    "k2_frames_received": ("counter", ("symbol",)),
    "k2_trades_received": ("counter", ("symbol",)),
    "k2_last_price": ("gauge", ("symbol",)),
    "k2_volume": ("counter", ("symbol",)),
    "k2_trades_sent": ("counter", ()),
    "k2_trades_acknowledged": ("counter", ()),
    "k2_duplicates_dropped": ("counter", ()),
    "k2_redundant_copies_dropped": ("counter", ()),
    "k2_gaps_detected": ("counter", ()),
    "k2_gaps_filled_live": ("counter", ()),
    "k2_gaps_backfilled": ("counter", ()),
    "k2_gap_trades_backfilled": ("counter", ()),
    "k2_gap_trades_absent": ("counter", ()),
    "k2_gaps_unrecovered": ("counter", ()),
    "k2_gap_trades_unrecovered": ("counter", ()),
    "k2_dead_lettered": ("counter", ("reason",)),
    "k2_delivery_failures": ("counter", ()),
    "k2_reconnects": ("counter", ()),
    "k2_rotations": ("counter", ()),
    "k2_stream_control_requests": ("counter", ("method",)),
    "k2_stream_control_errors": ("counter", ()),
    "k2_symbols_subscribed": ("gauge", ()),
    "k2_symbol_changes": ("counter", ("change", "reason")),
    "k2_backfill_requests": ("counter", ()),
    "k2_rest_errors": ("counter", ()),
    "k2_trades_held": ("gauge", ()),
    "k2_delivery_latency_seconds": ("histogram", ("le",)),
    "k2_event_lag_seconds": ("histogram", ("le",)),
}


@dataclass
class Link:
    connected: bool
    streams: int


def _stats() -> ProducerStats:
    """A producer's numbers mid-run, each a different value, so a number read from the wrong place shows."""
    stats = ProducerStats(rest=RestStats(requests=17, errors=18))
    delivery = stats.delivery
    delivery.trades_sent, delivery.trades_acknowledged, delivery.trade_failures = 101, 97, 1
    delivery.dead_letters_sent, delivery.dead_letters_acknowledged, delivery.dead_letter_failures = 3, 2, 2
    seq = stats.sequencer
    seq.duplicates_dropped, seq.redundant_copies_dropped, seq.gaps_detected, seq.gaps_filled_live = 3, 4, 5, 6
    seq.gaps_backfilled, seq.trades_backfilled, seq.trades_absent, seq.gaps_unrecovered = 7, 8, 9, 10
    seq.trades_unrecovered = 11
    conns = stats.connections
    conns.reconnects, conns.rotations, conns.subscribe_requests, conns.unsubscribe_requests = 12, 13, 14, 15
    conns.control_errors = 16
    stats.pipeline.frames_in = 60
    stats.pipeline.dead_by_reason.update({"bad_decimal": 2, "invalid_json": 1})
    stats.pipeline.bad_frames_by_symbol.update({"BTCUSDT": 2, "": 1})  # invalid JSON names no symbol
    btc = stats.pipeline.symbols["BTCUSDT"]
    btc.trades, btc.last_price, btc.volume_units = 50, 150_000_000, 1_234_567
    stats.pipeline.symbols["ETHUSDT"].trades = 3  # all held behind a gap: nothing sent yet
    stats.links = [Link(True, 3), Link(False, 2)]
    stats.held = lambda: 7
    for lag in (0.2, 0.4):
        delivery.event_lag.observe(lag)
    delivery.delivery_latency.observe(0.03)
    universe = SymbolUniverse(["BTCUSDT", "ETHUSDT"])
    universe.subscribed = dict.fromkeys(["BTCUSDT", "ETHUSDT", "NEWUSDT"])
    universe.counts[(ADDED, "listed")] += 1
    stats.universe = universe
    return stats


def _page(stats: ProducerStats) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_collector(stats))
    return generate_latest(registry).decode()


def test_every_count_of_the_summary_is_a_declared_stat_in_the_order_users_know() -> None:
    assert tuple(f.name for f in fields(Summary)) == SUMMARY_KEYS
    assert {stat.name for stat in STATS if stat.summary} == set(SUMMARY_KEYS) - NOT_COUNTS
    assert len(STAT) == len(STATS), "two stats share a name"


def test_the_page_serves_every_exported_stat_under_its_family_labels_and_doc() -> None:
    families = {family.name: family for family in text_string_to_metric_families(_page(_stats()))}
    found = {
        name: (family.type, tuple(dict.fromkeys(label for s in family.samples for label in s.labels)))
        for name, family in families.items()
    }
    assert found == FAMILIES
    for stat in STATS:
        assert (stat.family in families) == stat.exported, stat.name
        if stat.exported:
            assert families[stat.family].documentation == stat.doc


def test_per_symbol_values_are_exact_and_only_for_what_was_sent() -> None:
    page = {
        (s.name, tuple(s.labels.values())): s.value
        for f in text_string_to_metric_families(_page(_stats()))
        for s in f.samples
    }
    assert page[("k2_last_price", ("BTCUSDT",))] == 1.5
    assert page[("k2_volume_total", ("BTCUSDT",))] == 0.01234567
    assert ("k2_last_price", ("ETHUSDT",)) not in page
    assert page[("k2_frames_received_total", ("BTCUSDT",))] == 52  # trades and bad frames
    assert page[("k2_frames_received_total", ("",))] == 1
    assert page[("k2_trades_held", ())] == 7 and page[("k2_symbols_subscribed", ())] == 3
    assert page[("k2_symbol_changes_total", (ADDED, "listed"))] == 1


def test_the_summary_the_page_and_status_give_one_value_per_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = _stats()
    text = _page(stats)
    page = Page(text)
    summary = summarize(stats, "live", elapsed=2.0)
    for stat in STATS:
        if stat.exported:
            assert page.total(stat) == pytest.approx(stat.total(stats)), stat.name
        if stat.summary:
            assert getattr(summary, stat.name) == stat.total(stats), stat.name
    assert (summary.trades_acknowledged, summary.dead_lettered, summary.frames_in) == (97, 3, 60)
    assert (summary.delivery_failures, summary.trades_unrecovered, summary.backfill_errors) == (3, 11, 18)
    assert summary.trades_per_s == 48.5 and summary.symbols_subscribed == 3

    class Answer:
        def __init__(self, body: str) -> None:
            self.text = body

    def get(url: str, **_: Any) -> Answer:
        return Answer(text)  # the page as it is at the time of the request

    monkeypatch.setattr("requests.get", get)
    url = "http://127.0.0.1:9091/metrics"
    shown = _producer(url)
    assert shown == {
        "state": "disconnected",
        "url": url,
        "connections": "1/2",
        "trades_acknowledged": 97,
        "gap_trades_unrecovered": 11,
        "dead_lettered": 3,
        "mean_event_lag_s": 0.3,
    }
    assert list(shown) == [  # the order of the detail column of `k2 status`
        "state", "url", "connections", "trades_acknowledged", "gap_trades_unrecovered", "dead_lettered",
        "mean_event_lag_s",
    ]  # fmt: skip
    assert page.mean(EVENT_LAG) == pytest.approx(0.3)
    stats.links = [Link(True, 3)]
    text = _page(stats)
    assert _producer(url)["state"] == "connected"
