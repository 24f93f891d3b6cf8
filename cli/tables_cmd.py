"""``k2 tables``: the Iceberg tables declared in connect/tables.toml."""

from __future__ import annotations

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
