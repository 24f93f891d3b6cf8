"""`k2 status` calls the pipeline unhealthy where the stack's alerts fire: its --max-lag and --max-commit-age
defaults are the thresholds of SinkLagHigh and TableStale in stack/config/alerts.yml (the rule file is
PromQL, read by vmalert; this keeps the CLI's two numbers equal to it)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from k2.cli.status_cmd import status

ALERTS = Path(__file__).resolve().parents[2] / "stack" / "config" / "alerts.yml"


def _threshold(alert: str, metric: str) -> float:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    (rule,) = [rule for group in groups for rule in group["rules"] if rule.get("alert") == alert]
    found = re.search(rf"{metric}[^>]*\)\s*>\s*(\d+)|{metric}\s*>\s*(\d+)", rule["expr"])
    assert found, f"{alert}: no '> N' after {metric} in {rule['expr']!r}"
    return float(found[1] or found[2])


def test_status_defaults_are_the_alert_thresholds() -> None:
    context = click.Context(status)
    wanted = ("max_lag", "max_commit_age")
    defaults = {p.name: p.type_cast_value(context, p.default) for p in status.params if p.name in wanted}
    assert defaults["max_lag"] == _threshold("SinkLagHigh", "kafka_connect_sink_consumer_records_lag")
    assert defaults["max_commit_age"] == _threshold("TableStale", "k2_table_last_commit_age_seconds")
