"""``k2 status``: one screen for the whole pipeline, from each component's own API."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import click

from k2.producer.defaults import METRICS_PORT, METRICS_PORT_ENV
from k2.stack.ports import HOST, Ports

from .options import DURATION, POSITIVE_DURATION
from .output import emit, format_option
from .settings import Settings

ROW_COLUMNS = ("part", "name", "state", "detail")


def _services(settings: Settings) -> list[dict[str, Any]]:
    from k2.stack.manager import Stack, default_cache
    from k2.stack.ports import stack_ports
    from k2.stack.services import Context

    from .settings import reachable, uses_local_stack

    if not uses_local_stack(settings):
        return [{"name": r["service"], "url": r["url"], "state": r["state"]} for r in reachable(settings)]
    ctx = Context(settings.home, default_cache(), stack_ports(settings.home))
    states = Stack(ctx).states()
    if all(s.pid is None for s in states):  # not ours: services on the local ports (Docker Compose) count
        return [{"name": r["service"], "url": r["url"], "state": r["state"]} for r in reachable(settings)]
    found = [{"name": s.service, "url": s.url, "state": s.state} for s in states]
    # A running maintainer whose cycles fail is alive, not healthy: its heartbeat says what failed.
    from k2.connect.maintainer import last_cycle_problem
    from k2.stack.services import maintainer_heartbeat

    problem = last_cycle_problem(maintainer_heartbeat(ctx))
    for row in found:
        if problem and row["name"] == "maintainer" and row["state"] == "running":
            row |= {"state": "failing", "problem": problem}
    return found


def _producer(url: str) -> dict[str, Any]:
    """The producer's connections and the stats marked ``status`` (k2.producer.stats), from its metrics,
    each keyed by its metric's name without ``k2_``."""
    import requests

    from k2.producer.metrics import Page
    from k2.producer.stats import EVENT_LAG, STAT, STATS

    try:
        text = requests.get(url, timeout=2).text
    except requests.RequestException:
        return {"state": "not running", "url": url}
    page = Page(text)
    connections = page.values(STAT["connection_up"])
    connected = bool(connections) and all(connections)
    lag = page.mean(EVENT_LAG)
    return {
        "state": "connected" if connected else "disconnected",
        "url": url,
        "connections": f"{int(sum(connections))}/{len(connections)}",
        **{stat.family.removeprefix("k2_"): int(page.total(stat)) for stat in STATS if stat.status},
        "mean_event_lag_s": round(lag, 3) if lag is not None else None,
    }


def _supervisor(url: str) -> dict[str, Any]:
    """What the supervisor (`k2 stack supervise`) restarted, what it gave up on, and the FAILED tasks it
    saw, from its metrics."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(url, timeout=2).text
    except requests.RequestException:
        return {"state": "not running", "url": url, "restarts": [], "given_up": [], "tasks_failed": {}}
    restarts, given_up, tasks_failed = [], [], {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "k2_supervisor_restarts_total" and sample.value:
                restarts.append({**sample.labels, "count": int(sample.value)})
            elif sample.name in ("k2_connector_restarts_given_up", "k2_service_restarts_given_up") and sample.value:
                given_up.append(sample.labels.get("connector") or sample.labels.get("service", ""))
            elif sample.name == "k2_connector_tasks_failed" and sample.value:
                tasks_failed[sample.labels["connector"]] = int(sample.value)
    return {
        "state": "running",
        "url": url,
        "restarts": sorted(restarts, key=lambda r: (r["target"], r["reason"])),
        "given_up": sorted(given_up),
        "tasks_failed": tasks_failed,
    }


def _connectors_and_lag(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Our connectors (connect/*.json) with task states, and per partition of each sink's topics the
    topic's end offset against the sink group's committed offset."""
    from dataclasses import asdict

    from k2.connect.deploy import ConnectClient, connector_files, load_connector, trace_summary
    from k2.connect.lag import sink_lag
    from k2.schemas.topics import admin_client

    client = ConnectClient(settings.connect_url, timeout=10)
    deployed = set(client.names())
    connectors, lag = [], []
    admin = admin_client(settings.bootstrap_servers)
    for path in connector_files():
        name = load_connector(path).name
        status = client.status(name) if name in deployed else None
        if status is None:
            connectors.append({"name": name, "state": "not deployed", "tasks": ""})
            continue
        tasks = status.get("tasks", [])
        traces = [status["connector"].get("trace", "")] + [t.get("trace", "") for t in tasks if t["state"] == "FAILED"]
        error = next((trace_summary(trace) for trace in traces if trace and trace.strip()), "")
        connectors.append(
            {
                "name": name,
                "state": status["connector"]["state"],
                "tasks": ",".join(f"{t['id']}:{t['state']}" for t in tasks),
                "error": error[:300],
            }
        )
        config = client.config(name) or {}
        topics = [t.strip() for t in config.get("topics", "").split(",") if t.strip()]
        lag += [asdict(row) for row in sink_lag(admin, name, topics)]
    return connectors, lag


