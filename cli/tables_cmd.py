"""``k2 tables``: the Iceberg tables declared in connect/tables.toml."""

from __future__ import annotations

from datetime import timedelta

import click

from .output import emit, format_option
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
    """List a table's snapshots, oldest first (ids and times for `k2 query --snapshot/--as-of`).

    \b
    Examples:
      k2 tables snapshots market_data.trades
      k2 tables snapshots market_data.trades --format json
    """
    from k2.query.engine import Catalog
    from k2.query.engine import snapshots as list_snapshots

    rows = list_snapshots(Catalog(settings.catalog_uri), table)
    columns = ("snapshot_id", "committed_at", "operation", "added_records", "total_records", "total_data_files")
    emit(rows, fmt, (*columns, "current"))


def _duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 1h or 7d") from None


@tables.command()
@click.argument("table")
@click.option("--retain", default="1h", show_default=True, help="Keep snapshots younger than this.")
@click.option("--orphan-age", default="1h", show_default=True, help="Only delete unreferenced files older than this.")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (partitions, snapshots, files and bytes); change nothing."
)
@format_option()
@click.pass_obj
def maintain(settings: Settings, table: str, retain: str, orphan_age: str, dry_run: bool, fmt: str) -> None:
    """Compact finished partitions, expire old snapshots, delete files nothing references any more.

    Works on any table: partitions and sort order are read from the table. Partitions whose time range
    ended before the current UTC day (every partition, for a table without a time partition) holding
    several files are rewritten into one file each, sorted by the table's sort order, committed only if
    the connector did not commit into them in between (retried otherwise), so query results never
    change. Snapshots older than --retain are expired except branch and tag heads; files that no
    snapshot, branch, tag, metadata or statistics file references are deleted. Reports data files and
    bytes, and files on disk, before and after; --dry-run prints the plan as rows of step, target,
    count and bytes instead.

    \b
    Examples:
      k2 tables maintain market_data.trades
      k2 tables maintain market_data.trades --dry-run
      k2 tables maintain market_data.trades --retain 24h --format json
    """
    from k2.connect.exceptions import ConnectError
    from k2.connect.maintenance import PLAN_COLUMNS, plan
    from k2.connect.maintenance import maintain as run_maintenance
    from k2.connect.tables import rest_catalog

    catalog = rest_catalog(settings.catalog_uri)
    if dry_run:
        planned = plan(catalog, table, retain=_duration(retain), orphan_age=_duration(orphan_age))
        emit(planned.rows(), fmt, PLAN_COLUMNS)
        if planned.refused:
            raise ConnectError(planned.refused)
        return
    report = run_maintenance(catalog, table, retain=_duration(retain), orphan_age=_duration(orphan_age))
    if fmt == "table":
        emit([{"metric": k, "value": v} for k, v in report.as_dict().items()], fmt)
    else:
        emit([report.as_dict()], fmt)
