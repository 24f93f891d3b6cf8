"""``k2 ksql``: the ksqlDB migrations of ksql/ and queries against ksqlDB's REST API."""

from __future__ import annotations

import sys
from typing import Any

import click

from k2.connect.units import duration_text
from k2.ksql import READY_WAIT_S
from k2.query import DEFAULT_TRADES

from .options import DURATION, MOMENT, assignments
from .output import emit, format_option
from .settings import Settings


def _refuse_unknown(variables: dict[str, str], migrations: list[Any]) -> None:
    """A -d NAME no migration uses is a typo that would otherwise change nothing, silently."""
    from k2.ksql.migrations import variable_names

    used = set().union(*(variable_names(migration) for migration in migrations))
    unknown = sorted(set(variables) - used)
    if unknown:
        raise click.BadParameter(
            f"no migration uses {', '.join(unknown)}; the variables are {', '.join(sorted(used))}", param_hint="-d"
        )


def _defaults(variables: dict[str, str]) -> dict[str, str]:
    """Topic names from schemas/topics.toml unless given (`trades_topic` for [topics.trades], `trades_dlq_topic`
    for [topics.trades-dlq]...): the files' DEFINEs are only fallbacks."""
    from k2.schemas.contract import load_topics

    topics = {f"{key.replace('-', '_')}_topic": topic.name for key, topic in load_topics().items()}
    return {**topics, **variables}


variable_option = click.option(
    "-d", "--define", "defines", multiple=True, metavar="NAME=VALUE", help="Set a ${NAME} variable (repeatable)."
)


@click.group()
def ksql() -> None:
    """ksqlDB live aggregates: apply ksql/migrations in order, validate them offline, query ksqlDB.

    ksqlDB runs in docker-compose.yml (ksqldb-server on port 8088); point --ksql-url at it.

    \b
    Examples:
      k2 ksql validate
      k2 ksql apply --dry-run
      k2 ksql apply
      k2 ksql query "SELECT * FROM candles_1m_changelog EMIT CHANGES;" --limit 5
    """


@ksql.command()
@variable_option
@click.option("--dry-run", is_flag=True, help="List every statement with its file, variables filled; run nothing.")
@click.option(
    "--timeout",
    type=DURATION,
    default=duration_text(READY_WAIT_S),
    show_default=True,
    help="How long to wait for ksqlDB to serve the migration record (a new table needs a moment).",
)
@format_option()
@click.pass_obj
def apply(settings: Settings, defines: tuple[str, ...], dry_run: bool, timeout: float, fmt: str) -> None:
    """Run pending migrations in version order, recording each in ksqlDB (idempotent).

    The record is ksql-migrations' own (MIGRATION_EVENTS, MIGRATION_SCHEMA_VERSIONS), so
    `ksql-migrations info` shows what this did and either tool can continue. A migration changed
    after it was applied is refused (its MD5 is recorded in ksqlDB).

    \b
    Examples:
      k2 ksql apply
      k2 ksql apply -d trades_topic=market.crypto.trades.test --dry-run
    """
    from k2.ksql.client import KsqlClient
    from k2.ksql.client import apply as run_apply
    from k2.ksql.migrations import load_migrations, resolve

    given = assignments(defines, "-d")
    migrations = load_migrations()
    _refuse_unknown(given, migrations)
    variables = _defaults(given)
    if dry_run:
        rows = [
            {"file": m.path.name, "checksum": m.checksum, "line": statement.line, "statement": statement.text}
            for m in migrations
            for statement in resolve(m, variables)
        ]
        emit(rows, fmt, ("file", "checksum", "line", "statement"))
        return
    applied = run_apply(KsqlClient(settings.ksql_url), migrations, variables, wait_s=timeout)
    emit(applied, fmt, ("version", "name", "action"))


