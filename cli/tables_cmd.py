"""``k2 tables``: the Iceberg tables declared in connect/tables.toml."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import click

from k2.stack.services import MAINTAINER_INTERVAL_DEFAULT

from .options import DURATION, POSITIVE_DURATION, metrics_options
from .output import emit, emit_record, format_option
from .settings import Settings


@click.group()
def tables() -> None:
    """Create and inspect the Iceberg tables the connectors write to.

    \b
    Examples:
      k2 tables apply
      k2 tables apply --dry-run --format json
      k2 tables snapshots market_data.trades
      k2 tables maintain market_data.trades
    """


@tables.command()
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@format_option()
@click.pass_obj
def apply(settings: Settings, dry_run: bool, fmt: str) -> None:
    """Create each declared table, or align properties and added columns of an existing one.

    Refuses changes that need a rewrite (partitioning, sort order, column types, dropped columns).

    \b
    Examples:
      k2 tables apply
      k2 --catalog-uri http://127.0.0.1:8181 tables apply --dry-run
    """
    from k2.connect.tables import apply_table, load_table_specs, rest_catalog

    catalog = rest_catalog(settings.catalog_uri)
    rows = [apply_table(catalog, spec, dry_run) for spec in load_table_specs().values()]
    emit(rows, fmt, ("table", "action", "changes"))


@tables.command()
@click.argument("table")
@format_option()
@click.pass_obj
def snapshots(settings: Settings, table: str, fmt: str) -> None:
    """List a table's snapshots, oldest first (ids and times for `k2 query --snapshot/--as-of`), with the
    branches and tags whose head each one is, read through the same DuckDB catalog as `k2 query`.

    \b
    Examples:
      k2 tables snapshots market_data.trades
      k2 tables snapshots market_data.trades --format json
    """
    from k2.query.catalog import snapshot_rows
    from k2.query.engine import Lake

    rows = snapshot_rows(Lake(settings.catalog_uri).metadata(table))
    columns = ("snapshot_id", "committed_at", "operation", "added_records", "total_records", "total_data_files")
    emit(rows, fmt, (*columns, "refs", "current"))


@tables.command()
@click.argument("table", required=False)
@click.option(
    "--retain",
    type=DURATION,
    help="Keep snapshots younger than this, e.g. 24h.  [default: the table's snapshot_retention]",
)
@click.option(
    "--orphan-age",
    type=DURATION,
    help="Only delete unreferenced files older than this, e.g. 1h.  [default: the table's orphan_age]",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (partitions, merges, snapshots, files and bytes); change nothing."
)
@click.option("--watch", is_flag=True, help="Keep running: maintain once per --interval until stopped.")
@click.option(
    "--interval",
    type=POSITIVE_DURATION,
    default=MAINTAINER_INTERVAL_DEFAULT,  # the stack's maintainer service runs with the same
    show_default=True,
    help="With --watch: time between cycles.",
)
@metrics_options(
    "With --watch: the maintainer's (files, snapshots, last commit age per table)", "K2_MAINTAINER_METRICS_PORT"
)
@click.option(
    "--heartbeat",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --watch: a file rewritten with a JSON status after every table and cycle (a health check).",
)
@format_option()
@click.pass_obj
def maintain(
    settings: Settings,
    table: str | None,
    retain: float | None,
    orphan_age: float | None,
    dry_run: bool,
    watch: bool,
    interval: float,
    metrics_port: int,
    metrics_host: str,
    heartbeat: Path | None,
    fmt: str,
) -> None:
    """Keep a table healthy: merge small files, compact finished partitions, expire snapshots, delete
    files nothing references any more. With --watch and no TABLE, every table of connect/tables.toml that
    exists.

    Works on any table: partitions and sort order are read from the table; the policy (small-file bound,
    target file size, size tiers, snapshot retention and count, orphan age) is the table's
    `maintenance` section in connect/tables.toml, or the defaults. In partitions still being written
    (today's), small files of one size tier are merged once the tier holds tier_fanout of them, so no
    partition holds more than about max_small_files_per_partition small files and files of the target
    size are never rewritten. Partitions whose time range ended before the current UTC day (every
    partition, for a table without a time partition) holding several files are rewritten into one file
    each, sorted by the table's sort order. Every rewrite commits only on the head it was built on
    (rebuilt when the connector committed in between, given up if its files changed), so query results
    never change. Snapshots older than --retain or beyond the newest max_snapshots are expired except
    branch and tag heads; files that no snapshot, branch, tag, metadata or statistics file references
    are deleted once older than --orphan-age. Reports data files and bytes, and files on disk, before and
    after; --dry-run prints the plan as rows of step, target, count and bytes instead. --watch runs
    until stopped (SIGTERM or Ctrl-C), logging one line per table and cycle; `k2 stack up` runs it as
    the `maintainer` service.

    \b
    Examples:
      k2 tables maintain market_data.trades
      k2 tables maintain market_data.trades --dry-run
      k2 tables maintain market_data.trades --retain 24h --format json
      k2 tables maintain --watch --interval 60s
    """
    from k2.connect.exceptions import ConnectError
    from k2.connect.maintainer import watch as watch_tables
    from k2.connect.maintenance import PLAN_COLUMNS, Policy, load_policies, plan
    from k2.connect.maintenance import maintain as run_maintenance
    from k2.connect.tables import rest_catalog

    def duration(seconds: float | None, option: str) -> timedelta | None:
        return None if seconds is None else timedelta(seconds=seconds)

    if watch:
        if dry_run:
            raise click.UsageError("--watch and --dry-run do not go together; run --dry-run once instead")
        every = timedelta(seconds=interval)
        policies = load_policies()
        if table:
            policies.setdefault(table, Policy())
        retain_for, orphan_age_for = duration(retain, "--retain"), duration(orphan_age, "--orphan-age")
        policies = {
            name: replace(
                policy,
                snapshot_retention=policy.snapshot_retention if retain_for is None else retain_for,
                orphan_age=policy.orphan_age if orphan_age_for is None else orphan_age_for,
            )
            for name, policy in policies.items()
        }
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        maintainer_log = logging.getLogger("k2.maintainer")
        maintainer_log.addHandler(handler)
        maintainer_log.setLevel(logging.INFO)
        maintainer_log.propagate = False
        logging.getLogger("pyiceberg").setLevel(logging.ERROR)  # its commit-retry warnings are expected here
        try:
            watch_tables(
                lambda: rest_catalog(settings.catalog_uri),
                [table] if table else None,
                every,
                heartbeat=heartbeat,
                policies=policies,
                metrics_port=metrics_port,
                metrics_host=metrics_host,
            )
        except KeyboardInterrupt:
            return
        return
    if table is None:
        raise click.UsageError("name a TABLE, or pass --watch to maintain every table of connect/tables.toml")
    catalog = rest_catalog(settings.catalog_uri)
    if dry_run:
        planned = plan(
            catalog, table, retain=duration(retain, "--retain"), orphan_age=duration(orphan_age, "--orphan-age")
        )
        emit(planned.rows(), fmt, PLAN_COLUMNS)
        if planned.refused:
            raise ConnectError(planned.refused)
        return
    report = run_maintenance(
        catalog, table, retain=duration(retain, "--retain"), orphan_age=duration(orphan_age, "--orphan-age")
    )
    emit_record(report.as_dict(), fmt)
