"""The dashboards are written once (vmui format) and Compose's Grafana gets the same panels."""

from __future__ import annotations

import json

from k2.stack import dashboard_sync as dashboards


def test_grafana_dashboards_are_generated_from_the_source() -> None:
    on_disk = {path.name: path.read_text() for path in sorted(dashboards.GRAFANA.glob("*.json"))}
    assert on_disk == dashboards.rendered(), "run `python -m k2.stack.dashboard_sync` after changing stack/dashboards/"


def test_every_source_panel_is_a_grafana_panel_with_the_same_queries() -> None:
    for name, source in dashboards.load().items():
        generated = json.loads((dashboards.GRAFANA / name).read_text())
        grafana_queries = [
            (panel["title"], target["expr"])
            for panel in generated["panels"]
            if panel["type"] == "timeseries"
            for target in panel["targets"]
        ]
        assert grafana_queries == dashboards.queries(source)
        assert all(p["datasource"]["uid"] == "k2-metrics" for p in generated["panels"] if p["type"] == "timeseries")


def test_the_dashboards_cover_what_the_pipeline_promises() -> None:
    exprs = " ".join(expr for source in dashboards.load().values() for _, expr in dashboards.queries(source))
    for metric in (
        "k2_last_price",  # live prices and 1m candles
        "k2_volume_total",  # trade volume per symbol
        "k2_connection_up", "k2_gap_trades_unrecovered_total", "k2_dead_lettered_total", "k2_event_lag_seconds",
        "kafka_connect_sink_consumer_records_lag",  # Kafka/Connect lag
        "k2_table_last_commit_age_seconds", "k2_table_data_files", "k2_table_snapshots", "k2_table_bytes",
    ):  # fmt: skip
        assert metric in exprs, metric