@ksql.command(name="list")
@format_option()
@click.pass_obj
def list_(settings: Settings, fmt: str) -> None:
    """Each migration file with its state in ksqlDB: applied, pending or changed.

    \b
    Examples:
      k2 ksql list
      k2 ksql list --format json
    """
    from k2.ksql.client import VERSIONS_TABLE, KsqlClient, KsqlError, applied_versions, plan
    from k2.ksql.migrations import load_migrations

    client = KsqlClient(settings.ksql_url)
    try:
        recorded = applied_versions(client)
    except KsqlError as exc:
        if "does not exist" not in str(exc):
            raise
        recorded = {}  # nothing applied yet: the versions table is created by the first apply
    rows = [
        {"version": m.version, "name": m.name, "state": state, "checksum": m.checksum, "file": m.path.name}
        for m, state in plan(load_migrations(), recorded)
    ]
    emit(rows, fmt)
    if any(r["state"] == "changed" for r in rows):
        click.echo(f"Error: a migration changed after it was applied (see {VERSIONS_TABLE})", err=True)
        sys.exit(1)


@ksql.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the DROP statements; run nothing.")
@format_option()
@click.pass_obj
def drop(settings: Settings, yes: bool, dry_run: bool, fmt: str) -> None:
    """Drop every stream and table the migrations created (newest first) and the migration record.

    Topics written by the aggregates and the record's topics are deleted, so a later `k2 ksql apply`
    recreates everything; the trades topic is never touched.

    \b
    Examples:
      k2 ksql drop --dry-run
      k2 ksql drop --yes
    """
    from k2.ksql.client import KsqlClient, drop_statements
    from k2.ksql.migrations import load_migrations

    statements = [
        f"DROP {kind} IF EXISTS {name}{' DELETE TOPIC' if delete_topic else ''};"
        for kind, name, delete_topic in drop_statements(load_migrations())
    ]
    if dry_run:
        emit([{"statement": statement, "action": "would run"} for statement in statements], fmt)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to drop without confirmation on a non-interactive input; pass --yes")
        click.confirm("Drop all K2 ksqlDB streams and tables?", abort=True)
    client = KsqlClient(settings.ksql_url)
    done = []
    for statement in statements:
        client.execute(statement)
        done.append({"statement": statement, "action": "ran"})
    emit(done, fmt, ("statement", "action"))


@ksql.command()
@click.argument("sql")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many rows (push queries run until then).")
@format_option(rows=True)
@click.pass_obj
def query(settings: Settings, sql: str, limit: int | None, fmt: str) -> None:
    """Run a pull query, or stream a push query's rows (EMIT CHANGES) until --limit or Ctrl-C.

    \b
    Examples:
      k2 ksql query "SELECT * FROM candles_1m WHERE symbol = 'BTCUSDT';"
      k2 ksql query "SELECT * FROM candles_1m_changelog EMIT CHANGES;" --limit 10 --format jsonl
      k2 ksql query "SELECT * FROM candles_1m;" --format parquet --output candles.parquet

    With --format jsonl each row is written as it arrives; other formats print once the query ends.
    """
    from k2.ksql.client import KsqlClient

    result = KsqlClient(settings.ksql_url).query(sql if sql.rstrip().endswith(";") else sql + ";")
    columns = [c.lower() for c in result.columns]
    streaming = fmt == "jsonl"
    rows: list[dict[str, Any]] = []
    try:
        for count, row in enumerate(result.rows, start=1):
            item = dict(zip(columns, row, strict=False))
            if streaming:
                emit([item], "jsonl", columns)
            else:
                rows.append(item)
            if limit and count >= limit:
                break
    except KeyboardInterrupt:  # a push query stopped by Ctrl-C: what arrived is still printed
        if not streaming:
            emit(rows, fmt, columns)
        raise
    if not streaming:
        emit(rows, fmt, columns)