def _dead_letters(settings: Settings) -> dict[str, Any]:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    from k2.schemas.contract import load_topics
    from k2.schemas.topics import admin_client

    topic = load_topics()["trades-dlq"].name
    admin = admin_client(settings.bootstrap_servers)
    metadata = admin.list_topics(topic, timeout=10)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        return {"topic": topic, "count": None}
    partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
    ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions})
    starts = admin.list_offsets({tp: OffsetSpec.earliest() for tp in partitions})
    count = sum(ends[tp].result(timeout=10).offset - starts[tp].result(timeout=10).offset for tp in partitions)
    return {"topic": topic, "count": count}


def _tables(settings: Settings) -> list[dict[str, Any]]:
    from k2.connect.tables import load_table_specs
    from k2.query.engine import Lake
    from k2.query.exceptions import QueryError

    lake = Lake(settings.catalog_uri)
    now_ms = time.time() * 1000
    rows = []
    for identifier in load_table_specs():
        try:
            metadata = lake.metadata(identifier)
        except QueryError:
            rows.append({"name": identifier, "state": "missing"})
            continue
        snapshots = metadata.get("snapshots", [])
        current = next((s for s in snapshots if s["snapshot-id"] == metadata.get("current-snapshot-id")), None)
        summary = current.get("summary", {}) if current else {}
        row: dict[str, Any] = {
            "name": identifier,
            "state": "ok" if current else "empty",
            "last_commit_age_s": round((now_ms - current["timestamp-ms"]) / 1000, 1) if current else None,
            "data_files": int(summary.get("total-data-files", 0)),
            "bytes": int(summary.get("total-files-size", 0)),
            "records": int(summary.get("total-records", 0)),
            "snapshots": len(snapshots),
            "freshness_s": None,
        }
        if current:
            columns, found = lake.rows(f"SELECT max(trade_time) FROM {identifier}")
            newest = found[0][0] if found else None
            if isinstance(newest, datetime):
                row["freshness_s"] = round(datetime.now(UTC).timestamp() - newest.timestamp(), 1)
        rows.append(row)
    return rows


def _ksql(settings: Settings) -> dict[str, Any]:
    from k2.ksql.client import KsqlClient, KsqlError

    client = KsqlClient(settings.ksql_url, timeout=5)
    try:
        info = client.info()
        queries = client.execute("SHOW QUERIES;")[0].get("queries", [])
    except KsqlError:
        return {"state": "not answering (ksqlDB runs in Compose only)", "url": settings.ksql_url, "queries": []}
    return {
        "state": "answering",
        "url": settings.ksql_url,
        "version": info.get("version", ""),
        "queries": [{"id": q.get("id"), "state": q.get("state")} for q in queries],
    }


