"""``k2 run``: the main job end to end — stack, topics, schemas, table, connector, trades, then a look."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .output import Progress, emit
from .settings import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "producer" / "samples" / "binance-trades-sample.jsonl"
DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT,BNBUSDT"


def _step(message: str) -> None:
    click.secho(f"==> {message}", bold=True, err=True)


@click.command(name="run")
@click.option("--symbols", default=DEFAULT_SYMBOLS, show_default=True, help="Symbols to stream.")
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay recorded frames instead of streaming live.",
)
@click.option(
    "--standin",
    is_flag=True,
    help="Offline: stream the bundled sample through the Binance stand-in (WebSocket + REST backfill).",
)
@click.option("--rate", type=float, default=300.0, show_default=True, help="Stand-in frames per second.")
@click.option("--duration", type=float, help="Stop producing after this many seconds (live default: until Ctrl-C).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for each stage.")
@click.pass_obj
def run(
    settings: Settings,
    symbols: str,
    replay: Path | None,
    standin: bool,
    rate: float,
    duration: float | None,
    timeout: float,
) -> None:
    """Run K2's main job end to end on the local stack, then show what landed in Iceberg.

    Starts the stack if needed, applies topics, schemas and tables, deploys the connectors, applies the
    ksqlDB migrations when ksqlDB is reachable (Compose), streams
    trades (live Binance by default; --replay FILE or --standin offline), waits until Iceberg holds
    every acknowledged trade, and prints the newest rows and 1-minute candles.

    \b
    Examples:
      k2 run --standin                      # offline, the bundled 3-minute sample
      k2 run --replay my-frames.jsonl
      k2 run --symbols BTCUSDT,ETHUSDT --duration 300   # live Binance
    """
    from k2.connect.tables import apply_table, load_table_specs, rest_catalog
    from k2.producer.app import ProduceOptions, run_live, run_replay
    from k2.schemas.contract import load_topics
    from k2.schemas.topics import apply_topics
    from k2.stack.manager import Stack, default_cache, stack_ports
    from k2.stack.services import Context

    from .connect_cmd import deploy_all
    from .produce_cmd import _symbols

    progress = Progress()
    _step("Local stack")
    stack = Stack(Context(settings.home, default_cache(), stack_ports(settings.home)))
    emit([s.as_dict() for s in stack.up(timeout, progress)], "table", ("service", "url", "state"))

    topics = load_topics()
    _step("Topics (schemas/topics.toml)")
    emit(apply_topics(settings.bootstrap_servers, topics.values()), "table", ("topic", "action", "partitions"))

    _step("Schemas (schemas/*.avsc)")
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from k2.schemas.registry import register

    with SchemaRegistryClient({"url": settings.registry_url}) as client:
        rows = [register(client, settings.registry_url, s).as_dict() for s in topics.values() if s.value_schema]
    emit(rows, "table", ("subject", "action", "schema_id", "version"))

    _step("Tables (connect/tables.toml)")
    catalog = rest_catalog(settings.catalog_uri)
    emit([apply_table(catalog, spec) for spec in load_table_specs().values()], "table", ("table", "action"))

    _step("Connectors (connect/*.json)")
    deployed, failed = deploy_all(settings, timeout=timeout, announce=False)
    emit(deployed, "table", ("connector", "result", "state"))
    if failed:
        raise click.ClickException("a connector was refused (see above); fix it, then run `k2 run` again")

    _step("ksqlDB migrations (ksql/migrations)")
    from k2.ksql.client import KsqlClient, KsqlError
    from k2.ksql.client import apply as apply_ksql
    from k2.ksql.migrations import load_migrations

    ksql_client = KsqlClient(settings.ksql_url, timeout=10)
    try:
        ksql_client.info()
    except KsqlError:
        # ksqlDB exists only as a container image: it runs in Compose, never in the local stack.
        click.echo(f"ksqlDB not reachable at {settings.ksql_url} (it runs in Compose only): skipped", err=True)
    else:
        ksql_rows = apply_ksql(ksql_client, load_migrations(), {"trades_topic": topics["trades"].name})
        emit(ksql_rows, "table", ("version", "name", "action"))

    options = ProduceOptions(
        bootstrap_servers=settings.bootstrap_servers,
        registry_url=settings.registry_url,
        topic=topics["trades"].name,
        dlq_topic=topics["trades-dlq"].name,
        symbols=_symbols(symbols),
        duration=duration,
        # Live: pick up after the last trade in Kafka. The stand-in's sample gets fresh ids every run,
        # so there is nothing to resume from.
        resume=not standin,
    )
    status = progress if progress.enabled else None
    started_ms = int(time.time() * 1000)
    if standin:
        from k2.producer.standin import BinanceStandIn, Script, load_frames, rebase

        # Moved to "now" with fresh ids: each demo run adds new trades instead of repeating old ones.
        now_ms = int(time.time() * 1000)
        events = rebase(load_frames(SAMPLE), now_ms, id_offset=now_ms)
        _step(
            f"Producing: {len(events)} sample trades through the Binance stand-in (not Binance), which drops the "
            "connection halfway for a second: the producer reconnects and backfills the missed trades over REST"
        )
        # The stand-in keeps trading after the sample (loop_tape), as Binance would: trades missed at the
        # end of the sample then show up as a gap and are backfilled, instead of never being noticed.
        script = Script(disconnect_at={len(events) // 2}, refuse_after_disconnect_s=1.0)
        with BinanceStandIn(events, rate=rate, script=script, loop_tape=True) as server:
            options.ws_url, options.rest_url = server.ws_url, server.rest_url
            options.symbols = sorted({str(e["s"]) for e in events})
            options.max_messages = len(events)
            options.duration = options.duration or len(events) / rate + 120  # a bound, never a hang
            summary = run_live(options, status)
    elif replay:
        _step(f"Producing: replaying {replay}")
        options.replay, options.rest_url = replay, None
        summary = run_replay(options, status)
    else:
        _step(f"Producing: live Binance trades for {', '.join(options.symbols)} (Ctrl-C to stop)")
        summary = run_live(options, status)
    progress("")
    shown = ("trades_acknowledged", "duplicates_dropped", "gaps_backfilled", "gaps_unrecovered", "dead_lettered")
    emit([{"metric": k, "value": getattr(summary, k)} for k in shown], "table")

    _step("Waiting for the Iceberg sink's commit")
    from k2.query.engine import Lake, candles

    identifier = next(iter(load_table_specs()))
    deadline = time.monotonic() + timeout
    count = 0
    lake = Lake(settings.catalog_uri)  # extensions load once; every statement reads the table's newest snapshot
    while True:
        # This run's trades: the producer stamped each with ingest_time after started_ms.
        landed = lake.query(
            f"select count(*) c from {identifier} where ingest_time >= make_timestamptz($since * 1000)",
            {"since": started_ms},
        )
        count = int(landed["c"][0].as_py())
        if count >= summary.trades_acknowledged or time.monotonic() > deadline:
            break
        progress(f"{count:,} of {summary.trades_acknowledged:,} trades visible in {identifier}")
        time.sleep(1)
    progress("")
    click.echo(f"{count:,} of this run's {summary.trades_acknowledged:,} trades queryable in {identifier}.", err=True)

    _step(f"Newest trades in {identifier}")
    newest = lake.query(
        f"select symbol, trade_id, price, quantity, side, trade_time from {identifier} "
        "order by trade_time desc, trade_id desc limit 5"
    )
    emit(newest.to_pylist(), "table")
    for symbol in sorted(options.symbols):
        _step(f"1-minute candles for {symbol} (newest 3)")
        rows_c: list[dict[str, Any]] = candles(lake, symbol, "1m", "1970-01-01T00:00:00Z", "9999-12-31T00:00:00Z")
        emit(rows_c[-3:], "table", ("interval_start", "open", "high", "low", "close", "volume", "vwap", "trade_count"))
    if count < summary.trades_acknowledged:
        raise click.ClickException(
            f"only {count} of {summary.trades_acknowledged} trades reached {identifier} within {timeout:.0f}s; "
            "see `k2 connectors status` and `k2 stack logs connect`"
        )