@ksql.command()
@variable_option
@format_option()
def validate(defines: tuple[str, ...], fmt: str) -> None:
    """Check the migrations offline against schemas/ and schemas/topics.toml; exit 1 on any problem.

    Catches unknown columns, aggregates on the wrong type, undeclared topics and missing variables,
    and what ksqlDB 0.29 only fails on at run time: DECIMAL division not cast to DOUBLE (NULL for
    almost every quotient), a SUM not over DECIMAL(38, s) (overflow stops the query), a window
    without RETENTION or with RETENTION below size + grace. Each problem names file, line and item.

    \b
    Examples:
      k2 ksql validate
      k2 ksql validate -d trades_topic=market.crypto.trades.binance --format json
    """
    from k2.ksql.migrations import load_migrations
    from k2.ksql.validate import validate as run_validate

    given = assignments(defines, "-d")
    migrations = load_migrations()
    _refuse_unknown(given, migrations)
    problems = run_validate(migrations, _defaults(given))
    if problems or fmt != "table":  # scripts get an empty array / a header when all is valid
        rows = [{"file": p.file, "line": p.line, "column": p.column, "item": p.item, "problem": p.message}
                for p in problems]  # fmt: skip
        emit(rows, fmt, ("file", "line", "column", "item", "problem"))
    if problems:
        click.echo(f"Error: {len(problems)} problem(s) in ksql/migrations", err=True)
        sys.exit(1)
    click.echo(
        f"{len(migrations)} migrations, {sum(len(m.statements) for m in migrations)} statements: valid", err=True
    )


@ksql.command()
@format_option()
@click.pass_obj
def info(settings: Settings, fmt: str) -> None:
    """The ksqlDB server's version, cluster, service id and status (GET /info).

    \b
    Examples:
      k2 ksql info
      k2 --ksql-url http://ksqldb-server:8088 ksql info --format json
    """
    from k2.ksql.client import KsqlClient

    emit([KsqlClient(settings.ksql_url).info()], fmt)


@ksql.command()
@click.option(
    "--interval",
    type=click.Choice(["1m", "5m", "1h"]),
    default="1m",
    show_default=True,
    help="Candle length to compare.",
)
@click.option("--since", type=MOMENT, required=True, help="Start of a closed range (UTC), e.g. 2026-11-27T12:00:00Z.")
@click.option(
    "--until", type=MOMENT, required=True, help="End of the range (UTC, exclusive); its windows must be closed."
)
@click.option("--table", default=DEFAULT_TRADES, show_default=True, help="Iceberg trades table.")
@format_option()
@click.pass_obj
def reconcile(settings: Settings, interval: str, since: str, until: str, table: str, fmt: str) -> None:
    """Compare ksqlDB's final candles with `k2 candles` from Iceberg over a closed range; exit 1 on any difference.

    \b
    Examples:
      k2 ksql reconcile --since 2026-11-27T12:00:00Z --until 2026-11-27T13:00:00Z
      k2 ksql reconcile --interval 5m --since 2026-11-27T00:00:00Z --until 2026-11-27T06:00:00Z --format json
    """
    from k2.ksql.client import KsqlClient
    from k2.ksql.reconcile import compare, ksql_candles
    from k2.query.engine import Lake
    from k2.query.market import candles

    live = ksql_candles(KsqlClient(settings.ksql_url), interval, since, until)
    lake = Lake(settings.catalog_uri, trades=table)
    symbols = sorted({symbol for symbol, _ in live} | _symbols(lake))
    exact = [c for symbol in symbols for c in candles(lake, symbol, interval, since, until)]
    mismatches = compare(live, exact)
    if mismatches or fmt != "table":
        emit(mismatches, fmt)  # an empty array / file for scripts when all agree
    if mismatches:
        click.echo(f"Error: {len(mismatches)} difference(s) between ksqlDB and Iceberg candles", err=True)
        sys.exit(1)
    click.echo(f"ksqlDB and Iceberg agree on {len(exact)} {interval} candles from {since} to {until}.", err=True)


def _symbols(lake: Any) -> set[str]:
    return {str(row["symbol"]) for row in lake.query("select distinct symbol from trades").to_pylist()}