def gather(
    settings: Settings,
    producer_url: str,
    require_producer: bool,
    max_lag: int,
    max_commit_age: float,
    supervisor_url: str = "",
) -> dict[str, Any]:
    """Every part's state, and the list of what is unhealthy (empty when all is well)."""
    unhealthy: list[str] = []
    status: dict[str, Any] = {"checked_at": datetime.now(UTC), "services": _services(settings)}
    fine = ("running", "answering", "skipped")  # skipped: metrics and alerts without Go, said by `k2 stack up`
    unhealthy += [
        f"service {s['name']} {s['state']}" + (f": {s['problem']}" if s.get("problem") else "")
        for s in status["services"]
        if s["state"] not in fine
    ]
    status["producer"] = _producer(producer_url)
    if require_producer and status["producer"]["state"] != "connected":
        unhealthy.append(f"producer {status['producer']['state']}")
    if require_producer and status["producer"].get("gap_trades_unrecovered"):
        unhealthy.append(f"producer lost {status['producer']['gap_trades_unrecovered']} trades in unrecovered gaps")
    reachable = {s["name"] for s in status["services"] if s["state"] in ("running", "answering")}
    status["supervisor"] = _supervisor(supervisor_url) if supervisor_url else {"state": "not asked"}
    restarted: dict[str, int] = {}
    for row in status["supervisor"].get("restarts", []):
        restarted[row["target"]] = restarted.get(row["target"], 0) + row["count"]
    status["connectors"], status["lag"], status["tables"], status["dead_letters"] = [], [], [], {}
    if {"kafka", "connect"} <= reachable:
        status["connectors"], status["lag"] = _connectors_and_lag(settings)
        for c in status["connectors"]:
            c["supervisor_restarts"] = restarted.get(c["name"], 0)
            if c["state"] == "RUNNING" and all(t.endswith(":RUNNING") for t in c["tasks"].split(",") if t):
                continue
            problem = f"connector {c['name']} {c['state']}" + (f" (tasks {c['tasks']})" if c["tasks"] else "")
            if c.get("error"):
                problem += f": {c['error']}"
            if c["supervisor_restarts"]:
                problem += f" [restarted {c['supervisor_restarts']}x by the supervisor]"
            unhealthy.append(problem)
    unhealthy += [
        f"the supervisor gave up restarting {target} (too many restarts within an hour): fix the cause, then "
        f"`k2 connectors restart {target}` or `k2 stack up`"
        for target in status["supervisor"].get("given_up", [])
    ]
    if "kafka" in reachable:
        status["dead_letters"] = _dead_letters(settings)
    total_lag = sum(row["lag"] for row in status["lag"])
    if total_lag > max_lag:
        unhealthy.append(f"sink lag {total_lag} > {max_lag} records")
    if "catalog" in reachable:
        status["tables"] = _tables(settings)
        for table in status["tables"]:
            age = table.get("last_commit_age_s")
            if table["state"] == "missing":
                unhealthy.append(f"table {table['name']} missing (k2 tables apply)")
            elif total_lag and age is not None and age > max_commit_age:
                unhealthy.append(f"table {table['name']} last commit {age:.0f}s ago while the sink lags {total_lag}")
    status["ksql"] = _ksql(settings)
    status["unhealthy"] = unhealthy
    status["healthy"] = not unhealthy
    return status


def rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The status as part/name/state/detail rows (table and CSV)."""
    out = [
        {"part": "service", "name": s["name"], "state": s["state"], "detail": s.get("problem") or s["url"]}
        for s in status["services"]
    ]
    producer = status["producer"]
    detail = ", ".join(f"{k} {v}" for k, v in producer.items() if k not in ("state", "url") and v is not None)
    out.append({"part": "producer", "name": producer["url"], "state": producer["state"], "detail": detail})
    supervisor = status.get("supervisor", {})
    if supervisor.get("url"):
        done = [f"{r['target']} {r['count']}x ({r['reason']})" for r in supervisor.get("restarts", [])]
        detail = "restarts: " + (", ".join(done) or "none")
        if supervisor.get("given_up"):
            detail += "; gave up on " + ", ".join(supervisor["given_up"])
        out.append({"part": "supervisor", "name": supervisor["url"], "state": supervisor["state"], "detail": detail})
    for c in status["connectors"]:
        parts = [f"tasks {c['tasks']}"] if c["tasks"] else []
        if c.get("supervisor_restarts"):
            parts.append(f"restarted {c['supervisor_restarts']}x by the supervisor")
        if c.get("error"):
            parts.append(c["error"])
        out.append({"part": "connector", "name": c["name"], "state": c["state"], "detail": "; ".join(parts)})
    for row in status["lag"]:
        name = f"{row['topic']}[{row['partition']}]"
        detail = f"end {row['end_offset']}, committed {row['committed']} ({row['group']})"
        out.append({"part": "lag", "name": name, "state": row["lag"], "detail": detail})
    for t in status["tables"]:
        detail = ", ".join(f"{k} {v}" for k, v in t.items() if k not in ("name", "state"))
        out.append({"part": "table", "name": t["name"], "state": t["state"], "detail": detail})
    if status["dead_letters"]:
        dead = status["dead_letters"]
        count = "topic missing (k2 topics apply)" if dead["count"] is None else dead["count"]
        out.append({"part": "dead letters", "name": dead["topic"], "state": count, "detail": ""})
    ksql = status["ksql"]
    queries = ", ".join(f"{q['id']} {q['state']}" for q in ksql["queries"])
    out.append({"part": "ksqldb", "name": ksql["url"], "state": ksql["state"], "detail": queries})
    verdict = "healthy" if status["healthy"] else "UNHEALTHY"
    out.append({"part": "pipeline", "name": "", "state": verdict, "detail": "; ".join(status["unhealthy"])})
    return out


@click.command()
@click.option(
    "--producer-metrics",
    help=f"The producer's metrics URL.  [default: http://{HOST}:${METRICS_PORT_ENV}/metrics, port {METRICS_PORT}]",
)
@click.option(
    "--supervisor-metrics",
    help="The supervisor's metrics URL.  [default: the local stack's, "
    f"http://{HOST}:${Ports.ENV['supervisor']}/metrics, port {Ports().supervisor} (Compose publishes the same)]",
)
@click.option("--require-producer", is_flag=True, help="A producer that is not running and connected is unhealthy.")
@click.option(
    "--max-lag",
    type=click.IntRange(min=0),
    default=50_000,
    show_default=True,
    help="Sink lag (records) that is unhealthy.",
)
@click.option(
    "--max-commit-age",
    type=DURATION,
    default="5m",
    show_default=True,
    help="Unhealthy when the last Iceberg commit is older than this while the sink lags.",
)
@click.option("--watch", is_flag=True, help="Refresh every --interval until Ctrl-C (jsonl: one line per refresh).")
@click.option(
    "--interval", type=POSITIVE_DURATION, default="5s", show_default=True, help="With --watch: time between refreshes."
)
@format_option()
@click.pass_obj
def status(
    settings: Settings,
    producer_metrics: str | None,
    supervisor_metrics: str | None,
    require_producer: bool,
    max_lag: int,
    max_commit_age: float,
    watch: bool,
    interval: float,
    fmt: str,
) -> None:
    """One screen for the whole pipeline; exits 1 naming what is unhealthy.

    Stack services (or the services at the given URLs), the producer (from its metrics; not running is
    shown, and unhealthy only with --require-producer), the supervisor's restarts (from its metrics),
    each connector of connect/*.json with its tasks, the first line of a failure's trace and how often
    the supervisor restarted it, the sink's lag per partition (the topic's end offset against the sink group's committed
    offset), each declared table's last commit age, end-to-end freshness (now minus the newest
    trade_time), data files, bytes and snapshots, the dead-letter count, and ksqlDB's queries when it
    answers. Unhealthy: a service down, a connector or task not RUNNING (so a K2 connector that stays
    FAILED however often the supervisor restarts it), a target the supervisor gave up on, lag above
    --max-lag, a table missing, or its last commit older than --max-commit-age while the sink lags.

    \b
    Examples:
      k2 status
      k2 status --format json | jq '.[0].lag'
      k2 status --watch --interval 10s
      k2 status --require-producer --max-lag 10000 || alert-someone
    """
    import os

    port = os.environ.get(METRICS_PORT_ENV) or METRICS_PORT  # where `k2 produce` serves them
    producer_metrics = producer_metrics or f"http://{HOST}:{port}/metrics"
    if not supervisor_metrics:
        from k2.stack.ports import stack_ports, urls

        supervisor_metrics = urls(stack_ports(settings.home))["supervisor"]
    while True:
        found = gather(settings, producer_metrics, require_producer, max_lag, max_commit_age, supervisor_metrics)
        if fmt in ("json", "jsonl"):
            emit([found], fmt)
        else:
            if watch and fmt == "table" and sys.stdout.isatty():
                click.clear()
            emit(rows(found), fmt, ROW_COLUMNS)
        if not watch:
            break
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return
    if not found["healthy"]:
        click.echo(f"Error: unhealthy: {'; '.join(found['unhealthy'])}", err=True)
        sys.exit(1)
