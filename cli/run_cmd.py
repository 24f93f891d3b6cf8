"""``k2 run``: the main job end to end: the other commands in order, then trades, then a look at Iceberg."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .options import (
    DURATION,
    POSITIVE_DURATION,
    live_symbols_option,
    market_mode,
    producer_market_options,
    producer_metrics_options,
)
from .output import Progress, emit, emit_record, format_option, redact
from .settings import Settings, reachable, uses_local_stack

SAMPLE = Path(__file__).resolve().parents[1] / "producer" / "samples" / "binance-trades-sample.jsonl"
DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT,BNBUSDT"


def _step(message: str) -> None:
    click.secho(f"==> {message}", bold=True, err=True)


def _services(settings: Settings, timeout: float, dry_run: bool, fmt: str) -> bool:
    """Make sure the services answer: the local stack is started only when the URLs are its own and
    nothing else (Docker Compose) already serves them. False when a dry run finds them not running."""
    from k2.stack.manager import Stack, default_cache
    from k2.stack.ports import stack_ports
    from k2.stack.services import Context

    if not uses_local_stack(settings):
        rows = reachable(settings)
        emit(rows, fmt, ("service", "url", "state"))
        down = [row["service"] for row in rows if row["state"] != "answering"]
        if down:
            raise click.ClickException(
                f"{', '.join(down)} not answering at the given URL(s); `k2 run` starts the local stack only "
                "when no connection option or K2_*_URL / K2_BOOTSTRAP_SERVERS / K2_CATALOG_URI is set"
            )
        return not down
    stack = Stack(Context(settings.home, default_cache(), stack_ports(settings.home)))
    if all(state.pid is None for state in stack.states()):
        rows = reachable(settings)
        if all(row["state"] == "answering" for row in rows):  # e.g. Docker Compose on the same ports
            click.echo("Services already answer on the local ports (Docker Compose?): using them.", err=True)
            emit(rows, fmt, ("service", "url", "state"))
            return True
    if dry_run:
        plan = stack.plan()
        emit(plan, fmt, ("service", "url", "state", "action"))
        failing = [str(row["service"]) for row in plan if str(row["action"]).startswith("would fail")]
        if failing:
            raise click.ClickException(f"`k2 stack up` would fail for {', '.join(failing)} (see above)")
        return all(row["state"] in ("running", "skipped") for row in plan)
    emit([s.as_dict() for s in stack.up(timeout, Progress())], fmt, ("service", "url", "state"))
    return True


@click.command(name="run")
@live_symbols_option("Symbols to stream live.", default=DEFAULT_SYMBOLS, show_default=True)
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
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Stand-in frames per second.",
)
@click.option(
    "--duration", type=POSITIVE_DURATION, help="Stop producing after this long, e.g. 10m.  [live: until Ctrl-C]"
)
@click.option("--timeout", type=DURATION, default="300s", show_default=True, help="How long to wait for each stage.")
@producer_market_options
@producer_metrics_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what each step would change (stack, topics, schemas, tables, connectors, ksqlDB); produce nothing.",
)
@format_option()
@click.pass_context
def run(
    ctx: click.Context,
    symbols: list[str],
    replay: Path | None,
    standin: bool,
    rate: float,
    duration: float | None,
    timeout: float,
    quote: list[str],
    symbols_refresh: float,
    redundancy: int,
    metrics_port: int,
    metrics_host: str,
    dry_run: bool,
    fmt: str,
) -> None:
    """Run K2's main job end to end, then show what landed in Iceberg.

    The steps are the commands themselves, in order: the services (with the default URLs: `k2 stack
    up`, unless Docker Compose already serves the local ports; with connection options or K2_*
    variables: those services, never the local stack), `k2 topics apply`, `k2 schemas register`,
    `k2 tables apply`, `k2 deploy-connectors`, `k2 ksql apply` when ksqlDB answers (Compose), then
    trades (live Binance by default; --replay FILE or --standin offline) until Iceberg holds every
    acknowledged trade, and the newest rows and 1-minute candles.

    \b
    Examples:
      k2 run --standin                      # offline, the bundled 3-minute sample
      k2 run --replay my-frames.jsonl
      k2 run --symbols BTCUSDT,ETHUSDT --duration 5m      # live Binance
      k2 run --symbols ALL --quote USDT --symbols-refresh 5m --redundancy 2   # the USDT market, live
      k2 run --dry-run                      # what each step would change
      K2_BOOTSTRAP_SERVERS=kafka.example:9092 K2_REGISTRY_URL=http://registry.example:8081 \\
        K2_CONNECT_URL=http://connect.example:8083 K2_CATALOG_URI=http://catalog.example:8181 k2 run --standin
    """
    from k2.producer.app import ProduceOptions, run_live, run_replay
    from k2.schemas.contract import load_topics

    from . import connect_cmd, ksql_cmd, schemas_cmd, tables_cmd, topics_cmd

    settings: Settings = ctx.obj
    everything = market_mode(symbols, quote, replay is not None)
    progress = Progress()
    _step("Services")
    if not _services(settings, timeout, dry_run, fmt):
        click.echo("The services are not running: the other steps' plans need them (`k2 stack up`).", err=True)
        return
    _step("Topics: k2 topics apply")
    ctx.invoke(topics_cmd.apply, dry_run=dry_run, fmt=fmt)
    _step("Schemas: k2 schemas register")
    ctx.invoke(schemas_cmd.register, dry_run=dry_run, fmt=fmt)
    _step("Tables: k2 tables apply")
    ctx.invoke(tables_cmd.apply, dry_run=dry_run, fmt=fmt)
    _step("Connectors: k2 deploy-connectors")
    ctx.invoke(connect_cmd.deploy_connectors, dry_run=dry_run, timeout=timeout, fmt=fmt)
    _step("ksqlDB migrations: k2 ksql apply")
    from k2.ksql.client import KsqlClient, KsqlError

    try:
        KsqlClient(settings.ksql_url, timeout=10).info()
    except KsqlError:
        # ksqlDB exists only as a container image: it runs in Compose, never in the local stack.
        click.echo(redact(f"ksqlDB not reachable at {settings.ksql_url} (it runs in Compose only): skipped"), err=True)
    else:
        ctx.invoke(ksql_cmd.apply, dry_run=dry_run, timeout=timeout, fmt=fmt)
    if dry_run:
        click.echo("Dry run: nothing was changed and no trades were produced.", err=True)
        return

    topics = load_topics()
    options = ProduceOptions(
        bootstrap_servers=settings.bootstrap_servers,
        registry_url=settings.registry_url,
        topic=topics["trades"].name,
        dlq_topic=topics["trades-dlq"].name,
        symbols=[] if everything else symbols,
        duration=duration,
        # Live: pick up after the last trade in Kafka. The stand-in's sample gets fresh ids every run,
        # so there is nothing to resume from.
        resume=not standin,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        all_symbols=everything,
        quotes=quote,
        symbols_refresh=symbols_refresh,
        redundancy=redundancy,
    )
    status = progress if progress.enabled else None
    started_ms = int(time.time() * 1000)
    if standin:
        from k2.producer.binance_standin.script import Script
        from k2.producer.binance_standin.server import BinanceStandIn
        from k2.producer.binance_standin.tape import load_frames, rebase

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
            if not everything:  # with ALL the stand-in's exchangeInfo names the sample's symbols
                options.symbols = sorted({str(e["s"]) for e in events})
            options.max_messages = len(events)
            options.duration = options.duration or len(events) / rate + 120  # a bound, never a hang
            summary = run_live(options, status)
    elif replay:
        _step(f"Producing: replaying {replay}")
        options.replay, options.rest_url = replay, None
        summary = run_replay(options, status)
    else:
        named = "every TRADING symbol" if everything else ", ".join(options.symbols)
        _step(f"Producing: live Binance trades for {named} (Ctrl-C to stop)")
        summary = run_live(options, status)
    progress("")
    shown = ["trades_acknowledged", "duplicates_dropped", "gaps_backfilled", "gaps_unrecovered", "dead_lettered"]
    if everything:
        shown += ["symbols_subscribed", "symbols_added", "symbols_removed"]
    emit_record({k: getattr(summary, k) for k in shown}, fmt)

    _step("Waiting for the Iceberg sink's commit")
    from k2.connect.tables import load_table_specs
    from k2.query.engine import Lake
    from k2.query.market import candles

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
    emit(newest.to_pylist(), fmt, newest.column_names)
    # With ALL, candles of the symbols of the newest trades, not of every symbol of the market.
    candle_symbols = options.symbols or sorted({str(row["symbol"]) for row in newest.to_pylist()})
    for symbol in sorted(candle_symbols):
        _step(f"1-minute candles for {symbol} (newest 3)")
        rows_c: list[dict[str, Any]] = candles(lake, symbol, "1m", "1970-01-01T00:00:00Z", "9999-12-31T00:00:00Z")
        columns = ("interval_start", "open", "high", "low", "close", "volume", "vwap", "trade_count")
        emit(rows_c[-3:], fmt, columns)
    if count < summary.trades_acknowledged:
        raise click.ClickException(
            f"only {count} of {summary.trades_acknowledged} trades reached {identifier} within {timeout:.0f}s; "
            "see `k2 connectors status` and `k2 stack logs connect`"
        )
