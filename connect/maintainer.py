"""The maintainer: every declared table maintained once per interval, its state as a heartbeat and metrics.

``k2 tables maintain --watch`` runs this; `k2 stack up` starts it as the ``maintainer`` service and
Compose runs the same command. One table's failure never stops the others or the next cycle, and a
catalog that is down is waited for.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog

from .exceptions import ConnectError
from .maintenance import Policy, head_manifests, load_policies, maintain, max_files_per_partition

log = logging.getLogger("k2.maintainer")


def _heartbeat(path: Path | None, record: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, default=str) + "\n")
    temporary.replace(path)  # readers never see half a record


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the maintainer last reported, None if it never did."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


# One failed cycle is a blip (the catalog restarting); two in a row are a state worth reporting.
FAILING_AFTER_CYCLES = 2


def last_cycle_problem(path: Path) -> str | None:
    """What went wrong in the maintainer's last cycles, in one line, once FAILING_AFTER_CYCLES cycles in a
    row have failed; None while they go well (or none has finished yet): a fresh heartbeat shows the
    process is alive, not that it maintains."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    problems = record.get("last_cycle_problems") or {}
    if not problems or record.get("failing_cycles", 0) < FAILING_AFTER_CYCLES:
        return None
    where, what = next(iter(sorted(problems.items())))
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {what}{more}; failing since {record.get('failing_since')} ({record['failing_cycles']} cycles)"


def watch(
    catalog_factory: Callable[[], Catalog],
    identifiers: list[str] | None,
    interval: timedelta,
    heartbeat: Path | None = None,
    cycles: int | None = None,
    policies: dict[str, Policy] | None = None,
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Maintain each table (default: every table of connect/tables.toml that exists) once per interval.

    A failing table is logged and retried next cycle; the loop itself never stops on one (a catalog
    that is down is waited for). The heartbeat file gets a JSON record after every table and cycle;
    with ``metrics_port`` the same state is served as Prometheus metrics on 127.0.0.1."""
    policies = policies if policies is not None else load_policies()
    names = identifiers or sorted(policies)
    last_orphans: dict[str, float] = {}
    cycle = 0
    state: dict[str, Any] = {"pid": os.getpid(), "interval_s": interval.total_seconds(), "tables": {}}
    totals: dict[str, dict[str, int]] = {}  # per table: files merged, snapshots expired, ... since start
    if metrics_port:
        serve_metrics(state, totals, metrics_port, metrics_host)
    _heartbeat(heartbeat, {**state, "at": datetime.now(UTC), "cycle": cycle})
    log.info("maintaining %s every %ss", ", ".join(names), interval.total_seconds())
    while cycles is None or cycle < cycles:
        started = time.monotonic()
        cycle += 1
        problems: dict[str, str] = {}  # this cycle's: table (or "catalog") -> first line of the error
        try:
            catalog = catalog_factory()
            existing = {".".join(name) for ns in catalog.list_namespaces() for name in catalog.list_tables(ns)}
        except Exception as exc:  # the catalog is down or restarting: try again next cycle
            problems["catalog"] = f"unavailable: {str(exc).splitlines()[0][:200]}"
            log.warning("cycle %d: catalog %s", cycle, problems["catalog"])
            existing, catalog = set(), None
        for identifier in names:
            if catalog is None or identifier not in existing:
                continue
            policy = policies.get(identifier) or Policy()
            due = (
                time.monotonic() - last_orphans.get(identifier, -math.inf)
                >= policy.orphan_check_interval.total_seconds()
            )
            try:
                table_started = time.monotonic()
                report = maintain(catalog, identifier, policy=policy, orphans=due)
                seconds = time.monotonic() - table_started
                table = catalog.load_table(identifier)
                head = table.current_snapshot()
                totals_now = head.summary.additional_properties if head and head.summary else {}
                summary: dict[str, Any] = {
                    "last_commit_ms": head.timestamp_ms if head else None,
                    "bytes": int(totals_now.get("total-files-size", 0)),
                    "records": int(totals_now.get("total-records", 0)),
                    "data_files": report.data_files_after,
                    "max_files_per_partition": max_files_per_partition(table),
                    "snapshots": len(table.metadata.snapshots),
                    "manifests": head_manifests(table),
                    "files_merged": report.files_merged,
                    "partitions_compacted": report.partitions_compacted,
                    "snapshots_expired": report.snapshots_expired,
                    "orphans_deleted": report.orphans_deleted,
                    "commit_retries": report.commit_retries,
                    "maintain_seconds": round(seconds, 3),
                }
                if due:
                    last_orphans[identifier] = time.monotonic()
                state["tables"][identifier] = summary
                counted = totals.setdefault(identifier, dict.fromkeys(TOTALS, 0))
                for key in TOTALS[:-1]:
                    counted[key] += int(summary[key] or 0)
                shown = {k: v for k, v in summary.items() if k not in ("last_commit_ms", "bytes", "records")}
                log.info("cycle %d %s: %s", cycle, identifier, " ".join(f"{k}={v}" for k, v in shown.items()))
                if summary["manifests"] > policy.max_manifests:
                    log.warning("%s: %d manifests (> %d)", identifier, summary["manifests"], policy.max_manifests)
            except Exception as exc:  # one table's failure must not stop the others or the next cycle
                state["tables"][identifier] = {
                    **state["tables"].get(identifier, {}),
                    "error": str(exc).splitlines()[0][:300],
                }
                totals.setdefault(identifier, dict.fromkeys(TOTALS, 0))["errors"] += 1
                problems[identifier] = state["tables"][identifier]["error"]
                log.error("cycle %d %s failed: %s", cycle, identifier, problems[identifier])
            _heartbeat(heartbeat, {**state, "at": datetime.now(UTC), "cycle": cycle})
        state["cycle"], state["cycle_at"] = cycle, time.time()
        state["cycle_seconds"] = round(time.monotonic() - started, 3)
        # The outcome travels with the heartbeat: alive is not the same as maintaining.
        state["last_cycle_problems"] = problems
        state["failing_cycles"] = state.get("failing_cycles", 0) + 1 if problems else 0
        if not problems:
            state["failing_since"] = None
        elif not state.get("failing_since"):
            state["failing_since"] = datetime.now(UTC).isoformat(timespec="seconds")
        _heartbeat(heartbeat, {**state, "at": datetime.now(UTC), "cycle": cycle})
        if cycles is not None and cycle >= cycles:
            break
        time.sleep(max(0.0, interval.total_seconds() - (time.monotonic() - started)))


TOTALS = ("files_merged", "partitions_compacted", "snapshots_expired", "orphans_deleted", "commit_retries", "errors")
TABLE_GAUGES = {
    "data_files": "Live data files.",
    "max_files_per_partition": "Data files in the fullest partition.",
    "snapshots": "Snapshots in the table's metadata.",
    "manifests": "Manifests the current snapshot reads.",
    "bytes": "Bytes of live data files.",
    "records": "Rows in the current snapshot.",
    "maintain_seconds": "Seconds the table's last maintenance took (plan, rewrites, expiry, orphans).",
}


def serve_metrics(state: dict[str, Any], totals: dict[str, dict[str, int]], port: int, host: str = "127.0.0.1") -> None:
    """The maintainer's state as Prometheus metrics (prometheus-client) on host:port, read at scrape
    time: per table its files, snapshots, bytes and the age of its last commit (end-to-end freshness of
    the sink), and what maintenance did since the maintainer started."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class MaintainerCollector(Collector):
        def collect(self) -> Iterator[Any]:
            tables = {name: found for name, found in state["tables"].items() if "data_files" in found}
            for key, doc in TABLE_GAUGES.items():
                family = GaugeMetricFamily(f"k2_table_{key}", doc, labels=["table"])
                for name, found in sorted(tables.items()):
                    family.add_metric([name], float(found[key]))
                yield family
            commit = GaugeMetricFamily(
                "k2_table_last_commit_timestamp_seconds", "Time of the last commit.", labels=["table"]
            )
            age = GaugeMetricFamily(
                "k2_table_last_commit_age_seconds", "Seconds since the last commit.", labels=["table"]
            )
            for name, found in sorted(tables.items()):
                if found.get("last_commit_ms"):
                    commit.add_metric([name], found["last_commit_ms"] / 1000)
                    age.add_metric([name], max(0.0, time.time() - found["last_commit_ms"] / 1000))
            yield commit
            yield age
            for key in TOTALS:
                done = CounterMetricFamily(
                    f"k2_maintainer_{key}", f"Maintenance {key.replace('_', ' ')}.", labels=["table"]
                )
                for name, counted in sorted(totals.items()):
                    done.add_metric([name], counted[key])
                yield done
            yield CounterMetricFamily("k2_maintainer_cycles", "Maintenance cycles run.", value=state.get("cycle", 0))
            yield GaugeMetricFamily(
                "k2_maintainer_last_cycle_timestamp_seconds", "End of the last cycle.", value=state.get("cycle_at", 0.0)
            )
            yield GaugeMetricFamily(
                "k2_maintainer_last_cycle_duration_seconds",
                "How long the last cycle took, every table included (to compare with the interval).",
                value=state.get("cycle_seconds", 0.0),
            )
            yield GaugeMetricFamily(
                "k2_maintainer_last_cycle_problems",
                "Tables the last cycle failed on, the catalog counting as one when it did not answer; 0: all well.",
                value=len(state.get("last_cycle_problems") or {}),
            )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MaintainerCollector())
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConnectError(f"maintainer metrics port {host}:{port} is not free ({exc.strerror})") from exc
    log.info("metrics on http://%s:%d/metrics", host, port)
